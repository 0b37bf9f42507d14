"""The SQLite schema and how to open a database: used by the store and by the admin CLI.

``migrate`` brings any older database up to ``SCHEMA_VERSION`` at start, one
transaction per step; a migration is a snapshot of its time and is never
edited once released.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from .names import name_collisions, name_key
from .store import StoreError

log = logging.getLogger("tornado_chat.store")

DB_FILE = "chat.sqlite3"
BUSY_TIMEOUT_S = 5.0

# The version that makes user names unique whatever their case (see migrate).
NAME_KEY_VERSION = 4
# The version from which a room made again under a freed name starts its history afresh.
ROOM_EPOCH_VERSION = 6

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
        NAME_KEY_VERSION,
        # User names are unique whatever their case: name_key is NFKC + casefold (the SQL function of that
        # name, registered by connect), under a unique index. A removed account keeps its key, so its name
        # stays taken in every spelling, unless another account already holds that key (case variants made
        # before this version, all but one closed by the administrator): then the removed one gives it up.
        # migrate() refuses to apply this while two open accounts share a key.
        # Each message keeps its size in a history page (server_frames.history_entry_bytes, here in SQL for
        # the rows already there), in the thread index: a page is chosen by its byte budget from the index
        # alone, and only the texts on it are read.
        """
        ALTER TABLE users ADD COLUMN name_key TEXT;
        UPDATE users SET name_key = name_key(name);
        UPDATE users SET name_key = NULL WHERE removed_at IS NOT NULL AND EXISTS (
            SELECT 1 FROM users AS other WHERE other.name_key = users.name_key AND other.name != users.name
            AND (other.removed_at IS NULL OR other.name < users.name));
        CREATE UNIQUE INDEX users_by_name_key ON users (name_key);
        ALTER TABLE messages ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
        UPDATE messages SET size = length(CAST(text AS BLOB)) + length(text)
            - length(replace(replace(replace(replace(text, '"', ''), '\\', ''), char(10), ''), char(9), ''))
            + 2 * length(CAST(client_id AS BLOB)) + length(sender) + length(coalesce(room, recipient, '')) + 120;
        DROP INDEX messages_by_thread;
        CREATE INDEX messages_by_thread ON messages (thread, seq, size);
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
        ROOM_EPOCH_VERSION,
        # A room that emptied was deleted with its roles and bans (sqlite_rooms.leave_room); a room made again
        # under its name is a new room. first_seq (the position at which the room was made) and first_audit_id
        # (the last audit entry then) say where its history and its audit log start, so that nothing of the
        # earlier room reaches the new one's members. Rooms already here keep all their history.
        """
        ALTER TABLE rooms ADD COLUMN first_seq INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE rooms ADD COLUMN first_audit_id INTEGER NOT NULL DEFAULT 0;
        """,
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


class NameCollisions(StoreError):
    """Open accounts whose names differ only in case: the schema cannot move to ``NAME_KEY_VERSION``."""

    def __init__(self, groups: list[list[str]]) -> None:
        listed = "; ".join(", ".join(group) for group in groups)
        super().__init__(
            f"user names that differ only in case: {listed}; keep one of each and close the others with"
            " 'tornado-chat user remove NAME', then start again"
        )
        self.groups = groups


def connect(path: Path, sync: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL journal, the chosen sync level."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    connection.create_function("name_key", 1, name_key, deterministic=True)
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
        if version == NAME_KEY_VERSION:
            open_names = [name for (name,) in connection.execute("SELECT name FROM users WHERE removed_at IS NULL")]
            if groups := name_collisions(open_names):
                raise NameCollisions(groups)
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
