"""Chat over real WebSockets against a real server: messages, rooms, sessions, presence, history."""

from __future__ import annotations

from pathlib import Path

import pytest

from tornado_chat.memory_store import MemoryStore

from .conftest import make_settings
from .support import ServerThread, clients, connect, login

pytestmark = pytest.mark.integration


def test_welcome_describes_the_session(base_url: str) -> None:
    with clients(base_url, "alice") as (alice,):
        welcome = alice.welcome
        assert welcome["user"] == "alice"
        assert welcome["session"]
        assert welcome["rooms"] == []
        assert welcome["heartbeat"] == {"interval": 25.0, "timeout": 10.0}
        assert welcome["protocol"] == 1
        assert isinstance(welcome["server"], str)


def test_two_users_exchange_direct_messages(base_url: str) -> None:
    with clients(base_url, "alice", "bob") as (alice, bob):
        ack = alice.send_message("hi bob", to="bob")
        got = bob.expect("message", seq=ack["seq"])
        assert got["from"] == "alice" and got["to"] == "bob" and got["text"] == "hi bob"
        assert got["ts"].endswith("Z") and "id" not in got
        reply_ack = bob.send_message("hi alice", to="alice")
        reply = alice.expect("message", seq=reply_ack["seq"])
        assert reply["from"] == "bob" and reply["text"] == "hi alice"
        assert reply_ack["seq"] > ack["seq"]


def test_from_field_in_a_frame_is_ignored(base_url: str) -> None:
    with clients(base_url, "alice", "bob") as (alice, bob):
        alice.send({"type": "send", "id": "x1", "to": "bob", "text": "it is me", "from": "mallory"})
        ack = alice.expect("ack", id="x1")
        assert bob.expect("message", seq=ack["seq"])["from"] == "alice"


def test_room_messages_reach_every_member_once(base_url: str) -> None:
    with clients(base_url, "ann", "ben", "cat", "dan") as (ann, ben, cat, dan):
        joined = [ann.join("lobby"), ben.join("lobby"), cat.join("lobby")]
        assert joined[-1]["members"] == ["ann", "ben", "cat"]
        ack = ben.send_message("hello room", room="lobby")
        for member in (ann, cat):
            frames = member.frames_until("message", seq=ack["seq"])
            assert [f for f in frames if f["type"] == "message"] == [frames[-1]]
            assert frames[-1]["room"] == "lobby" and frames[-1]["from"] == "ben"
        # The sender gets an ack, not a copy; a non-member gets nothing.
        marker = ann.send_message("marker", room="lobby")
        ben_frames = ben.frames_until("message", seq=marker["seq"])
        assert all(f.get("seq") != ack["seq"] for f in ben_frames if f["type"] == "message")
        dan.barrier()
        assert all(f["type"] != "message" for f in dan.backlog)


def test_other_members_hear_about_joins_and_leaves(base_url: str) -> None:
    with clients(base_url, "ann", "ben") as (ann, ben):
        ann.join("lobby")
        ben.join("lobby")
        assert ann.expect("member", room="lobby", user="ben", event="joined")["count"] == 2
        ben.send({"type": "leave", "room": "lobby"})
        assert ben.expect("left", room="lobby")["members"] == ["ann"]
        assert ann.expect("member", room="lobby", user="ben", event="left")["count"] == 1
        ben.send({"type": "send", "id": "late", "room": "lobby", "text": "still here?"})
        assert ben.expect("error", id="late")["code"] == "not_member"


def test_a_user_with_two_sessions_receives_on_both(base_url: str) -> None:
    token = login(base_url, "alice")
    with clients(base_url, "bob") as (bob,):
        tab1 = connect(base_url, "alice", token=token)
        tab2 = connect(base_url, "alice", token=token)
        try:
            assert tab1.welcome["session"] != tab2.welcome["session"]
            ack = bob.send_message("to both tabs", to="alice")
            assert tab1.expect("message", seq=ack["seq"])["text"] == "to both tabs"
            assert tab2.expect("message", seq=ack["seq"])["text"] == "to both tabs"
            # What one tab sends, the other tab sees; the sending tab gets the ack.
            own = tab1.send_message("from tab one", to="bob")
            assert tab2.expect("message", seq=own["seq"])["from"] == "alice"
            assert bob.expect("message", seq=own["seq"])["text"] == "from tab one"
            # Membership belongs to the user: a join in one tab shows in both.
            tab1.join("lobby")
            assert tab2.expect("joined", room="lobby")["members"] == ["alice"]
        finally:
            tab1.close()
            tab2.close()


def test_presence_on_first_connect_and_last_disconnect(server: ServerThread) -> None:
    base_url = server.base_url
    token = login(base_url, "bob")
    with clients(base_url, "alice") as (alice,):
        alice.join("lobby")
        bob1 = connect(base_url, "bob", token=token)
        bob1.join("lobby")
        bob1.close()
        # bob is a member now; his next first session is announced to alice.
        assert alice.expect("presence", user="bob", status="offline")
        bob1 = connect(base_url, "bob", token=token)
        assert alice.expect("presence", user="bob", status="online")
        bob2 = connect(base_url, "bob", token=token)
        bob2.close()
        server.wait_for(lambda: len(server.chat.hub.users["bob"].sessions) == 1, "bob's second session to close")
        bob1.close()
        frames = alice.frames_until("presence", user="bob", status="offline")
        # The second session's open and close said nothing: bob stayed online throughout.
        assert [f for f in frames if f["type"] == "presence"] == [frames[-1]]


def test_presence_reaches_direct_conversation_partners(base_url: str) -> None:
    token = login(base_url, "bob")
    with clients(base_url, "alice") as (alice,):
        bob = connect(base_url, "bob", token=token)
        bob.send_message("hello", to="alice")
        bob.close()
        assert alice.expect("presence", user="bob", status="offline")
        bob = connect(base_url, "bob", token=token)
        assert alice.expect("presence", user="bob", status="online")
        assert bob.welcome["online"] == ["alice"] and bob.welcome["contacts"] == ["alice"]
        bob.close()


def test_direct_message_to_an_offline_user_arrives_on_next_connect(base_url: str) -> None:
    token = login(base_url, "bob")
    with clients(base_url, "alice") as (alice,):
        ack = alice.send_message("while you were out", to="bob")
        bob = connect(base_url, "bob", token=token)
        try:
            got = bob.expect("message", seq=ack["seq"])
            assert got["text"] == "while you were out"
            resumed = bob.expect("resumed")
            assert resumed["count"] == 1 and resumed["truncated"] is False
        finally:
            bob.close()


def test_history_pages_from_newest_to_oldest(base_url: str) -> None:
    with clients(base_url, "alice", "bob") as (alice, bob):
        alice.join("lobby")
        seqs = [alice.send_message(f"m{i}", room="lobby")["seq"] for i in range(7)]
        alice.send({"type": "history", "room": "lobby", "limit": 3})
        page1 = alice.expect("history", room="lobby")
        assert [m["seq"] for m in page1["messages"]] == seqs[:-4:-1]
        assert page1["more"] is True
        assert page1["messages"][0]["id"] == "alice-7"  # own messages carry the client id
        alice.send({"type": "history", "room": "lobby", "limit": 3, "before": page1["messages"][-1]["seq"]})
        page2 = alice.expect("history", room="lobby")
        assert [m["seq"] for m in page2["messages"]] == seqs[3:0:-1]
        alice.send({"type": "history", "room": "lobby", "limit": 3, "before": page2["messages"][-1]["seq"]})
        page3 = alice.expect("history", room="lobby")
        assert [m["seq"] for m in page3["messages"]] == [seqs[0]] and page3["more"] is False
        # Direct history, and a room bob is not in.
        direct = [bob.send_message(f"d{i}", to="alice")["seq"] for i in range(2)]
        alice.send({"type": "history", "with": "bob"})
        conversation = alice.expect("history")
        assert conversation["with"] == "bob"
        assert [m["seq"] for m in conversation["messages"]] == direct[::-1]
        bob.send({"type": "history", "room": "lobby", "id": "h1"})
        assert bob.expect("error", id="h1")["code"] == "not_member"


def test_room_list_counts_members(base_url: str) -> None:
    with clients(base_url, "ann", "ben") as (ann, ben):
        ann.join("alpha")
        ben.join("alpha")
        ben.join("beta")
        ann.send({"type": "rooms"})
        rooms = ann.expect("rooms")["rooms"]
        public = {"private": False, "topic": ""}
        assert rooms == [
            {"room": "alpha", "members": 2, "online": 2, "member": True, **public, "unread": 0, "mentions": 0},
            {"room": "beta", "members": 1, "online": 1, "member": False, **public},
        ]


def test_the_memory_store_serves_the_same_protocol(tmp_path: Path) -> None:
    running = ServerThread(make_settings(tmp_path, store="memory"), store=MemoryStore()).start()
    try:
        token = login(running.base_url, "bob")
        with clients(running.base_url, "alice") as (alice,):
            alice.join("mem")
            offline = alice.send_message("while bob is away", to="bob")
            room = [alice.send_message(f"r{i}", room="mem")["seq"] for i in range(3)]
            alice.send({"type": "history", "room": "mem", "limit": 2})
            page = alice.expect("history", room="mem")
            assert [m["seq"] for m in page["messages"]] == room[:0:-1] and page["more"] is True
            bob = connect(running.base_url, "bob", token=token)
            assert bob.expect("message", seq=offline["seq"])["text"] == "while bob is away"
            alice.send({"type": "send", "id": offline["id"], "to": "bob", "text": "dup"})
            assert alice.expect("ack", id=offline["id"])["seq"] == offline["seq"]
            bob.close()
    finally:
        running.stop()


def test_starting_a_conversation_tells_each_side_the_others_presence(base_url: str) -> None:
    with clients(base_url, "alice", "bob") as (alice, bob):
        bob.send_message("hello stranger", to="alice")
        assert bob.expect("presence", user="alice")["status"] == "online"
        assert alice.expect("presence", user="bob")["status"] == "online"
