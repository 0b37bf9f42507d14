"""The room list in pages: room names kept in order, so that a page costs the loop what is on it.

Pure code. The hub adds a name when a room is created and removes it when
the room's last member leaves; ``page`` finds where a page starts with a
binary search and reads at most ``limit`` rooms from there. A ``rooms`` frame
asks for the page after a name (``after``); the answer repeats ``after``, and
its ``next`` is the name to ask after for the page that follows (null on the
last page).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
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


def room_page_frame(
    index: RoomIndex, rooms: Mapping[str, PagedRoom], mine: set[str], after: str | None, limit: int
) -> bytes:
    """A ``rooms`` frame: one page of rooms with their member and online counts, and ``member`` for ``mine``."""
    names, following = index.page(after, limit)
    entries = []
    for name in names:
        room = rooms[name]
        entries.append({"room": name, "members": len(room.members), "online": room.online, "member": name in mine})
    frame = {"type": "rooms", "after": after, "rooms": entries, "next": following, "total": len(index)}
    return server_frames.encode(frame)
