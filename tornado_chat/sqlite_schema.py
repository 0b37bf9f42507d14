"""The SQLite schema and how to open a database: used by the store and by the admin CLI.

``migrate`` brings any older database up to ``SCHEMA_VERSION`` at start, one
transaction per step; a migration is a snapshot of its time and is never
edited once released.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from .store import StoreError

log = logging.getLogger("tornado_chat.store")

DB_FILE = "chat.sqlite3"
BUSY_TIMEOUT_S = 5.0

# Each migration takes the schema from the previous version to its own; applied in order at start.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE users (
            name TEXT PRIMARY KEY,
            created_at REAL NOT NULL,
            offline_since_seq INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE rooms (
            name TEXT PRIMARY KEY,
            created_at REAL NOT NULL
        );
        CREATE TABLE memberships (
            user TEXT NOT NULL,
            room TEXT NOT NULL,
            joined_seq INTEGER NOT NULL,
            PRIMARY KEY (user, room)
        ) WITHOUT ROWID;
        CREATE TABLE conversations (
            a TEXT NOT NULL,
            b TEXT NOT NULL,
            PRIMARY KEY (a, b)
        ) WITHOUT ROWID;
        CREATE TABLE messages (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            thread TEXT NOT NULL,
            sender TEXT NOT NULL,
            recipient TEXT,
            room TEXT,
            text TEXT NOT NULL,
            ts REAL NOT NULL,
            client_id TEXT NOT NULL,
            UNIQUE (sender, client_id)
        );
        CREATE INDEX messages_by_thread ON messages (thread, seq);
        CREATE INDEX messages_by_recipient ON messages (recipient, seq) WHERE recipient IS NOT NULL;
        CREATE INDEX messages_by_direct_sender ON messages (sender, seq) WHERE recipient IS NOT NULL;
        """,
    ),
    (
        2,
        """
        ALTER TABLE users ADD COLUMN password_hash TEXT;
        ALTER TABLE users ADD COLUMN guest INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE users ADD COLUMN removed_at REAL;
        CREATE TABLE logins (
            login_id TEXT PRIMARY KEY,
            user TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            revoked_at REAL
        );
        CREATE INDEX logins_by_user ON logins (user);
        CREATE TABLE auth_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            user TEXT NOT NULL,
            login_id TEXT,
            at REAL NOT NULL
        );
        """,
    ),
    (
        3,
        # Clients make ids that grow (a clock or a counter first), so ordering the resend-detecting unique
        # index by client id first puts each commit's new entries next to each other: a commit of 100
        # messages then writes about half the pages (and spends about half the time in fsync).
        """
        CREATE TABLE messages_v3 (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            thread TEXT NOT NULL,
            sender TEXT NOT NULL,
            recipient TEXT,
            room TEXT,
            text TEXT NOT NULL,
            ts REAL NOT NULL,
            client_id TEXT NOT NULL,
            UNIQUE (client_id, sender)
        );
        INSERT INTO messages_v3 (seq, thread, sender, recipient, room, text, ts, client_id)
            SELECT seq, thread, sender, recipient, room, text, ts, client_id FROM messages;
        DROP TABLE messages;
        ALTER TABLE messages_v3 RENAME TO messages;
        CREATE INDEX messages_by_thread ON messages (thread, seq);
        CREATE INDEX messages_by_recipient ON messages (recipient, seq) WHERE recipient IS NOT NULL;
        CREATE INDEX messages_by_direct_sender ON messages (sender, seq) WHERE recipient IS NOT NULL;
        """,
    ),
    (
        5,
        # Rooms, roles and moderation; edits and deletes. A change to a message takes a position in the same
        # sequence as messages (message_changes.rev), so that a resume replays it; the message row keeps the
        # current text (empty once deleted). New tables rather than new columns on messages and memberships.
        """
        ALTER TABLE rooms ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE rooms ADD COLUMN topic TEXT NOT NULL DEFAULT '';
        CREATE TABLE room_roles (
            room TEXT NOT NULL,
            user TEXT NOT NULL,
            role TEXT NOT NULL,
            PRIMARY KEY (room, user)
        ) WITHOUT ROWID;
        CREATE TABLE room_bans (
            room TEXT NOT NULL,
            user TEXT NOT NULL,
            banned_by TEXT NOT NULL,
            banned_at REAL NOT NULL,
            PRIMARY KEY (room, user)
        ) WITHOUT ROWID;
        CREATE TABLE message_changes (
            seq INTEGER PRIMARY KEY,
            rev INTEGER NOT NULL UNIQUE,
            edited_at REAL,
            deleted_at REAL,
            deleted_by TEXT
        );
        CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            room TEXT,
            target TEXT,
            seq INTEGER
        );
        CREATE INDEX audit_log_by_room ON audit_log (room, id) WHERE room IS NOT NULL;
        ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE users ADD COLUMN disabled_at REAL;
        """,
    ),
    (
        6,
        # Day-one chat: group conversations (their member sets), read positions, mentions, and search.
        # Search has two full-text indexes over messages.text (external content, so the text is stored once):
        # words (unicode61, case and accents folded) for every message, and trigrams for the messages holding
        # a script written without spaces (the GLOB below; search_terms.NO_SPACE_RANGES). Conversations that
        # exist now start read up to where each user went offline.
        """
        CREATE TABLE group_members (
            thread TEXT NOT NULL,
            user TEXT NOT NULL,
            PRIMARY KEY (user, thread)
        ) WITHOUT ROWID;
        CREATE TABLE read_positions (
            user TEXT NOT NULL,
            thread TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (user, thread)
        ) WITHOUT ROWID;
        CREATE TABLE message_mentions (
            user TEXT NOT NULL,
            thread TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (user, thread, seq)
        ) WITHOUT ROWID;
        ALTER TABLE messages ADD COLUMN mentions TEXT;
        CREATE VIRTUAL TABLE messages_words USING fts5(
            text, content='messages', content_rowid='seq', tokenize='unicode61 remove_diacritics 2'
        );
        CREATE VIRTUAL TABLE messages_trigrams USING fts5(
            text, content='messages', content_rowid='seq', tokenize='trigram'
        );
        INSERT INTO messages_words (messages_words) VALUES ('rebuild');
        INSERT INTO messages_trigrams (rowid, text)
            SELECT seq, text FROM messages WHERE text GLOB '*[฀-໿က-႟ក-៿぀-ヿ㐀-䶿一-鿿가-힯豈-﫿ｦ-ﾟ𠀀-𯿿]*';
        INSERT INTO read_positions (user, thread, seq)
            SELECT ms.user, 'r:' || ms.room, max(ms.joined_seq, coalesce(u.offline_since_seq, 0))
            FROM memberships AS ms LEFT JOIN users AS u ON u.name = ms.user;
        INSERT INTO read_positions (user, thread, seq)
            SELECT c.a, 'd:' || c.a || char(0) || c.b, coalesce(u.offline_since_seq, 0)
            FROM conversations AS c LEFT JOIN users AS u ON u.name = c.a;
        INSERT INTO read_positions (user, thread, seq)
            SELECT c.b, 'd:' || c.a || char(0) || c.b, coalesce(u.offline_since_seq, 0)
            FROM conversations AS c LEFT JOIN users AS u ON u.name = c.b
        """,
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def connect(path: Path, sync: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL journal, the chosen sync level."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


def migrate(connection: sqlite3.Connection) -> int:
    """Bring the schema up to ``SCHEMA_VERSION``; returns the version found before."""
    (found,) = connection.execute("PRAGMA user_version").fetchone()
    if found > SCHEMA_VERSION:
        raise StoreError(f"the database has schema version {found}, newer than this server's {SCHEMA_VERSION}")
    for version, script in MIGRATIONS:
        if version <= found:
            continue
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version={version}")
            connection.execute("COMMIT")
        except sqlite3.Error:
            connection.execute("ROLLBACK")
            raise
        log.info("database schema migrated to version %d", version)
    return int(found)
