"""Schema versions 4 (names unique in any case, message sizes), 5 (rooms, roles, edits and deletes), 6 (read
state, mentions, search) and 7 (where each room starts) together: applied in order to a new database and to old
ones, whose data they carry forward and keep working on, including a database that a server of the time took to
5 or 6 before version 4 existed."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from tornado_chat import sqlite_accounts, sqlite_rooms, sqlite_search
from tornado_chat.conversations import direct_key, group_key, room_key
from tornado_chat.server_frames import history_entry_bytes
from tornado_chat.sqlite_schema import (
    DAY_ONE_VERSION,
    DB_FILE,
    MIGRATIONS,
    NAME_KEY_VERSION,
    ROOM_EPOCH_VERSION,
    SCHEMA_VERSION,
    NameCollisions,
    connect,
    migrate,
)
from tornado_chat.sqlite_store import SqliteStore
from tornado_chat.store import ChangeResult, MessageChange

from .support import run_async

pytestmark = pytest.mark.unit

ROOMS_VERSION = 5


def tables(connection: sqlite3.Connection) -> set[str]:
    return {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def database_at(path: Path, version: int, skipped: tuple[int, ...] = ()) -> sqlite3.Connection:
    """A database made by the migrations up to ``version`` but ``skipped``, as a server of that time left it."""
    connection = connect(path, "full")
    for number, script in MIGRATIONS:
        if number > version:
            break
        if number in skipped:
            continue
        for statement in script.split(";"):
            if statement.strip():
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version={number}")
    return connection


async def change(store: SqliteStore, what: MessageChange) -> ChangeResult:
    done: asyncio.Future[ChangeResult] = asyncio.get_running_loop().create_future()
    store.change(what, done.set_result)
    return await done


def test_the_migrations_are_numbered_once_each_in_order() -> None:
    versions = [version for version, _ in MIGRATIONS]
    assert versions == sorted(set(versions)) and versions[-1] == SCHEMA_VERSION == ROOM_EPOCH_VERSION
    # Day-one's version 6 was released first (on main): where rooms start comes after it, as 7.
    assert [NAME_KEY_VERSION, ROOMS_VERSION, DAY_ONE_VERSION, ROOM_EPOCH_VERSION] == [4, 5, 6, 7]


def test_a_new_database_takes_every_migration_in_order(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    connection = connect(tmp_path / DB_FILE, "full")
    with caplog.at_level(logging.INFO, logger="tornado_chat.store"):
        assert migrate(connection) == 0
    applied = [int(r.getMessage().rsplit(" ", 1)[1]) for r in caplog.records if "migrated to version" in r.getMessage()]
    assert applied == [version for version, _ in MIGRATIONS]
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    rooms_tables = {"room_roles", "room_bans", "message_changes", "audit_log"}
    day_one_tables = {"group_members", "read_positions", "message_mentions", "messages_words", "messages_trigrams"}
    assert rooms_tables | day_one_tables <= tables(connection)
    columns = {row[1] for row in connection.execute("PRAGMA table_info(messages)")}
    assert {"mentions", "size"} <= columns
    assert {"first_seq", "first_audit_id"} <= {row[1] for row in connection.execute("PRAGMA table_info(rooms)")}
    assert "name_key" in {row[1] for row in connection.execute("PRAGMA table_info(users)")}
    connection.close()


def test_a_version_3_database_goes_through_4_to_7_and_its_messages_can_be_edited_and_found(tmp_path: Path) -> None:
    old = database_at(tmp_path / DB_FILE, 3)
    old.executescript(
        """
        INSERT INTO users (name, created_at, offline_since_seq) VALUES ('alice', 0, 3), ('bob', 0, 0);
        INSERT INTO rooms (name, created_at) VALUES ('ops', 0);
        INSERT INTO memberships (user, room, joined_seq) VALUES ('alice', 'ops', 0), ('bob', 'ops', 0);
        INSERT INTO conversations (a, b) VALUES ('alice', 'bob');
        INSERT INTO messages (thread, sender, room, text, ts, client_id) VALUES
            ('r:ops', 'bob', 'ops', 'Résumé of the outage', 1, 'a'),
            ('r:ops', 'bob', 'ops', '会議室の予約', 2, 'b');
        INSERT INTO messages (thread, sender, recipient, text, ts, client_id)
            VALUES ('d:alice' || char(0) || 'bob', 'bob', 'alice', 'ping about the outage', 3, 'c');
        """
    )
    old.close()

    async def run() -> None:
        store = SqliteStore(tmp_path, "normal")
        snapshot = store.load()  # migrates 3 -> 4 -> 5 -> 6 -> 7
        try:
            assert snapshot.last_seq == 3 and snapshot.rooms == ["ops"]
            # A room from before version 7 keeps its whole history: it starts at 0.
            assert [(s.room, s.private, s.topic, s.first_seq) for s in snapshot.moderation.rooms] == [
                ("ops", False, "", 0)
            ]
            positions = {(user, key): seq for user, key, seq in snapshot.read_positions}
            assert positions[("alice", room_key("ops"))] == 3 and positions[("bob", room_key("ops"))] == 0
            keys = [room_key("ops"), direct_key("alice", "bob")]
            found = await store.search(keys, "outage", None, 10)
            assert [m.text for m in found.messages] == ["ping about the outage", "Résumé of the outage"]
            assert [m.text for m in (await store.search(keys, "会議室", None, 10)).messages] == ["会議室の予約"]
            # An old message is edited (re-indexed, in the edit's transaction) and another deleted.
            edited = await change(
                store, MessageChange(1, "bob", "Summary of the incident @alice", 9.0, False, ("alice",))
            )
            assert edited.changed and edited.message is not None and edited.message.rev == 4
            deleted = await change(store, MessageChange(2, "bob", None, 9.5))
            assert deleted.changed and deleted.message is not None and deleted.message.deleted
            assert [m.text for m in (await store.search(keys, "outage", None, 10)).messages] == [
                "ping about the outage"
            ]
            (incident,) = (await store.search(keys, "incident", None, 10)).messages
            assert incident.edited == 9.0 and incident.mentions == ("alice",)
            assert (await store.search(keys, "会議室", None, 10)).messages == []
        finally:
            await store.close()
        again = SqliteStore(tmp_path, "normal")
        restarted = again.load()
        await again.close()
        assert ("alice", room_key("ops"), 1) not in restarted.mentions  # alice had read it before it was edited
        assert restarted.last_seq == 5  # the two changes took positions after the messages

    run_async(run)
    check = connect(tmp_path / DB_FILE, "full")
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert check.execute("SELECT user, thread, seq FROM message_mentions").fetchall() == [("alice", "r:ops", 1)]
    check.close()


def test_a_version_5_database_with_edits_and_deletes_is_indexed_as_it_now_reads(tmp_path: Path) -> None:
    old = database_at(tmp_path / DB_FILE, ROOMS_VERSION)
    old.executescript(
        """
        INSERT INTO messages (thread, sender, room, text, ts, client_id) VALUES
            ('r:ops', 'bob', 'ops', 'kept as written', 1, 'a'),
            ('r:ops', 'bob', 'ops', 'edited into shape', 2, 'b'),
            ('r:ops', 'bob', 'ops', '', 3, 'c');
        INSERT INTO message_changes (seq, rev, edited_at) VALUES (2, 4, 5.0);
        INSERT INTO message_changes (seq, rev, deleted_at, deleted_by) VALUES (3, 5, 6.0, 'bob');
        """
    )
    assert migrate(old) == ROOMS_VERSION
    words = [[row[2] for row in sqlite_search.search(old, ["r:ops"], q, 2**62, 10)[0]] for q in ("kept", "shape")]
    assert words == [["kept as written"], ["edited into shape"]]
    assert sqlite_search.search(old, ["r:ops"], "written shape", 2**62, 10)[0] == []
    old.close()


def test_a_version_6_database_from_before_version_4_takes_it_late_with_sizes_as_messages_now_stand(
    tmp_path: Path,
) -> None:
    """Main released 5 and 6 while 4 was still to come: its databases are at 6 without 4. They take 4 (names,
    sizes) and then 7; a message edited, deleted, with mentions or in a group is sized as it now stands."""
    old = database_at(tmp_path / DB_FILE, DAY_ONE_VERSION, skipped=(NAME_KEY_VERSION,))
    group = group_key(("alice", "bob", "carol"))
    old.executescript(
        """
        INSERT INTO users (name, created_at, password_hash) VALUES ('alice', 0, 'h'), ('bob', 0, 'h'),
            ('carol', 0, 'h');
        INSERT INTO rooms (name, created_at) VALUES ('ops', 0);
        INSERT INTO memberships (user, room, joined_seq) VALUES ('alice', 'ops', 0), ('bob', 'ops', 0);
        INSERT INTO messages (thread, sender, room, text, ts, client_id, mentions) VALUES
            ('r:ops', 'bob', 'ops', 'hello @alice', 1, 'a', 'alice'),
            ('r:ops', 'alice', 'ops', 'fixed the typo', 2, 'b', NULL),
            ('r:ops', 'bob', 'ops', '', 3, 'c', NULL);
        INSERT INTO message_changes (seq, rev, edited_at) VALUES (2, 5, 5.0);
        INSERT INTO message_changes (seq, rev, deleted_at, deleted_by) VALUES (3, 6, 6.0, 'bob');
        """
    )
    old.execute(
        "INSERT INTO messages (thread, sender, text, ts, client_id) VALUES (?, 'carol', 'hi all', 4, 'd')", (group,)
    )
    old.executemany(
        "INSERT INTO group_members (thread, user) VALUES (?, ?)", [(group, n) for n in ("alice", "bob", "carol")]
    )
    assert migrate(old) == DAY_ONE_VERSION
    assert old.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    messages = [m for seq in (1, 2, 3, 4) if (m := sqlite_rooms.message(old, seq=seq)) is not None]
    assert [(m.mentions, m.rev, m.deleted, m.members) for m in messages] == [
        (("alice",), 0, False, None),
        ((), 5, False, None),
        ((), 6, True, None),
        ((), 0, False, ("alice", "bob", "carol")),
    ]
    sizes = [size for (size,) in old.execute("SELECT size FROM messages ORDER BY seq")]
    assert sizes == [history_entry_bytes(m) for m in messages]
    assert sizes[0] > history_entry_bytes(replace(messages[0], mentions=()))  # the mentions count
    assert not sqlite_accounts.create_user(old, "ALICE", "h", guest=False, now=7.0)  # names: one in any case
    assert migrate(old) == SCHEMA_VERSION  # nothing left to do
    old.close()


def test_case_variants_stop_a_late_version_4_as_they_stop_an_early_one(tmp_path: Path) -> None:
    old = database_at(tmp_path / DB_FILE, DAY_ONE_VERSION, skipped=(NAME_KEY_VERSION,))
    old.execute("INSERT INTO users (name, created_at, password_hash) VALUES ('dave', 0, 'h'), ('Dave', 0, 'h')")
    with pytest.raises(NameCollisions, match="Dave, dave"):
        migrate(old)
    assert old.execute("PRAGMA user_version").fetchone()[0] == DAY_ONE_VERSION  # nothing half done
    old.close()
