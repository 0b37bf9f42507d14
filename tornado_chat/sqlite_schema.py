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
from .server_frames import history_entry_bytes
from .sqlite_messages import row_to_message
from .store import StoreError

log = logging.getLogger("tornado_chat.store")

DB_FILE = "chat.sqlite3"
BUSY_TIMEOUT_S = 5.0

# The version that makes user names unique whatever their case (see migrate).
NAME_KEY_VERSION = 4
# The version of day-one chat: read positions, mentions, group conversations, the search indexes.
DAY_ONE_VERSION = 6
# The version from which a room made again under a freed name starts its history afresh. (It follows day-one's
# version 6, which main released first: a database a server of that time migrated is at 6 and still needs it.)
ROOM_EPOCH_VERSION = 7

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
        DAY_ONE_VERSION,
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
    (
        ROOM_EPOCH_VERSION,
        # A room that emptied was deleted with its roles and bans (sqlite_messages.leave_room); a room made again
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
    """Bring the schema up to ``SCHEMA_VERSION``; returns the version found before.

    Version 4 was numbered before 5 and 6 but released after them: a database that a server of that time took
    to 5 or 6 has not had it, and takes it now, first (``user_version`` never goes back).
    """
    (found,) = connection.execute("PRAGMA user_version").fetchone()
    if found > SCHEMA_VERSION:
        raise StoreError(f"the database has schema version {found}, newer than this server's {SCHEMA_VERSION}")
    reached = found
    for version, script in MIGRATIONS:
        late = version == NAME_KEY_VERSION and found > version and not _has_column(connection, "users", "name_key")
        if version <= found and not late:
            continue
        if version == NAME_KEY_VERSION:
            open_names = [name for (name,) in connection.execute("SELECT name FROM users WHERE removed_at IS NULL")]
            if groups := name_collisions(open_names):
                raise NameCollisions(groups)
        reached = max(reached, version)
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";"):
                if statement.strip():
                    connection.execute(statement)
            if late:
                _resize_changed_messages(connection, with_day_one=found >= DAY_ONE_VERSION)
            connection.execute(f"PRAGMA user_version={reached}")
            connection.execute("COMMIT")
        except sqlite3.Error:
            connection.execute("ROLLBACK")
            raise
        log.info("database schema migrated to version %d", version)
    return int(found)


def _has_column(connection: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in connection.execute(f"PRAGMA table_info({table})"))


def _resize_changed_messages(connection: sqlite3.Connection, *, with_day_one: bool) -> None:
    """Version 4 applied late, to a database of version 5 or 6: its SQL sized every message as sent, but some
    were edited or deleted since (version 5), or carry mentions or belong to a group (version 6). Those are
    sized again as they now stand, as the store sizes them (``server_frames.history_entry_bytes``)."""
    extra = " OR m.mentions IS NOT NULL OR m.thread GLOB 'g:*'" if with_day_one else ""
    query = (
        "SELECT m.seq, m.sender, m.text, m.ts, m.client_id, m.recipient, m.room, m.thread,"  # noqa: S608 - fixed
        f" {'m.mentions' if with_day_one else 'NULL'}, c.rev"
        f" FROM messages AS m LEFT JOIN message_changes AS c ON c.seq = m.seq WHERE c.seq IS NOT NULL{extra}"
    )
    sizes = []
    for row in connection.execute(query).fetchall():
        message = row_to_message(row[:-1])
        message.rev = row[-1] or 0
        sizes.append((history_entry_bytes(message), message.seq))
    connection.executemany("UPDATE messages SET size = ? WHERE seq = ?", sizes)
