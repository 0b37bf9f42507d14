"""SQL for accounts and login sessions, shared by the SQLite store's writer thread and the admin CLI.

Every change also appends a row to ``auth_events``; a running server reads
that table every second, so that ``tornado-chat user passwd`` or ``remove``
from another process takes effect on live connections at once. Each function
runs inside the caller's transaction.
"""

from __future__ import annotations

import sqlite3

from . import sqlite_messages
from .names import name_key
from .store import LOGIN_REVOKED, PASSWORD_CHANGED, USER_ADDED, USER_REMOVED, AccountRow, AuthEvent, LoginRow


def _event(connection: sqlite3.Connection, kind: str, user: str, login_id: str | None, now: float) -> None:
    connection.execute(
        "INSERT INTO auth_events (kind, user, login_id, at) VALUES (?, ?, ?, ?)", (kind, user, login_id, now)
    )


def create_user(connection: sqlite3.Connection, name: str, password_hash: str | None, guest: bool, now: float) -> bool:
    """Add an account; False (and no change) when the name, in any case, exists or ever existed."""
    row = connection.execute(
        "INSERT INTO users (name, name_key, created_at, offline_since_seq, password_hash, guest)"
        " VALUES (?, ?, ?, (SELECT coalesce(max(seq), 0) FROM messages), ?, ?) ON CONFLICT DO NOTHING RETURNING name",
        (name, name_key(name), now, password_hash, int(guest)),
    ).fetchone()
    if row is None:
        return False
    _event(connection, USER_ADDED, name, None, now)
    return True


def spelling(connection: sqlite3.Connection, name: str) -> str | None:
    """The stored spelling of the open account that ``name`` names in any case (``Bob`` finds ``bob``), or None."""
    row = connection.execute(
        "SELECT name FROM users WHERE name_key = ? AND removed_at IS NULL", (name_key(name),)
    ).fetchone()
    return str(row[0]) if row is not None else None


def set_password(connection: sqlite3.Connection, name: str, password_hash: str, now: float) -> bool:
    """Replace a user's password and end all their login sessions; False when there is no such user."""
    changed = connection.execute(
        "UPDATE users SET password_hash = ? WHERE name = ? AND removed_at IS NULL AND guest = 0",
        (password_hash, name),
    ).rowcount
    if not changed:
        return False
    connection.execute("UPDATE logins SET revoked_at = ? WHERE user = ? AND revoked_at IS NULL", (now, name))
    _event(connection, PASSWORD_CHANGED, name, None, now)
    return True


def remove_user(connection: sqlite3.Connection, name: str, now: float) -> bool:
    """Close an account for good: its sessions end, its memberships go, its name is never given out again.

    Messages stay in the history of the rooms and conversations they belong to.
    """
    changed = connection.execute(
        "UPDATE users SET removed_at = ?, password_hash = NULL WHERE name = ? AND removed_at IS NULL", (now, name)
    ).rowcount
    if not changed:
        return False
    connection.execute("UPDATE logins SET revoked_at = ? WHERE user = ? AND revoked_at IS NULL", (now, name))
    rooms = [room for (room,) in connection.execute("SELECT room FROM memberships WHERE user = ?", (name,))]
    for room in rooms:  # as if it left each: its roles and read state go, and a room it leaves empty goes
        sqlite_messages.leave_room(connection, user=name, room=room)
    _event(connection, USER_REMOVED, name, None, now)
    return True


def open_login(connection: sqlite3.Connection, login_id: str, user: str, now: float, expires: float) -> None:
    connection.execute(
        "INSERT INTO logins (login_id, user, created_at, expires_at) VALUES (?, ?, ?, ?)",
        (login_id, user, now, expires),
    )


def revoke_login(connection: sqlite3.Connection, login_id: str, now: float) -> None:
    row = connection.execute(
        "UPDATE logins SET revoked_at = ? WHERE login_id = ? AND revoked_at IS NULL RETURNING user", (now, login_id)
    ).fetchone()
    if row is not None:
        _event(connection, LOGIN_REVOKED, row[0], login_id, now)


def accounts(connection: sqlite3.Connection) -> list[AccountRow]:
    return [
        AccountRow(name, password_hash, bool(guest), removed_at is not None)
        for name, password_hash, guest, removed_at in connection.execute(
            "SELECT name, password_hash, guest, removed_at FROM users ORDER BY name"
        )
    ]


def account(connection: sqlite3.Connection, name: str) -> AccountRow | None:
    row = connection.execute(
        "SELECT name, password_hash, guest, removed_at FROM users WHERE name = ?", (name,)
    ).fetchone()
    return None if row is None else AccountRow(row[0], row[1], bool(row[2]), row[3] is not None)


def open_logins(connection: sqlite3.Connection, now: float) -> list[LoginRow]:
    """Every login session not revoked and not expired."""
    return [
        LoginRow(*row)
        for row in connection.execute(
            "SELECT login_id, user, expires_at FROM logins WHERE revoked_at IS NULL AND expires_at > ?", (now,)
        )
    ]


def events_after(connection: sqlite3.Connection, event_id: int) -> list[AuthEvent]:
    return [
        AuthEvent(*row)
        for row in connection.execute(
            "SELECT id, kind, user, login_id FROM auth_events WHERE id > ? ORDER BY id", (event_id,)
        )
    ]


def last_event_id(connection: sqlite3.Connection) -> int:
    (last,) = connection.execute("SELECT coalesce(max(id), 0) FROM auth_events").fetchone()
    return int(last)


def record_event(connection: sqlite3.Connection, kind: str, user: str, now: float) -> None:
    """Append an account change made elsewhere (an account disabled, an admin flag) to the change feed."""
    _event(connection, kind, user, None, now)
