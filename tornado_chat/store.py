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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .server_frames import Message

# Kinds of account change in the change feed (``auth_events``).
USER_ADDED = "user_added"
USER_REMOVED = "user_removed"
PASSWORD_CHANGED = "password_changed"  # every login session of the user ends with it
LOGIN_REVOKED = "login_revoked"
USER_DISABLED = "user_disabled"  # every login session of the user ends with it
USER_ENABLED = "user_enabled"
ADMIN_GRANTED = "admin_granted"
ADMIN_REVOKED = "admin_revoked"


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


@dataclass(frozen=True, slots=True)
class RoomSettings:
    """A room's kind and topic (a room without settings is public, with no topic).

    ``first_seq`` is the position at which the room was made, as loaded: its history starts after it, so that a
    room made again under the name of one that emptied (and was deleted) shows nothing of the earlier one. A
    write leaves it to the store, which sets it when it stores a new room.
    """

    room: str
    private: bool
    topic: str
    first_seq: int = 0


@dataclass(frozen=True, slots=True)
class RoleChange:
    """A member's role in a room: ``owner``, ``moderator``, or None for a plain member."""

    room: str
    user: str
    role: str | None


@dataclass(frozen=True, slots=True)
class BanChange:
    """A user banned from a room (``banned``) or let back in; ``at`` is seconds since the epoch."""

    room: str
    user: str
    banned: bool
    by: str
    at: float


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One moderation action: who (``actor``) did what (``action``) to whom (``target``), where, when.

    ``at`` is seconds since the epoch; ``seq`` names the message of a delete; ``entry_id`` is given by the store.
    """

    at: float
    actor: str
    action: str
    room: str | None = None
    target: str | None = None
    seq: int | None = None
    entry_id: int = 0


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """A user made a member of a room (``member``) or no longer; ``seq`` is the last sequence number then."""

    room: str
    user: str
    member: bool
    seq: int


# Room state and audit writes: queued, and stored in order with messages.
RoomWrite = RoomSettings | RoleChange | BanChange | AuditEntry | MembershipChange


@dataclass(frozen=True, slots=True)
class MessageChange:
    """An edit (``text``) or a delete (``text`` None) of message ``seq`` by ``editor``, at ``at`` (epoch s).

    A ``moderated`` change (someone else's message deleted) is recorded in the audit log with it. ``mentions``
    are those of the new text (``Message.mentions``); a delete mentions nobody.
    """

    seq: int
    editor: str
    text: str | None
    at: float
    moderated: bool = False
    mentions: tuple[str, ...] = ()


@dataclass(slots=True)
class ChangeResult:
    """What became of a change: the message as it now stands, whether the change did anything, or why not.

    ``refused`` is ``missing`` (no such message) or ``deleted`` (an edit of a deleted message); ``error`` means
    the store failed and nothing was changed. ``previous_mentions`` are the mentions the message had before
    the change (for the unread counts).
    """

    message: Message | None
    changed: bool = False
    refused: str | None = None
    error: str | None = None
    previous_mentions: tuple[str, ...] = ()


@dataclass(slots=True)
class ModerationSnapshot:
    """Room settings, roles, bans and account flags, as loaded at start."""

    rooms: list[RoomSettings] = field(default_factory=list)
    roles: list[RoleChange] = field(default_factory=list)
    bans: list[tuple[str, str]] = field(default_factory=list)  # (room, user)
    admins: set[str] = field(default_factory=set)
    disabled: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Snapshot:
    """What the server loads at start: users, rooms, memberships, direct-conversation partners, accounts, room
    settings and roles (``moderation``), group conversations, read positions and what unread counts need."""

    last_seq: int = 0
    users: dict[str, int] = field(default_factory=dict)  # name -> offline_since_seq
    rooms: list[str] = field(default_factory=list)
    memberships: list[tuple[str, str]] = field(default_factory=list)  # (user, room)
    contacts: list[tuple[str, str]] = field(default_factory=list)
    accounts: list[AccountRow] = field(default_factory=list)
    logins: list[LoginRow] = field(default_factory=list)
    last_auth_event: int = 0
    moderation: ModerationSnapshot = field(default_factory=ModerationSnapshot)
    groups: list[tuple[str, ...]] = field(default_factory=list)  # member sets of group conversations
    read_positions: list[tuple[str, str, int]] = field(default_factory=list)  # (user, conversation key, seq)
    recent_seqs: dict[str, list[int]] = field(default_factory=dict)  # key -> its newest seqs, ascending
    mentions: list[tuple[str, str, int]] = field(default_factory=list)  # (user or "@room", key, seq), by seq


AppendCallback = Callable[[AppendResult], None]
ChangeCallback = Callable[[ChangeResult], None]


class StoreObserver(Protocol):
    """Receives store events for metrics; may be called from a store thread."""

    def store_committed(self, seconds: float, batch_size: int) -> None: ...

    def store_failed(self) -> None: ...


class RoomStore(Protocol):
    """Room settings, roles, bans, the audit log, and changes to messages (edits and deletes)."""

    def record(self, writes: Sequence[RoomWrite]) -> None:
        """Queue what one action changed (settings, roles, bans, memberships, its audit entry): stored together,
        in one transaction, in order with the messages and memberships around them."""
        ...

    def change(self, change: MessageChange, done: ChangeCallback) -> None:
        """Edit or delete a message; ``done`` is called on the event loop once stored, in sequence order.

        A change that would change nothing (the same text, a message deleted already) stores nothing.
        """
        ...

    async def message(self, seq: int) -> Message | None:
        """One message as it now stands."""
        ...

    async def audit_log(self, room: str | None, before: int | None, limit: int) -> tuple[list[AuditEntry], bool]:
        """Audit entries (of one room, or all) with ids below ``before``, newest first, and whether more exist."""
        ...


class MessageStore(RoomStore, Protocol):
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
        since: int = 0,
        members: tuple[str, ...] | None = None,
    ) -> tuple[list[Message], bool]:
        """Messages of a room or conversation (``members``: a group conversation) older than ``before``, newest
        first, and whether more exist.

        Only messages after ``since`` (a room's ``first_seq``, from the hub) and after the position at which the
        store made the room: a room made again under a freed name shows nothing of the earlier one, even while
        the store has not yet stored the new room.
        """
        ...

    async def replay(self, user: str, since: int, below: int | None, limit: int) -> Replay:
        """Messages addressed to ``user`` with ``since < seq`` (and ``seq < below`` when given)."""
        ...

    def set_read_position(self, user: str, key: str, seq: int) -> None:
        """Record that ``user`` has read conversation ``key`` up to ``seq`` (a position never moves back)."""
        ...

    async def search(
        self, keys: list[str], query: str, before: int | None, limit: int, floors: Mapping[str, int] | None = None
    ) -> SearchPage:
        """Messages of the conversations ``keys`` matching ``query``, newest first, below ``before``.

        A room's messages count from where it was made, as in ``history``: above ``floors[key]`` (its
        ``first_seq``, from the hub) and above where the store made it.
        """
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

    async def set_disabled(self, name: str, disabled: bool, actor: str) -> bool:
        """Disable an account (its login sessions end) or enable it again; audited as done by ``actor``.

        False when there is no such account or it is in that state already.
        """
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
