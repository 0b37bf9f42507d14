"""What the server needs from a store: the record types, and the message and account protocols.

A store assigns sequence numbers, keeps messages, memberships, users and login
sessions, and answers history and replay queries. Appends are asynchronous:
the store calls ``done`` on the event loop once the message is stored, in
sequence order, and only then does the server ack the sender and deliver it.

Two protocols, because two kinds of callers use them: ``MessageStore`` (the
chat service: messages, memberships, presence bookkeeping) and
``AccountStore`` (the account service: accounts, login sessions, the change
feed that the admin CLI writes to). ``Store`` is both, plus the life cycle.
Implementations: ``memory_store.MemoryStore`` (``--store memory``) and
``sqlite_store.SqliteStore`` (durable, the default). Nothing in this module
depends on either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .server_frames import Message

# Kinds of account change in the change feed (``auth_events``).
USER_ADDED = "user_added"
USER_REMOVED = "user_removed"
PASSWORD_CHANGED = "password_changed"  # every login session of the user ends with it
LOGIN_REVOKED = "login_revoked"


class StoreError(Exception):
    """The store could not do what was asked; the operation had no effect."""


@dataclass(slots=True)
class Draft:
    """A message accepted from a client but not yet stored. ``ts`` is seconds since the epoch.

    ``members`` is set for a group conversation (its sorted member set); ``mentions`` as on ``Message``.
    """

    sender: str
    text: str
    ts: float
    client_id: str
    to: str | None = None
    room: str | None = None
    members: tuple[str, ...] | None = None
    mentions: tuple[str, ...] = ()

    def stored(self, seq: int) -> Message:
        """The message this draft becomes once stored as ``seq``."""
        return Message(
            seq, self.sender, self.text, self.ts, self.client_id, self.to, self.room, self.members, self.mentions
        )


@dataclass(slots=True)
class AppendResult:
    """What happened to a draft: stored as ``message``, already stored (``duplicate``), or ``error``."""

    message: Message | None
    duplicate: bool = False
    error: str | None = None


@dataclass(slots=True)
class Replay:
    """Messages for a resuming session, oldest first; ``truncated`` when older ones were left out."""

    messages: list[Message]
    truncated: bool
    last_seq: int


@dataclass(slots=True)
class SearchPage:
    """Search results, newest first. ``next`` is what to pass as ``before`` for older ones (None: no more)."""

    messages: list[Message]
    next: int | None


@dataclass(frozen=True, slots=True)
class AuthEvent:
    """One row of the account change feed; ``kind`` is one of the constants above."""

    event_id: int
    kind: str
    user: str
    login_id: str | None


@dataclass(frozen=True, slots=True)
class AccountRow:
    """An account as stored; ``password_hash`` is None for guests and removed accounts."""

    name: str
    password_hash: str | None
    guest: bool
    removed: bool


@dataclass(frozen=True, slots=True)
class LoginRow:
    """An open login session: the ``login_id`` inside a token, whose it is, and its expiry (epoch seconds)."""

    login_id: str
    user: str
    expires: float


@dataclass(slots=True)
class Snapshot:
    """What the server loads at start: users, rooms, memberships, direct-conversation partners, accounts."""

    last_seq: int = 0
    users: dict[str, int] = field(default_factory=dict)  # name -> offline_since_seq
    rooms: list[str] = field(default_factory=list)
    memberships: list[tuple[str, str]] = field(default_factory=list)  # (user, room)
    contacts: list[tuple[str, str]] = field(default_factory=list)
    accounts: list[AccountRow] = field(default_factory=list)
    logins: list[LoginRow] = field(default_factory=list)
    last_auth_event: int = 0
    groups: list[tuple[str, ...]] = field(default_factory=list)  # member sets of group conversations
    read_positions: list[tuple[str, str, int]] = field(default_factory=list)  # (user, conversation key, seq)
    recent_seqs: dict[str, list[int]] = field(default_factory=dict)  # key -> its newest seqs, ascending
    mentions: list[tuple[str, str, int]] = field(default_factory=list)  # (user or "@room", key, seq), by seq


AppendCallback = Callable[[AppendResult], None]


class StoreObserver(Protocol):
    """Receives store events for metrics; may be called from a store thread."""

    def store_committed(self, seconds: float, batch_size: int) -> None: ...

    def store_failed(self) -> None: ...


class MessageStore(Protocol):
    """Messages, memberships and presence bookkeeping. Reads are coroutines that never block the loop."""

    def append(self, draft: Draft, done: AppendCallback) -> None:
        """Store a message; ``done`` is called on the event loop, in sequence order."""
        ...

    def set_membership(self, user: str, room: str, member: bool, seq: int) -> None:
        """Record a join (``member``) or leave; ``seq`` is the last sequence number at that moment."""
        ...

    def set_offline_since(self, user: str, seq: int) -> None:
        """Record the last sequence number a user could have seen live when their last session closed."""
        ...

    async def history(
        self,
        viewer: str,
        room: str | None,
        with_user: str | None,
        before: int | None,
        limit: int,
        members: tuple[str, ...] | None = None,
    ) -> tuple[list[Message], bool]:
        """Messages of a room or conversation (``members``: a group conversation) older than ``before``,
        newest first, and whether more exist."""
        ...

    async def replay(self, user: str, since: int, below: int | None, limit: int) -> Replay:
        """Messages addressed to ``user`` with ``since < seq`` (and ``seq < below`` when given)."""
        ...

    def set_read_position(self, user: str, key: str, seq: int) -> None:
        """Record that ``user`` has read conversation ``key`` up to ``seq`` (a position never moves back)."""
        ...

    async def search(self, keys: list[str], query: str, before: int | None, limit: int) -> SearchPage:
        """Messages of the conversations ``keys`` matching ``query``, newest first, below ``before``."""
        ...


class AccountStore(Protocol):
    """Accounts and login sessions; every change is also appended to the change feed."""

    async def create_user(self, name: str, password_hash: str | None, guest: bool) -> bool:
        """Add an account once committed; False when the name is or was taken."""
        ...

    async def set_password(self, name: str, password_hash: str) -> bool:
        """Replace a password and end every login session of the user."""
        ...

    async def remove_user(self, name: str) -> bool:
        """Close an account for good (the name is never reused)."""
        ...

    async def open_login(self, login_id: str, user: str, expires: float) -> None:
        """Record a login session (the ``login_id`` inside a token)."""
        ...

    async def revoke_login(self, login_id: str) -> None:
        """End one login session (logout)."""
        ...

    async def auth_events_after(self, event_id: int) -> list[AuthEvent]:
        """Account changes recorded after ``event_id``, including those made by the admin CLI."""
        ...

    async def account(self, name: str) -> AccountRow | None:
        """One account as stored."""
        ...


class Store(MessageStore, AccountStore, Protocol):
    """A whole store: both protocols, and its life cycle."""

    observer: StoreObserver | None

    def load(self) -> Snapshot:
        """Open the store and read the start-up snapshot (called once, on the serving loop)."""
        ...

    @property
    def healthy(self) -> bool:
        """False while the store cannot write (the server stops reporting ready)."""
        ...

    @property
    def queue_depth(self) -> int:
        """Writes waiting for their transaction."""
        ...

    async def close(self) -> None:
        """Finish pending writes and release files."""
        ...
