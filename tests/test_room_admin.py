"""Private rooms, roles and moderation in the pure core (hub and room_admin), without sockets or a loop."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tornado_chat.hub import Hub
from tornado_chat.protocol import ProtocolError
from tornado_chat.room_admin import Outcome, RoomAdmin
from tornado_chat.room_frames import Ban, CreateRoom, Demote, Invite, Kick, Promote, SetTopic, Transfer, Unban
from tornado_chat.room_limits import RoomLimits
from tornado_chat.room_pages import RoomIndex, merged_page
from tornado_chat.server_frames import Message
from tornado_chat.session import Session
from tornado_chat.store import AuditEntry, BanChange, MembershipChange, RoleChange, RoomSettings

from .test_hub import frames_for, open_

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0


def error_code(call: Any, *args: Any) -> str:
    with pytest.raises(ProtocolError) as caught:
        call(*args)
    return str(caught.value.code)


@pytest.fixture
def world() -> tuple[Hub, RoomAdmin, dict[str, Session]]:
    """alice owns the private room 'secret'; bob and carol are online and outside it; root is an admin."""
    hub = Hub()
    sessions = {name: open_(hub, name, name)[0] for name in ("alice", "bob", "carol", "root")}
    hub.admins.add("root")
    admin = RoomAdmin(hub, RoomLimits(max_rooms_per_user=1000, creations_per_hour=100))
    admin.create(sessions["alice"], CreateRoom("secret", private=True, topic="plans"))
    return hub, admin, sessions


def all_frames(outcome: Outcome, session: Session) -> list[dict[str, Any]]:
    return frames_for(outcome.deliveries, session)


def test_a_private_room_does_not_exist_for_a_non_member(world: tuple[Hub, RoomAdmin, dict[str, Session]]) -> None:
    hub, admin, s = world
    bob = s["bob"]
    # Every way in answers as for a room that does not exist, in the same words.
    with pytest.raises(ProtocolError) as hidden:
        hub.check_target(bob.user, "secret", None)
    with pytest.raises(ProtocolError) as missing:
        hub.check_target(bob.user, "nowhere", None)
    assert (hidden.value.code, hidden.value.message.replace("secret", "X")) == (
        missing.value.code,
        missing.value.message.replace("nowhere", "X"),
    )
    assert hidden.value.code == "unknown_room"
    assert error_code(hub.join, bob, "secret") == "unknown_room"
    assert error_code(hub.leave, bob, "secret") == "unknown_room"
    assert error_code(admin.act, bob, Kick("secret", "alice"), NOW) == "unknown_room"
    assert hub.rooms["secret"].members == {"alice"}  # the join created and changed nothing
    # The room list: members and admins see it, nobody else does.
    assert [r["room"] for r in json.loads(hub.room_page(bob.user, None, 100).frame())["rooms"]] == []
    assert json.loads(hub.room_page(s["alice"].user, None, 100).frame())["rooms"][0]["private"] is True
    assert [r["room"] for r in json.loads(hub.room_page(s["root"].user, None, 100).frame())["rooms"]] == ["secret"]
    # The name is taken all the same, as for any room.
    assert error_code(admin.create, bob, CreateRoom("secret")) == "room_exists"


def test_invite_is_the_way_in_and_tells_the_invitee_and_the_members(
    world: tuple[Hub, RoomAdmin, dict[str, Session]],
) -> None:
    hub, admin, s = world
    outcome = admin.act(s["alice"], Invite("secret", "bob", frame_id="i1"), NOW)
    assert json.loads(outcome.answer) == {
        "type": "room",
        "room": "secret",
        "members": ["alice", "bob"],
        "online": ["alice", "bob"],
        "private": True,
        "topic": "plans",
        "roles": {"alice": "owner"},
        "banned": [],
        "id": "i1",
    }
    joined = all_frames(outcome, s["bob"])
    assert [f["type"] for f in joined] == ["joined"] and "banned" not in joined[0]
    assert outcome.writes == [
        MembershipChange("secret", "bob", True, hub.last_seq),
        AuditEntry(NOW, "alice", "invite", "secret", "bob"),
    ]
    assert "secret" in s["bob"].user.rooms
    # Inviting a member again changes and records nothing.
    again = admin.act(s["alice"], Invite("secret", "bob"), NOW)
    assert again.writes == [] and again.deliveries == []
    # The member event reaches members' sessions only.
    third = admin.act(s["alice"], Invite("secret", "carol"), NOW)
    assert {"type": "member", "room": "secret", "user": "carol", "event": "invited", "count": 3, "by": "alice"} in (
        all_frames(third, s["bob"])
    )
    assert all_frames(third, s["root"]) == []


def test_roles_decide_who_may_do_what(world: tuple[Hub, RoomAdmin, dict[str, Session]]) -> None:
    hub, admin, s = world
    for name in ("bob", "carol"):
        admin.act(s["alice"], Invite("secret", name), NOW)
    # A plain member may not moderate; only the owner hands out roles.
    assert error_code(admin.act, s["bob"], Kick("secret", "carol"), NOW) == "forbidden"
    assert error_code(admin.act, s["bob"], SetTopic("secret", "mine"), NOW) == "forbidden"
    promoted = admin.act(s["alice"], Promote("secret", "bob"), NOW)
    assert [f["roles"] for f in all_frames(promoted, s["bob"])] == [{"alice": "owner", "bob": "moderator"}]
    assert "banned" in all_frames(promoted, s["bob"])[0] and "banned" not in all_frames(promoted, s["carol"])[0]
    assert promoted.writes == [
        RoleChange("secret", "bob", "moderator"),
        AuditEntry(NOW, "alice", "promote", "secret", "bob"),
    ]
    assert error_code(admin.act, s["bob"], Promote("secret", "carol"), NOW) == "forbidden"
    # A moderator acts on members, never on moderators or the owner.
    assert error_code(admin.act, s["bob"], Kick("secret", "alice"), NOW) == "forbidden"
    assert error_code(admin.act, s["bob"], Ban("secret", "alice"), NOW) == "forbidden"
    topic = admin.act(s["bob"], SetTopic("secret", "launch on friday"), NOW)
    assert RoomSettings("secret", True, "launch on friday") in topic.writes
    assert all_frames(topic, s["carol"])[0]["topic"] == "launch on friday"
    kicked = admin.act(s["bob"], Kick("secret", "carol"), NOW)
    assert all_frames(kicked, s["carol"]) == [{"type": "removed", "room": "secret", "reason": "kicked", "by": "bob"}]
    assert s["carol"] not in hub.online_sessions(hub.rooms["secret"])
    assert error_code(admin.act, s["bob"], Kick("secret", "carol"), NOW) == "not_member"
    assert error_code(admin.act, s["alice"], Kick("secret", "nobody"), NOW) == "unknown_user"
    # The owner demotes; ownership moves only by transfer, and the old owner stays on as a moderator.
    assert error_code(admin.act, s["alice"], Demote("secret", "alice"), NOW) == "forbidden"
    transferred = admin.act(s["alice"], Transfer("secret", "bob"), NOW)
    assert hub.rooms["secret"].roles == {"alice": "moderator", "bob": "owner"}
    assert RoleChange("secret", "bob", "owner") in transferred.writes
    assert error_code(admin.act, s["alice"], Promote("secret", "alice"), NOW) == "forbidden"
    # A server admin outranks every room role, member or not.
    admin.act(s["root"], Kick("secret", "bob"), NOW)
    assert hub.rooms["secret"].members == {"alice"} and hub.rooms["secret"].roles == {"alice": "moderator"}


def test_a_ban_cuts_the_user_off_at_once_and_keeps_them_out(world: tuple[Hub, RoomAdmin, dict[str, Session]]) -> None:
    hub, admin, s = world
    hub.join(s["bob"], "lobby")
    hub.rooms["lobby"].roles["bob"] = "owner"
    hub.join(s["carol"], "lobby")
    banned = admin.act(s["bob"], Ban("lobby", "carol"), NOW)
    assert all_frames(banned, s["carol"]) == [{"type": "removed", "room": "lobby", "reason": "banned", "by": "bob"}]
    assert banned.writes == [
        MembershipChange("lobby", "carol", False, hub.last_seq),
        BanChange("lobby", "carol", True, "bob", NOW),
        AuditEntry(NOW, "bob", "ban", "lobby", "carol"),
    ]
    assert hub.audience(Message(9, "bob", "hi", NOW, "c", room="lobby")) == [s["bob"]]
    assert error_code(hub.join, s["carol"], "lobby") == "banned"
    assert error_code(admin.act, s["bob"], Invite("lobby", "carol"), NOW) == "banned"
    # Only moderators (and admins) see who is banned.
    assert json.loads(banned.answer)["banned"] == ["carol"]
    hub.join(s["alice"], "lobby")
    assert "banned" not in frames_for(hub.join(s["alice"], "lobby")[1], s["alice"])[0]
    unbanned = admin.act(s["bob"], Unban("lobby", "carol"), NOW)
    assert BanChange("lobby", "carol", False, "bob", NOW) in unbanned.writes
    assert hub.join(s["carol"], "lobby")[0]
    # An admin is never kept out.
    admin.act(s["bob"], Ban("lobby", "root"), NOW)
    assert hub.join(s["root"], "lobby")[0]


def test_roles_go_with_membership_and_an_emptied_room_goes_with_its_roles_and_bans(
    world: tuple[Hub, RoomAdmin, dict[str, Session]],
) -> None:
    hub, admin, s = world
    admin.act(s["alice"], Invite("secret", "bob"), NOW)
    admin.act(s["alice"], Promote("secret", "bob"), NOW)
    admin.act(s["alice"], Ban("secret", "carol"), NOW)
    hub.leave(s["bob"], "secret")
    assert hub.rooms["secret"].roles == {"alice": "owner"}
    old = hub.rooms["secret"]
    hub.last_seq = 41  # messages were said in it
    hub.leave(s["alice"], "secret")
    # The last member gone, the private room is gone with its roles and bans, from every list; its name is free.
    assert "secret" not in hub.rooms
    assert "secret" not in hub.room_index.names and "secret" not in hub.public_index.names
    assert error_code(hub.leave, s["alice"], "secret") == "unknown_room"
    # carol, banned from the old room, makes a new one of that name: hers, with nothing of the old one.
    outcome = admin.create(s["carol"], CreateRoom("secret", private=False))
    room = hub.rooms["secret"]
    assert room is not old and room.banned == set() and room.roles == {"carol": "owner"}
    assert room.first_seq == 41  # its history starts after the old room's messages
    assert json.loads(outcome.answer)["members"] == ["carol"]
    # A room made by a plain join has no owner until an admin gives it one.
    hub.join(s["bob"], "plain")
    hub.join(s["root"], "plain")
    admin.act(s["root"], Transfer("plain", "bob"), NOW)
    assert hub.rooms["plain"].roles == {"bob": "owner"}


def test_restored_roles_of_members_who_left_are_ignored() -> None:
    hub = Hub()
    hub.restore_membership("alice", "r")
    hub.restore_room_state("r", True, "t", 0)
    hub.restore_role("r", "alice", "owner")
    hub.restore_role("r", "gone", "moderator")
    hub.restore_ban("r", "mallory")
    room = hub.rooms["r"]
    assert (room.private, room.topic, room.roles, room.banned) == (True, "t", {"alice": "owner"}, {"mallory"})


def test_edits_reach_whoever_sees_the_conversation() -> None:
    hub = Hub()
    a, _ = open_(hub, "alice", "a")
    b, _ = open_(hub, "bob", "b")
    c, _ = open_(hub, "carol", "c")
    hub.join(a, "r")
    hub.join(b, "r")
    assert set(hub.audience(Message(1, "alice", "x", NOW, "i", room="r"))) == {a, b}
    assert set(hub.audience(Message(2, "alice", "x", NOW, "i", to="carol"))) == {a, c}
    assert hub.audience(Message(3, "alice", "x", NOW, "i", to="alice")) == [a]
    assert hub.audience(Message(4, "alice", "x", NOW, "i", room="gone")) == []


def test_a_page_merges_the_users_private_rooms_into_the_public_ones_and_costs_only_them() -> None:
    index = RoomIndex()
    for name in ("b", "d", "f", "h"):
        index.add(name)
    mine = {"a", "e", "z"}
    names: list[str] = []
    after: str | None = None
    while True:
        page, after, total = merged_page(index, mine, after, 2)
        assert len(page) <= 2 and total == 7
        names += page
        if after is None:
            break
    assert names == ["a", "b", "d", "e", "f", "h", "z"]
    assert merged_page(index, (), "f", 2) == (["h"], None, 4)
    assert merged_page(index, {"a"}, "h", 2) == ([], None, 5)
