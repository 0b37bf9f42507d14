"""Private rooms, roles, edits and deletes meet read state, mentions, search and group conversations, black-box.

Real servers (both stores) and real WebSocket clients prove that search never returns what the asker may not
read (private rooms they are not in, rooms they were kicked or banned from) and follows edits and deletes;
that ``@room`` is for a room's moderators, owner and admins; that an edit carries its mentions anew without
notifying again and a delete takes its mention out of the counts; that unread counts follow memberships; and
that a group conversation's messages are edited and deleted like a direct one's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tornado_chat.cli import make_store

from .conftest import make_settings
from .support import WAIT_S, Client, ServerThread, clients, connect

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "memory"])
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerThread]:
    settings = make_settings(tmp_path, store=request.param)
    server = ServerThread(settings, make_store(settings)).start()
    try:
        yield server
    finally:
        server.stop()


def answer(client: Client, frame: dict[str, Any], kind: str) -> dict[str, Any]:
    """Send ``frame`` with a fresh id; the frame of type ``kind`` that answers it (fails on another answer)."""
    frame_id = client.new_id()
    client.send({**frame, "id": frame_id})
    while True:
        for index, got in enumerate(client.backlog):
            if got.get("id") == frame_id and got.get("type") in (kind, "error"):
                client.backlog.pop(index)
                assert got["type"] == kind, f"{frame} was answered with {got}"
                return got
        client.backlog.append(json.loads(client.ws.recv(timeout=WAIT_S)))


def search(client: Client, q: str, **where: Any) -> list[str]:
    """The texts a search finds (newest first)."""
    found = answer(client, {"type": "search", "q": q, **where}, "search")
    return [message["text"] for message in found["results"]]


def refused(client: Client, frame: dict[str, Any]) -> str:
    """The error code answering ``frame``."""
    frame_id = client.new_id()
    client.send({**frame, "id": frame_id})
    return str(client.expect("error", id=frame_id)["code"])


def create(client: Client, room: str, *, private: bool) -> None:
    client.send({"type": "create", "room": room, "private": private})
    client.expect("joined", room=room)


def counts(client: Client, room: str) -> dict[str, Any] | None:
    """The room's entry in a fresh ``rooms`` frame (None: not listed)."""
    client.send({"type": "rooms"})
    listed = {entry["room"]: entry for entry in client.expect("rooms")["rooms"]}
    return listed.get(room)


def test_search_finds_only_rooms_the_asker_is_in_and_follows_kicks_and_bans(running: ServerThread) -> None:
    with clients(running.base_url, "alice", "bob", "carol") as (alice, bob, carol):
        create(alice, "vault", private=True)
        alice.join("lobby")
        bob.join("lobby")
        alice.send_message("zebra launch codes", room="vault")
        alice.send_message("zebra crossing in the lobby", room="lobby")
        assert search(alice, "zebra") == ["zebra crossing in the lobby", "zebra launch codes"]
        # bob is not in the private room: it is not searched, and naming it is naming nothing.
        assert search(bob, "zebra") == ["zebra crossing in the lobby"]
        assert refused(bob, {"type": "search", "q": "zebra", "room": "vault"}) == "unknown_room"
        assert refused(bob, {"type": "search", "q": "zebra", "room": "nowhere"}) == "unknown_room"
        # An invitee reads the room's history, so its search finds it; kicked, it is gone again.
        for user, action in (("carol", "kick"), ("bob", "ban")):
            answer(alice, {"type": "invite", "room": "vault", "user": user}, "room")
            member = carol if user == "carol" else bob
            member.expect("joined", room="vault")
            assert "zebra launch codes" in search(member, "zebra")
            assert search(member, "launch", room="vault") == ["zebra launch codes"]
            answer(alice, {"type": action, "room": "vault", "user": user}, "room")
            member.expect("removed", room="vault")
            assert "zebra launch codes" not in search(member, "zebra")
            assert refused(member, {"type": "search", "q": "zebra", "room": "vault"}) == "unknown_room"
        # Banned from a public room: searched no more either.
        create(alice, "square", private=False)
        carol.join("square")
        alice.send_message("zebra on the square", room="square")
        assert "zebra on the square" in search(carol, "zebra")
        answer(alice, {"type": "ban", "room": "square", "user": "carol"}, "room")
        carol.expect("removed", room="square")
        assert "zebra on the square" not in search(carol, "zebra")
        assert refused(carol, {"type": "search", "q": "zebra", "room": "square"}) == "not_member"


def test_search_follows_edits_and_deletes(running: ServerThread) -> None:
    with clients(running.base_url, "alice", "bob") as (alice, bob):
        alice.join("desk")
        bob.join("desk")
        first = alice.send_message("the quokka report", room="desk")
        second = alice.send_message("the wombat report", room="desk")
        assert search(bob, "report") == ["the wombat report", "the quokka report"]
        answer(alice, {"type": "edit", "seq": first["seq"], "text": "the platypus summary"}, "edited")
        assert search(bob, "quokka") == []
        (found,) = answer(bob, {"type": "search", "q": "platypus"}, "search")["results"]
        assert found["text"] == "the platypus summary" and "edited" in found
        answer(alice, {"type": "delete", "seq": second["seq"]}, "deleted")
        assert search(bob, "wombat") == [] and search(bob, "report") == []
        assert search(bob, "the") == ["the platypus summary"]  # the tombstone has no text to find


def test_at_room_is_for_moderators_and_edits_reparse_mentions_without_notifying(running: ServerThread) -> None:
    with clients(running.base_url, "alice", "bob", "carol") as (alice, bob, carol):
        create(alice, "team", private=False)
        for client in (bob, carol):
            client.join("team")
        called = alice.send_message("@room standup", room="team")  # the owner may call the room
        assert bob.expect("message", seq=called["seq"])["mentions"] == ["@room"]
        plain = bob.send_message("@room lunch?", room="team")  # a plain member may not
        assert "mentions" not in carol.expect("message", seq=plain["seq"])
        answer(alice, {"type": "promote", "room": "team", "user": "bob"}, "room")
        promoted = bob.send_message("@room lunch!", room="team")
        assert carol.expect("message", seq=promoted["seq"])["mentions"] == ["@room"]
        # An edit carries the new text's mentions; nobody gets a message frame for it.
        note = alice.send_message("notes for later", room="team")
        carol.expect("message", seq=note["seq"])
        carol.send({"type": "read", "room": "team", "seq": called["seq"]})  # carol has read up to the call
        carol.expect("read", room="team")
        before = counts(carol, "team")
        assert before is not None and before["mentions"] == 1  # bob's @room call
        edited = answer(alice, {"type": "edit", "seq": note["seq"], "text": "notes for @carol"}, "edited")
        assert edited["mentions"] == ["carol"]
        seen = carol.expect("edited", seq=note["seq"])
        assert seen["mentions"] == ["carol"] and seen["text"] == "notes for @carol"
        assert counts(carol, "team") == {**before, "mentions": 2}  # unread, so it counts now
        carol.barrier()
        again = [f for f in carol.backlog if f.get("type") == "message" and f["seq"] >= note["seq"]]
        assert again == []  # the edit came as an edit, not as a new message: nothing alerts anew
        # Edited away, and deleted: the mention counts no more.
        answer(alice, {"type": "edit", "seq": note["seq"], "text": "notes for nobody"}, "edited")
        assert "mentions" not in carol.expect("edited", seq=note["seq"], text="notes for nobody")
        assert counts(carol, "team") == before
        answer(alice, {"type": "edit", "seq": note["seq"], "text": "notes for @carol again"}, "edited")
        answer(bob, {"type": "delete", "seq": promoted["seq"]}, "deleted")
        gone = carol.expect("deleted", seq=promoted["seq"])
        assert "mentions" not in gone and "text" not in gone
        assert counts(carol, "team") == {**before, "mentions": 1}  # only the edited note mentions carol now


def test_mentions_and_counts_never_reach_outside_a_private_room(running: ServerThread) -> None:
    with clients(running.base_url, "alice", "bob", "carol") as (alice, bob, carol):
        create(alice, "vault", private=True)
        answer(alice, {"type": "invite", "room": "vault", "user": "carol"}, "room")
        carol.expect("joined", room="vault")
        said = alice.send_message("@bob @carol the vault is open", room="vault")
        got = carol.expect("message", seq=said["seq"])
        assert got["mentions"] == ["carol"]  # bob cannot read the room: he is not named
        bob.barrier()
        assert not [f for f in bob.backlog if "vault" in str(f)]
        assert counts(bob, "vault") is None
        entry = counts(carol, "vault")
        assert entry is not None and (entry["unread"], entry["mentions"]) == (1, 1)
        # Removed from the room: no counts for it, in `rooms` or in a new welcome, and no way to read it.
        answer(alice, {"type": "kick", "room": "vault", "user": "carol"}, "room")
        carol.expect("removed", room="vault")
        assert counts(carol, "vault") is None
        assert refused(carol, {"type": "read", "room": "vault", "seq": said["seq"]}) == "unknown_room"
        again = connect(running.base_url, "carol")
        try:
            assert not [entry for entry in again.welcome["unread"] if entry.get("room") == "vault"]
            assert "vault" not in again.welcome["rooms"]
        finally:
            again.close()
        # Left a public room: its counts go too.
        bob.join("open")
        alice.join("open")
        alice.send_message("unread for bob", room="open")
        assert (counts(bob, "open") or {}).get("unread") == 1
        bob.send({"type": "leave", "room": "open"})
        bob.expect("left", room="open")
        assert "unread" not in (counts(bob, "open") or {})
        bob_again = connect(running.base_url, "bob")
        try:
            assert not [entry for entry in bob_again.welcome["unread"] if entry.get("room") == "open"]
        finally:
            bob_again.close()


def test_a_group_conversation_is_edited_and_deleted_like_a_direct_one(running: ServerThread) -> None:
    with clients(running.base_url, "alice", "bob", "carol", "dave") as (alice, bob, carol, dave):
        frame_id = alice.new_id()
        alice.send({"type": "send", "id": frame_id, "to": ["bob", "carol"], "text": "group plan @bob"})
        seq = alice.expect("ack", id=frame_id)["seq"]
        for member in (bob, carol):
            assert member.expect("message", seq=seq)["members"] == ["alice", "bob", "carol"]
        # Only the author edits or deletes; nobody moderates a group conversation; outsiders see nothing.
        assert refused(bob, {"type": "edit", "seq": seq, "text": "mine now"}) == "forbidden"
        assert refused(bob, {"type": "delete", "seq": seq}) == "forbidden"
        assert refused(dave, {"type": "delete", "seq": seq}) == "unknown_message"
        edited = answer(alice, {"type": "edit", "seq": seq, "text": "group plan, @carol"}, "edited")
        assert edited["members"] == ["alice", "bob", "carol"] and edited["mentions"] == ["carol"]
        for member in (bob, carol):
            got = member.expect("edited", seq=seq)
            assert got["text"] == "group plan, @carol" and got["members"] == ["alice", "bob", "carol"]
        answer(alice, {"type": "delete", "seq": seq}, "deleted")
        for member in (bob, carol):
            assert member.expect("deleted", seq=seq)["members"] == ["alice", "bob", "carol"]
        dave.barrier()
        assert [f for f in dave.backlog if f.get("seq") == seq] == []
        bob.send({"type": "history", "with": ["alice", "carol"]})
        (tombstone,) = bob.expect("history")["messages"]
        assert tombstone["deleted"] is True and tombstone["text"] == ""


def test_a_group_member_who_was_away_gets_the_change_on_resume_and_counts_survive_a_restart(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    first = ServerThread(settings).start()
    try:
        with clients(first.base_url, "alice", "bob", "carol") as (alice, bob, carol):
            frame_id = alice.new_id()
            alice.send({"type": "send", "id": frame_id, "to": ["bob", "carol"], "text": "@carol ping"})
            seq = alice.expect("ack", id=frame_id)["seq"]
            carol.expect("message", seq=seq)
            since = seq
            carol.close()
            answer(alice, {"type": "edit", "seq": seq, "text": "@carol ping, edited"}, "edited")
            other = alice.send_message("@bob look", room=None, to="bob")
            answer(alice, {"type": "delete", "seq": other["seq"]}, "deleted")
            bob.expect("deleted", seq=other["seq"])
            back = connect(first.base_url, "carol", since=str(since))
            try:
                replayed = back.expect("edited", seq=seq)
                assert replayed["text"] == "@carol ping, edited" and replayed["mentions"] == ["carol"]
                back.expect("resumed")
            finally:
                back.close()
    finally:
        first.stop()
    second = ServerThread(settings).start()
    try:
        with clients(second.base_url, "alice", "bob", "carol") as (alice, bob, carol):
            group = [e for e in carol.welcome["unread"] if e.get("with") == ["alice", "bob"]]
            assert [(e["unread"], e["mentions"]) for e in group] == [(1, 1)]
            direct = [e for e in bob.welcome["unread"] if e.get("with") == "alice"]
            assert [e["mentions"] for e in direct] == [0]  # the deleted message's mention is gone
            assert search(carol, "edited") == ["@carol ping, edited"]
            assert search(bob, "look") == []
    finally:
        second.stop()
