"""What every client frame is made of: error codes, the frame-level error, and checks of single fields.

Pure code. ``protocol.py`` (the frame table) and the modules that hold a feature's frames
(``conversation_frames.py``) both build on this module, so that neither imports the other's parsers.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from .text_cleaning import encodable, has_control_chars

ROOM_PATTERN = re.compile(r"[a-z0-9_-]{1,64}")
USERNAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,32}")
MAX_CLIENT_ID_CHARS = 64
# Sequence numbers are SQLite integers; anything larger cannot name a message.
MAX_SEQ = 2**63 - 1

FrameId = str | int | None


class ErrorCode(StrEnum):
    """The ``code`` of an error frame."""

    BAD_JSON = "bad_json"
    BAD_FRAME = "bad_frame"
    UNKNOWN_TYPE = "unknown_type"
    TOO_LARGE = "too_large"
    NOT_MEMBER = "not_member"
    UNKNOWN_USER = "unknown_user"
    BAD_ROOM = "bad_room"
    BAD_TEXT = "bad_text"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_ROOMS = "too_many_rooms"
    INTERNAL = "internal"
    # Rooms, roles and moderation (room_frames.py).
    UNKNOWN_ROOM = "unknown_room"
    ROOM_EXISTS = "room_exists"
    FORBIDDEN = "forbidden"
    BANNED = "banned"
    UNKNOWN_MESSAGE = "unknown_message"


class ProtocolError(Exception):
    """A frame the server will not act on; becomes an error frame, the connection stays open."""

    def __init__(self, code: ErrorCode, message: str, frame_id: FrameId = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.frame_id = frame_id


def is_echoable_id(value: object) -> bool:
    """Whether an ``id`` may be echoed in an error: a short printable string or an integer in range."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -MAX_SEQ <= value <= MAX_SEQ
    return isinstance(value, str) and 0 < len(value) <= MAX_CLIENT_ID_CHARS and is_clean(value)


def is_clean(value: str) -> bool:
    """True when ``value`` encodes to UTF-8 (no lone surrogates) and has no control characters."""
    if value.isascii():
        return value.isprintable()  # for ASCII, exactly "no control characters"
    return encodable(value) and not has_control_chars(value)


def shorten(text: str, limit: int = 40) -> str:
    """``text`` made safe to quote in an error message: valid UTF-8, at most ``limit`` characters."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "..."


def room_field(obj: dict[str, Any], field: str = "room") -> str:
    """A room name; ``bad_frame`` when not a string, ``bad_room`` when it breaks the naming rule."""
    room = obj.get(field)
    if not isinstance(room, str):
        raise ProtocolError(ErrorCode.BAD_FRAME, f"field {field!r} must be a string")
    if not ROOM_PATTERN.fullmatch(room):
        raise ProtocolError(ErrorCode.BAD_ROOM, "room names are 1-64 characters of a-z, 0-9, _ and -")
    return room


def username_value(name: object, field: str) -> str:
    """A user name given as ``name``; ``bad_frame`` when not a string, ``unknown_user`` when no name can be so."""
    if not isinstance(name, str):
        raise ProtocolError(ErrorCode.BAD_FRAME, f"field {field!r} must be a string")
    if not USERNAME_PATTERN.fullmatch(name):
        raise ProtocolError(ErrorCode.UNKNOWN_USER, f"no user is called {shorten(name)!r}")
    return name


def username_field(obj: dict[str, Any], field: str) -> str:
    return username_value(obj.get(field), field)


def optional_int(obj: dict[str, Any], field: str, lowest: int, highest: int) -> int | None:
    """An integer field within [lowest, highest], or None when absent; ``bad_frame`` otherwise."""
    value = obj.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"field {field!r} must be an integer from {lowest} to {highest}")
    return value
