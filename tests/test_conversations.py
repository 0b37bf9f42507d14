"""Group conversations, mentions and the frames that name a conversation, without sockets or a loop."""

from __future__ import annotations

import json

import pytest

from tornado_chat import addressing, conversations, mentions, protocol
from tornado_chat.conversation_frames import Read, Search, Target, Typing
from tornado_chat.hub import Hub
from tornado_chat.protocol import ErrorCode, ProtocolError, Send
from tornado_chat.roles import MODERATOR
from tornado_chat.server_frames import Message, message_frame
from tornado_chat.typing_notices import typing_frame

from .test_hub import frames_for, open_

pytestmark = pytest.mark.unit


def parse(frame: object) -> protocol.ClientFrame:
    return protocol.parse_client_frame(json.dumps(frame), 4000)


def error_of(frame: object) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse(frame)
    return caught.value


# ---------------------------------------------------------------- keys


def test_a_conversation_has_one_key_whoever_names_it() -> None:
    assert conversations.direct_key("bob", "alice") == conversations.direct_key("alice", "bob") == "d:alice\x00bob"
    assert conversations.group_key(["carol", "alice", "bob", "alice"]) == "g:alice\x00bob\x00carol"
    assert conversations.thread_key("bob", None, None, ("alice", "bob", "carol")) == "g:alice\x00bob\x00carol"
    assert conversations.thread_key("bob", "general", None) == conversations.room_key("general") == "r:general"
    assert conversations.people_of("d:alice\x00alice") == ("alice",)
    assert conversations.people_of("r:general") == ()


def test_each_member_names_a_conversation_by_the_others() -> None:
    group = conversations.group_key(["alice", "bob", "carol"])
    assert conversations.wire_target(group, "bob") == {"with": ["alice", "carol"]}
    assert conversations.wire_target(conversations.direct_key("alice", "bob"), "bob") == {"with": "alice"}
    assert conversations.wire_target(conversations.direct_key("alice", "alice"), "alice") == {"with": "alice"}
    assert conversations.wire_target("r:ops", "bob") == {"room": "ops"}


def test_a_group_has_three_to_ten_people_with_the_sender_implied() -> None:
    assert conversations.group_members("alice", ["carol", "bob"]) == ("alice", "bob", "carol")
    assert conversations.group_members("alice", ["alice", "bob", "carol"]) == ("alice", "bob", "carol")
    for others in (["bob"], ["alice", "bob"], [f"u{i}" for i in range(10)]):
        with pytest.raises(ProtocolError) as caught:
            conversations.group_members("alice", others)
        assert caught.value.code == ErrorCode.BAD_FRAME and "3 to 10 people" in caught.value.message


# ---------------------------------------------------------------- frames


def test_conversation_frames_parse_with_a_room_a_person_or_a_group() -> None:
    assert parse({"type": "read", "room": "ops", "seq": 7}) == Read(Target(room="ops"), 7)
    assert parse({"type": "read", "with": "bob", "seq": 0, "id": 4}) == Read(Target(with_user="bob"), 0, 4)
    assert parse({"type": "typing", "with": ["carol", "bob", "bob"]}) == Typing(Target(with_group=("bob", "carol")))
    assert parse({"type": "search", "q": "  deploy \t notes "}) == Search("deploy notes", Target())
    assert parse({"type": "search", "q": "x", "room": "ops", "before": 9, "limit": 50}) == Search(
        "x", Target(room="ops"), 9, 50
    )
    assert parse({"type": "send", "id": "1", "to": ["bob", "carol"], "text": "hi"}) == Send(
        "1", "hi", group=("bob", "carol")
    )
    history = parse({"type": "history", "with": ["bob", "carol"], "limit": 5})
    assert isinstance(history, protocol.History) and history.with_group == ("bob", "carol")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "read", "room": "ops"}, ErrorCode.BAD_FRAME),
        ({"type": "read", "room": "ops", "seq": -1}, ErrorCode.BAD_FRAME),
        ({"type": "read", "room": "ops", "with": "bob", "seq": 1}, ErrorCode.BAD_FRAME),
        ({"type": "read", "seq": 1}, ErrorCode.BAD_FRAME),
        ({"type": "typing", "room": "Not A Room"}, ErrorCode.BAD_ROOM),
        ({"type": "typing", "with": ["bob"]}, ErrorCode.BAD_FRAME),
        ({"type": "typing", "with": [f"u{i}" for i in range(11)]}, ErrorCode.BAD_FRAME),
        ({"type": "typing", "with": ["bob", 3]}, ErrorCode.BAD_FRAME),
        ({"type": "typing", "with": ["bob", "no body"]}, ErrorCode.UNKNOWN_USER),
        ({"type": "search", "q": ""}, ErrorCode.BAD_FRAME),
        ({"type": "search", "q": " \u0000 "}, ErrorCode.BAD_FRAME),
        ({"type": "search", "q": "x" * 201}, ErrorCode.BAD_FRAME),
        ({"type": "search", "q": 5}, ErrorCode.BAD_FRAME),
        ({"type": "search", "q": "x", "limit": 51}, ErrorCode.BAD_FRAME),
        ({"type": "send", "id": "1", "to": [], "text": "hi"}, ErrorCode.BAD_FRAME),
    ],
)
def test_bad_conversation_frames_are_refused_with_a_code(frame: dict[str, object], code: ErrorCode) -> None:
    assert error_of(frame).code == code


def test_group_and_mention_fields_on_the_wire() -> None:
    message = Message(5, "alice", "hi @bob", 0.0, "c", members=("alice", "bob", "carol"), mentions=("bob",))
    assert json.loads(message_frame(message, own=False)) == {
        "type": "message",
        "seq": 5,
        "from": "alice",
        "members": ["alice", "bob", "carol"],
        "text": "hi @bob",
        "ts": "1970-01-01T00:00:00.000Z",
        "mentions": ["bob"],
    }
    assert json.loads(typing_frame("bob", "d:alice\x00bob")) == {"type": "typing", "from": "bob", "to": "alice"}
    assert json.loads(typing_frame("bob", "g:a\x00b\x00bob"))["members"] == ["a", "b", "bob"]
    assert json.loads(typing_frame("bob", "r:ops")) == {"type": "typing", "from": "bob", "room": "ops"}


# ---------------------------------------------------------------- mentions


def test_mentions_name_readers_other_than_the_sender() -> None:
    readers = {"alice", "bob", "carol", "dave.x"}
    text = "@bob and @carol: see @nobody, mail me at alice@example.org; thanks @dave.x. and @alice"
    assert mentions.resolve(text, readers, "alice", room_wide=False) == ("bob", "carol", "dave.x")
    assert mentions.resolve("thanks @bob.", readers, "alice", room_wide=False) == ("bob",)
    assert mentions.resolve("hello @room", readers, "alice", room_wide=True) == (mentions.ROOM_MENTION,)
    assert mentions.resolve("hello @room", readers, "alice", room_wide=False) == ()


def test_code_mentions_nobody_and_ends_where_the_page_ends_it() -> None:
    assert mentions.mentioned("run `@bob` or\n```\n@carol\n```\nbut @dave") == ["dave"]
    # A fence in a quote ends with the quote (a reply quoting the start of a code block), as on the page.
    assert mentions.mentioned("> said:\n> ```\n> @carol\n@bob agreed") == ["bob"]
    # A fence outside quotes runs to the next fence, quote markers and all.
    assert mentions.mentioned("```\n> @carol\n```\n@dave") == ["dave"]
    assert mentions.mentioned("unclosed ```\n@carol") == ["carol"]  # not a fence: it does not start the line


# ---------------------------------------------------------------- addressing and the hub


def test_a_draft_resolves_its_conversation_and_mentions() -> None:
    hub = Hub()
    for name in ("alice", "bob", "carol", "dave"):
        hub.add_user(name)
    alice, _ = open_(hub, "alice", "a1")
    hub.join(alice, "ops")
    open_(hub, "bob", "b1")
    hub.restore_membership("bob", "ops")
    # A plain member's "@room" calls nobody (it is for the room's moderators, owner and admins)...
    draft = addressing.draft_for(hub, alice.user, Send("1", "@bob @dave @room", room="ops"), 1.0)
    assert draft.room == "ops" and draft.mentions == ("bob",)  # dave is not in #ops
    # ...a moderator's calls the room.
    hub.rooms["ops"].roles["alice"] = MODERATOR
    draft = addressing.draft_for(hub, alice.user, Send("1", "@bob @dave @room", room="ops"), 1.0)
    assert draft.mentions == ("@room", "bob")
    group = addressing.draft_for(hub, alice.user, Send("2", "hey @carol @room", group=("bob", "carol")), 1.0)
    assert group.members == ("alice", "bob", "carol") and group.mentions == ("carol",)  # no room to call
    with pytest.raises(ProtocolError) as caught:
        addressing.draft_for(hub, alice.user, Send("3", "x", group=("bob", "zed")), 1.0)
    assert caught.value.code == ErrorCode.UNKNOWN_USER
    with pytest.raises(ProtocolError) as caught:
        addressing.key_for(hub, hub.users["dave"], Target(room="ops"))
    assert caught.value.code == ErrorCode.NOT_MEMBER


def test_a_group_message_reaches_every_member_and_introduces_them() -> None:
    hub = Hub()
    alice, _ = open_(hub, "alice", "a1")
    alice2, _ = open_(hub, "alice", "a2")
    bob, _ = open_(hub, "bob", "b1")
    hub.add_user("carol")  # offline
    dave, _ = open_(hub, "dave", "d1")
    members = ("alice", "bob", "carol")
    message = Message(1, "alice", "hi", 0.0, "c", members=members)
    deliveries, notices = hub.route(message)
    assert [set(d.recipients) for d in deliveries] == [{alice, alice2, bob}]
    assert dave not in {s for d in deliveries for s in d.recipients}
    # New: each online member hears where the others stand.
    assert {(f["user"], f["status"]) for f in frames_for(notices, bob)} == {("alice", "online"), ("carol", "offline")}
    assert hub.users["carol"].groups == {conversations.group_key(members)}
    assert hub.route(Message(2, "bob", "again", 0.0, "d", members=members))[1] == []  # not new any more
    assert hub.readable_keys(bob.user) == ["d:bob\x00bob", conversations.group_key(members)]
    # Group members watch each other's presence.
    carol, opened = open_(hub, "carol", "c1")
    assert {s for d in opened for s in d.recipients} == {alice, alice2, bob}
    assert set(hub.sessions_in(conversations.group_key(members))) == {alice, alice2, bob, carol}
