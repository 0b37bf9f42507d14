"""The SQLite store on its own: migrations, group commit, resends, replay queries."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest

from tornado_chat import sqlite_accounts
from tornado_chat.memory_store import MemoryStore
from tornado_chat.protocol import HISTORY_MAX_BYTES, History
from tornado_chat.server_frames import (
    HISTORY_BUDGET_BYTES,
    Message,
    history_entry_bytes,
    history_frame,
    message_fields,
)
from tornado_chat.sqlite_schema import DB_FILE, MIGRATIONS, SCHEMA_VERSION, NameCollisions, connect, migrate
from tornado_chat.sqlite_store import SqliteStore
from tornado_chat.store import AppendResult, Draft, StoreError

from .support import run_async

pytestmark = pytest.mark.unit


def test_migrations_carry_old_data_forward(tmp_path: Path) -> None:
    path = tmp_path / DB_FILE
    old = connect(path, "full")
    # A database as version 1 left it, with a message in it.
    for version, script in MIGRATIONS[:1]:
        for statement in script.split(";"):
            if statement.strip():
                old.execute(statement)
        old.execute(f"PRAGMA user_version={version}")
    old.execute(
        "INSERT INTO messages (thread, sender, recipient, room, text, ts, client_id)"
        " VALUES ('r:a', 'u', NULL, 'a', 'hi', 1.0, 'c1')"
    )
    old.close()
    current = connect(path, "full")
    assert migrate(current) == 1
    assert current.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert current.execute("SELECT seq, sender, text, client_id FROM messages").fetchall() == [(1, "u", "hi", "c1")]
    # A history entry's size, kept since version 4, is filled in for the messages already there.
    (size,) = current.execute("SELECT size FROM messages").fetchone()
    assert size == history_entry_bytes(Message(1, "u", "hi", 1.0, "c1", room="a"))
    indexes = {name for (name,) in current.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"messages_by_thread", "messages_by_recipient", "messages_by_direct_sender"} <= indexes
    with pytest.raises(sqlite3.IntegrityError):
        current.execute(
            "INSERT INTO messages (thread, sender, room, text, ts, client_id) VALUES ('r:a', 'u', 'a', 'x', 2.0, 'c1')"
        )
    assert migrate(current) == SCHEMA_VERSION  # nothing left to do
    current.close()


def test_a_database_from_a_newer_server_is_refused(tmp_path: Path) -> None:
    connection = connect(tmp_path / DB_FILE, "full")
    connection.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError):
        migrate(connection)


async def append_all(store: SqliteStore | MemoryStore, drafts: list[Draft]) -> list[AppendResult]:
    """Append every draft and wait until the store has answered each; the answers, in order."""
    results: list[AppendResult] = []
    finished = asyncio.Event()

    def done(result: AppendResult) -> None:
        results.append(result)
        if len(results) == len(drafts):
            finished.set()

    for draft in drafts:
        store.append(draft, done)
    await asyncio.wait_for(finished.wait(), 30)
    return results


def test_group_commit_stores_a_burst_in_few_transactions_in_order(tmp_path: Path) -> None:
    originals = [Draft(f"u{i % 5}", f"m{i}", time.time(), f"c{i}", room="r") for i in range(500)]
    # Resends of earlier messages, some landing in the same transaction as their original.
    resends = [Draft(d.sender, "again", time.time(), d.client_id, room="r") for d in originals[::10]]
    drafts = [*originals[:250], *resends[:25], *originals[250:], *resends[25:]]

    async def run() -> tuple[list[AppendResult], list[int]]:
        store = SqliteStore(tmp_path, "full")
        batches: list[int] = []

        class Observer:
            def store_committed(self, seconds: float, batch_size: int) -> None:
                batches.append(batch_size)

            def store_failed(self) -> None:
                raise AssertionError("no commit should fail")

        store.observer = Observer()
        store.load()
        results = await append_all(store, drafts)
        await store.close()
        return results, batches

    results, batches = run_async(run)
    assert len(batches) < 100  # many writes per transaction, not one each
    by_client_id: dict[tuple[str, str], Message] = {}
    for draft, result in zip(drafts, results, strict=True):
        assert result.message is not None and result.error is None
        if result.duplicate:
            original = by_client_id[(draft.sender, draft.client_id)]
            assert result.message.seq == original.seq and result.message.text == original.text
        else:
            by_client_id[(draft.sender, draft.client_id)] = result.message
    assert sum(r.duplicate for r in results) == len(resends)
    seqs = [r.message.seq for r in results if r.message is not None and not r.duplicate]
    assert seqs == list(range(seqs[0], seqs[0] + len(originals)))  # consecutive, in the order sent


def _v3_database(path: Path, names: list[tuple[str, bool]]) -> None:
    """A database as version 3 left it, with these accounts (name, removed)."""
    old = connect(path, "full")
    for version, script in MIGRATIONS[:3]:
        for statement in script.split(";"):
            if statement.strip():
                old.execute(statement)
        old.execute(f"PRAGMA user_version={version}")
    for name, removed in names:
        old.execute(
            "INSERT INTO users (name, created_at, password_hash, removed_at) VALUES (?, 1.0, 'h', ?)",
            (name, 2.0 if removed else None),
        )
    old.close()


def test_case_variant_accounts_stop_the_migration_with_the_names_and_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / DB_FILE
    _v3_database(path, [("alice", False), ("Alice", False), ("bob", False), ("BOB", True), ("carol", False)])
    connection = connect(path, "full")
    with pytest.raises(NameCollisions) as refused:
        migrate(connection)
    message = str(refused.value)
    assert "Alice, alice" in message and "bob" not in message.lower()  # BOB is closed already
    assert "tornado-chat user remove NAME" in message and "\n" not in message
    assert connection.execute("PRAGMA user_version").fetchone()[0] == 3  # nothing half done
    # Once the administrator has closed one of them, the migration goes through and the names stay taken.
    connection.execute("UPDATE users SET removed_at = 3.0 WHERE name = 'Alice'")
    assert migrate(connection) == 3
    keys = dict(connection.execute("SELECT name, name_key FROM users"))
    assert keys == {"alice": "alice", "Alice": None, "bob": "bob", "BOB": None, "carol": "carol"}
    assert not sqlite_accounts.create_user(connection, "ALICE", "h", guest=False, now=4.0)
    assert not sqlite_accounts.create_user(connection, "Carol", "h", guest=False, now=4.0)
    assert sqlite_accounts.create_user(connection, "dave", "h", guest=False, now=4.0)
    connection.close()


def test_the_store_says_which_file_it_cannot_open_in_one_line(tmp_path: Path) -> None:
    (tmp_path / DB_FILE).write_bytes(b"this is not a database, just some bytes" * 100)

    async def run() -> str:
        store = SqliteStore(tmp_path, "full")
        try:
            store.load()
        except StoreError as exc:
            return str(exc)
        finally:
            await store.close()
        return "loaded"

    message = run_async(run)
    assert message.startswith(str(tmp_path / DB_FILE) + ": ") and "not a database" in message
    assert "\n" not in message


def _long_messages(count: int) -> list[Draft]:
    # 4000 four-byte emoji: 16 KB of text each, so a page of 200 would be over 3 MB.
    return [Draft("u", "\U0001f600" * 4000, 1.0 + i, f"c{i}", room="r") for i in range(count)]


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_a_history_page_is_chosen_within_its_byte_budget_by_the_store(tmp_path: Path, kind: str) -> None:
    drafts = [*_long_messages(60), *(Draft("u", 'short "quoted"\n', 100.0 + i, f"s{i}", room="r") for i in range(3))]

    async def run() -> tuple[list[Message], bool, list[Message], bool]:
        store: SqliteStore | MemoryStore = SqliteStore(tmp_path, "full") if kind == "sqlite" else MemoryStore()
        store.load()
        await append_all(store, drafts)
        page, more = await store.history("u", "r", None, None, 200)
        small, small_more = await store.history("u", "r", None, None, 2)
        await store.close()
        return page, more, small, small_more

    page, more, small, small_more = run_async(run)
    # Each long message takes about 16 KB of a 256 KiB page: the store hands over only what fits.
    assert 3 + 10 <= len(page) <= 3 + 16 and more
    assert [m.seq for m in page] == sorted((m.seq for m in page), reverse=True)
    entries = sum(history_entry_bytes(m) for m in page)
    assert entries <= HISTORY_BUDGET_BYTES
    frame = history_frame(History(room="r"), page, more, "u")
    assert len(frame) <= HISTORY_MAX_BYTES
    # The bound is an upper bound of the real size of every entry.
    for message in page:
        real = len(json.dumps(message_fields(message, own=True), ensure_ascii=False, separators=(",", ":")))
        assert real + 1 <= history_entry_bytes(message)
    assert len(small) == 2 and small_more


def test_a_room_without_members_goes_from_the_database(tmp_path: Path) -> None:
    async def run() -> list[str]:
        store = SqliteStore(tmp_path, "full")
        store.load()
        store.set_membership("a", "kept", True, 0)
        store.set_membership("a", "left", True, 0)
        store.set_membership("b", "left", True, 0)
        store.set_membership("a", "left", False, 0)
        store.set_membership("b", "left", False, 0)
        store.set_membership("a", "orphan", True, 0)
        await store.close()
        # An account removed by the admin CLI leaves its rooms behind until the next start.
        connection = connect(tmp_path / DB_FILE, "full")
        connection.execute("DELETE FROM memberships WHERE room = 'orphan'")
        connection.close()
        again = SqliteStore(tmp_path, "full")
        snapshot = again.load()
        await again.close()
        return sorted(snapshot.rooms)

    assert run_async(run) == ["kept"]
