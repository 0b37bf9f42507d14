"""The SQLite store's reads of messages, each a function of a reader's connection inside its transaction.

A page of history, a replay and a page of search results each read message rows and then the changes made
to them (``sqlite_rooms.annotate``: edit marks and tombstones), so that a client sees every message as it now
stands. ``SqliteStore`` runs them on its reader threads (``SqliteStore._read``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from . import sqlite_messages, sqlite_rooms, sqlite_search
from .server_frames import HISTORY_BUDGET_BYTES, Message
from .store import Replay, SearchPage


def history(
    connection: sqlite3.Connection, *, thread: str, room: str | None, since: int, upper: int, limit: int
) -> tuple[list[Message], bool]:
    """Up to ``limit`` messages of ``thread`` below ``upper``, newest first, within the page's byte budget, and
    whether more exist. A room's start where the store made it, and ``since``, bound them from below."""
    lower = max(since, sqlite_messages.room_floor(connection, room)) if room is not None else since
    parameters = {"thread": thread, "lower": lower, "upper": upper, "fetch": limit + 1, "budget": HISTORY_BUDGET_BYTES}
    rows = connection.execute(sqlite_messages.HISTORY_SQL, parameters).fetchall()
    fetched = rows[0][-1] if rows else 0
    page = [sqlite_messages.row_to_message(row[:-1]) for row in rows[:limit]]
    sqlite_rooms.annotate(connection, page)
    return page, fetched > len(page)


def replay(connection: sqlite3.Connection, *, user: str, since: int, upper: int, limit: int) -> Replay:
    """What ``user`` missed after ``since`` (below ``upper``): new messages, and older ones changed since,
    each at its position, at most ``limit`` (the newest)."""
    last_seq = sqlite_messages.last_position(connection)
    rows = connection.execute(
        sqlite_messages.REPLAY_SQL, {"user": user, "since": since, "upper": upper, "limit": limit + 1}
    ).fetchall()
    messages = [sqlite_messages.row_to_message(row) for row in rows]
    sqlite_rooms.annotate(connection, messages)
    # Older messages changed since: replayed as their change, at its position (docs/protocol.md).
    messages += sqlite_rooms.changed_since(connection, user, since, upper, limit + 1)
    messages.sort(key=lambda m: m.seq if m.seq > since else m.rev)
    truncated = len(messages) > limit
    return Replay(messages[-limit:] if truncated else messages, truncated, last_seq)


def search(
    connection: sqlite3.Connection,
    *,
    keys: list[str],
    query: str,
    upper: int,
    limit: int,
    floors: Mapping[str, int] | None,
) -> SearchPage:
    """A page of search results (``sqlite_search.search``), with the edit marks of results edited since sent."""
    rows, following = sqlite_search.search(connection, keys, query, upper, limit, floors)
    messages = [sqlite_messages.row_to_message(row) for row in rows]
    sqlite_rooms.annotate(connection, messages)
    return SearchPage(messages, following)
