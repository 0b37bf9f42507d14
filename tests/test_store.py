"""The SQLite store on its own: migrations, group commit, resends, replay queries."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from tornado_chat.server_frames import Message
from tornado_chat.sqlite_schema import DB_FILE, MIGRATIONS, SCHEMA_VERSION, connect, migrate
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
        results: list[AppendResult] = []
        finished = asyncio.Event()

        def done(result: AppendResult) -> None:
            results.append(result)
            if len(results) == len(drafts):
                finished.set()

        for draft in drafts:
            store.append(draft, done)
        await asyncio.wait_for(finished.wait(), 30)
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
