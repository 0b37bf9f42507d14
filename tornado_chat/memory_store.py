"""The in-memory store (``--store memory``): fast, and forgotten on exit. For demos, tests and benchmarks.

Appends complete at once, on the caller's stack. It keeps the newest
``max_messages`` messages for replay and as many per room or conversation for
history; older ones are dropped in chunks.
"""

from __future__ import annotations

import bisect

from .names import name_key
from .server_frames import HISTORY_BUDGET_BYTES, Message, history_entry_bytes
from .store import (
    PASSWORD_CHANGED,
    USER_ADDED,
    USER_REMOVED,
    AccountRow,
    AppendCallback,
    AppendResult,
    AuthEvent,
    Draft,
    Replay,
    Snapshot,
    StoreObserver,
)

# The memory store keeps this many newest messages; older ones leave history.
MEMORY_STORE_MAX_MESSAGES = 100_000


class MemoryStore:
    """A ``store.Store`` in this process's memory (see the module docstring)."""

    def __init__(self, max_messages: int = MEMORY_STORE_MAX_MESSAGES) -> None:
        self.observer: StoreObserver | None = None
        self._max_messages = max_messages
        self._log: list[Message] = []
        self._threads: dict[tuple[str, ...], list[Message]] = {}
        self._by_client_id: dict[tuple[str, str], Message] = {}
        self._last_seq = 0
        self._users: dict[str, int] = {}
        self._accounts: dict[str, AccountRow] = {}
        # Every name ever taken, by its key: a name is never given out again, in any case.
        self._name_keys: set[str] = set()
        self._events: list[AuthEvent] = []
        # room -> {user: seq at join}; a member's replay covers room messages after that seq.
        self._members: dict[str, dict[str, int]] = {}

    @property
    def healthy(self) -> bool:
        return True

    @property
    def queue_depth(self) -> int:
        return 0

    def load(self) -> Snapshot:
        return Snapshot(
            last_seq=self._last_seq,
            users=dict(self._users),
            rooms=list(self._members),
            memberships=[(u, r) for r, members in self._members.items() for u in members],
            accounts=list(self._accounts.values()),
            last_auth_event=len(self._events),
        )

    @staticmethod
    def _thread_key(viewer: str, room: str | None, other: str | None) -> tuple[str, ...]:
        if room is not None:
            return ("room", room)
        return ("direct", *sorted((viewer, other or "")))

    def _trim(self, messages: list[Message]) -> list[Message]:
        """Drop the oldest tenth once a list is over the cap, so trimming costs O(1) per append on average."""
        if len(messages) <= self._max_messages:
            return []
        cut = max(1, self._max_messages // 10)
        dropped = messages[:cut]
        del messages[:cut]
        return dropped

    def append(self, draft: Draft, done: AppendCallback) -> None:
        key = (draft.sender, draft.client_id)
        existing = self._by_client_id.get(key)
        if existing is not None:
            done(AppendResult(existing, duplicate=True))
            return
        self._last_seq += 1
        message = Message(self._last_seq, draft.sender, draft.text, draft.ts, draft.client_id, draft.to, draft.room)
        self._log.append(message)
        self._by_client_id[key] = message
        thread = self._threads.setdefault(self._thread_key(draft.sender, draft.room, draft.to), [])
        thread.append(message)
        self._trim(thread)
        for old in self._trim(self._log):
            self._by_client_id.pop((old.sender, old.client_id), None)
        done(AppendResult(message))

    def _event(self, kind: str, user: str, login_id: str | None = None) -> None:
        self._events.append(AuthEvent(len(self._events) + 1, kind, user, login_id))

    async def create_user(self, name: str, password_hash: str | None, guest: bool) -> bool:
        if name_key(name) in self._name_keys:
            return False
        self._name_keys.add(name_key(name))
        self._accounts[name] = AccountRow(name, password_hash, guest, removed=False)
        self._users[name] = self._last_seq
        self._event(USER_ADDED, name)
        return True

    async def set_password(self, name: str, password_hash: str) -> bool:
        account = self._accounts.get(name)
        if account is None or account.removed or account.guest:
            return False
        self._accounts[name] = AccountRow(name, password_hash, False, removed=False)
        self._event(PASSWORD_CHANGED, name)
        return True

    async def remove_user(self, name: str) -> bool:
        account = self._accounts.get(name)
        if account is None or account.removed:
            return False
        self._accounts[name] = AccountRow(name, None, account.guest, removed=True)
        for room, members in list(self._members.items()):
            members.pop(name, None)
            if not members:
                del self._members[room]
        self._event(USER_REMOVED, name)
        return True

    async def open_login(self, login_id: str, user: str, expires: float) -> None:
        return None

    async def revoke_login(self, login_id: str) -> None:
        return None

    async def auth_events_after(self, event_id: int) -> list[AuthEvent]:
        return self._events[event_id:]

    async def account(self, name: str) -> AccountRow | None:
        return self._accounts.get(name)

    def set_membership(self, user: str, room: str, member: bool, seq: int) -> None:
        members = self._members.setdefault(room, {})
        if member:
            members.setdefault(user, seq)
        else:
            members.pop(user, None)
            if not members:
                del self._members[room]  # a room goes with its last member

    def set_offline_since(self, user: str, seq: int) -> None:
        self._users[user] = seq

    def _visible(self, viewer: str, message: Message) -> bool:
        if message.room is not None:
            joined = self._members.get(message.room, {}).get(viewer)
            return joined is not None and message.seq > joined
        return viewer in (message.sender, message.to)

    async def history(
        self, viewer: str, room: str | None, with_user: str | None, before: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        thread = self._threads.get(self._thread_key(viewer, room, with_user), [])
        end = len(thread) if before is None else bisect.bisect_left(thread, before, key=_seq)
        page: list[Message] = []
        used = 0
        for message in reversed(thread[max(0, end - limit) : end]):
            used += history_entry_bytes(message)
            if page and used > HISTORY_BUDGET_BYTES:
                break
            page.append(message)
        return page, end - len(page) > 0

    async def replay(self, user: str, since: int, below: int | None, limit: int) -> Replay:
        start = bisect.bisect_right(self._log, since, key=_seq)
        end = len(self._log) if below is None else bisect.bisect_left(self._log, below, key=_seq)
        matched = [m for m in self._log[start:end] if self._visible(user, m)]
        truncated = len(matched) > limit
        return Replay(matched[-limit:] if truncated else matched, truncated, self._last_seq)

    async def close(self) -> None:
        return None


def _seq(message: Message) -> int:
    return message.seq
