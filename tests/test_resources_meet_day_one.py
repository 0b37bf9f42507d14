"""Resource control meets day-one chat, black-box against real servers and real WebSocket clients.

A room that empties is deleted, and a room made again under its name starts afresh: its search results, unread
counts, mentions and read positions show nothing of the earlier room, with either store and across a restart.
A session has one search running at a time, as it has one history request. The paged room list carries the
unread counts of the asker's own rooms. A group conversation addresses its people by their exact names, as a
direct message does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tornado_chat.memory_store import MemoryStore
from tornado_chat.sqlite_store import SqliteStore
from tornado_chat.store import SearchPage, Store

from .conftest import make_settings
from .support import Client, ServerThread, clients, connect, login

pytestmark = pytest.mark.integration


def search(client: Client, q: str, **where: Any) -> list[str]:
    frame_id = client.new_id()
    client.send({"type": "search", "id": frame_id, "q": q, **where})
    return [m["text"] for m in client.expect("search", id=frame_id)["results"]]


def read_entry(client: Client, room: str, last: int) -> dict[str, Any]:
    """Where ``client`` stands in ``room`` whose newest message is ``last`` (a ``read`` frame that moves nothing
    answers only the asker; ``last`` tells its answer from the ``read`` frame a join sends)."""
    client.send({"type": "read", "room": room, "seq": 0})
    return client.expect("read", room=room, last=last)


def listed(client: Client, **page: Any) -> dict[str, Any]:
    client.send({"type": "rooms", **page})
    return client.expect("rooms")


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_a_room_made_again_under_a_freed_name_searches_and_counts_nothing_of_the_old_one(
    tmp_path: Path, kind: str
) -> None:
    settings = make_settings(tmp_path, store=kind)
    store: Store = SqliteStore(settings.data_dir, "normal") if kind == "sqlite" else MemoryStore()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    running = ServerThread(settings, store).start()
    try:
        with clients(running.base_url, "alice", "bob", "carol") as (alice, bob, carol):
            alice.join("ops")
            bob.join("ops")
            alice.send_message("zebra plans for @bob", room="ops")
            alice.send_message("@room zebra drill", room="ops")
            for client in (alice, bob):
                client.send({"type": "leave", "room": "ops"})
                client.expect("left", room="ops")
            # The room went with its last member; carol makes a new one under the name, and bob joins it.
            assert listed(carol)["rooms"] == []
            carol.join("ops")
            bob.join("ops")
            for client in (carol, bob):
                assert search(client, "zebra") == [] and search(client, "zebra", room="ops") == []
            assert {k: read_entry(bob, "ops", 0)[k] for k in ("unread", "mentions", "last")} == {
                "unread": 0, "mentions": 0, "last": 0
            }  # fmt: skip
            (entry,) = listed(bob)["rooms"]
            assert (entry["room"], entry["unread"], entry["mentions"]) == ("ops", 0, 0)
            fresh = carol.send_message("zebra news for @bob", room="ops")
            bob.expect("message", seq=fresh["seq"])
            assert search(bob, "zebra") == ["zebra news for @bob"]
            assert {k: read_entry(bob, "ops", fresh["seq"])[k] for k in ("unread", "mentions", "last")} == {
                "unread": 1, "mentions": 1, "last": fresh["seq"]
            }  # fmt: skip
    finally:
        running.stop()
    # After a restart the counts and results are the same: the new room starts where it was made.
    again = ServerThread(settings, SqliteStore(settings.data_dir, "normal") if kind == "sqlite" else store).start()
    try:
        with clients(again.base_url, "bob") as (bob,):
            (ops,) = [e for e in bob.welcome["unread"] if e.get("room") == "ops"]
            assert (ops["unread"], ops["mentions"], ops["last"]) == (1, 1, fresh["seq"])
            assert search(bob, "zebra") == ["zebra news for @bob"]
            assert search(bob, "drill") == []
    finally:
        again.stop()


class GatedSearches(MemoryStore):
    """Searches wait until the test lets them go: a search stays running for as long as the test needs."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Event | None = None
        self.running = 0

    async def search(
        self, keys: list[str], query: str, before: int | None, limit: int, floors: Mapping[str, int] | None = None
    ) -> SearchPage:
        self.running += 1
        if self.gate is None:
            self.gate = asyncio.Event()
        try:
            await self.gate.wait()
            return await super().search(keys, query, before, limit, floors)
        finally:
            self.running -= 1


def test_a_session_has_one_search_running_at_a_time(tmp_path: Path) -> None:
    store = GatedSearches()
    running = ServerThread(make_settings(tmp_path), store=store).start()
    try:
        token = login(running.base_url, "alice")
        alice, laptop = connect(running.base_url, "alice", token=token), connect(running.base_url, "alice", token=token)
        alice.send_message("needle in the notes", to="alice")
        alice.send({"type": "search", "id": "first", "q": "needle"})
        running.wait_for(lambda: store.running == 1, "the first search running")
        alice.send({"type": "search", "id": "second", "q": "notes"})
        refused = alice.expect("error", id="second")
        assert refused["code"] == "rate_limited" and "one search at a time" in refused["message"]
        # History is not held up by it (it has its own one-at-a-time rule), nor is another session's search.
        alice.send({"type": "history", "id": "h", "with": "alice"})
        assert [m["text"] for m in alice.expect("history")["messages"]] == ["needle in the notes"]
        laptop.send({"type": "search", "id": "other", "q": "notes"})
        running.wait_for(lambda: store.running == 2, "the other session's search running too")
        assert store.gate is not None
        running.call(store.gate.set)
        assert [m["text"] for m in alice.expect("search", id="first")["results"]] == ["needle in the notes"]
        assert laptop.expect("search", id="other")["results"] != []
        assert search(alice, "notes") == ["needle in the notes"]  # once answered, the next one runs
        alice.close()
        laptop.close()
    finally:
        running.stop()


def test_the_paged_room_list_carries_the_counts_of_ones_own_rooms(server: ServerThread) -> None:
    with clients(server.base_url, "alice", "bob") as (alice, bob):
        for room in ("aa", "bb", "cc", "dd"):
            bob.join(room)
        alice.join("cc")
        bob.send_message("hello @alice", room="cc")
        bob.send_message("more", room="cc")
        first = listed(alice, limit=2)
        assert [e["room"] for e in first["rooms"]] == ["aa", "bb"] and first["next"] == "bb" and first["total"] == 4
        assert all("unread" not in e for e in first["rooms"])  # not hers: nothing counted
        second = listed(alice, after=first["next"], limit=2)
        assert second["after"] == "bb" and second["next"] is None
        cc, dd = second["rooms"]
        assert (cc["room"], cc["member"], cc["unread"], cc["mentions"]) == ("cc", True, 2, 1)
        assert (dd["room"], dd["member"]) == ("dd", False) and "unread" not in dd


def test_a_group_names_its_people_exactly_as_a_direct_message_does(server: ServerThread) -> None:
    with clients(server.base_url, "alice", "bob", "carol") as (alice, bob, carol):
        for frame in (
            {"type": "send", "to": ["Bob", "carol"], "text": "hi"},
            {"type": "send", "to": "Bob", "text": "hi"},
            {"type": "history", "with": ["bob", "CAROL"]},
            {"type": "read", "with": ["Bob", "carol"], "seq": 1},
            {"type": "search", "q": "hi", "with": ["bob", "Carol"]},
            {"type": "typing", "with": ["BOB", "carol"]},
        ):
            frame_id = alice.new_id()
            alice.send({**frame, "id": frame_id})
            assert alice.expect("error", id=frame_id)["code"] == "unknown_user", frame
        frame_id = alice.new_id()
        alice.send({"type": "send", "id": frame_id, "to": ["carol", "bob"], "text": "hi both"})
        alice.expect("ack", id=frame_id)
        for client in (bob, carol):
            got = client.expect("message", text="hi both")
            assert got["members"] == ["alice", "bob", "carol"]
