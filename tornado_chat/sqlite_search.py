"""Full-text search in the SQLite store: keeping the indexes, and answering queries.

Two FTS5 indexes over ``messages.text`` (schema version 6, external content: the text is stored once, in
``messages``): ``messages_words`` (unicode61, case and accents folded) holds every message;
``messages_trigrams`` (trigram) holds the messages written partly in a script without spaces
(``search_terms``). The writer keeps both in the transaction that stores, edits or deletes a message:

- a new message: ``index_messages`` (``sqlite_messages.insert_messages`` calls it);
- an edit or a delete: ``reindex(connection, seq, old_text, new_text)`` (``new_text`` None for a delete),
  called with the text as it was indexed, before or after the row changes (``sqlite_rooms.change_message``
  calls it). A deleted message is a tombstone without text: no index holds it any more.

A query runs on one index, newest first, restricted to the conversations the asker may read; the other
terms are checked on each candidate. A query of only short substrings (under three characters, in a script
without spaces) cannot use the trigram index: it scans the newest ``SHORT_QUERY_SCAN_ROWS`` messages below
``before`` and says where it stopped, so that the client can go on from there.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping

from .conversations import room_of
from .search_terms import split_terms, written_without_spaces

# How many messages a short-substring query looks through per page.
SHORT_QUERY_SCAN_ROWS = 20_000
COLUMNS = "m.seq, m.sender, m.text, m.ts, m.client_id, m.recipient, m.room, m.thread, m.mentions"
# Where a room starts, if a message of its thread lies at or below that (an earlier room of the same name's).
_ROOM_START_SQL = """
    SELECT start FROM (SELECT max(?, coalesce((SELECT first_seq FROM rooms WHERE name = ?), 0)) AS start)
    WHERE start > 0 AND EXISTS (SELECT 1 FROM messages WHERE thread = ? AND seq <= start)
"""
# Only messages above where their room starts (:starts maps a room's hex key to its start; the others start at 0).
_AFTER_START = " AND m.seq > coalesce((SELECT s.value FROM json_each(:starts) AS s WHERE s.key = hex(m.thread)), 0)"
# Conversation keys hold NUL, which json_each (and replace) cut strings at: compare them in hex instead.
_IN_KEYS = "hex(m.thread) IN (SELECT value FROM json_each(:keys))"


def index_messages(connection: sqlite3.Connection, messages: Iterable[tuple[int, str]]) -> None:
    """Add new messages, as (seq, text), to the search indexes (inside the writer's transaction)."""
    rows = list(messages)
    connection.executemany("INSERT INTO messages_words (rowid, text) VALUES (?, ?)", rows)
    spaceless = [row for row in rows if written_without_spaces(row[1])]
    if spaceless:
        connection.executemany("INSERT INTO messages_trigrams (rowid, text) VALUES (?, ?)", spaceless)


def reindex(connection: sqlite3.Connection, seq: int, old_text: str, new_text: str | None) -> None:
    """Keep the indexes true to a message whose text changed (an edit) or went (``new_text`` None: a delete).

    ``old_text`` must be the text the message was indexed with: an external-content index is told what to
    take out.
    """
    connection.execute(
        "INSERT INTO messages_words (messages_words, rowid, text) VALUES ('delete', ?, ?)", (seq, old_text)
    )
    if written_without_spaces(old_text):
        connection.execute(
            "INSERT INTO messages_trigrams (messages_trigrams, rowid, text) VALUES ('delete', ?, ?)", (seq, old_text)
        )
    if new_text is not None:
        index_messages(connection, [(seq, new_text)])


def _hex(key: str) -> str:
    """A conversation key as ``hex(thread)`` gives it in SQL (see ``_IN_KEYS``)."""
    return key.encode().hex().upper()


def _room_starts(connection: sqlite3.Connection, keys: list[str], floors: Mapping[str, int]) -> dict[str, int]:
    """Where each room among ``keys`` starts (the higher of ``floors`` and the stored ``first_seq``), for the
    rooms whose thread holds older messages (of an earlier room of that name): the only ones a query must
    check. One index probe per room."""
    starts: dict[str, int] = {}
    for key in keys:
        room = room_of(key)
        if room is None:
            continue
        found = connection.execute(_ROOM_START_SQL, (floors.get(key, 0), room, key)).fetchone()
        if found is not None:
            starts[key] = int(found[0])
    return starts


def _phrase(term: str, prefix: bool) -> str:
    """An FTS5 string literal for ``term`` (quotes doubled), as a prefix query when ``prefix``."""
    return '"' + term.replace('"', '""') + '"' + ("*" if prefix else "")


def search(
    connection: sqlite3.Connection,
    keys: list[str],
    query: str,
    before: int,
    limit: int,
    floors: Mapping[str, int] | None = None,
) -> tuple[list[tuple[object, ...]], int | None]:
    """Rows (in ``COLUMNS`` order) of messages in ``keys`` matching ``query`` with ``seq < before``, newest
    first, at most ``limit``; and the ``before`` of the next page (None: no more).

    A room's messages count from where the room was made: above ``floors[key]`` (the hub's ``first_seq``) and
    above the ``first_seq`` stored with the room, so that a room made again under a freed name finds nothing of
    the earlier one.
    """
    terms = split_terms(query)
    if not terms or not keys:
        return [], None
    keys_json = json.dumps([_hex(key) for key in keys])
    params: dict[str, object] = {"keys": keys_json, "before": before, "limit": limit + 1}
    checks = []
    if starts := _room_starts(connection, keys, floors or {}):
        params["starts"] = json.dumps({_hex(key): floor for key, floor in starts.items()})
        checks.append(_AFTER_START)
    for index, term in enumerate((*(terms.substrings if terms.words else ()), *terms.short)):
        params[f"t{index}"] = term.lower()
        checks.append(f" AND instr(lower(m.text), :t{index}) > 0")
    if terms.words or terms.substrings:
        table = "messages_words" if terms.words else "messages_trigrams"
        params["match"] = " ".join(_phrase(t, prefix=bool(terms.words)) for t in (terms.words or terms.substrings))
        # CROSS JOIN keeps the index as the outer loop: it yields matches newest first, and LIMIT stops it.
        # (Only fixed fragments are formatted into these statements; every value is a named parameter.)
        sql = (
            f"SELECT {COLUMNS} FROM {table} AS f CROSS JOIN messages AS m ON m.seq = f.rowid "  # noqa: S608
            f"WHERE {table} MATCH :match AND f.rowid < :before AND {_IN_KEYS}{''.join(checks)} "
            "ORDER BY f.rowid DESC LIMIT :limit"
        )
        rows = connection.execute(sql, params).fetchall()
        return rows[:limit], (int(rows[limit - 1][0]) if len(rows) > limit else None)
    return _scan(connection, keys, params, "".join(checks), limit)


def _scan(
    connection: sqlite3.Connection, keys: list[str], params: dict[str, object], checks: str, limit: int
) -> tuple[list[tuple[object, ...]], int | None]:
    """Short substrings: look through the newest SHORT_QUERY_SCAN_ROWS messages below ``before`` (of the one
    conversation asked about, or of the whole store)."""
    params["scan"] = SHORT_QUERY_SCAN_ROWS
    if len(keys) == 1:
        params["key"] = keys[0]
        window = "SELECT seq FROM messages WHERE thread = :key AND seq < :before ORDER BY seq DESC LIMIT :scan"
    else:
        window = "SELECT seq FROM messages WHERE seq < :before ORDER BY seq DESC LIMIT :scan"
    sql = (
        f"SELECT {COLUMNS} FROM ({window}) AS w CROSS JOIN messages AS m ON m.seq = w.seq "  # noqa: S608
        f"WHERE {_IN_KEYS}{checks} ORDER BY m.seq DESC LIMIT :limit"
    )
    rows = connection.execute(sql, params).fetchall()
    if len(rows) > limit:
        return rows[:limit], int(rows[limit - 1][0])
    window_sql = f"SELECT count(*), min(seq) FROM ({window})"  # noqa: S608
    (count, oldest) = connection.execute(window_sql, params).fetchone()
    return rows, (int(oldest) if count >= SHORT_QUERY_SCAN_ROWS else None)
