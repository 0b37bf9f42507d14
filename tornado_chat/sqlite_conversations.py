"""SQL for what conversations keep besides their messages: group member sets, read positions, mentions.

Write functions run inside the writer's transaction (``record_messages`` in the one that stores the
messages, ``replace_mentions`` in the one that edits or deletes one); ``load`` runs once at start-up and
fills the snapshot's share of it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from .conversations import key_of, people_of
from .mentions import ROOM_MENTION
from .server_frames import Message
from .store import Snapshot

_ADVANCE_SQL = """
    INSERT INTO read_positions (user, thread, seq) VALUES (?, ?, ?)
    ON CONFLICT (user, thread) DO UPDATE SET seq = max(seq, excluded.seq)
"""


def record_messages(connection: sqlite3.Connection, messages: Sequence[tuple[Message, str]]) -> None:
    """For new messages as (message, conversation key): their groups' member sets, their mentions, and
    each sender's read position (what you wrote, you have read)."""
    members: set[tuple[str, str]] = set()
    mentions: list[tuple[str, str, int]] = []
    senders: dict[tuple[str, str], int] = {}
    for message, key in messages:
        if message.members is not None:
            members.update((key, name) for name in message.members)
        mentions.extend((name, key, message.seq) for name in message.mentions)
        senders[(message.sender, key)] = message.seq
    if members:
        connection.executemany(
            "INSERT INTO group_members (thread, user) VALUES (?, ?) ON CONFLICT DO NOTHING", sorted(members)
        )
    if mentions:
        connection.executemany("INSERT INTO message_mentions (user, thread, seq) VALUES (?, ?, ?)", mentions)
    connection.executemany(_ADVANCE_SQL, [(user, key, seq) for (user, key), seq in senders.items()])


def replace_mentions(connection: sqlite3.Connection, message: Message, previous: Sequence[str]) -> None:
    """A message's text changed (an edit, or a delete: no mentions left): its mentions go from ``previous``
    to ``message.mentions``, in the transaction that changes its row."""
    key = key_of(message)
    gone = [(name, key, message.seq) for name in previous if name not in message.mentions]
    new = [(name, key, message.seq) for name in message.mentions if name not in previous]
    if gone:
        connection.executemany("DELETE FROM message_mentions WHERE user = ? AND thread = ? AND seq = ?", gone)
    if new:
        connection.executemany("INSERT OR IGNORE INTO message_mentions (user, thread, seq) VALUES (?, ?, ?)", new)


def forget_room_reader(connection: sqlite3.Connection, user: str, key: str, *, room_gone: bool) -> None:
    """``user`` left the room ``key``: their read position and mentions there go (a return starts read up to
    then, as a join does); a room that went takes its ``@room`` calls with it (``read_state.membership_ended``
    forgets the same in memory)."""
    connection.execute("DELETE FROM read_positions WHERE user = ? AND thread = ?", (user, key))
    connection.execute("DELETE FROM message_mentions WHERE user = ? AND thread = ?", (user, key))
    if room_gone:
        connection.execute("DELETE FROM message_mentions WHERE user = ? AND thread = ?", (ROOM_MENTION, key))


def set_read_position(connection: sqlite3.Connection, *, user: str, key: str, seq: int) -> None:
    connection.execute(_ADVANCE_SQL, (user, key, seq))


def load(connection: sqlite3.Connection, snapshot: Snapshot, recent: int) -> None:
    """Fill the snapshot's group member sets, read positions, the newest ``recent`` seqs of every
    conversation, and the mentions that may still be unread."""
    snapshot.groups = [people_of(key) for (key,) in connection.execute("SELECT DISTINCT thread FROM group_members")]
    snapshot.read_positions = list(connection.execute("SELECT user, thread, seq FROM read_positions"))
    keys = [key for (key,) in connection.execute("SELECT DISTINCT thread FROM messages")]
    snapshot.recent_seqs = {
        key: [
            seq
            for (seq,) in connection.execute(
                "SELECT seq FROM (SELECT seq FROM messages WHERE thread = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq",
                (key, recent),
            )
        ]
        for key in keys
    }
    named = connection.execute(
        """
        SELECT mm.user, mm.thread, mm.seq FROM message_mentions AS mm
        LEFT JOIN read_positions AS rp ON rp.user = mm.user AND rp.thread = mm.thread
        WHERE mm.user != ? AND mm.seq > coalesce(rp.seq, 0)
        """,
        (ROOM_MENTION,),
    ).fetchall()
    room_calls = connection.execute(
        """
        SELECT ?, thread, seq FROM (
            SELECT thread, seq, row_number() OVER (PARTITION BY thread ORDER BY seq DESC) AS newest
            FROM message_mentions WHERE user = ?
        ) WHERE newest <= ?
        """,
        (ROOM_MENTION, ROOM_MENTION, recent),
    ).fetchall()
    snapshot.mentions = sorted([*named, *room_calls], key=lambda row: int(row[2]))
