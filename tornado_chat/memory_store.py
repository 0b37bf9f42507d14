"""The in-memory store (``--store memory``): fast, and forgotten on exit. For demos, tests and benchmarks.

Appends complete at once, on the caller's stack. It keeps the newest
``max_messages`` messages for replay and as many per room or conversation for
history; older ones are dropped in chunks. Edits and deletes change the kept
message in place. Search looks for each term as a substring of the kept
messages as they now stand (a deleted one has no text to find), ignoring case
and accents (no word boundaries, no index): enough for tests and demos, not
for a big history.
"""

from __future__ import annotations

import bisect
import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import TypeVar

from .conversations import is_group, people_of, room_key, room_of, thread_key
from .names import name_key
from .search_terms import fold, split_terms
from .server_frames import HISTORY_BUDGET_BYTES, Message, history_entry_bytes
from .store import (
    PASSWORD_CHANGED,
    USER_ADDED,
    USER_DISABLED,
    USER_ENABLED,
    USER_REMOVED,
    AccountRow,
    AppendCallback,
    AppendResult,
    AuditEntry,
    AuthEvent,
    BanChange,
    ChangeCallback,
    ChangeResult,
    Draft,
    MembershipChange,
    MessageChange,
    ModerationSnapshot,
    Replay,
    RoleChange,
    RoomSettings,
    RoomWrite,
    SearchPage,
    Snapshot,
    StoreObserver,
)
from .unread import UNREAD_COUNT_CAP

# The memory store keeps this many newest messages; older ones leave history.
MEMORY_STORE_MAX_MESSAGES = 100_000

T = TypeVar("T")


class MemoryStore:
    """A ``store.Store`` in this process's memory (see the module docstring)."""

    def __init__(self, max_messages: int = MEMORY_STORE_MAX_MESSAGES) -> None:
        self.observer: StoreObserver | None = None
        self._max_messages = max_messages
        self._log: list[Message] = []
        self._threads: dict[str, list[Message]] = {}
        self._by_client_id: dict[tuple[str, str], Message] = {}
        self._last_seq = 0
        self._users: dict[str, int] = {}
        self._accounts: dict[str, AccountRow] = {}
        # Every name ever taken, by its key: a name is never given out again, in any case.
        self._name_keys: set[str] = set()
        self._events: list[AuthEvent] = []
        # room -> {user: seq at join}; a member's replay covers room messages after that seq.
        self._members: dict[str, dict[str, int]] = {}
        self._rooms: dict[str, RoomSettings] = {}
        # room -> (position, last audit entry) when it was made: where its history and audit log start.
        self._made: dict[str, tuple[int, int]] = {}
        self._roles: dict[tuple[str, str], str] = {}  # (room, user) -> role
        self._bans: set[tuple[str, str]] = set()
        self._audit: list[AuditEntry] = []
        self._disabled: set[str] = set()
        # (rev, message) for every change, in order; a message changed again shows its newer rev.
        self._changes: list[tuple[int, Message]] = []
        self._read_positions: dict[tuple[str, str], int] = {}

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
            moderation=ModerationSnapshot(
                rooms=[
                    RoomSettings(name, settings.private, settings.topic, self._made[name][0])
                    for name in self._members
                    for settings in [self._rooms.get(name, RoomSettings(name, False, ""))]
                ],
                roles=[RoleChange(room, user, role) for (room, user), role in self._roles.items()],
                bans=sorted(self._bans),
                disabled=set(self._disabled),
            ),
            groups=[people_of(key) for key in self._threads if is_group(key)],
            read_positions=[(user, key, seq) for (user, key), seq in self._read_positions.items()],
            recent_seqs={key: [m.seq for m in thread[-UNREAD_COUNT_CAP:]] for key, thread in self._threads.items()},
            mentions=[
                (name, key, m.seq) for key, thread in self._threads.items() for m in thread for name in m.mentions
            ],
        )

    def _trim(self, messages: list[T]) -> list[T]:
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
        message = draft.stored(self._last_seq)
        self._log.append(message)
        self._by_client_id[key] = message
        conversation = thread_key(draft.sender, draft.room, draft.to, draft.members)
        self.set_read_position(draft.sender, conversation, message.seq)
        thread = self._threads.setdefault(conversation, [])
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
        for room in [room for room, members in self._members.items() if name in members]:
            self.set_membership(name, room, False, self._last_seq)
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

    async def set_disabled(self, name: str, disabled: bool, actor: str) -> bool:
        account = self._accounts.get(name)
        if account is None or account.removed or (name in self._disabled) == disabled:
            return False
        if disabled:
            self._disabled.add(name)
        else:
            self._disabled.discard(name)
        self._event(USER_DISABLED if disabled else USER_ENABLED, name)
        self._record(AuditEntry(time.time(), actor, "disable" if disabled else "enable", None, name))
        return True

    def set_membership(self, user: str, room: str, member: bool, seq: int) -> None:
        if member:
            self._make_room(room)
            self._members[room].setdefault(user, seq)
            return
        members = self._members.get(room, {})
        members.pop(user, None)
        self._roles.pop((room, user), None)
        self._read_positions.pop((user, room_key(room)), None)  # a return starts read up to then, as a join
        if not members:
            self._drop_room(room)

    def _make_room(self, room: str) -> None:
        """A room comes to be: it starts at the current position and audit entry, with no roles or bans."""
        if room in self._members:
            return
        self._members[room] = {}
        self._made[room] = (self._last_seq, self._audit[-1].entry_id if self._audit else 0)

    def _drop_room(self, room: str) -> None:
        """A room without members goes, with its settings, roles and bans (its messages stay)."""
        for table in (self._members, self._rooms, self._made):
            table.pop(room, None)
        for key in [key for key in self._roles if key[0] == room]:
            del self._roles[key]
        self._bans = {ban for ban in self._bans if ban[0] != room}

    def record(self, writes: Sequence[RoomWrite]) -> None:
        for write in writes:
            self._record(write)

    def _record(self, write: RoomWrite) -> None:
        match write:
            case RoomSettings():
                self._make_room(write.room)
                self._rooms[write.room] = write
            case RoleChange(role=None):
                self._roles.pop((write.room, write.user), None)
            case RoleChange(role=str(role)):
                self._roles[(write.room, write.user)] = role
            case BanChange(banned=True):
                self._bans.add((write.room, write.user))
            case BanChange():
                self._bans.discard((write.room, write.user))
            case AuditEntry():
                last_id = self._audit[-1].entry_id if self._audit else 0
                self._audit.append(dataclasses.replace(write, entry_id=last_id + 1))
                self._trim(self._audit)
            case MembershipChange():
                self.set_membership(write.user, write.room, write.member, write.seq)

    def _find(self, seq: int) -> Message | None:
        index = bisect.bisect_left(self._log, seq, key=_seq)
        return self._log[index] if index < len(self._log) and self._log[index].seq == seq else None

    def change(self, change: MessageChange, done: ChangeCallback) -> None:
        message = self._find(change.seq)
        if message is None:
            done(ChangeResult(None, refused="missing"))
        elif message.deleted:
            done(ChangeResult(message, refused="deleted" if change.text is not None else None))
        elif change.text == message.text:
            done(ChangeResult(message))
        else:
            self._last_seq += 1
            message.rev = self._last_seq
            previous = message.mentions
            if change.text is None:
                message.text, message.deleted, message.mentions = "", True, ()
                if change.moderated:
                    entry = AuditEntry(change.at, change.editor, "delete", message.room, message.sender, change.seq)
                    self._record(entry)
            else:
                message.text, message.edited, message.mentions = change.text, change.at, change.mentions
            self._changes.append((message.rev, message))
            self._trim(self._changes)
            done(ChangeResult(message, changed=True, previous_mentions=previous))

    async def message(self, seq: int) -> Message | None:
        return self._find(seq)

    async def audit_log(self, room: str | None, before: int | None, limit: int) -> tuple[list[AuditEntry], bool]:
        lower = self._made[room][1] if room is not None and room in self._made else 0  # this room's, not before
        matched = [
            entry
            for entry in reversed(self._audit)
            if (room is None or entry.room == room)
            and (before is None or entry.entry_id < before)
            and entry.entry_id > lower
        ]
        return matched[:limit], len(matched) > limit

    def set_offline_since(self, user: str, seq: int) -> None:
        self._users[user] = seq

    def set_read_position(self, user: str, key: str, seq: int) -> None:
        if seq > self._read_positions.get((user, key), 0):
            self._read_positions[(user, key)] = seq

    def _visible(self, viewer: str, message: Message) -> bool:
        if message.room is not None:
            joined = self._members.get(message.room, {}).get(viewer)
            return joined is not None and message.seq > joined
        if message.members is not None:
            return viewer in message.members
        return viewer in (message.sender, message.to)

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
        thread = self._threads.get(thread_key(viewer, room, with_user, members), [])
        lower = self._floor(room_key(room), since) if room is not None else since
        first = bisect.bisect_right(thread, lower, key=_seq)
        end = len(thread) if before is None else bisect.bisect_left(thread, before, key=_seq)
        page: list[Message] = []
        used = 0
        for message in reversed(thread[max(first, end - limit) : end]):
            used += history_entry_bytes(message)  # as the message now stands: edited, or a tombstone
            if page and used > HISTORY_BUDGET_BYTES:
                break
            page.append(message)
        return page, end - len(page) > first

    def _floor(self, key: str, since: int) -> int:
        """Where a conversation's messages start: after ``since``, and a room's after where it was made."""
        room = room_of(key)
        return max(since, self._made.get(room, (0, 0))[0]) if room is not None else since

    async def replay(self, user: str, since: int, below: int | None, limit: int) -> Replay:
        start = bisect.bisect_right(self._log, since, key=_seq)
        end = len(self._log) if below is None else bisect.bisect_left(self._log, below, key=_seq)
        matched = [m for m in self._log[start:end] if self._visible(user, m)]
        # Older messages changed since: replayed as their change, at its position (their newest change only).
        upper = below if below is not None else self._last_seq + 1
        first = bisect.bisect_right(self._changes, since, key=_rev)
        matched += [
            m
            for rev, m in self._changes[first:]
            if rev < upper and m.rev == rev and m.seq <= since and self._visible(user, m)
        ]
        matched.sort(key=lambda m: m.seq if m.seq > since else m.rev)
        truncated = len(matched) > limit
        return Replay(matched[-limit:] if truncated else matched, truncated, self._last_seq)

    async def search(
        self, keys: list[str], query: str, before: int | None, limit: int, floors: Mapping[str, int] | None = None
    ) -> SearchPage:
        terms = split_terms(query)
        wanted = [fold(term) for term in (*terms.words, *terms.substrings, *terms.short)]
        if not wanted:
            return SearchPage([], None)
        found = [
            message
            for key in keys
            for floor in [self._floor(key, (floors or {}).get(key, 0))]
            for message in self._threads.get(key, [])
            if message.seq > floor
            and (before is None or message.seq < before)
            and all(term in fold(message.text) for term in wanted)
        ]
        found.sort(key=_seq, reverse=True)
        return SearchPage(found[:limit], found[limit - 1].seq if len(found) > limit else None)

    async def close(self) -> None:
        return None


def _seq(message: Message) -> int:
    return message.seq


def _rev(change: tuple[int, Message]) -> int:
    return change[0]
