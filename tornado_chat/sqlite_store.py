"""The durable store: SQLite in the data directory, written by one thread with group commit.

Writes (messages, memberships, accounts, room changes, edits and deletes, read
positions) go to a queue as typed operations.
One writer thread owns the write connection: it takes everything queued (up to
``max_batch`` operations), applies it in one transaction and commits; whatever
arrives while a commit runs goes into the next one. Only after the commit does
it hand the results back to the event loop, in order, where the server acks
senders and delivers messages. So an ack always means the message is on disk
(with ``synchronous=FULL``, through power loss too), and a message is never
delivered that a crash could take back.

Reads (history, replay, search: ``sqlite_reads``) run on a small thread pool with their own connections;
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
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

from . import sqlite_accounts, sqlite_conversations, sqlite_messages, sqlite_reads, sqlite_rooms
from .protocol import MAX_SEQ
from .server_frames import Message
from .sqlite_schema import DB_FILE, connect, migrate
from .store import (
    AccountRow,
    AppendCallback,
    AppendResult,
    AuditEntry,
    AuthEvent,
    ChangeCallback,
    ChangeResult,
    Draft,
    MembershipChange,
    MessageChange,
    Replay,
    RoomWrite,
    SearchPage,
    Snapshot,
    StoreError,
    StoreObserver,
)
from .unread import UNREAD_COUNT_CAP

log = logging.getLogger("tornado_chat.store")

# Most operations committed in one transaction.
DEFAULT_MAX_BATCH = 1000
READER_THREADS = 2

R = TypeVar("R")


# ---------------------------------------------------------------- queued writes
#
# Every queued write is one of two kinds. ``_Append`` is a chat message: runs of
# them go into the database with one executemany, and each one's callback gets
# an ``AppendResult``. ``_Call`` is any other write: a function of the write
# connection, and what to tell the loop once its transaction committed or failed.


class _Append:
    __slots__ = ("done", "draft", "result")

    def __init__(self, draft: Draft, done: AppendCallback) -> None:
        self.draft = draft
        self.done = done
        self.result: AppendResult | None = None

    def succeeded(self) -> None:
        self.done(self.result or AppendResult(None, error="not stored"))

    def failed(self, error: str) -> None:
        self.done(AppendResult(None, error=error))


def _ignore_failure(error: str) -> None:
    """A write nobody waits for: the failure is logged and counted by the commit itself."""


class _Call:
    __slots__ = ("apply", "failed", "succeeded")

    def __init__(
        self,
        apply: Callable[[sqlite3.Connection], None],
        succeeded: Callable[[], None] = lambda: None,
        failed: Callable[[str], None] = _ignore_failure,
    ) -> None:
        self.apply = apply
        self.succeeded = succeeded
        self.failed = failed


_Write = _Append | _Call


class SqliteStore:
    """The durable ``store.Store`` (see the module docstring). Create, then ``load`` on the event loop."""

    def __init__(self, data_dir: Path, sync: str = "full", max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self.path = data_dir / DB_FILE
        self.sync = sync
        self.max_batch = max_batch
        self.observer: StoreObserver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: deque[_Write] = deque()
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

        Called once, on the event loop that will receive append results. Raises ``StoreError`` naming the
        file and the cause when the database cannot be used.
        """
        self._loop = asyncio.get_running_loop()
        try:
            connection = connect(self.path, self.sync)
            try:
                migrate(connection)
                sqlite_rooms.drop_empty_rooms(connection)
                snapshot = self._read_snapshot(connection)
            finally:
                connection.close()
        except (sqlite3.Error, StoreError) as exc:
            # One line naming the file and the cause (corrupt, read-only, a newer schema, name collisions).
            raise StoreError(f"{self.path}: {exc}") from None
        self._writer = threading.Thread(target=self._write_loop, name="chat-store-writer", daemon=True)
        self._writer.start()
        return snapshot

    @staticmethod
    def _read_snapshot(connection: sqlite3.Connection) -> Snapshot:
        snapshot = Snapshot()
        snapshot.last_seq = sqlite_messages.last_position(connection)
        snapshot.users = dict(connection.execute("SELECT name, offline_since_seq FROM users WHERE removed_at IS NULL"))
        snapshot.accounts = sqlite_accounts.accounts(connection)
        snapshot.logins = sqlite_accounts.open_logins(connection, time.time())
        snapshot.last_auth_event = sqlite_accounts.last_event_id(connection)
        snapshot.rooms = [name for (name,) in connection.execute("SELECT name FROM rooms")]
        snapshot.memberships = list(connection.execute("SELECT user, room FROM memberships"))
        snapshot.contacts = list(connection.execute("SELECT a, b FROM conversations"))
        snapshot.moderation = sqlite_rooms.load(connection)
        sqlite_conversations.load(connection, snapshot, UNREAD_COUNT_CAP)
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

    def _enqueue(self, op: _Write) -> bool:
        """Queue a write for the next transaction; False once the store is closing."""
        with self._wakeup:
            if self._closing:
                log.warning("store closing: dropped a write")
                return False
            self._queue.append(op)
            self._wakeup.notify()
            return True

    def append(self, draft: Draft, done: AppendCallback) -> None:
        if not self._enqueue(_Append(draft, done)):
            done(AppendResult(None, error="the store is closing"))

    async def _committed(self, change: Callable[[sqlite3.Connection], R]) -> R:
        """Queue a write and wait until its transaction has committed; its result, or ``StoreError``."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        results: list[R] = []

        def succeeded() -> None:
            if not future.done():
                future.set_result(results[0])

        def failed(error: str) -> None:
            if not future.done():
                future.set_exception(StoreError(error))

        if not self._enqueue(_Call(lambda connection: results.append(change(connection)), succeeded, failed)):
            raise StoreError("the store is closing")
        return await future

    async def create_user(self, name: str, password_hash: str | None, guest: bool) -> bool:
        change = partial(sqlite_accounts.create_user, name=name, password_hash=password_hash, guest=guest)
        return await self._committed(partial(change, now=time.time()))

    async def set_password(self, name: str, password_hash: str) -> bool:
        return await self._committed(
            partial(sqlite_accounts.set_password, name=name, password_hash=password_hash, now=time.time())
        )

    async def remove_user(self, name: str) -> bool:
        return await self._committed(partial(sqlite_accounts.remove_user, name=name, now=time.time()))

    async def open_login(self, login_id: str, user: str, expires: float) -> None:
        await self._committed(
            partial(sqlite_accounts.open_login, login_id=login_id, user=user, now=time.time(), expires=expires)
        )

    async def revoke_login(self, login_id: str) -> None:
        await self._committed(partial(sqlite_accounts.revoke_login, login_id=login_id, now=time.time()))

    def set_membership(self, user: str, room: str, member: bool, seq: int) -> None:
        self.record([MembershipChange(room, user, member, seq)])

    def set_offline_since(self, user: str, seq: int) -> None:
        self._enqueue(_Call(partial(sqlite_messages.set_offline_since, user=user, seq=seq)))

    def set_read_position(self, user: str, key: str, seq: int) -> None:
        self._enqueue(_Call(partial(sqlite_conversations.set_read_position, user=user, key=key, seq=seq)))

    def record(self, writes: Sequence[RoomWrite]) -> None:
        self._enqueue(_Call(partial(sqlite_rooms.record, writes=tuple(writes), now=time.time())))

    def change(self, change: MessageChange, done: ChangeCallback) -> None:
        results: list[ChangeResult] = []
        op = _Call(
            lambda connection: results.append(sqlite_rooms.change_message(connection, change)),
            lambda: done(results[0]),
            lambda error: done(ChangeResult(None, error=error)),
        )
        if not self._enqueue(op):
            done(ChangeResult(None, error="the store is closing"))

    async def set_disabled(self, name: str, disabled: bool, actor: str) -> bool:
        change = partial(sqlite_rooms.set_disabled, name=name, disabled=disabled, actor=actor, now=time.time())
        return await self._committed(change)

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

    def _commit(self, connection: sqlite3.Connection, batch: list[_Write]) -> None:
        """Apply ``batch`` in one transaction and hand the outcomes to the loop, in order."""
        started = time.perf_counter()
        outcomes: list[Callable[[], None]]
        try:
            connection.execute("BEGIN IMMEDIATE")
            index = 0
            while index < len(batch):
                op = batch[index]
                if isinstance(op, _Call):
                    op.apply(connection)
                    index += 1
                    continue
                # A run of messages goes in with one executemany; other writes keep their place in the order.
                end = index
                while end < len(batch) and isinstance(batch[end], _Append):
                    end += 1
                run = [item for item in batch[index:end] if isinstance(item, _Append)]
                for append, result in zip(
                    run, sqlite_messages.insert_messages(connection, [a.draft for a in run]), strict=True
                ):
                    append.result = result
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
            outcomes = [partial(op.failed, f"store write failed: {exc}") for op in batch]
        else:
            if not self._healthy:
                log.warning("store writes work again")
            self._healthy = True
            self._last_error = None
            if self.observer is not None:
                self.observer.store_committed(time.perf_counter() - started, len(batch))
            outcomes = [op.succeeded for op in batch]
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(_run_outcomes, outcomes)
            except RuntimeError:
                log.warning("the event loop closed before %d results could be delivered", len(outcomes))

    # ------------------------------------------------------------ reads

    def _reader(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = connect(self.path, self.sync)
        return connection

    async def _read(self, query: Callable[[sqlite3.Connection], R]) -> R:
        def run() -> R:
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
        self,
        viewer: str,
        room: str | None,
        with_user: str | None,
        before: int | None,
        limit: int,
        since: int = 0,
        members: tuple[str, ...] | None = None,
    ) -> tuple[list[Message], bool]:
        thread = sqlite_messages.thread_key(viewer, room, with_user, members)
        upper = before if before is not None else MAX_SEQ
        return await self._read(
            partial(sqlite_reads.history, thread=thread, room=room, since=since, upper=upper, limit=limit)
        )

    async def auth_events_after(self, event_id: int) -> list[AuthEvent]:
        """Account changes recorded after ``event_id`` (by this server or by the admin CLI)."""
        return await self._read(partial(sqlite_accounts.events_after, event_id=event_id))

    async def account(self, name: str) -> AccountRow | None:
        return await self._read(partial(sqlite_accounts.account, name=name))

    async def message(self, seq: int) -> Message | None:
        return await self._read(partial(sqlite_rooms.message, seq=seq))

    async def audit_log(self, room: str | None, before: int | None, limit: int) -> tuple[list[AuditEntry], bool]:
        # Read in the writer's turn, behind the audit entries still queued: the log shows every action answered.
        return await self._committed(partial(sqlite_rooms.audit_entries, room=room, before=before, limit=limit))

    async def replay(self, user: str, since: int, below: int | None, limit: int) -> Replay:
        upper = below if below is not None else MAX_SEQ
        return await self._read(partial(sqlite_reads.replay, user=user, since=since, upper=upper, limit=limit))

    async def search(
        self, keys: list[str], query: str, before: int | None, limit: int, floors: Mapping[str, int] | None = None
    ) -> SearchPage:
        upper = before if before is not None else MAX_SEQ
        read = partial(sqlite_reads.search, keys=keys, query=query, upper=upper, limit=limit, floors=floors)
        return await self._read(read)


def _run_outcomes(outcomes: list[Callable[[], None]]) -> None:
    for outcome in outcomes:
        try:
            outcome()
        except Exception:
            log.exception("a store callback failed")
