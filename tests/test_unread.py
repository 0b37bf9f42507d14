"""Read positions and unread counts (``unread.UnreadCounter``), without sockets or a loop."""

from __future__ import annotations

import pytest

from tornado_chat.mentions import ROOM_MENTION
from tornado_chat.unread import UnreadCounter

pytestmark = pytest.mark.unit

ROOM = "r:ops"
DIRECT = "d:alice\x00bob"


def test_counts_follow_messages_reads_and_own_messages() -> None:
    counter = UnreadCounter()
    for seq in range(1, 6):
        counter.add(DIRECT, seq, "alice", ())
    assert counter.counts("bob", DIRECT) == (5, 0)
    assert counter.counts("alice", DIRECT) == (0, 0)  # what you wrote, you have read
    assert counter.advance("bob", DIRECT, 3) and counter.counts("bob", DIRECT) == (2, 0)
    assert not counter.advance("bob", DIRECT, 2)  # never backwards
    assert counter.position("bob", DIRECT) == 3
    counter.add(DIRECT, 6, "bob", ())  # bob answers: read up to his answer
    assert counter.counts("bob", DIRECT) == (0, 0) and counter.counts("alice", DIRECT) == (1, 0)
    assert counter.last_seq(DIRECT) == 6 and counter.last_seq("r:none") == 0


def test_mentions_count_once_each_and_clear_as_they_are_read() -> None:
    counter = UnreadCounter()
    counter.add(ROOM, 1, "alice", ("bob",))
    counter.add(ROOM, 2, "alice", ())
    counter.add(ROOM, 3, "alice", (ROOM_MENTION, "bob"))  # both: one mention
    counter.add(ROOM, 4, "carol", (ROOM_MENTION,))
    assert counter.counts("bob", ROOM) == (4, 3)
    assert counter.counts("dave", ROOM) == (4, 2)  # only the room calls
    assert counter.counts("carol", ROOM) == (0, 0)
    counter.advance("bob", ROOM, 3)
    assert counter.counts("bob", ROOM) == (1, 1)
    counter.forget_user("bob")
    assert counter.position("bob", ROOM) == 0


def test_counts_stop_at_the_cap_and_memory_stays_bounded() -> None:
    counter = UnreadCounter(cap=10)
    for seq in range(1, 1001):
        counter.add(ROOM, seq, "alice", ("bob",))
    assert counter.counts("bob", ROOM) == (10, 10)
    counter.advance("bob", ROOM, 995)
    assert counter.counts("bob", ROOM) == (5, 5)
    assert len(counter._seqs[ROOM]) <= 20  # the bound is the point
    assert len(counter._mentions["bob"][ROOM]) <= 20


def test_a_restored_counter_counts_like_the_one_that_ran() -> None:
    live = UnreadCounter()
    for seq, sender, named in [(1, "alice", ()), (2, "bob", ("alice",)), (3, "bob", (ROOM_MENTION,)), (4, "bob", ())]:
        live.add(ROOM, seq, sender, named)
    live.advance("alice", ROOM, 2)
    restored = UnreadCounter()
    restored.restore_thread(ROOM, [1, 2, 3, 4])
    restored.restore_position("alice", ROOM, 2)
    restored.restore_position("bob", ROOM, 4)
    for name, seq in [("alice", 2), (ROOM_MENTION, 3)]:
        restored.add_mention(name, ROOM, seq)
    for user in ("alice", "bob", "carol"):
        assert restored.counts(user, ROOM) == live.counts(user, ROOM), user


def test_an_edit_or_a_delete_moves_the_mentions_of_unread_messages_only() -> None:
    counter = UnreadCounter()
    counter.add(ROOM, 1, "alice", ("bob",))
    counter.add(ROOM, 2, "alice", ())
    counter.add(ROOM, 3, "alice", ("carol",))
    counter.advance("carol", ROOM, 3)
    assert counter.counts("bob", ROOM) == (3, 1)
    # Message 2 is edited to name bob and carol, and to call the room: bob has not read it, carol has.
    counter.change_mentions(ROOM, 2, (), ("bob", "carol", ROOM_MENTION))
    assert counter.counts("bob", ROOM) == (3, 2)
    assert counter.counts("carol", ROOM) == (0, 0)
    assert counter.counts("dave", ROOM) == (3, 1)  # the room call counts for every member
    # Message 1 is deleted (a tombstone mentions nobody): it stays unread, its mention goes.
    counter.change_mentions(ROOM, 1, ("bob",), ())
    assert counter.counts("bob", ROOM) == (3, 1)
    counter.change_mentions(ROOM, 2, ("bob", "carol", ROOM_MENTION), ())
    assert counter.counts("bob", ROOM) == (3, 0) and counter.counts("dave", ROOM) == (3, 0)
    counter.change_mentions(ROOM, 9, ("bob",), ())  # a mention it never counted: nothing to take away
    assert counter.counts("bob", ROOM) == (3, 0)
    # What a restart would count from the stored mentions, the live counter counts too.
    restored = UnreadCounter()
    restored.restore_thread(ROOM, [1, 2, 3])
    restored.restore_position("carol", ROOM, 3)
    restored.restore_position("alice", ROOM, 3)
    for user in ("alice", "bob", "carol", "dave"):
        assert restored.counts(user, ROOM) == counter.counts(user, ROOM), user
