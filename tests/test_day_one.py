"""Read state, mentions, typing, search and group conversations, black-box against a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tornado_chat.memory_store import MemoryStore

from .conftest import make_settings
from .support import Client, ServerThread, clients, connect, http, login, metric, scrape

pytestmark = pytest.mark.integration


def unread_of(welcome: dict[str, Any], **target: Any) -> dict[str, Any]:
    """The welcome's entry for one conversation (``room=R`` or ``with_=U`` / ``with_=[...]``)."""
    wanted = {("with" if k == "with_" else k): v for k, v in target.items()}
    entries: list[dict[str, Any]] = [e for e in welcome["unread"] if all(e.get(k) == v for k, v in wanted.items())]
    assert len(entries) == 1, (target, welcome["unread"])
    return entries[0]


def search(client: Client, q: str, **fields: Any) -> dict[str, Any]:
    frame_id = client.new_id()
    client.send({"type": "search", "id": frame_id, "q": q, **fields})
    return client.expect("search", id=frame_id)


# ---------------------------------------------------------------- read state


def test_read_position_syncs_between_sessions_and_counts_come_from_the_server(server: ServerThread) -> None:
    base_url = server.base_url
    token = login(base_url, "bob")
    with clients(base_url, "alice") as (alice,):
        alice.join("ops")
        bob = connect(base_url, "bob", token=token)
        bob.join("ops")
        bob.close()
        seqs = [alice.send_message(f"update {n}", room="ops")["seq"] for n in range(5)]
        alice.send_message("@bob can you look?", room="ops")
        dm = alice.send_message("psst", to="bob")
        phone, laptop = connect(base_url, "bob", token=token), connect(base_url, "bob", token=token)
        joined_at = seqs[0] - 1  # bob joined #ops when nothing was in it
        for session in (phone, laptop):
            assert unread_of(session.welcome, room="ops") == {
                "room": "ops", "seq": joined_at, "unread": 6, "mentions": 1, "last": dm["seq"] - 1
            }  # fmt: skip
            assert unread_of(session.welcome, with_="alice")["unread"] == 1
        # Reading on the phone moves the laptop too, with the counts that are left.
        phone.send({"type": "read", "room": "ops", "seq": seqs[2]})
        for session in (phone, laptop):
            read = session.expect("read", room="ops")
            assert read == {"type": "read", "room": "ops", "seq": seqs[2], "unread": 3, "mentions": 1,
                            "last": dm["seq"] - 1}  # fmt: skip
        # Backwards changes nothing and only the asker hears where it stands; a seq beyond the newest is clamped.
        phone.send({"type": "read", "room": "ops", "seq": 1})
        assert phone.expect("read", room="ops")["seq"] == seqs[2]
        laptop.send({"type": "read", "with": "alice", "seq": 10**12})
        for session in (phone, laptop):
            assert session.expect("read", seq=dm["seq"])["unread"] == 0
        # Sending reads: bob's answer leaves nothing unread for him in #ops.
        phone.send_message("on it", room="ops")
        phone.close()
        laptop.close()
        again = connect(base_url, "bob", token=token)
        assert unread_of(again.welcome, room="ops")["unread"] == 0
        assert unread_of(again.welcome, room="ops")["mentions"] == 0
        again.send({"type": "rooms"})
        (ops,) = [r for r in again.expect("rooms")["rooms"] if r["room"] == "ops"]
        assert (ops["unread"], ops["mentions"]) == (0, 0)
        again.close()


def test_read_positions_survive_a_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    first = ServerThread(settings).start()
    try:
        with clients(first.base_url, "alice", "bob") as (alice, bob):
            seqs = [alice.send_message(f"m{n}", to="bob")["seq"] for n in range(3)]
            bob.send({"type": "read", "with": "alice", "seq": seqs[0]})
            bob.expect("read")
    finally:
        first.stop()
    second = ServerThread(settings).start()
    try:
        with clients(second.base_url, "bob") as (bob,):
            assert unread_of(bob.welcome, with_="alice") == {
                "with": "alice", "seq": seqs[0], "unread": 2, "mentions": 0, "last": seqs[2]
            }  # fmt: skip
    finally:
        second.stop()


def test_a_joined_room_starts_read_and_reading_needs_access(base_url: str) -> None:
    with clients(base_url, "alice", "bob") as (alice, bob):
        alice.join("old")
        alice.send_message("before bob came", room="old")
        bob.join("old")
        bob.send({"type": "rooms"})
        (old,) = bob.expect("rooms")["rooms"]
        assert old["unread"] == 0
        bob.send({"type": "read", "room": "nowhere", "seq": 1, "id": "r1"})
        assert bob.expect("error", id="r1")["code"] == "unknown_room"
        alice.join("elsewhere")
        bob.send({"type": "read", "room": "elsewhere", "seq": 1, "id": "r3"})
        assert bob.expect("error", id="r3")["code"] == "not_member"
        # A private room bob is not in reads as one that does not exist.
        alice.send({"type": "create", "room": "secret", "private": True, "id": "c"})
        alice.expect("joined", room="secret")
        bob.send({"type": "read", "room": "secret", "seq": 1, "id": "r4"})
        assert bob.expect("error", id="r4") == {
            "type": "error", "code": "unknown_room", "message": "there is no room called 'secret'", "id": "r4"
        }  # fmt: skip
        bob.send({"type": "read", "with": "nobody", "seq": 1, "id": "r2"})
        assert bob.expect("error", id="r2")["code"] == "unknown_user"


# ---------------------------------------------------------------- mentions and typing


def test_mentions_are_on_message_frames_and_in_history(base_url: str) -> None:
    with clients(base_url, "alice", "bob", "carol") as (alice, bob, carol):
        alice.send({"type": "create", "room": "team", "id": "c"})  # alice owns #team: she may call it
        alice.expect("joined", room="team")
        bob.join("team")
        ack = alice.send_message("@bob and @carol, also `@bob` and @room!", room="team")
        got = bob.expect("message", seq=ack["seq"])
        assert got["mentions"] == ["@room", "bob"]  # carol is not in #team; code mentions nobody
        # A plain member's @room calls nobody: it is for the room's owner, moderators and admins.
        mine = bob.send_message("@room look, and @alice", room="team")
        assert alice.expect("message", seq=mine["seq"])["mentions"] == ["alice"]
        plain = alice.send_message("no one here", room="team")
        assert "mentions" not in bob.expect("message", seq=plain["seq"])
        alice.send({"type": "history", "room": "team", "limit": 3})
        page = alice.expect("history", room="team")
        assert [m.get("mentions") for m in page["messages"]] == [None, ["alice"], ["@room", "bob"]]
        dm = carol.send_message("@alice ping", to="alice")
        assert alice.expect("message", seq=dm["seq"])["mentions"] == ["alice"]


def test_typing_reaches_the_others_and_is_never_stored(base_url: str) -> None:
    with clients(base_url, "alice", "bob", "carol") as (alice, bob, carol):
        alice_again = connect(base_url, "alice")
        for client in (alice, bob, carol):
            client.join("desk")
        alice.send({"type": "typing", "room": "desk"})
        for other in (bob, carol):
            assert other.expect("typing") == {"type": "typing", "from": "alice", "room": "desk"}
        alice.send({"type": "typing", "with": "bob"})
        assert bob.expect("typing") == {"type": "typing", "from": "alice", "to": "bob"}
        alice.send({"type": "typing", "with": ["bob", "carol"]})
        for other in (bob, carol):
            assert other.expect("typing") == {"type": "typing", "from": "alice", "members": ["alice", "bob", "carol"]}
        # Too soon after the last notice for the same conversation: not passed on.
        alice.send({"type": "typing", "room": "desk"})
        for client in (bob, carol, alice_again):
            client.barrier()
            assert [f for f in client.backlog if f["type"] == "typing"] == []
        alice.send({"type": "history", "room": "desk"})
        assert alice.expect("history", room="desk")["messages"] == []
        alice.send({"type": "typing", "room": "elsewhere", "id": "t"})
        assert alice.expect("error", id="t")["code"] == "unknown_room"
        bob.join("bobs")
        alice.send({"type": "typing", "room": "bobs", "id": "t2"})
        assert alice.expect("error", id="t2")["code"] == "not_member"
        alice_again.close()


def test_typing_counts_against_the_rate_limit(tmp_path: Path) -> None:
    running = ServerThread(make_settings(tmp_path, rate_limit_per_s=1.0, rate_limit_burst=3)).start()
    try:
        with clients(running.base_url, "alice", "bob") as (alice, _bob):
            for _ in range(5):
                alice.send({"type": "typing", "with": "bob"})
            assert alice.expect("error")["code"] == "rate_limited"
    finally:
        running.stop()


# ---------------------------------------------------------------- search


def test_search_finds_only_what_the_asker_may_read(server: ServerThread) -> None:
    base_url = server.base_url
    with clients(base_url, "alice", "bob", "carol", "mallory") as (alice, bob, carol, mallory):
        alice.join("public")
        mallory.join("public")
        bob.join("private")
        mine = alice.send_message("launch plan for Tuesday", room="public")
        bob.send_message("launch codes are 1234", room="private")
        bob.send_message("launch party with alice?", to="alice")
        bob.send({"type": "send", "id": "g", "to": ["alice", "carol"], "text": "launch dinner, the three of us"})
        bob.expect("ack", id="g")
        carol.send_message("launch gossip", to="bob")
        alice.barrier()

        found = search(alice, "LAUNCH")
        assert [m["text"] for m in found["results"]] == [
            "launch dinner, the three of us",
            "launch party with alice?",
            "launch plan for Tuesday",
        ]
        assert found["more"] is False and found["next"] is None and found["q"] == "LAUNCH"
        assert found["results"][2]["id"] == mine["id"]  # own messages carry their client id
        assert found["results"][0]["members"] == ["alice", "bob", "carol"]
        assert [m["text"] for m in search(mallory, "launch")["results"]] == ["launch plan for Tuesday"]
        group = search(carol, "launch", **{"with": ["alice", "bob"]})
        assert group["with"] == ["alice", "bob"] and [m["text"] for m in group["results"]] == [
            "launch dinner, the three of us"
        ]
        # Naming a conversation one may not read is refused, not answered empty.
        mallory.send({"type": "search", "id": "s", "q": "launch", "room": "private"})
        assert mallory.expect("error", id="s")["code"] == "not_member"
        mallory.send({"type": "search", "id": "s2", "q": "!!!"})
        assert mallory.expect("error", id="s2")["code"] == "bad_frame"
        page = search(alice, "launch", limit=2)
        assert len(page["results"]) == 2 and page["more"] is True
        rest = search(alice, "launch", limit=2, before=page["next"])
        assert [m["text"] for m in rest["results"]] == ["launch plan for Tuesday"] and rest["more"] is False
    assert metric(scrape(server.ops_url), "chat_search_seconds_count") == 5  # the refused ones never ran


def test_the_memory_store_searches_too(tmp_path: Path) -> None:
    running = ServerThread(make_settings(tmp_path, store="memory"), store=MemoryStore()).start()
    try:
        with clients(running.base_url, "alice", "bob") as (alice, _bob):
            alice.send_message("Déjà vu 你好世界", to="bob")
            assert [m["text"] for m in search(alice, "deja 世界")["results"]] == ["Déjà vu 你好世界"]
    finally:
        running.stop()


# ---------------------------------------------------------------- group conversations


def test_group_conversations_deliver_page_and_replay_like_direct_ones(server: ServerThread) -> None:
    base_url = server.base_url
    carol_token = login(base_url, "carol")
    with clients(base_url, "alice", "bob", "dave") as (alice, bob, dave):
        alice.send({"type": "send", "id": "g1", "to": ["bob", "carol"], "text": "hi both, @carol"})
        ack = alice.expect("ack", id="g1")
        got = bob.expect("message", seq=ack["seq"])
        assert got["members"] == ["alice", "bob", "carol"] and "to" not in got and got["mentions"] == ["carol"]
        bob.send({"type": "send", "id": "g2", "to": ["carol", "alice", "bob"], "text": "hello"})
        second = bob.expect("ack", id="g2")
        assert alice.expect("message", seq=second["seq"])["members"] == ["alice", "bob", "carol"]
        dave.barrier()
        assert [f for f in dave.backlog if f["type"] == "message"] == []
        # carol was offline: she gets both when she connects, and knows the group from welcome.
        carol = connect(base_url, "carol", token=carol_token)
        assert carol.welcome["groups"] == [["alice", "bob"]]
        assert unread_of(carol.welcome, with_=["alice", "bob"])["unread"] == 2
        assert unread_of(carol.welcome, with_=["alice", "bob"])["mentions"] == 1
        replayed = carol.frames_until("resumed")
        assert [f["seq"] for f in replayed if f["type"] == "message"] == [ack["seq"], second["seq"]]
        carol.send({"type": "read", "with": ["alice", "bob"], "seq": second["seq"]})
        assert carol.expect("read")["with"] == ["alice", "bob"]
        carol.send({"type": "history", "with": ["bob", "alice"]})
        page = carol.expect("history")
        assert page["with"] == ["alice", "bob"] and [m["text"] for m in page["messages"]] == [
            "hello",
            "hi both, @carol",
        ]
        status, _, answer = http(
            "GET", f"{base_url}api/history?with=alice,bob", headers={"Authorization": f"Bearer {carol_token}"}
        )
        assert status == 200 and len(answer["messages"]) == 2
        # dave is not in it: asking for it names another conversation, one he is in with them.
        dave.send({"type": "history", "with": ["alice", "bob"]})
        assert dave.expect("history")["messages"] == []
        for frame, code in [
            ({"type": "send", "id": "x", "to": ["carol", "nobody"], "text": "hi"}, "unknown_user"),
            ({"type": "send", "id": "y", "to": [f"u{i}" for i in range(10)], "text": "hi"}, "bad_frame"),
            ({"type": "send", "id": "z", "to": ["alice", "bob"], "text": "only two of us"}, "bad_frame"),
        ]:
            bob.send(frame)
            assert bob.expect("error", id=frame["id"])["code"] == code
        carol.close()


def test_the_session_endpoint_answers_200_whether_logged_in_or_not(base_url: str) -> None:
    status, _, answer = http("GET", base_url + "api/session")
    assert (status, answer) == (200, {"username": None})
    token = login(base_url, "alice")
    status, _, answer = http("GET", base_url + "api/session", headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and answer["username"] == "alice" and answer["guest"] is False
    status, _, answer = http("GET", base_url + "api/session", headers={"Authorization": "Bearer v1.forged"})
    assert (status, answer) == (200, {"username": None})
    assert http("GET", base_url + "api/me")[0] == 401  # /api/me keeps its 401
