"""Conversations by key: a room, a direct conversation of two users, or a group conversation of 3 to 10.

Pure code. Every message belongs to one conversation, named by a string key that the stores use as their
history thread and the core uses for read positions and unread counts:

- ``r:ROOM`` for a room;
- ``d:A<NUL>B`` for the direct conversation of users A and B (sorted; A == B for notes to oneself);
- ``g:A<NUL>B<NUL>C...`` for a group conversation, its member names sorted.

A group conversation is addressed by its member set: the same people always make the same conversation,
and adding someone makes a new one. User names cannot hold NUL, so a key is never ambiguous.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from .frame_fields import ErrorCode, ProtocolError

ROOM_PREFIX = "r:"
DIRECT_PREFIX = "d:"
GROUP_PREFIX = "g:"
SEPARATOR = "\x00"
# A group conversation has this many people, its sender included.
GROUP_MIN_PEOPLE = 3
GROUP_MAX_PEOPLE = 10


class Addressed(Protocol):
    """Anything addressed like a message: by its sender and one of room, recipient or member set."""

    @property
    def sender(self) -> str: ...

    @property
    def room(self) -> str | None: ...

    @property
    def to(self) -> str | None: ...

    @property
    def members(self) -> tuple[str, ...] | None: ...


def room_key(room: str) -> str:
    return ROOM_PREFIX + room


def direct_key(a: str, b: str) -> str:
    first, second = sorted((a, b))
    return f"{DIRECT_PREFIX}{first}{SEPARATOR}{second}"


def group_key(members: Iterable[str]) -> str:
    return GROUP_PREFIX + SEPARATOR.join(sorted(set(members)))


def thread_key(sender: str, room: str | None, recipient: str | None, members: tuple[str, ...] | None = None) -> str:
    """The key of a message's conversation (exactly one of ``room``, ``recipient``, ``members`` is set)."""
    if room is not None:
        return room_key(room)
    if members is not None:
        return group_key(members)
    return direct_key(sender, recipient or "")


def key_of(message: Addressed) -> str:
    return thread_key(message.sender, message.room, message.to, message.members)


def group_members(sender: str, others: Iterable[str]) -> tuple[str, ...]:
    """The member set of a group conversation written to ``others`` by ``sender`` (who is always in it), sorted.

    Raises ``bad_frame`` unless it has GROUP_MIN_PEOPLE to GROUP_MAX_PEOPLE people.
    """
    members = tuple(sorted({sender, *others}))
    if not GROUP_MIN_PEOPLE <= len(members) <= GROUP_MAX_PEOPLE:
        raise ProtocolError(
            ErrorCode.BAD_FRAME,
            f"a group conversation has {GROUP_MIN_PEOPLE} to {GROUP_MAX_PEOPLE} people, you included "
            f"(this one would have {len(members)}); write to one person with a name instead of a list",
        )
    return members


def is_room(key: str) -> bool:
    return key.startswith(ROOM_PREFIX)


def is_group(key: str) -> bool:
    return key.startswith(GROUP_PREFIX)


def room_of(key: str) -> str | None:
    return key[len(ROOM_PREFIX) :] if key.startswith(ROOM_PREFIX) else None


def people_of(key: str) -> tuple[str, ...]:
    """The users of a direct or group conversation (one name for notes to oneself); () for a room."""
    if key.startswith(ROOM_PREFIX):
        return ()
    return tuple(dict.fromkeys(key[2:].split(SEPARATOR)))


def wire_target(key: str, viewer: str) -> dict[str, str | list[str]]:
    """How ``viewer`` names the conversation in frames: ``{"room": R}``, ``{"with": U}`` or ``{"with": [U, ...]}``."""
    room = room_of(key)
    if room is not None:
        return {"room": room}
    people = people_of(key)
    if key.startswith(GROUP_PREFIX):
        return {"with": [name for name in people if name != viewer]}
    others = [name for name in people if name != viewer]
    return {"with": others[0] if others else viewer}
