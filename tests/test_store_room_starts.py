"""The stores where resource control meets day-one chat: a room made again under a freed name searches nothing of
the earlier one, a member who leaves takes their read state along, and a history entry's stored size bounds the
entry as it now stands (a group's member list, mentions, an edit), so that pages keep to their byte budget."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tornado_chat.conversations import group_key, room_key
from tornado_chat.protocol import HISTORY_MAX_BYTES, History
from tornado_chat.server_frames import HISTORY_BUDGET_BYTES, Message, history_entry_bytes, history_frame, message_fields
from tornado_chat.sqlite_schema import DB_FILE, connect
from tornado_chat.store import Draft, MessageChange, Store

from .support import run_async
from .test_store_rooms import FACTORIES, NOW, append, change

pytestmark = pytest.mark.unit

# Ten people with the longest names there are: the largest member list and mention list a message can carry.
LONG = tuple(f"{n}{'x' * 31}" for n in range(10))


def entry_bytes(message: Message) -> int:
    """What a message's entry takes in a history frame, and the comma after it."""
    return len(json.dumps(message_fields(message, own=True), ensure_ascii=False, separators=(",", ":"))) + 1


@pytest.mark.parametrize("kind", FACTORIES)
def test_a_room_made_again_searches_from_where_it_was_made(tmp_path: Path, kind: str) -> None:
    async def run() -> tuple[list[str], list[str], list[str], list[str]]:
        store = FACTORIES[kind](tmp_path)
        store.load()
        store.set_membership("alice", "ops", True, 0)
        old = await append(store, _draft("alice", "zebra 会議 from the first room", "c1"))
        assert old.message is not None
        store.set_membership("alice", "ops", False, old.message.seq)  # the room goes with its last member
        store.set_membership("bob", "ops", True, old.message.seq)  # a new room of that name
        assert (await append(store, _draft("bob", "zebra 会議 in the new room", "c2"))).message is not None
        key = [room_key("ops")]
        found = await store.search(key, "zebra", None, 10)
        short = await store.search(key, "会", None, 10)  # one character without spaces: a scan, not an index
        # The hub's start for the room bounds it too (before the store has stored the new room, say).
        hub_floor = await store.search(key, "zebra", None, 10, {room_key("ops"): 10**9})
        # A conversation that is not a room has no start.
        other = await store.search([group_key(("alice", "bob", "carol"))], "zebra", None, 10, {})
        await store.close()
        return (
            [m.text for m in found.messages],
            [m.text for m in short.messages],
            [m.text for m in hub_floor.messages],
            [m.text for m in other.messages],
        )

    found, short, hub_floor, other = run_async(run)
    assert found == short == ["zebra 会議 in the new room"]
    assert hub_floor == [] and other == []


def test_leaving_a_room_takes_the_members_read_state_along(tmp_path: Path) -> None:
    async def run() -> None:
        store = FACTORIES["sqlite"](tmp_path)
        store.load()
        for user in ("alice", "bob"):
            store.set_membership(user, "ops", True, 0)
        called = await append(store, _draft("alice", "@room @bob look", "c1", mentions=("@room", "bob")))
        assert called.message is not None
        store.set_read_position("bob", room_key("ops"), called.message.seq)
        store.set_membership("bob", "ops", False, called.message.seq)
        assert (await append(store, _draft("alice", "still here", "c2"))).message is not None
        store.set_membership("alice", "ops", False, called.message.seq + 1)
        await store.close()

    run_async(run)
    connection = connect(tmp_path / DB_FILE, "full")
    assert connection.execute("SELECT user, thread FROM read_positions").fetchall() == []
    assert connection.execute("SELECT user, thread FROM message_mentions").fetchall() == []
    assert connection.execute("SELECT name FROM rooms").fetchall() == []
    connection.close()


@pytest.mark.parametrize("kind", FACTORIES)
def test_a_group_message_with_mentions_is_sized_as_it_stands_and_pages_keep_their_budget(
    tmp_path: Path, kind: str
) -> None:
    members = tuple(sorted(LONG))
    text = "\U0001f600" * 1000 + "".join(f" @{name}" for name in LONG[1:])

    async def run() -> tuple[list[Message], bool]:
        store: Store = FACTORIES[kind](tmp_path)
        store.load()
        sent = []
        for i in range(80):
            stored = await append(store, _draft(LONG[0], text, f"g{i:02d}", members=members, mentions=LONG[1:]))
            assert stored.message is not None
            sent.append(stored.message.seq)
        # Edited (with fewer mentions, then more text) and deleted ones are sized as they now stand.
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        store.change(MessageChange(sent[-1], LONG[0], text + "!", NOW, False, LONG[1:3]), future.set_result)
        await future
        assert (await change(store, sent[-2], LONG[0], None)).changed
        page, more = await store.history(LONG[0], None, None, None, 200, members=members)
        await store.close()
        return page, more

    page, more = run_async(run)
    assert more and [m.seq for m in page] == sorted((m.seq for m in page), reverse=True)
    assert page[0].mentions == LONG[1:3] and page[0].edited is not None and page[1].deleted
    for message in page[:3]:
        assert entry_bytes(message) <= history_entry_bytes(message)
    assert sum(history_entry_bytes(m) for m in page) <= HISTORY_BUDGET_BYTES
    request = History(with_group=tuple(name for name in members if name != LONG[0]))
    frame = history_frame(request, page, more, LONG[0])
    assert len(frame) <= HISTORY_MAX_BYTES
    # What the budget leaves over is little: the page holds all that fits, not half of it.
    assert len(frame) + history_entry_bytes(page[-1]) + 2 * 1024 > HISTORY_MAX_BYTES


def _draft(
    sender: str, text: str, client_id: str, *, members: tuple[str, ...] | None = None, mentions: tuple[str, ...] = ()
) -> Draft:
    room = None if members is not None else "ops"
    return Draft(sender, text, NOW, client_id, room=room, members=members, mentions=tuple(sorted(mentions)))
