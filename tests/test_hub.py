"""The session registry and router, without sockets or an event loop."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tornado_chat.hub import Delivery, Hub
from tornado_chat.outgoing import Outgoing
from tornado_chat.protocol import ProtocolError
from tornado_chat.server_frames import Message
from tornado_chat.session import Session

pytestmark = pytest.mark.unit

NOW = 1000.0


def frames_for(deliveries: list[Delivery], session: Session) -> list[dict[str, Any]]:
    return [json.loads(d.frame) for d in deliveries if session in d.recipients]


class NoTransport:
    """A session's network side, for a router that never writes."""

    kind = "none"
    remote_ip = "192.0.2.1"
    buffered_bytes = 0
    closing = False

    def write(self, frame: Outgoing) -> None:
        raise AssertionError("the hub never writes")

    def close(self, code: int, reason: str) -> None:
        raise AssertionError("the hub never closes")

    def abort(self) -> None:
        raise AssertionError("the hub never aborts")

    def has_unread_input(self) -> bool:
        return False

    async def drain(self) -> None:
        return None


def open_(hub: Hub, user: str, sid: str) -> tuple[Session, list[Delivery]]:
    session = Session(sid, hub.add_user(user), NoTransport(), NOW)
    return session, hub.open_session(session)


def test_presence_goes_to_room_mates_on_first_open_and_last_close() -> None:
    hub = Hub()
    alice, _ = open_(hub, "alice", "a1")
    bob, _ = open_(hub, "bob", "b1")
    hub.join(alice, "lobby")
    hub.join(bob, "lobby")
    assert hub.close_session(bob)[0].frame == b'{"type":"presence","user":"bob","status":"offline"}'
    bob1, online = open_(hub, "bob", "b2")
    assert frames_for(online, alice) == [{"type": "presence", "user": "bob", "status": "online"}]
    _, second = open_(hub, "bob", "b3")
    assert second == []  # bob was already online
    assert hub.close_session(hub.sessions["b3"]) == []
    assert frames_for(hub.close_session(bob1), alice)[0]["status"] == "offline"
    assert hub.users_online == 1


def test_close_is_idempotent() -> None:
    hub = Hub()
    session, _ = open_(hub, "alice", "a1")
    hub.close_session(session)
    assert hub.close_session(session) == []
    assert hub.users_online == 0 and not hub.sessions


def test_room_fan_out_is_one_frame_for_every_online_session() -> None:
    hub = Hub()
    sessions = [open_(hub, f"u{i}", f"s{i}")[0] for i in range(50)]
    extra, _ = open_(hub, "u0", "s0-tab2")
    for session in sessions:
        hub.join(session, "big")
    deliveries, notices = hub.route(Message(1, "u3", "hi", NOW, "c", room="big"))
    assert notices == []
    assert len(deliveries) == 1
    assert set(deliveries[0].recipients) == {*sessions, extra}
    assert json.loads(deliveries[0].frame)["from"] == "u3"


def test_online_session_cache_follows_joins_leaves_opens_and_closes() -> None:
    hub = Hub()
    a, _ = open_(hub, "a", "a1")
    b, _ = open_(hub, "b", "b1")
    hub.join(a, "r")
    room = hub.rooms["r"]
    assert hub.online_sessions(room) == (a,)
    hub.join(b, "r")
    assert set(hub.online_sessions(room)) == {a, b}
    b2, _ = open_(hub, "b", "b2")
    assert set(hub.online_sessions(room)) == {a, b, b2}
    hub.close_session(b)
    assert set(hub.online_sessions(room)) == {a, b2}
    hub.leave(b2, "r")
    assert hub.online_sessions(room) == (a,)


def test_direct_message_reaches_both_users_and_records_the_conversation() -> None:
    hub = Hub()
    a1, _ = open_(hub, "alice", "a1")
    a2, _ = open_(hub, "alice", "a2")
    b1, _ = open_(hub, "bob", "b1")
    deliveries, notices = hub.route(Message(5, "alice", "hi", NOW, "c", to="bob"))
    assert set(deliveries[0].recipients) == {a1, a2, b1}
    assert hub.users["alice"].contacts == {"bob"} and hub.users["bob"].contacts == {"alice"}
    assert hub.last_seq == 5
    # The conversation is new: each side learns where the other stands, once.
    assert frames_for(notices, a1) == [{"type": "presence", "user": "bob", "status": "online"}]
    assert frames_for(notices, b1) == [{"type": "presence", "user": "alice", "status": "online"}]
    assert hub.route(Message(6, "bob", "hi", NOW, "d", to="alice"))[1] == []


def test_membership_belongs_to_the_user() -> None:
    hub = Hub()
    tab1, _ = open_(hub, "alice", "t1")
    tab2, _ = open_(hub, "alice", "t2")
    changed, deliveries = hub.join(tab1, "lobby")
    assert changed
    assert frames_for(deliveries, tab2) == [
        {
            "type": "joined",
            "room": "lobby",
            "members": ["alice"],
            "online": ["alice"],
            "private": False,
            "topic": "",
            "roles": {},
        }
    ]
    changed, _ = hub.join(tab2, "lobby")
    assert not changed
    hub.check_target(tab2.user, "lobby", None)


def test_targets_are_checked() -> None:
    hub = Hub()
    alice, _ = open_(hub, "alice", "a")
    bob, _ = open_(hub, "bob", "b")
    with pytest.raises(ProtocolError) as missing:
        hub.check_target(alice.user, "lobby", None)
    assert missing.value.code == "unknown_room"
    hub.join(bob, "lobby")
    with pytest.raises(ProtocolError) as not_member:
        hub.check_target(alice.user, "lobby", None)
    assert not_member.value.code == "not_member"
    with pytest.raises(ProtocolError) as unknown:
        hub.check_target(alice.user, None, "nobody")
    assert unknown.value.code == "unknown_user"
    hub.add_user("nobody")
    hub.check_target(alice.user, None, "nobody")
    with pytest.raises(ProtocolError):
        hub.leave(alice, "lobby")


def test_offline_since_marks_what_a_user_may_have_missed() -> None:
    hub = Hub()
    hub.last_seq = 10
    user = hub.add_user("carol")
    assert user.offline_since_seq == 10
    session, _ = open_(hub, "carol", "c1")
    hub.route(Message(11, "x", "t", NOW, "c", room="r"))
    hub.close_session(session)
    assert user.offline_since_seq == 11


def test_restored_state_matches_what_was_saved() -> None:
    hub = Hub()
    hub.restore_membership("alice", "lobby")
    hub.restore_membership("bob", "lobby")
    hub.restore_contact("alice", "carol")
    assert hub.rooms["lobby"].members == {"alice", "bob"}
    assert hub.users["carol"].contacts == {"alice"}
    alice, _ = open_(hub, "alice", "a")
    _, online = open_(hub, "bob", "b")
    assert frames_for(online, alice)[0]["user"] == "bob"
    assert hub.peers_online(alice.user) == ["bob"]


def test_removing_a_user_drops_memberships_and_returns_open_sessions() -> None:
    hub = Hub()
    alice, _ = open_(hub, "alice", "a")
    open_(hub, "bob", "b")
    hub.join(alice, "r")
    hub.route(Message(1, "alice", "t", NOW, "c", to="bob"))
    assert hub.remove_user("alice") == [alice]
    assert "r" not in hub.rooms and hub.users["bob"].contacts == set()  # the room went with its last member
    assert "alice" not in hub.users
    hub.close_session(alice)
    assert hub.users_online == 1


def test_a_room_goes_with_its_last_member_and_counts_its_online_members() -> None:
    hub = Hub()
    alice, _ = open_(hub, "alice", "a")
    bob, _ = open_(hub, "bob", "b")
    hub.add_user("carol")
    hub.join(alice, "r")
    hub.join(bob, "r")
    hub.restore_membership("carol", "r")
    room = hub.rooms["r"]
    assert room.online == 2
    bob2, _ = open_(hub, "bob", "b2")
    assert room.online == 2  # counted per user, not per session
    hub.close_session(bob)
    hub.close_session(bob2)
    assert room.online == 1
    hub.leave(alice, "r")
    assert room.online == 0 and "r" in hub.rooms
    bob3, _ = open_(hub, "bob", "b3")
    hub.leave(bob3, "r")
    carol, _ = open_(hub, "carol", "c")
    assert room.online == 1
    hub.leave(carol, "r")
    assert "r" not in hub.rooms and hub.room_index.page(None, 10) == ([], None)
    hub.join(carol, "r")  # a later join creates it afresh
    assert hub.rooms["r"] is not room and hub.rooms["r"].online == 1


def room_entry(name: str, members: int, online: int, member: bool) -> dict[str, object]:
    """A public room with no topic, as a page of the room list shows it."""
    return {"room": name, "members": members, "online": online, "member": member, "private": False, "topic": ""}


def test_the_room_list_is_a_page_in_name_order() -> None:
    hub = Hub()
    alice, _ = open_(hub, "alice", "a")
    for name in ("c", "a", "b"):
        hub.join(alice, name)
    first = json.loads(hub.room_page(alice.user, None, 2).frame())
    assert [r["room"] for r in first["rooms"]] == ["a", "b"] and first["next"] == "b" and first["total"] == 3
    rest = json.loads(hub.room_page(alice.user, "b", 2).frame())
    assert rest["rooms"] == [room_entry("c", 1, 1, True)] and rest["next"] is None
