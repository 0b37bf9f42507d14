"""Both stores on their own: edits and deletes (history, replay, positions, and the sizes that cut history
pages), room settings, roles, bans, rooms that empty, the audit log and disabled accounts, and the migrations
that add them in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tornado_chat.memory_store import MemoryStore
from tornado_chat.protocol import HISTORY_MAX_BYTES, History
from tornado_chat.server_frames import (
    HISTORY_BUDGET_BYTES,
    Message,
    encode,
    history_entry_bytes,
    history_page,
    message_fields,
)
from tornado_chat.sqlite_schema import (
    DB_FILE,
    MIGRATIONS,
    NAME_KEY_VERSION,
    ROOM_EPOCH_VERSION,
    SCHEMA_VERSION,
    connect,
    migrate,
)
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
from .test_store import _v3_database

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


def test_the_migrations_apply_in_order_to_a_new_database_and_to_a_version_three_one(tmp_path: Path) -> None:
    versions = [version for version, _ in MIGRATIONS]
    assert versions == list(range(1, SCHEMA_VERSION + 1))  # names (4) before rooms and moderation (5), then 6
    assert NAME_KEY_VERSION < 5 < ROOM_EPOCH_VERSION
    for version, script in MIGRATIONS:
        # A migration that rebuilds the messages table (as 3 did) must carry the size column from 4 on.
        if version > NAME_KEY_VERSION and "CREATE TABLE messages" in script:
            assert "size" in script, version
    fresh = connect(tmp_path / "fresh.sqlite3", "full")
    assert migrate(fresh) == 0 and fresh.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    fresh.close()
    path = tmp_path / DB_FILE
    _v3_database(path, [("Alice", False)])
    old = connect(path, "full")
    old.execute("INSERT INTO rooms (name, created_at) VALUES ('lobby', 1.0)")
    old.execute("INSERT INTO memberships (user, room, joined_seq) VALUES ('Alice', 'lobby', 0)")
    old.execute(
        "INSERT INTO messages (thread, sender, room, text, ts, client_id)"
        " VALUES ('r:lobby', 'Alice', 'lobby', 'hi', 1.0, 'c')"
    )
    old.close()
    current = connect(path, "full")
    assert migrate(current) == 3
    assert current.execute("SELECT name, name_key, admin, disabled_at FROM users").fetchall() == [
        ("Alice", "alice", 0, None)
    ]
    (size,) = current.execute("SELECT size FROM messages").fetchone()
    assert size == history_entry_bytes(Message(1, "Alice", "hi", 1.0, "c", room="lobby"))
    rooms = current.execute("SELECT name, private, topic, first_seq, first_audit_id FROM rooms").fetchall()
    assert rooms == [("lobby", 0, "", 0, 0)]  # a room from before keeps all its history
    current.close()


@pytest.mark.parametrize("kind", FACTORIES)
def test_history_pages_are_cut_by_the_size_of_messages_as_they_now_stand(tmp_path: Path, kind: str) -> None:
    async def run() -> None:
        store = FACTORIES[kind](tmp_path)
        store.load()
        store.set_membership("alice", "r", True, 0)
        seqs = []
        for i in range(100):
            stored = (await append(store, Draft("alice", "x", NOW, f"c{i:02d}", room="r"))).message
            assert stored is not None
            seqs.append(stored.seq)
        page, more = await store.history("alice", "r", None, None, 100)
        assert len(page) == 100 and not more
        # Edited to 16 KB each, the newest 40 no longer fit one page: the page is cut by their new size.
        for seq in seqs[-40:]:
            assert (await change(store, seq, "alice", "\U0001f600" * 4000)).changed
        page, more = await store.history("alice", "r", None, None, 100)
        sizes = {history_entry_bytes(m) for m in page}
        assert more and len(sizes) == 1 and len(page) == HISTORY_BUDGET_BYTES // sizes.pop() < 40
        # Deleted, they are tombstones: small again, and the whole conversation fits.
        for seq in seqs[-35:]:
            assert (await change(store, seq, "alice", None)).changed
        page, more = await store.history("alice", "r", None, None, 100)
        assert len(page) == 100 and not more
        assert [m.deleted for m in page[:36]] == [True] * 35 + [False] and page[35].edited is not None
        # The size a store keeps bounds the entry as a history frame writes it: edited, deleted, or neither.
        for message in (page[0], page[35], page[99]):
            assert len(encode(message_fields(message, own=True))) + 1 <= history_entry_bytes(message)
        assert len(history_page(History("r", None, None, 100), page, more, "alice")) <= HISTORY_MAX_BYTES
        await store.close()

    run_async(run)
    if kind == "sqlite":  # the size column is the entry's as it now stands
        connection = connect(tmp_path / DB_FILE, "full")
        rows = connection.execute("SELECT seq, size, text FROM messages ORDER BY seq").fetchall()
        connection.close()
        assert {size for _, size, text in rows if text == ""} == {history_entry_bytes(_tombstone())}
        assert len({size for _, size, _ in rows}) == 3  # plain, edited, deleted


def _tombstone() -> Message:
    return Message(1, "alice", "", NOW, "c99", room="r", deleted=True, rev=1)


@pytest.mark.parametrize("kind", FACTORIES)
def test_a_room_that_empties_goes_with_its_roles_and_bans_and_a_new_one_starts_afresh(
    tmp_path: Path, kind: str
) -> None:
    async def run() -> tuple[Store, int]:
        store = FACTORIES[kind](tmp_path)
        store.load()
        store.record(
            [
                RoomSettings("v", True, "keys"),
                MembershipChange("v", "alice", True, 0),
                RoleChange("v", "alice", "owner"),
                BanChange("v", "carol", True, "alice", NOW),
                AuditEntry(NOW, "alice", "ban", "v", "carol"),
            ]
        )
        old = (await append(store, Draft("alice", "the code is 1234", NOW, "c1", room="v"))).message
        assert old is not None
        store.record([MembershipChange("v", "alice", False, old.seq)])
        # The hub knows where a new room starts before the store does: the history it asks for starts there.
        assert (await store.history("carol", "v", None, None, 50, old.seq))[0] == []
        store.record([RoomSettings("v", False, ""), MembershipChange("v", "carol", True, old.seq)])
        store.record([RoleChange("v", "carol", "owner")])
        assert (await append(store, Draft("carol", "a new room", NOW, "c2", room="v"))).message is not None
        page, more = await store.history("carol", "v", None, None, 50)
        assert [m.text for m in page] == ["a new room"] and not more
        assert (await store.audit_log("v", None, 50))[0] == []  # the room's log starts with the room
        assert [e.target for e in (await store.audit_log(None, None, 50))[0]] == ["carol"]  # the whole log keeps it
        await store.close()
        return store, old.seq

    store, old_seq = run_async(run)
    reloaded = store if kind == "memory" else FACTORIES[kind](tmp_path)

    async def load() -> None:
        snapshot = reloaded.load()
        assert snapshot.memberships == [("carol", "v")]
        moderation = snapshot.moderation
        assert moderation.rooms == [RoomSettings("v", False, "", old_seq)]
        assert [(r.room, r.user, r.role) for r in moderation.roles] == [("v", "carol", "owner")]
        assert moderation.bans == []
        await reloaded.close()

    run_async(load)


@pytest.mark.parametrize("kind", FACTORIES)
def test_a_removed_account_leaves_its_rooms_as_a_leave_would(tmp_path: Path, kind: str) -> None:
    async def run() -> Store:
        store = FACTORIES[kind](tmp_path)
        store.load()
        for name in ("alice", "bob"):
            assert await store.create_user(name, "hash", guest=False)
        store.record(
            [
                RoomSettings("solo", True, "alice's"),
                MembershipChange("solo", "alice", True, 0),
                RoleChange("solo", "alice", "owner"),
                BanChange("solo", "carol", True, "alice", NOW),
                RoomSettings("shared", False, ""),
                MembershipChange("shared", "bob", True, 0),
                RoleChange("shared", "bob", "owner"),
                MembershipChange("shared", "alice", True, 0),
                RoleChange("shared", "alice", "moderator"),
            ]
        )
        assert await store.remove_user("alice")
        # The room alice left empty went with its ban: one made again under its name starts without it.
        store.record([RoomSettings("solo", False, ""), MembershipChange("solo", "carol", True, 0)])
        await store.close()
        return store

    store = run_async(run)
    reloaded = store if kind == "memory" else FACTORIES[kind](tmp_path)

    async def load() -> None:
        moderation = reloaded.load().moderation
        assert sorted((r.room, r.user, r.role) for r in moderation.roles) == [("shared", "bob", "owner")]
        assert moderation.bans == []
        await reloaded.close()

    run_async(load)
