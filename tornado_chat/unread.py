"""Read positions and unread counts, per user and conversation.

Pure code: no I/O, no clock. The server keeps, for every conversation (by its key, see
``conversations.py``), the sequence numbers of its newest ``cap`` messages and of those that called the
whole room (``@room``); for every user, how far they have read each conversation and which unread
messages mention them. A count is then a binary search, and a message costs an append.

Counts stop at ``cap`` (the page shows "999+"). A position only moves forward. Sending a message moves
the sender's position to it: what you wrote, you have read.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable

from .mentions import ROOM_MENTION

UNREAD_COUNT_CAP = 1000


class UnreadCounter:
    """The read state of one server (see the module docstring)."""

    def __init__(self, cap: int = UNREAD_COUNT_CAP) -> None:
        self.cap = cap
        self._seqs: dict[str, array[int]] = {}
        self._room_calls: dict[str, array[int]] = {}
        self._positions: dict[str, dict[str, int]] = {}
        # user -> key -> seqs above the user's position that mention them by name, ascending
        self._mentions: dict[str, dict[str, list[int]]] = {}

    # ------------------------------------------------------------ start-up

    def restore_thread(self, key: str, seqs: Iterable[int]) -> None:
        """The newest seqs of a conversation, ascending."""
        self._seqs[key] = array("q", seqs)
        self._trim(self._seqs[key])

    def add_mention(self, name: str, key: str, seq: int) -> None:
        """A message in ``key`` mentions ``name`` (a user, or ``ROOM_MENTION``: everyone in the room).

        Mentions arrive in seq order; one at or below the user's position is read already.
        """
        if name == ROOM_MENTION:
            self._room_call(key, seq)
        else:
            self._mention(name, key, seq)

    def _room_call(self, key: str, seq: int) -> None:
        calls = self._room_calls.setdefault(key, array("q"))
        calls.append(seq)
        self._trim(calls)

    def restore_position(self, user: str, key: str, seq: int) -> None:
        self.advance(user, key, seq)

    def _mention(self, user: str, key: str, seq: int) -> None:
        """An unread message that mentions ``user`` by name (in seq order)."""
        if seq > self.position(user, key):
            seqs = self._mentions.setdefault(user, {}).setdefault(key, [])
            seqs.append(seq)
            if len(seqs) > 2 * self.cap:
                del seqs[: -self.cap]

    # ------------------------------------------------------------ changes

    def add(self, key: str, seq: int, sender: str, mentions: Iterable[str]) -> None:
        """A new message (seqs arrive in increasing order)."""
        seqs = self._seqs.get(key)
        if seqs is None:
            seqs = self._seqs[key] = array("q")
        seqs.append(seq)
        if len(seqs) > 2 * self.cap:
            self._trim(seqs)
        for name in mentions:
            self.add_mention(name, key, seq)
        self.advance(sender, key, seq)

    def change_mentions(self, key: str, seq: int, previous: Iterable[str], current: Iterable[str]) -> None:
        """Message ``seq`` of ``key`` now mentions ``current`` instead of ``previous`` (an edit; a delete
        mentions nobody): unread mention counts follow, for those who have not read it yet."""
        before, after = set(previous), set(current)
        for name in before - after:
            found = self._room_calls.get(key) if name == ROOM_MENTION else self._mentions.get(name, {}).get(key)
            if found is not None and (at := bisect.bisect_left(found, seq)) < len(found) and found[at] == seq:
                del found[at]
        for name in after - before:
            if name == ROOM_MENTION:
                calls = self._room_calls.setdefault(key, array("q"))
                calls.insert(bisect.bisect_left(calls, seq), seq)
            elif seq > self.position(name, key):
                seqs = self._mentions.setdefault(name, {}).setdefault(key, [])
                bisect.insort(seqs, seq)

    def advance(self, user: str, key: str, seq: int) -> bool:
        """Move ``user``'s position in ``key`` to ``seq`` if that is further; returns whether it moved."""
        positions = self._positions.setdefault(user, {})
        if seq <= positions.get(key, 0):
            return False
        positions[key] = seq
        mentions = self._mentions.get(user)
        if mentions is not None and (seqs := mentions.get(key)) is not None:
            del seqs[: bisect.bisect_right(seqs, seq)]
            if not seqs:
                del mentions[key]
        return True

    def forget_user(self, user: str) -> None:
        self._positions.pop(user, None)
        self._mentions.pop(user, None)

    def forget_position(self, user: str, key: str) -> None:
        """``user`` no longer reads ``key`` (they left a room): their position and unread mentions there go."""
        self._positions.get(user, {}).pop(key, None)
        self._mentions.get(user, {}).pop(key, None)

    def forget_thread(self, key: str) -> None:
        """A conversation is gone (a room deleted when it emptied): its seqs and room calls go. Whatever is
        stored under ``key`` later counts from nothing."""
        self._seqs.pop(key, None)
        self._room_calls.pop(key, None)

    # ------------------------------------------------------------ reading

    def position(self, user: str, key: str) -> int:
        """The newest seq ``user`` has read in ``key`` (0: nothing)."""
        return self._positions.get(user, {}).get(key, 0)

    def counts(self, user: str, key: str) -> tuple[int, int]:
        """Messages in ``key`` after ``user``'s position, and how many of them mention the user; both capped."""
        position = self.position(user, key)
        unread = self._after(self._seqs.get(key), position)
        named = self._mentions.get(user, {}).get(key, [])
        calls = self._room_calls.get(key)
        if calls is None:
            return unread, min(self.cap, len(named))
        called = calls[bisect.bisect_right(calls, position) :]
        if not called:
            return unread, min(self.cap, len(named))
        return unread, min(self.cap, len(set(named).union(called)))

    def last_seq(self, key: str) -> int:
        """The newest seq in ``key`` (0: none)."""
        seqs = self._seqs.get(key)
        return seqs[-1] if seqs else 0

    def _after(self, seqs: array[int] | None, position: int) -> int:
        if not seqs:
            return 0
        if position < seqs[0] and len(seqs) >= self.cap:
            return self.cap  # older ones were dropped: at least this many
        return min(self.cap, len(seqs) - bisect.bisect_right(seqs, position))

    def _trim(self, seqs: array[int]) -> None:
        if len(seqs) > self.cap:
            del seqs[: len(seqs) - self.cap]
