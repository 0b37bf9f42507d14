"""The room list in pages: room names kept in order, so that a page costs the loop what is on it.

Pure code. The hub adds a name when a room is created and removes it when
the room's last member leaves; ``page`` finds where a page starts with a
binary search and reads at most ``limit`` rooms from there. A private room is
listed only to its members (and admins): the hub keeps the public rooms in an
index of their own and merges a user's private rooms into its page
(``merged_page``), so that a page costs what it shows plus the user's own rooms. A ``rooms`` frame
asks for the page after a name (``after``); the answer repeats ``after``, and
its ``next`` is the name to ask after for the page that follows (null on the
last page).
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from . import server_frames


class PagedRoom(Protocol):
    """What a page shows of a room."""

    @property
    def members(self) -> set[str]: ...

    @property
    def online(self) -> int:
        """Members with an open session."""
        ...

    @property
    def private(self) -> bool: ...

    @property
    def topic(self) -> str: ...


class RoomIndex:
    """Every room's name, sorted."""

    __slots__ = ("names",)

    def __init__(self) -> None:
        self.names: list[str] = []

    def add(self, name: str) -> None:
        index = bisect.bisect_left(self.names, name)
        if index == len(self.names) or self.names[index] != name:
            self.names.insert(index, name)

    def remove(self, name: str) -> None:
        index = bisect.bisect_left(self.names, name)
        if index < len(self.names) and self.names[index] == name:
            del self.names[index]

    def page(self, after: str | None, limit: int) -> tuple[list[str], str | None]:
        """Up to ``limit`` names after ``after`` (from the first when None), and the name to ask after next."""
        start = 0 if after is None else bisect.bisect_right(self.names, after)
        names = self.names[start : start + limit]
        more = start + limit < len(self.names)
        return names, (names[-1] if more and names else None)

    def __len__(self) -> int:
        return len(self.names)


def merged_page(
    index: RoomIndex, extra: Collection[str], after: str | None, limit: int
) -> tuple[list[str], str | None, int]:
    """A page of the names in ``index`` together with ``extra`` (names not in it, such as a user's private
    rooms): up to ``limit`` names after ``after``, the name to ask after next, and how many there are in all.

    Costs the page and ``extra``, never the whole index.
    """
    names, following = index.page(after, limit)
    if extra:
        others = sorted(name for name in extra if after is None or name > after)
        merged = list(heapq.merge(names, others))
        more = following is not None or len(merged) > limit
        names = merged[:limit]
        following = names[-1] if more and names else None
    return names, following, len(index) + len(extra)


@dataclass(slots=True)
class RoomPage:
    """A page of the room list: the entries (by name) after ``after``, the name to ask after next (None on the
    last page), and how many rooms the asker may see in all. ``frame`` makes it a ``rooms`` frame; the read
    state adds its counts to the entries of the asker's own rooms first."""

    after: str | None
    rooms: list[dict[str, str | int | bool]]
    next: str | None
    total: int

    def frame(self) -> bytes:
        return server_frames.encode(
            {"type": "rooms", "after": self.after, "rooms": self.rooms, "next": self.next, "total": self.total}
        )


def room_page(
    index: RoomIndex,
    extra: Collection[str],
    rooms: Mapping[str, PagedRoom],
    mine: set[str],
    after: str | None,
    limit: int,
) -> RoomPage:
    """One page of ``index`` and ``extra`` (``merged_page``), each room with its member and online counts, kind
    and topic, and ``member`` for the rooms in ``mine``."""
    names, following, total = merged_page(index, extra, after, limit)
    entries: list[dict[str, str | int | bool]] = []
    for name in names:
        room = rooms[name]
        entries.append(
            {
                "room": name,
                "members": len(room.members),
                "online": room.online,
                "member": name in mine,
                "private": room.private,
                "topic": room.topic,
            }
        )
    return RoomPage(after, entries, following, total)
