"""Both stores on their own: edits and deletes (history, replay, positions), room settings, roles, bans,
the audit log and disabled accounts, and the migration that adds them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tornado_chat.memory_store import MemoryStore
from tornado_chat.sqlite_schema import DB_FILE, MIGRATIONS, connect, migrate
from tornado_chat.sqlite_store import SqliteStore
from tornado_chat.store import (
    USER_DISABLED,
    AppendResult,
    AuditEntry,
    BanChange,
    ChangeResult,
    Draft,
    MembershipChange,
    MessageChange,
    RoleChange,
    RoomSettings,
    Store,
)

from .support import run_async

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
StoreFactory = Callable[[Path], Store]
FACTORIES: dict[str, StoreFactory] = {
    "memory": lambda _: MemoryStore(),
    "sqlite": lambda path: SqliteStore(path, "full"),
}


async def append(store: Store, draft: Draft) -> AppendResult:
    future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
    store.append(draft, future.set_result)
    return await future


async def change(store: Store, seq: int, editor: str, text: str | None, moderated: bool = False) -> ChangeResult:
    future: asyncio.Future[ChangeResult] = asyncio.get_running_loop().create_future()
    store.change(MessageChange(seq, editor, text, NOW, moderated), future.set_result)
    return await future


@pytest.mark.parametrize("kind", FACTORIES)
def test_edits_and_deletes_take_positions_and_show_in_history_and_replay(tmp_path: Path, kind: str) -> None:
    async def run() -> None:
        store = FACTORIES[kind](tmp_path)
        store.load()
        for user in ("alice", "bob"):
            store.set_membership(user, "r", True, 0)
        seqs = [(await append(store, Draft("alice", f"m{i}", NOW, f"c{i}", room="r"))).message for i in (1, 2, 3)]
        assert [m.seq for m in seqs if m] == [1, 2, 3]
        assert (await append(store, Draft("alice", "psst", NOW, "d1", to="carol"))).message is not None  # seq 4

        edited = await change(store, 1, "alice", "one!")
        assert edited.changed and edited.message is not None and edited.message.rev == 5
        again = await change(store, 1, "alice", "one!")
        assert not again.changed and again.message is not None and again.message.rev == 5  # a resend: nothing new
        deleted = await change(store, 2, "bob", None, moderated=True)
        assert deleted.changed and deleted.message is not None and deleted.message.rev == 6
        assert deleted.message.text == "" and deleted.message.deleted
        assert (await change(store, 2, "bob", None)).changed is False
        assert (await change(store, 2, "alice", "back")).refused == "deleted"
        assert (await change(store, 99, "alice", "x")).refused == "missing"
        # A message after the changes comes after them in the one sequence.
        later = (await append(store, Draft("alice", "m5", NOW, "c5", room="r"))).message
        assert later is not None and later.seq == 7

        page, more = await store.history("bob", "r", None, None, 10)
        assert [(m.seq, m.text, m.edited, m.deleted) for m in page] == [
            (7, "m5", None, False),
            (3, "m3", None, False),
            (2, "", None, True),
            (1, "one!", NOW, False),
        ]
        assert not more
        # A resume from 3 replays both changes at their positions, then the newer message.
        replay = await store.replay("bob", 3, None, 100)
        assert [(m.seq, m.rev) for m in replay.messages] == [(1, 5), (2, 6), (7, 0)]
        assert replay.last_seq == 7 and not replay.truncated
        assert [(m.seq, m.rev) for m in (await store.replay("bob", 5, None, 100)).messages] == [(2, 6), (7, 0)]
        assert [m.seq for m in (await store.replay("bob", 3, 7, 100)).messages] == [1, 2]  # below the live floor
        cut = await store.replay("bob", 3, None, 2)
        assert [m.seq for m in cut.messages] == [2, 7] and cut.truncated
        # Changes to messages someone could not see are not theirs to replay.
        assert (await store.replay("carol", 0, None, 100)).messages[0].seq == 4
        assert (await store.replay("carol", 4, None, 100)).messages == []
        current = await store.message(1)
        assert current is not None and (current.text, current.rev) == ("one!", 5)
        assert await store.message(99) is None
        entries, more = await store.audit_log("r", None, 10)
        assert [(e.actor, e.action, e.target, e.seq) for e in entries] == [("bob", "delete", "alice", 2)]
        await store.close()

    run_async(run)


@pytest.mark.parametrize("kind", FACTORIES)
def test_room_settings_roles_bans_and_disabled_accounts_are_loaded_at_start(tmp_path: Path, kind: str) -> None:
    async def run() -> None:
        store = FACTORIES[kind](tmp_path)
        store.load()
        for name in ("alice", "bob"):
            assert await store.create_user(name, "hash", guest=False)
        store.record(
            [
                RoomSettings("r", True, "plans"),
                MembershipChange("r", "alice", True, 0),
                RoleChange("r", "alice", "owner"),
            ]
        )
        store.set_membership("bob", "r", True, 0)
        store.record([RoleChange("r", "bob", "moderator")])
        store.record([BanChange("r", "mallory", True, "alice", NOW)])
        store.record([BanChange("r", "eve", True, "alice", NOW), BanChange("r", "eve", False, "alice", NOW)])
        store.set_membership("bob", "r", False, 0)  # a member who leaves loses their role
        store.record([AuditEntry(NOW + i, "alice", "kick", "r", f"u{i}") for i in range(3)])
        assert await store.set_disabled("bob", True, "root")
        assert not await store.set_disabled("bob", True, "root")
        assert not await store.set_disabled("nobody", True, "root")
        events = await store.auth_events_after(0)
        assert events[-1].kind == USER_DISABLED and events[-1].user == "bob"
        newest, more = await store.audit_log(None, None, 2)
        assert [e.action for e in newest] == ["disable", "kick"] and more
        older, more = await store.audit_log(None, newest[-1].entry_id, 10)
        assert [e.target for e in older] == ["u1", "u0"] and not more
        assert [e.target for e in (await store.audit_log("r", None, 10))[0]] == ["u2", "u1", "u0"]
        if isinstance(store, SqliteStore):
            await store.close()
            store = SqliteStore(tmp_path, "full")
        loaded = store.load()
        assert loaded.memberships == [("alice", "r")]  # the membership came with the room, in one write
        snapshot = loaded.moderation
        assert RoomSettings("r", True, "plans") in snapshot.rooms
        assert [(r.room, r.user, r.role) for r in snapshot.roles] == [("r", "alice", "owner")]
        assert snapshot.bans == [("r", "mallory")]
        assert snapshot.disabled == {"bob"}
        await store.close()

    run_async(run)


def test_migration_five_adds_moderation_to_a_version_three_database(tmp_path: Path) -> None:
    path = tmp_path / DB_FILE
    old = connect(path, "full")
    for version, script in MIGRATIONS:
        if version > 3:
            break
        for statement in script.split(";"):
            if statement.strip():
                old.execute(statement)
        old.execute(f"PRAGMA user_version={version}")
    old.execute("INSERT INTO rooms (name, created_at) VALUES ('lobby', 1.0)")
    old.execute("INSERT INTO users (name, created_at) VALUES ('alice', 1.0)")
    old.close()
    current = connect(path, "full")
    assert migrate(current) == 3
    assert current.execute("SELECT name, private, topic FROM rooms").fetchall() == [("lobby", 0, "")]
    assert current.execute("SELECT name, admin, disabled_at FROM users").fetchall() == [("alice", 0, None)]
    tables = {name for (name,) in current.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"room_roles", "room_bans", "message_changes", "audit_log"} <= tables
    current.close()


def test_the_store_answers_a_change_in_order_with_the_messages_around_it(tmp_path: Path) -> None:
    async def run() -> list[str]:
        store = SqliteStore(tmp_path, "full")
        store.load()
        order: list[str] = []
        finished = asyncio.Event()

        def appended(result: AppendResult) -> None:
            assert result.message is not None
            order.append(f"message {result.message.seq}")
            if len(order) == 3:
                finished.set()

        def changed(result: ChangeResult) -> None:
            assert result.message is not None
            order.append(f"change {result.message.rev}")

        assert (await append(store, Draft("a", "x", time.time(), "c0", room="r"))).message is not None
        store.append(Draft("a", "y", time.time(), "c1", room="r"), appended)
        store.change(MessageChange(1, "a", "x!", NOW), changed)
        store.append(Draft("a", "z", time.time(), "c2", room="r"), appended)
        await asyncio.wait_for(finished.wait(), 10)
        await store.close()
        return order

    assert run_async(run) == ["message 2", "change 3", "message 4"]
