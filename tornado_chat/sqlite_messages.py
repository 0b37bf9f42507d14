"""SQL for messages, memberships and presence bookkeeping, run by the SQLite store's threads.

Each write function runs inside the writer's transaction; each read runs inside
a reader's. Messages of a room or conversation share a ``thread`` key, so that
history is one index range (see ``conversations.py`` for the keys).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from . import conversations, sqlite_conversations, sqlite_search
from .conversations import room_key
from .server_frames import Message, history_entry_bytes
from .store import AppendResult, Draft

# Queries name the message columns in the order row_to_message reads them.
# A page of history: at most :fetch rows (the limit and one to tell whether there are more) between :lower
# and :upper, cut where their running size passes :budget (the first always comes). The sizes come from the
# thread index alone; only the texts of the rows on the page are read. A row's size is its entry's as it now
# stands: an edit or a delete stores the new one (sqlite_rooms.change_message).
HISTORY_SQL = """
    WITH page AS (
        SELECT seq, size, sum(size) OVER (ORDER BY seq DESC ROWS UNBOUNDED PRECEDING) AS used,
            count(*) OVER () AS fetched
        FROM (
            SELECT seq, size FROM messages WHERE thread = :thread AND seq < :upper AND seq > :lower
            ORDER BY seq DESC LIMIT :fetch
        )
    )
    SELECT m.seq, m.sender, m.text, m.ts, m.client_id, m.recipient, m.room, m.thread, m.mentions, page.fetched
    FROM page JOIN messages AS m ON m.seq = page.seq
    WHERE page.used <= :budget OR page.used = page.size ORDER BY m.seq DESC
"""
# A user's messages: direct ones either way (self-notes once), their group conversations', and their
# rooms' since they joined.
REPLAY_SQL = """
    SELECT seq, sender, text, ts, client_id, recipient, room, thread, mentions FROM (
        SELECT seq, sender, text, ts, client_id, recipient, room, thread, mentions FROM messages
            WHERE recipient = :user AND seq > :since AND seq < :upper
        UNION ALL
        SELECT seq, sender, text, ts, client_id, recipient, room, thread, mentions FROM messages
            WHERE sender = :user AND recipient IS NOT NULL AND recipient != :user
            AND seq > :since AND seq < :upper
        UNION ALL
        SELECT m.seq, m.sender, m.text, m.ts, m.client_id, m.recipient, m.room, m.thread, m.mentions
            FROM memberships AS ms JOIN messages AS m
            ON m.thread = 'r:' || ms.room AND m.seq > max(:since, ms.joined_seq) AND m.seq < :upper
            WHERE ms.user = :user
        UNION ALL
        SELECT m.seq, m.sender, m.text, m.ts, m.client_id, m.recipient, m.room, m.thread, m.mentions
            FROM group_members AS gm JOIN messages AS m
            ON m.thread = gm.thread AND m.seq > :since AND m.seq < :upper
            WHERE gm.user = :user
    ) ORDER BY seq DESC LIMIT :limit
"""
# Filled with one "(?, ?)" per key: placeholders only, never values.
# (A join, not "(sender, client_id) IN (VALUES ...)": SQLite plans that one as a scan of the whole index.)
_BY_CLIENT_IDS_SQL = """
    SELECT m.seq, m.sender, m.text, m.ts, m.client_id, m.recipient, m.room, m.thread, m.mentions
    FROM (VALUES {pairs}) AS k JOIN messages AS m ON m.sender = k.column1 AND m.client_id = k.column2
"""
_LOOKUP_CHUNK = 500
_INSERT_MESSAGE_SQL = """
    INSERT INTO messages (seq, thread, sender, recipient, room, text, ts, client_id, mentions, size)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def thread_key(sender: str, room: str | None, recipient: str | None, members: tuple[str, ...] | None = None) -> str:
    """The history thread a message belongs to: its conversation's key (``conversations.thread_key``)."""
    return conversations.thread_key(sender, room, recipient, members)


def row_to_message(row: Sequence[Any]) -> Message:
    """A message from a row of the columns the queries above select (sqlite3 rows are untyped)."""
    seq, sender, text, ts, client_id, recipient, room, thread, mentions = row
    members = conversations.people_of(thread) if conversations.is_group(thread) else None
    return Message(
        seq, sender, text, ts, client_id, recipient, room, members, tuple(mentions.split(",")) if mentions else ()
    )


def last_position(connection: sqlite3.Connection) -> int:
    """The newest position handed out: of a message (``seq``) or of a change to one (``rev``)."""
    (last,) = connection.execute(
        "SELECT max((SELECT coalesce(max(seq), 0) FROM messages), (SELECT coalesce(max(rev), 0) FROM message_changes))"
    ).fetchone()
    return int(last)


def create_room(connection: sqlite3.Connection, room: str, now: float) -> None:
    """Store a room unless it exists. A new one starts at the current position and audit entry (its history and
    its audit log show nothing from before). An earlier room of that name took its roles and bans along when it
    went (``leave_room``)."""
    connection.execute(
        "INSERT INTO rooms (name, created_at, first_seq, first_audit_id) VALUES (?, ?, ?,"
        " (SELECT coalesce(max(id), 0) FROM audit_log)) ON CONFLICT DO NOTHING",
        (room, now, last_position(connection)),
    )


def room_floor(connection: sqlite3.Connection, room: str) -> int:
    """The position at which ``room`` was made (0 when it is not stored): its history starts after it."""
    row = connection.execute("SELECT first_seq FROM rooms WHERE name = ?", (room,)).fetchone()
    return int(row[0]) if row is not None else 0


def join_room(connection: sqlite3.Connection, *, user: str, room: str, seq: int, now: float) -> None:
    create_room(connection, room, now)
    connection.execute(
        "INSERT INTO memberships (user, room, joined_seq) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (user, room, seq)
    )


def leave_room(connection: sqlite3.Connection, *, user: str, room: str) -> None:
    """End a membership, and the role and read state that came with it. A room left without members goes, public
    or private, with its roles, bans and calls to the whole room: its name is free (its messages stay, but a new
    room of that name does not show them: ``create_room``)."""
    connection.execute("DELETE FROM memberships WHERE user = ? AND room = ?", (user, room))
    connection.execute("DELETE FROM room_roles WHERE user = ? AND room = ?", (user, room))
    gone = connection.execute("SELECT 1 FROM memberships WHERE room = ? LIMIT 1", (room,)).fetchone() is None
    if gone:
        for table, column in (("rooms", "name"), ("room_roles", "room"), ("room_bans", "room")):
            connection.execute(f"DELETE FROM {table} WHERE {column} = ?", (room,))  # noqa: S608 - names only
    sqlite_conversations.forget_room_reader(connection, user, room_key(room), room_gone=gone)


def set_offline_since(connection: sqlite3.Connection, *, user: str, seq: int) -> None:
    connection.execute("UPDATE users SET offline_since_seq = ? WHERE name = ?", (seq, user))


def insert_messages(connection: sqlite3.Connection, drafts: list[Draft]) -> list[AppendResult]:
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
            message = row_to_message(row)
            existing[(message.sender, message.client_id)] = message
    last_seq = last_position(connection)
    results: list[AppendResult] = []
    rows: list[tuple[object, ...]] = []
    stored: list[tuple[Message, str]] = []
    contacts: set[tuple[str, str]] = set()
    for draft in drafts:
        key = (draft.sender, draft.client_id)
        found = existing.get(key)
        if found is not None:
            results.append(AppendResult(found, duplicate=True))
            continue
        last_seq += 1
        message = draft.stored(last_seq)
        existing[key] = message  # a second copy in this very run is a resend of this one
        results.append(AppendResult(message))
        thread = thread_key(draft.sender, draft.room, draft.to, draft.members)
        mentions = ",".join(draft.mentions) or None
        size = history_entry_bytes(message)  # what its entry in a history page costs (HISTORY_SQL)
        rows.append(
            (
                last_seq,
                thread,
                draft.sender,
                draft.to,
                draft.room,
                draft.text,
                draft.ts,
                draft.client_id,
                mentions,
                size,
            )
        )
        stored.append((message, thread))
        if draft.to is not None and draft.to != draft.sender:
            first, second = sorted((draft.sender, draft.to))
            contacts.add((first, second))
    connection.executemany(_INSERT_MESSAGE_SQL, rows)
    if contacts:
        connection.executemany("INSERT INTO conversations (a, b) VALUES (?, ?) ON CONFLICT DO NOTHING", contacts)
    if stored:
        sqlite_search.index_messages(connection, [(message.seq, message.text) for message, _ in stored])
        sqlite_conversations.record_messages(connection, stored)
    return results
