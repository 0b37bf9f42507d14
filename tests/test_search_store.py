"""Search, read positions and group conversations in the stores themselves (SQLite files, no sockets)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from tornado_chat import search_terms, sqlite_search
from tornado_chat.conversations import direct_key, group_key, room_key
from tornado_chat.memory_store import MemoryStore
from tornado_chat.sqlite_schema import DB_FILE, MIGRATIONS, connect, migrate
from tornado_chat.sqlite_store import SqliteStore
from tornado_chat.store import AppendResult, Draft, SearchPage, Snapshot, Store

from .support import run_async

pytestmark = pytest.mark.unit

T = TypeVar("T")
GROUP = ("alice", "bob", "carol")
TEXTS = [
    ("r1", "Café au lait at nine"),
    ("r1", "The DEPLOYMENT went fine"),
    ("r2", "deploy notes are in the wiki"),
    ("r1", "你好世界"),
    ("r1", "東京で会いましょう hello"),
    ("r2", "secret deploy in another room"),
]


def drafts() -> list[Draft]:
    found = [Draft("alice", text, 1.0 + i, f"c{i}", room=room) for i, (room, text) in enumerate(TEXTS)]
    found.append(Draft("bob", "group deploy plan", 10.0, "g1", members=GROUP, mentions=("carol",)))
    found.append(Draft("bob", "a direct deploy question", 11.0, "d1", to="alice"))
    return found


async def stored(store: Store, batch: list[Draft]) -> list[AppendResult]:
    """Append every draft and wait for all the outcomes."""
    results: list[AppendResult] = []
    finished = asyncio.Event()

    def done(result: AppendResult) -> None:
        results.append(result)
        if len(results) == len(batch):
            finished.set()

    for draft in batch:
        store.append(draft, done)
    await asyncio.wait_for(finished.wait(), 10)
    return results


def with_store(tmp_path: Path, use: Callable[[Store], Awaitable[T]], memory: bool = False) -> T:
    async def run() -> T:
        store: Store = MemoryStore() if memory else SqliteStore(tmp_path, "normal")
        store.load()
        await stored(store, drafts())
        try:
            return await use(store)
        finally:
            await store.close()

    return run_async(run)


def texts(page: SearchPage) -> list[str]:
    return [m.text for m in page.messages]


ALL = [room_key("r1"), room_key("r2"), group_key(GROUP), direct_key("alice", "bob")]


@pytest.mark.parametrize("memory", [False, True], ids=["sqlite", "memory"])
def test_search_ignores_case_and_accents_and_finds_text_without_spaces(tmp_path: Path, memory: bool) -> None:
    async def use(store: Store) -> dict[str, list[str]]:
        queries = ["cafe", "CAFÉ", "deployment", "世界", "好世界", "東京", "hello 東京", "lait nine"]
        return {q: texts(await store.search([room_key("r1")], q, None, 20)) for q in queries}

    found = with_store(tmp_path, use, memory)
    assert found["cafe"] == found["CAFÉ"] == ["Café au lait at nine"]
    assert found["deployment"] == ["The DEPLOYMENT went fine"]
    assert found["世界"] == found["好世界"] == ["你好世界"]  # a short query and a trigram one
    assert found["東京"] == found["hello 東京"] == ["東京で会いましょう hello"]
    assert found["lait nine"] == ["Café au lait at nine"]


def test_sqlite_matches_words_by_their_start_only(tmp_path: Path) -> None:
    async def use(store: Store) -> tuple[list[str], list[str]]:
        return texts(await store.search(ALL, "depl", None, 20)), texts(await store.search(ALL, "ploy", None, 20))

    prefix, inside = with_store(tmp_path, use)
    assert prefix == [
        "a direct deploy question",
        "group deploy plan",
        "secret deploy in another room",
        "deploy notes are in the wiki",
        "The DEPLOYMENT went fine",
    ]
    assert inside == []


@pytest.mark.parametrize("memory", [False, True], ids=["sqlite", "memory"])
def test_search_looks_only_where_it_is_told_and_pages_newest_first(tmp_path: Path, memory: bool) -> None:
    async def use(store: Store) -> list[SearchPage]:
        first = await store.search([room_key("r2"), group_key(GROUP)], "deploy", None, 2)
        assert first.next is not None
        second = await store.search([room_key("r2"), group_key(GROUP)], "deploy", first.next, 2)
        return [first, second, await store.search([direct_key("bob", "carol")], "deploy", None, 2)]

    first, second, elsewhere = with_store(tmp_path, use, memory)
    assert texts(first) == ["group deploy plan", "secret deploy in another room"]
    assert first.messages[0].members == GROUP and first.messages[0].mentions == ("carol",)
    assert texts(second) == ["deploy notes are in the wiki"] and second.next is None
    assert texts(elsewhere) == []


def test_edits_and_deletes_keep_the_indexes_true(tmp_path: Path) -> None:
    async def use(store: Store) -> list[list[str]]:
        assert isinstance(store, SqliteStore)
        connection = connect(tmp_path / DB_FILE, "normal")
        seqs = dict(connection.execute("SELECT text, seq FROM messages"))
        connection.execute("BEGIN")
        edited = seqs["The DEPLOYMENT went fine"]
        connection.execute("UPDATE messages SET text = ? WHERE seq = ?", ("rollback done 完成了嗎", edited))
        sqlite_search.reindex(connection, edited, "The DEPLOYMENT went fine", "rollback done 完成了嗎")
        gone = seqs["你好世界"]
        sqlite_search.reindex(connection, gone, "你好世界", None)
        connection.execute("UPDATE messages SET text = '' WHERE seq = ?", (gone,))
        connection.execute("COMMIT")
        connection.close()
        keys = [room_key("r1")]
        return [texts(await store.search(keys, q, None, 20)) for q in ("deployment", "rollback", "完成了", "好世界")]

    deployment, rollback, chinese, deleted = with_store(tmp_path, use)
    assert deployment == [] and deleted == []
    assert rollback == chinese == ["rollback done 完成了嗎"]


def test_a_short_query_scans_a_bounded_window_and_says_where_to_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_search, "SHORT_QUERY_SCAN_ROWS", 3)

    async def use(store: Store) -> list[SearchPage]:
        await stored(store, [Draft("bob", f"filler {i}", 20.0 + i, f"f{i}", room="r1") for i in range(5)])
        first = await store.search(ALL, "世界", None, 20)
        pages = [first]
        while pages[-1].next is not None and len(pages) < 10:
            pages.append(await store.search(ALL, "世界", pages[-1].next, 20))
        return pages

    pages = with_store(tmp_path, use)
    assert texts(pages[0]) == [] and pages[0].next is not None  # the window held only filler
    assert [t for page in pages for t in texts(page)] == ["你好世界"]
    assert pages[-1].next is None


def test_group_messages_replay_to_members_only_and_read_positions_survive_a_restart(tmp_path: Path) -> None:
    async def first_run(store: Store) -> None:
        store.set_read_position("carol", group_key(GROUP), 7)
        store.set_read_position("carol", group_key(GROUP), 3)  # never backwards

    with_store(tmp_path, first_run)

    async def second_run() -> tuple[Snapshot, list[str], list[str], list[str]]:
        store = SqliteStore(tmp_path, "normal")
        snapshot = store.load()
        carol = [m.text for m in (await store.replay("carol", 0, None, 100)).messages]
        dave = [m.text for m in (await store.replay("dave", 0, None, 100)).messages]
        history, _ = await store.history("carol", None, None, None, 10, members=GROUP)
        await store.close()
        return snapshot, carol, dave, [m.text for m in history]

    snapshot, carol, dave, history = run_async(second_run)
    assert carol == history == ["group deploy plan"]
    assert dave == []
    assert snapshot.groups == [GROUP]
    positions = {(user, key): seq for user, key, seq in snapshot.read_positions}
    assert positions[("carol", group_key(GROUP))] == 7
    assert positions[("bob", group_key(GROUP))] == 7  # the sender read what he sent
    assert ("carol", group_key(GROUP), 7) not in snapshot.mentions  # read already
    assert snapshot.recent_seqs[room_key("r1")] == [1, 2, 4, 5]


def test_version_6_indexes_old_messages_and_starts_conversations_read(tmp_path: Path) -> None:
    path = tmp_path / DB_FILE
    old = connect(path, "full")
    for version, script in MIGRATIONS[:3]:
        for statement in script.split(";"):
            if statement.strip():
                old.execute(statement)
        old.execute(f"PRAGMA user_version={version}")
    old.executescript(
        """
        INSERT INTO users (name, created_at, offline_since_seq) VALUES ('alice', 0, 2), ('bob', 0, 0);
        INSERT INTO memberships (user, room, joined_seq) VALUES ('alice', 'ops', 0);
        INSERT INTO conversations (a, b) VALUES ('alice', 'bob');
        INSERT INTO messages (thread, sender, room, text, ts, client_id)
            VALUES ('r:ops', 'bob', 'ops', 'Résumé', 1, 'a'), ('r:ops', 'bob', 'ops', '会議室', 2, 'b');
        INSERT INTO messages (thread, sender, recipient, text, ts, client_id)
            VALUES ('d:alice' || char(0) || 'bob', 'bob', 'alice', 'ping', 3, 'c');
        """
    )
    assert migrate(old) == 3
    found = [
        [row[2] for row in sqlite_search.search(old, ["r:ops"], q, 2**62, 10)[0]] for q in ("resume", "会議", "会議室")
    ]
    assert found == [["Résumé"], ["会議室"], ["会議室"]]
    positions = set(old.execute("SELECT user, thread, seq FROM read_positions"))
    assert positions == {("alice", "r:ops", 2), ("alice", "d:alice\x00bob", 2), ("bob", "d:alice\x00bob", 0)}
    old.close()


def test_the_migration_indexes_the_same_scripts_as_new_messages() -> None:
    (script,) = [script for version, script in MIGRATIONS if version == 6]
    assert f"GLOB '*[{search_terms.NO_SPACE_RANGES}]*'" in script
    probe = sqlite3.connect(":memory:")
    for sample in ("hello", "Ελληνικά", "你好", "カナ", "한국어", "ไทย", "ăâî"):
        (globbed,) = probe.execute(f"SELECT ? GLOB '*[{search_terms.NO_SPACE_RANGES}]*'", (sample,)).fetchone()
        assert bool(globbed) == search_terms.written_without_spaces(sample), sample
