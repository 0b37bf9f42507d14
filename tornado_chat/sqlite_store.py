"""The durable store: SQLite in the data directory, written by one thread with group commit.

Writes (messages, memberships, users) go to a queue. One writer thread owns
the write connection: it takes everything queued (up to ``max_batch``
operations), applies it in one transaction and commits; whatever arrives while
a commit runs goes into the next one. Only after the commit does it hand the
results back to the event loop, in order, where the server acks senders and
delivers messages. So an ack always means the message is on disk (with
``synchronous=FULL``, through power loss too), and a message is never
delivered that a crash could take back.

Reads (history, replay) run on a small thread pool with their own connections;
WAL mode lets them read while the writer writes. Nothing here blocks the event
loop.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import account_sql
from .account_sql import AuthEvent
from .protocol import Message
from .store import AppendCallback, AppendResult, Draft, Replay, Snapshot, StoreError, StoreObserver

log = logging.getLogger("tornado_chat.store")

DB_FILE = "chat.sqlite3"
# Most operations committed in one transaction.
DEFAULT_MAX_BATCH = 1000
READER_THREADS = 2
BUSY_TIMEOUT_S = 5.0

# Each migration takes the schema from the previous version to its own; applied in order at start.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE users (
            name TEXT PRIMARY KEY,
            created_at REAL NOT NULL,
            offline_since_seq INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE rooms (
            name TEXT PRIMARY KEY,
            created_at REAL NOT NULL
        );
        CREATE TABLE memberships (
            user TEXT NOT NULL,
            room TEXT NOT NULL,
            joined_seq INTEGER NOT NULL,
            PRIMARY KEY (user, room)
        ) WITHOUT ROWID;
        CREATE TABLE conversations (
            a TEXT NOT NULL,
            b TEXT NOT NULL,
            PRIMARY KEY (a, b)
        ) WITHOUT ROWID;
        CREATE TABLE messages (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            thread TEXT NOT NULL,
            sender TEXT NOT NULL,
            recipient TEXT,
            room TEXT,
            text TEXT NOT NULL,
            ts REAL NOT NULL,
            client_id TEXT NOT NULL,
            UNIQUE (sender, client_id)
        );
        CREATE INDEX messages_by_thread ON messages (thread, seq);
        CREATE INDEX messages_by_recipient ON messages (recipient, seq) WHERE recipient IS NOT NULL;
        CREATE INDEX messages_by_direct_sender ON messages (sender, seq) WHERE recipient IS NOT NULL;
        """,
    ),
    (
        2,
        """
        ALTER TABLE users ADD COLUMN password_hash TEXT;
        ALTER TABLE users ADD COLUMN guest INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE users ADD COLUMN removed_at REAL;
        CREATE TABLE logins (
            login_id TEXT PRIMARY KEY,
            user TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            revoked_at REAL
        );
        CREATE INDEX logins_by_user ON logins (user);
        CREATE TABLE auth_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            user TEXT NOT NULL,
            login_id TEXT,
            at REAL NOT NULL
        );
        """,
    ),
    (
        3,
        # Clients make ids that grow (a clock or a counter first), so ordering the resend-detecting unique
        # index by client id first puts each commit's new entries next to each other: a commit of 100
        # messages then writes about half the pages (and spends about half the time in fsync).
        """
        CREATE TABLE messages_v3 (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            thread TEXT NOT NULL,
            sender TEXT NOT NULL,
            recipient TEXT,
            room TEXT,
            text TEXT NOT NULL,
            ts REAL NOT NULL,
            client_id TEXT NOT NULL,
            UNIQUE (client_id, sender)
        );
        INSERT INTO messages_v3 (seq, thread, sender, recipient, room, text, ts, client_id)
            SELECT seq, thread, sender, recipient, room, text, ts, client_id FROM messages;
        DROP TABLE messages;
        ALTER TABLE messages_v3 RENAME TO messages;
        CREATE INDEX messages_by_thread ON messages (thread, seq);
        CREATE INDEX messages_by_recipient ON messages (recipient, seq) WHERE recipient IS NOT NULL;
        CREATE INDEX messages_by_direct_sender ON messages (sender, seq) WHERE recipient IS NOT NULL;
        """,
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

# Queries name the message columns in the order _row_to_message reads them.
_HISTORY_SQL = """
    SELECT seq, sender, text, ts, client_id, recipient, room FROM messages
    WHERE thread = ? AND seq < ? ORDER BY seq DESC LIMIT ?
"""
# A user's messages: direct ones either way (self-notes once), and their rooms' since they joined.
_REPLAY_SQL = """
    SELECT seq, sender, text, ts, client_id, recipient, room FROM (
        SELECT seq, sender, text, ts, client_id, recipient, room FROM messages
            WHERE recipient = :user AND seq > :since AND seq < :upper
        UNION ALL
        SELECT seq, sender, text, ts, client_id, recipient, room FROM messages
            WHERE sender = :user AND recipient IS NOT NULL AND recipient != :user
            AND seq > :since AND seq < :upper
        UNION ALL
        SELECT m.seq, m.sender, m.text, m.ts, m.client_id, m.recipient, m.room
            FROM memberships AS ms JOIN messages AS m
            ON m.thread = 'r:' || ms.room AND m.seq > max(:since, ms.joined_seq) AND m.seq < :upper
            WHERE ms.user = :user
    ) ORDER BY seq DESC LIMIT :limit
"""
# Filled with one "(?, ?)" per key: placeholders only, never values.
# (A join, not "(sender, client_id) IN (VALUES ...)": SQLite plans that one as a scan of the whole index.)
_BY_CLIENT_IDS_SQL = """
    SELECT m.seq, m.sender, m.text, m.ts, m.client_id, m.recipient, m.room
    FROM (VALUES {pairs}) AS k JOIN messages AS m ON m.sender = k.column1 AND m.client_id = k.column2
"""
_LOOKUP_CHUNK = 500
_INSERT_MESSAGE_SQL = """
    INSERT INTO messages (seq, thread, sender, recipient, room, text, ts, client_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""


def thread_key(sender: str, room: str | None, recipient: str | None) -> str:
    """The history thread a message belongs to: its room, or the pair of users of a conversation."""
    if room is not None:
        return "r:" + room
    first, second = sorted((sender, recipient or ""))
    return f"d:{first}\x00{second}"


def _row_to_message(row: Sequence[Any]) -> Message:
    seq, sender, text, ts, client_id, recipient, room = row
    return Message(seq, sender, text, ts, client_id, recipient, room)


@dataclass(slots=True)
class _Op:
    """A queued write: ``kind`` names it, ``args`` are its values.

    ``done``, when set, is called on the event loop after the commit with the
    operation's result: an ``AppendResult`` for a message, the function's return
    value for an account change, or a ``StoreError`` when the transaction failed.
    """

    kind: str
    args: tuple[Any, ...]
    done: Callable[[Any], None] | None = None


def connect(path: Path, sync: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL journal, the chosen sync level."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


def migrate(connection: sqlite3.Connection) -> int:
    """Bring the schema up to ``SCHEMA_VERSION``; returns the version found before."""
    (found,) = connection.execute("PRAGMA user_version").fetchone()
    if found > SCHEMA_VERSION:
        raise StoreError(f"the database has schema version {found}, newer than this server's {SCHEMA_VERSION}")
    for version, script in MIGRATIONS:
        if version <= found:
            continue
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version={version}")
            connection.execute("COMMIT")
        except sqlite3.Error:
            connection.execute("ROLLBACK")
            raise
        log.info("database schema migrated to version %d", version)
    return int(found)


class SqliteStore:
    """The durable store (see the module docstring). Create, then ``open`` on the event loop."""

    def __init__(self, data_dir: Path, sync: str = "full", max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self.path = data_dir / DB_FILE
        self.sync = sync
        self.max_batch = max_batch
        self.observer: StoreObserver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: deque[_Op] = deque()
        self._wakeup = threading.Condition()
        self._closing = False
        self._writer: threading.Thread | None = None
        self._readers = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="chat-store-read")
        self._local = threading.local()
        self._healthy = True
        self._last_error: str | None = None

    # ------------------------------------------------------------ life cycle

    def load(self) -> Snapshot:
        """Open (creating and migrating as needed), read the start-up snapshot, start the writer thread.

        Called once, on the event loop that will receive append results.
        """
        self._loop = asyncio.get_running_loop()
        connection = connect(self.path, self.sync)
        try:
            migrate(connection)
            snapshot = self._read_snapshot(connection)
        finally:
            connection.close()
        self._writer = threading.Thread(target=self._write_loop, name="chat-store-writer", daemon=True)
        self._writer.start()
        return snapshot

    @staticmethod
    def _read_snapshot(connection: sqlite3.Connection) -> Snapshot:
        snapshot = Snapshot()
        (snapshot.last_seq,) = connection.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()
        snapshot.users = dict(connection.execute("SELECT name, offline_since_seq FROM users WHERE removed_at IS NULL"))
        snapshot.accounts = account_sql.accounts(connection)
        snapshot.logins = account_sql.open_logins(connection, time.time())
        snapshot.last_auth_event = account_sql.last_event_id(connection)
        snapshot.rooms = [name for (name,) in connection.execute("SELECT name FROM rooms")]
        snapshot.memberships = list(connection.execute("SELECT user, room FROM memberships"))
        snapshot.contacts = list(connection.execute("SELECT a, b FROM conversations"))
        return snapshot

    async def close(self) -> None:
        """Commit everything queued, stop the writer, close connections."""
        with self._wakeup:
            self._closing = True
            self._wakeup.notify()
        if self._writer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        self._readers.shutdown(wait=True)

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    # ------------------------------------------------------------ writes

    def _enqueue(self, op: _Op) -> bool:
        """Queue a write for the next transaction; False once the store is closing."""
        with self._wakeup:
            if self._closing:
                log.warning("store closing: dropped a %s write", op.kind)
                return False
            self._queue.append(op)
            self._wakeup.notify()
            return True

    def append(self, draft: Draft, done: AppendCallback) -> None:
        if not self._enqueue(_Op("message", (draft,), done)):
            done(AppendResult(None, error="the store is closing"))

    async def _committed(self, kind: str, *args: Any) -> Any:
        """Queue a write and wait until its transaction has committed; its result, or ``StoreError``."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(result: Any) -> None:
            if future.done():
                return
            if isinstance(result, StoreError):
                future.set_exception(result)
            else:
                future.set_result(result)

        if not self._enqueue(_Op(kind, args, done)):
            raise StoreError("the store is closing")
        return await future

    async def create_user(self, name: str, password_hash: str | None, guest: bool) -> bool:
        created: bool = await self._committed("create_user", name, password_hash, guest, time.time())
        return created

    async def set_password(self, name: str, password_hash: str) -> bool:
        changed: bool = await self._committed("set_password", name, password_hash, time.time())
        return changed

    async def remove_user(self, name: str) -> bool:
        removed: bool = await self._committed("remove_user", name, time.time())
        return removed

    async def open_login(self, login_id: str, user: str, expires: float) -> None:
        await self._committed("open_login", login_id, user, time.time(), expires)

    async def revoke_login(self, login_id: str) -> None:
        await self._committed("revoke_login", login_id, time.time())

    def set_membership(self, user: str, room: str, member: bool, seq: int) -> None:
        self._enqueue(_Op("join" if member else "leave", (user, room, seq, time.time())))

    def set_offline_since(self, user: str, seq: int) -> None:
        self._enqueue(_Op("offline", (user, seq)))

    def _write_loop(self) -> None:
        connection = connect(self.path, self.sync)
        try:
            while True:
                with self._wakeup:
                    while not self._queue and not self._closing:
                        self._wakeup.wait()
                    if not self._queue:
                        return
                    count = min(len(self._queue), self.max_batch)
                    batch = [self._queue.popleft() for _ in range(count)]
                self._commit(connection, batch)
        finally:
            connection.close()

    def _commit(self, connection: sqlite3.Connection, batch: list[_Op]) -> None:
        """Apply ``batch`` in one transaction and hand the results to the loop, in order."""
        started = time.perf_counter()
        results: list[tuple[Callable[[Any], None], Any]] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            index = 0
            while index < len(batch):
                op = batch[index]
                if op.kind != "message":
                    result = self._apply(connection, op)
                    if op.done is not None:
                        results.append((op.done, result))
                    index += 1
                    continue
                # A run of messages goes in with one executemany; other writes keep their place in the order.
                end = index
                while end < len(batch) and batch[end].kind == "message":
                    end += 1
                run = batch[index:end]
                stored = _insert_messages(connection, [op.args[0] for op in run])
                results.extend((op.done, result) for op, result in zip(run, stored, strict=True) if op.done)
                index = end
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            if connection.in_transaction:
                try:
                    connection.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("rollback failed")
            self._healthy = False
            if str(exc) != self._last_error:
                log.error("store write failed: %s", exc)
                self._last_error = str(exc)
            if self.observer is not None:
                self.observer.store_failed()
            error = f"store write failed: {exc}"
            results = [
                (op.done, AppendResult(None, error=error) if op.kind == "message" else StoreError(error))
                for op in batch
                if op.done is not None
            ]
        else:
            if not self._healthy:
                log.warning("store writes work again")
            self._healthy = True
            self._last_error = None
            if self.observer is not None:
                self.observer.store_committed(time.perf_counter() - started, len(batch))
        if results and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(_deliver_results, results)
            except RuntimeError:
                log.warning("the event loop closed before %d results could be delivered", len(results))

    @staticmethod
    def _apply(connection: sqlite3.Connection, op: _Op) -> Any:
        account_change = _ACCOUNT_CHANGES.get(op.kind)
        if account_change is not None:
            return account_change(connection, *op.args)
        if op.kind == "join":
            user, room, seq, now = op.args
            connection.execute("INSERT INTO rooms (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING", (room, now))
            connection.execute(
                "INSERT INTO memberships (user, room, joined_seq) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (user, room, seq),
            )
        elif op.kind == "leave":
            user, room, _seq, _now = op.args
            connection.execute("DELETE FROM memberships WHERE user = ? AND room = ?", (user, room))
        elif op.kind == "offline":
            user, seq = op.args
            connection.execute("UPDATE users SET offline_since_seq = ? WHERE name = ?", (seq, user))
        else:
            raise AssertionError(f"unknown store operation {op.kind}")
        return None

    # ------------------------------------------------------------ reads

    def _reader(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = connect(self.path, self.sync)
        return connection

    async def _read(self, query: Callable[[sqlite3.Connection], Any]) -> Any:
        def run() -> Any:
            connection = self._reader()
            connection.execute("BEGIN")
            try:
                return query(connection)
            finally:
                connection.execute("COMMIT")

        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, run)
        except sqlite3.Error as exc:
            log.error("store read failed: %s", exc)
            raise StoreError(str(exc)) from exc

    async def history(
        self, viewer: str, room: str | None, with_user: str | None, before: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        thread = thread_key(viewer, room, with_user)

        def query(connection: sqlite3.Connection) -> tuple[list[Message], bool]:
            rows = connection.execute(
                _HISTORY_SQL, (thread, before if before is not None else 2**63 - 1, limit + 1)
            ).fetchall()
            return [_row_to_message(row) for row in rows[:limit]], len(rows) > limit

        result: tuple[list[Message], bool] = await self._read(query)
        return result

    async def auth_events_after(self, event_id: int) -> list[AuthEvent]:
        """Account changes recorded after ``event_id`` (by this server or by the admin CLI)."""

        def query(connection: sqlite3.Connection) -> list[AuthEvent]:
            return account_sql.events_after(connection, event_id)

        events: list[AuthEvent] = await self._read(query)
        return events

    async def account(self, name: str) -> account_sql.AccountRow | None:
        def query(connection: sqlite3.Connection) -> account_sql.AccountRow | None:
            return account_sql.account(connection, name)

        row: account_sql.AccountRow | None = await self._read(query)
        return row

    async def replay(self, user: str, since: int, below: int | None, limit: int) -> Replay:
        upper = below if below is not None else 2**63 - 1

        def query(connection: sqlite3.Connection) -> Replay:
            (last_seq,) = connection.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()
            rows = connection.execute(
                _REPLAY_SQL,
                {"user": user, "since": since, "upper": upper, "limit": limit + 1},
            ).fetchall()
            truncated = len(rows) > limit
            messages = [_row_to_message(row) for row in reversed(rows[:limit])]
            return Replay(messages, truncated, last_seq)

        result: Replay = await self._read(query)
        return result


def _insert_messages(connection: sqlite3.Connection, drafts: list[Draft]) -> list[AppendResult]:
    """Store a run of messages in order, with one ``executemany``; resends get the copy already stored.

    Per-row statements cost the writer thread most of its time, and the event loop
    shares its interpreter lock. Here the store looks up every (sender, client id)
    of the run at once, gives new messages consecutive sequence numbers after the
    current last one, and inserts them in one call.
    """
    existing: dict[tuple[str, str], Message] = {}
    keys = list({(draft.sender, draft.client_id) for draft in drafts})
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        chunk = keys[start : start + _LOOKUP_CHUNK]
        pairs = ",".join(["(?, ?)"] * len(chunk))
        values = [value for key in chunk for value in key]
        for row in connection.execute(_BY_CLIENT_IDS_SQL.format(pairs=pairs), values):
            message = _row_to_message(row)
            existing[(message.sender, message.client_id)] = message
    (last_seq,) = connection.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()
    results: list[AppendResult] = []
    rows: list[tuple[Any, ...]] = []
    conversations: set[tuple[str, str]] = set()
    for draft in drafts:
        key = (draft.sender, draft.client_id)
        found = existing.get(key)
        if found is not None:
            results.append(AppendResult(found, duplicate=True))
            continue
        last_seq += 1
        message = Message(last_seq, draft.sender, draft.text, draft.ts, draft.client_id, draft.to, draft.room)
        existing[key] = message  # a second copy in this very run is a resend of this one
        results.append(AppendResult(message))
        thread = thread_key(draft.sender, draft.room, draft.to)
        rows.append((last_seq, thread, draft.sender, draft.to, draft.room, draft.text, draft.ts, draft.client_id))
        if draft.to is not None and draft.to != draft.sender:
            first, second = sorted((draft.sender, draft.to))
            conversations.add((first, second))
    connection.executemany(_INSERT_MESSAGE_SQL, rows)
    if conversations:
        connection.executemany("INSERT INTO conversations (a, b) VALUES (?, ?) ON CONFLICT DO NOTHING", conversations)
    return results


_ACCOUNT_CHANGES: dict[str, Callable[..., Any]] = {
    "create_user": account_sql.create_user,
    "set_password": account_sql.set_password,
    "remove_user": account_sql.remove_user,
    "open_login": account_sql.open_login,
    "revoke_login": account_sql.revoke_login,
}


def _deliver_results(results: list[tuple[Callable[[Any], None], Any]]) -> None:
    for done, result in results:
        try:
            done(result)
        except Exception:
            log.exception("a store callback failed")
