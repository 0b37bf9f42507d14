"""Client frames about conversations rather than messages: read positions, typing notices and search.

Pure code, registered in ``protocol.py``'s frame table. Each frame names its conversation the way
``history`` does: ``"room": R``, ``"with": U`` (a direct conversation) or ``"with": [U, ...]`` (a group
conversation, by the other members; the sender is implied). The frames are documented, with examples, in
``docs/protocol.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from .frame_fields import (
    MAX_SEQ,
    ErrorCode,
    FrameId,
    ProtocolError,
    optional_int,
    room_field,
    username_field,
    username_value,
)
from .text_cleaning import without_invisible_chars

# Largest list of people a group address may hold (the sender may be among them).
MAX_PEOPLE_LISTED = 10
SEARCH_DEFAULT_LIMIT = 20
SEARCH_MAX_LIMIT = 50
SEARCH_MAX_QUERY_CHARS = 200


class Target(NamedTuple):
    """A conversation as a frame names it: exactly one field is set (all None: none was named)."""

    room: str | None = None
    with_user: str | None = None
    with_group: tuple[str, ...] | None = None

    @property
    def named(self) -> bool:
        return self != Target()


@dataclass(slots=True)
class Read:
    """The user has read a conversation up to ``seq``."""

    label: ClassVar[str] = "read"

    target: Target
    seq: int
    frame_id: FrameId = None


@dataclass(slots=True)
class Typing:
    """The user is typing in a conversation (never stored)."""

    label: ClassVar[str] = "typing"

    target: Target
    frame_id: FrameId = None


@dataclass(slots=True)
class Search:
    """Messages matching ``query``, newest first, in one conversation or (no target) in every one the user reads."""

    label: ClassVar[str] = "search"

    query: str
    target: Target
    before: int | None = None
    limit: int = SEARCH_DEFAULT_LIMIT
    frame_id: FrameId = None


def people_field(obj: dict[str, Any], field: str) -> tuple[str, ...]:
    """A list of 2 to MAX_PEOPLE_LISTED user names, as a sorted tuple without repeats."""
    value = obj.get(field)
    if not isinstance(value, list) or not 2 <= len(value) <= MAX_PEOPLE_LISTED:
        raise ProtocolError(
            ErrorCode.BAD_FRAME, f"field {field!r} must be a name or a list of 2 to {MAX_PEOPLE_LISTED} names"
        )
    return tuple(sorted({username_value(name, field) for name in value}))


def target_field(obj: dict[str, Any], *, required: bool = True) -> Target:
    """The conversation a frame names with ``room`` or ``with`` (a name or a list of names)."""
    has_room, has_with = "room" in obj, "with" in obj
    if has_room and has_with:
        raise ProtocolError(ErrorCode.BAD_FRAME, "give one of 'room' and 'with', not both")
    if has_room:
        return Target(room=room_field(obj))
    if has_with:
        if isinstance(obj.get("with"), list):
            return Target(with_group=people_field(obj, "with"))
        return Target(with_user=username_field(obj, "with"))
    if required:
        raise ProtocolError(ErrorCode.BAD_FRAME, "give exactly one of 'room' and 'with'")
    return Target()


def parse_read(obj: dict[str, Any], frame_id: FrameId, max_text_chars: int) -> Read:
    target = target_field(obj)
    seq = optional_int(obj, "seq", 0, MAX_SEQ)
    if seq is None:
        raise ProtocolError(ErrorCode.BAD_FRAME, "field 'seq' is required: the newest seq you have read")
    return Read(target, seq, frame_id)


def parse_typing(obj: dict[str, Any], frame_id: FrameId, max_text_chars: int) -> Typing:
    return Typing(target_field(obj), frame_id)


def parse_search(obj: dict[str, Any], frame_id: FrameId, max_text_chars: int) -> Search:
    query = obj.get("q")
    if not isinstance(query, str) or not query.strip():
        raise ProtocolError(ErrorCode.BAD_FRAME, "field 'q' must be a non-empty string")
    query = " ".join(without_invisible_chars(query).split())
    if not query:
        raise ProtocolError(ErrorCode.BAD_FRAME, "field 'q' must be a non-empty string")
    if len(query) > SEARCH_MAX_QUERY_CHARS:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"field 'q' is longer than {SEARCH_MAX_QUERY_CHARS} characters")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(ErrorCode.BAD_FRAME, "field 'q' is not valid Unicode") from None
    target = target_field(obj, required=False)
    before = optional_int(obj, "before", 1, MAX_SEQ)
    limit = optional_int(obj, "limit", 1, SEARCH_MAX_LIMIT)
    return Search(query, target, before, SEARCH_DEFAULT_LIMIT if limit is None else limit, frame_id)
