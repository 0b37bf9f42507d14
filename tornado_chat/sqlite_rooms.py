"""SQL for room settings, roles, bans, the audit log, account flags, and edits and deletes of messages.

Run by the SQLite store's threads (each write inside the writer's transaction,
each read inside a reader's) and by the admin CLI. A change to a message
updates the message row to its current text (empty once deleted) and its
mentions, and records in ``message_changes`` when it happened and its position
(``rev``) in the sequence shared with messages, so that history shows the
current state and a resume replays the change. In the same transaction the
search indexes drop the old text and take the new one, and the unread
mentions (``message_mentions``) follow the new text.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from . import sqlite_accounts, sqlite_conversations, sqlite_messages, sqlite_search
from .server_frames import Message, history_entry_bytes
from .sqlite_messages import last_position, row_to_message
from .store import (
    ADMIN_GRANTED,
    ADMIN_REVOKED,
    USER_DISABLED,
    USER_ENABLED,
    AuditEntry,
    BanChange,
    ChangeResult,
    MembershipChange,
    MessageChange,
    ModerationSnapshot,
    RoleChange,
    RoomSettings,
    RoomWrite,
)

# The audit action of an account disabled or enabled, and of an admin flag set or cleared.
DISABLE = "disable"
ENABLE = "enable"
ADMIN_ON = "admin_on"
ADMIN_OFF = "admin_off"

_MESSAGE_COLUMNS = (
    "m.seq, m.sender, m.text, m.ts, m.client_id, m.recipient, m.room, m.thread, m.mentions, c.rev, c.edited_at,"
    " c.deleted_at"
)
# How many message columns row_to_message reads, before the change's.
_ROW_COLUMNS = 9
_MESSAGE_SQL = f"""
    SELECT {_MESSAGE_COLUMNS} FROM messages AS m LEFT JOIN message_changes AS c ON c.seq = m.seq WHERE m.seq = ?
"""  # noqa: S608 - columns only
# Messages up to ``since`` that changed after it, and that ``user`` could have seen (as REPLAY_SQL decides).
_CHANGED_SINCE_SQL = f"""
    SELECT {_MESSAGE_COLUMNS} FROM message_changes AS c JOIN messages AS m ON m.seq = c.seq
    WHERE c.rev > :since AND c.rev < :upper AND m.seq <= :since AND (
        m.recipient = :user
        OR (m.sender = :user AND m.recipient IS NOT NULL)
        OR EXISTS (SELECT 1 FROM memberships AS ms WHERE ms.user = :user AND ms.room = m.room AND m.seq > ms.joined_seq)
        OR EXISTS (SELECT 1 FROM group_members AS gm WHERE gm.user = :user AND gm.thread = m.thread)
    ) ORDER BY c.rev DESC LIMIT :limit
"""  # noqa: S608 - columns only
_AUDIT_COLUMNS = "id, at, actor, action, room, target, seq"
_LOOKUP_CHUNK = 500


def _changed(row: Sequence[Any]) -> Message:
    """A message from a row of the message columns followed by its change's (rev, edited_at, deleted_at)."""
    message = row_to_message(row[:_ROW_COLUMNS])
    rev, edited_at, deleted_at = row[_ROW_COLUMNS:]
    if rev is not None:
        message.rev = rev
        message.edited = edited_at
        message.deleted = deleted_at is not None
    return message


# ---------------------------------------------------------------- rooms


def record(connection: sqlite3.Connection, writes: Sequence[RoomWrite], now: float) -> None:
    """Store what one action changed, in order."""
    for write in writes:
        _record(connection, write, now)


def _record(connection: sqlite3.Connection, write: RoomWrite, now: float) -> None:
    match write:
        case RoomSettings():
            sqlite_messages.create_room(connection, write.room, now)
            connection.execute(
                "UPDATE rooms SET private = ?, topic = ? WHERE name = ?", (int(write.private), write.topic, write.room)
            )
        case RoleChange(role=None):
            connection.execute("DELETE FROM room_roles WHERE room = ? AND user = ?", (write.room, write.user))
        case RoleChange():
            connection.execute(
                "INSERT INTO room_roles (room, user, role) VALUES (?, ?, ?)"
                " ON CONFLICT (room, user) DO UPDATE SET role = excluded.role",
                (write.room, write.user, write.role),
            )
        case BanChange(banned=True):
            connection.execute(
                "INSERT INTO room_bans (room, user, banned_by, banned_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (write.room, write.user, write.by, write.at),
            )
        case BanChange():
            connection.execute("DELETE FROM room_bans WHERE room = ? AND user = ?", (write.room, write.user))
        case AuditEntry():
            _audit(connection, write)
        case MembershipChange(member=True):
            sqlite_messages.join_room(connection, user=write.user, room=write.room, seq=write.seq, now=now)
        case MembershipChange():
            sqlite_messages.leave_room(connection, user=write.user, room=write.room)


def drop_empty_rooms(connection: sqlite3.Connection) -> int:
    """Delete every room without members, with its roles and bans (an older version could leave them so when it
    removed an account); returns how many rooms went."""
    dropped = connection.execute(
        "DELETE FROM rooms WHERE NOT EXISTS (SELECT 1 FROM memberships WHERE memberships.room = rooms.name)"
    ).rowcount
    connection.execute("DELETE FROM room_roles WHERE room NOT IN (SELECT name FROM rooms)")
    connection.execute("DELETE FROM room_bans WHERE room NOT IN (SELECT name FROM rooms)")
    return dropped


def load(connection: sqlite3.Connection) -> ModerationSnapshot:
    """Room settings, the roles of current members, bans, admins and disabled accounts."""
    snapshot = ModerationSnapshot()
    snapshot.rooms = [
        RoomSettings(name, bool(private), topic, first_seq)
        for name, private, topic, first_seq in connection.execute("SELECT name, private, topic, first_seq FROM rooms")
    ]
    snapshot.roles = [
        RoleChange(*row)
        for row in connection.execute(
            "SELECT r.room, r.user, r.role FROM room_roles AS r JOIN memberships AS m USING (room, user)"
        )
    ]
    snapshot.bans = list(connection.execute("SELECT room, user FROM room_bans"))
    admins = connection.execute("SELECT name FROM users WHERE admin AND removed_at IS NULL")
    snapshot.admins = {name for (name,) in admins}
    disabled = connection.execute("SELECT name FROM users WHERE disabled_at IS NOT NULL")
    snapshot.disabled = {name for (name,) in disabled}
    return snapshot


# ---------------------------------------------------------------- messages


def message(connection: sqlite3.Connection, seq: int) -> Message | None:
    row = connection.execute(_MESSAGE_SQL, (seq,)).fetchone()
    return None if row is None else _changed(row)


def annotate(connection: sqlite3.Connection, messages: list[Message]) -> None:
    """Mark the messages of a history page or a replay that were edited or deleted (their text is current)."""
    by_seq = {m.seq: m for m in messages}
    seqs = list(by_seq)
    for start in range(0, len(seqs), _LOOKUP_CHUNK):
        chunk = seqs[start : start + _LOOKUP_CHUNK]
        marks = ",".join("?" * len(chunk))
        query = f"SELECT seq, rev, edited_at, deleted_at FROM message_changes WHERE seq IN ({marks})"  # noqa: S608
        for seq, rev, edited_at, deleted_at in connection.execute(query, chunk):
            found = by_seq[seq]
            found.rev, found.edited, found.deleted = rev, edited_at, deleted_at is not None


def changed_since(connection: sqlite3.Connection, user: str, since: int, upper: int, limit: int) -> list[Message]:
    """Messages ``user`` could see, with ``seq <= since``, changed at a position in (``since``, ``upper``);
    the newest ``limit`` changes, newest first."""
    params = {"user": user, "since": since, "upper": upper, "limit": limit}
    return [_changed(row) for row in connection.execute(_CHANGED_SINCE_SQL, params)]


def change_message(connection: sqlite3.Connection, change: MessageChange) -> ChangeResult:
    """Edit or delete a message, at the next position; nothing is stored when nothing would change."""
    current = message(connection, change.seq)
    if current is None:
        return ChangeResult(None, refused="missing")
    if current.deleted:
        return ChangeResult(current, refused="deleted" if change.text is not None else None)
    if change.text == current.text:
        return ChangeResult(current)
    rev = last_position(connection) + 1
    previous = current.mentions
    # The search indexes are told the text they hold before the row changes (sqlite_search.reindex).
    sqlite_search.reindex(connection, change.seq, current.text, change.text)
    if change.text is None:
        connection.execute("UPDATE messages SET text = '', mentions = NULL WHERE seq = ?", (change.seq,))
        connection.execute(
            "INSERT INTO message_changes (seq, rev, deleted_at, deleted_by) VALUES (?, ?, ?, ?) ON CONFLICT (seq)"
            " DO UPDATE SET rev = excluded.rev, deleted_at = excluded.deleted_at, deleted_by = excluded.deleted_by",
            (change.seq, rev, change.at, change.editor),
        )
        current.text, current.deleted, current.mentions = "", True, ()
        if change.moderated:
            _audit(connection, AuditEntry(change.at, change.editor, "delete", current.room, current.sender, change.seq))
    else:
        connection.execute(
            "UPDATE messages SET text = ?, mentions = ? WHERE seq = ?",
            (change.text, ",".join(change.mentions) or None, change.seq),
        )
        connection.execute(
            "INSERT INTO message_changes (seq, rev, edited_at) VALUES (?, ?, ?)"
            " ON CONFLICT (seq) DO UPDATE SET rev = excluded.rev, edited_at = excluded.edited_at",
            (change.seq, rev, change.at),
        )
        current.text, current.edited, current.mentions = change.text, change.at, change.mentions
    sqlite_conversations.replace_mentions(connection, current, previous)
    current.rev = rev
    # History pages are cut by their entries' sizes: the entry is now the edited text (with its mentions), or a
    # tombstone.
    connection.execute("UPDATE messages SET size = ? WHERE seq = ?", (history_entry_bytes(current), change.seq))
    return ChangeResult(current, changed=True, previous_mentions=previous)


# ---------------------------------------------------------------- the audit log and account flags


def _audit(connection: sqlite3.Connection, entry: AuditEntry) -> None:
    connection.execute(
        "INSERT INTO audit_log (at, actor, action, room, target, seq) VALUES (?, ?, ?, ?, ?, ?)",
        (entry.at, entry.actor, entry.action, entry.room, entry.target, entry.seq),
    )


def audit_entries(
    connection: sqlite3.Connection, room: str | None, before: int | None, limit: int, *, this_room: bool = True
) -> tuple[list[AuditEntry], bool]:
    """Entries (of ``room``, or all) with ids below ``before``, newest first, and whether more exist.

    ``this_room``: only the entries of the room now called ``room``, not those of an earlier room of that name
    (the ``audit`` frame); the admin CLI reads every entry under the name.
    """
    upper = before if before is not None else 2**63 - 1
    if room is None:
        query = f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?"  # noqa: S608
        rows = connection.execute(query, (upper, limit + 1)).fetchall()
    else:
        floor = connection.execute("SELECT first_audit_id FROM rooms WHERE name = ?", (room,)).fetchone()
        lower = int(floor[0]) if floor is not None and this_room else 0
        query = (
            f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE room = ? AND id < ? AND id > ?"  # noqa: S608
            " ORDER BY id DESC LIMIT ?"
        )
        rows = connection.execute(query, (room, upper, lower, limit + 1)).fetchall()
    entries = [
        AuditEntry(at, actor, action, room_, target, seq, entry_id)
        for entry_id, at, actor, action, room_, target, seq in rows[:limit]
    ]
    return entries, len(rows) > limit


def set_admin(connection: sqlite3.Connection, name: str, admin: bool, actor: str, now: float) -> bool:
    """Make an account a server admin or a plain user again; False when there is no such account or no change."""
    changed = connection.execute(
        "UPDATE users SET admin = ? WHERE name = ? AND removed_at IS NULL AND admin != ?",
        (int(admin), name, int(admin)),
    ).rowcount
    if not changed:
        return False
    sqlite_accounts.record_event(connection, ADMIN_GRANTED if admin else ADMIN_REVOKED, name, now)
    _audit(connection, AuditEntry(now, actor, ADMIN_ON if admin else ADMIN_OFF, None, name))
    return True


def set_disabled(connection: sqlite3.Connection, name: str, disabled: bool, actor: str, now: float) -> bool:
    """Disable an account (its login sessions end; its name stays taken) or enable it again.

    False when there is no such account or it is in that state already.
    """
    condition = "disabled_at IS NULL" if disabled else "disabled_at IS NOT NULL"
    changed = connection.execute(
        f"UPDATE users SET disabled_at = ? WHERE name = ? AND removed_at IS NULL AND {condition}",  # noqa: S608
        (now if disabled else None, name),
    ).rowcount
    if not changed:
        return False
    if disabled:
        connection.execute("UPDATE logins SET revoked_at = ? WHERE user = ? AND revoked_at IS NULL", (now, name))
    sqlite_accounts.record_event(connection, USER_DISABLED if disabled else USER_ENABLED, name, now)
    _audit(connection, AuditEntry(now, actor, DISABLE if disabled else ENABLE, None, name))
    return True
