"""Wire protocol v1, client side: parse client frames into typed objects, or refuse them with an error code.

Pure code: no sockets, no clock, no Tornado. ``parse_client_frame`` either
returns one of the frame dataclasses below or raises ``ProtocolError`` carrying
an ``ErrorCode``; it never raises anything else, whatever it is given
(``tests/test_protocol_properties.py`` checks this). What the server sends is
in ``server_frames.py``.

The frames and errors are documented, with examples, in ``docs/protocol.md``.
"""

from __future__ import annotations

import json
import json.encoder
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

from . import room_frames
from .conversation_frames import Read, Search, Typing, parse_read, parse_search, parse_typing, people_field
from .frame_fields import MAX_CLIENT_ID_CHARS as MAX_CLIENT_ID_CHARS
from .frame_fields import MAX_SEQ as MAX_SEQ
from .frame_fields import ROOM_PATTERN as ROOM_PATTERN
from .frame_fields import USERNAME_PATTERN as USERNAME_PATTERN
from .frame_fields import ErrorCode as ErrorCode
from .frame_fields import FrameId as FrameId
from .frame_fields import ProtocolError as ProtocolError
from .frame_fields import is_echoable_id as _is_echoable_id
from .frame_fields import optional_int as _optional_int
from .frame_fields import room_field as _room
from .frame_fields import shorten as _shorten
from .frame_fields import username_field as _username
from .text_cleaning import without_invisible_chars

PROTOCOL_VERSION = 1
HISTORY_DEFAULT_LIMIT = 50
HISTORY_MAX_LIMIT = 200
# Largest history frame or page, in bytes; a page with more is cut and says ``more``.
HISTORY_MAX_BYTES = 256 * 1024
# Rooms in a page of the room list, when the client does not say, and at most.
ROOM_PAGE_DEFAULT = 100
ROOM_PAGE_MAX = 500

# Deepest nesting of arrays and objects a frame may have. The protocol needs two levels; the limit makes a
# deeply nested frame a bad_json error on every Python (3.13's parser no longer hits the recursion limit).
MAX_JSON_DEPTH = 32
_JSON_NESTING = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


# ---------------------------------------------------------------- client frames
#
# Frames and messages are built for every message that passes, so they are plain
# slotted dataclasses: a frozen one costs several times as much to build (see
# docs/benchmarks.md). Treat them as immutable all the same. ``label`` is the
# frame type as the metrics count it.


@dataclass(slots=True)
class Join:
    label: ClassVar[str] = "join"
    room: str
    frame_id: FrameId = None


@dataclass(slots=True)
class Leave:
    label: ClassVar[str] = "leave"
    room: str
    frame_id: FrameId = None


@dataclass(slots=True)
class Send:
    """A message to one user (``to``), a room (``room``) or a group conversation (``group``, the other
    members named in ``to``); exactly one of them is set."""

    label: ClassVar[str] = "send"

    client_id: str
    text: str
    to: str | None = None
    room: str | None = None
    group: tuple[str, ...] | None = None

    @property
    def frame_id(self) -> FrameId:
        return self.client_id


@dataclass(slots=True)
class Ping:
    label: ClassVar[str] = "ping"
    frame_id: FrameId = None


@dataclass(slots=True)
class History:
    """Older messages of a room, a direct conversation or a group conversation, newest first."""

    label: ClassVar[str] = "history"

    room: str | None = None
    with_user: str | None = None
    before: int | None = None
    limit: int = HISTORY_DEFAULT_LIMIT
    frame_id: FrameId = None
    with_group: tuple[str, ...] | None = None


@dataclass(slots=True)
class ListRooms:
    """A page of the room list: up to ``limit`` rooms after the name ``after``, in name order."""

    label: ClassVar[str] = "rooms"
    after: str | None = None
    limit: int = ROOM_PAGE_DEFAULT
    frame_id: FrameId = None


@dataclass(slots=True)
class Resume:
    """Replay what was missed after ``since``, then continue live."""

    label: ClassVar[str] = "resume"

    since: int
    frame_id: FrameId = None


ClientFrame = Join | Leave | Send | Ping | History | ListRooms | Resume | Read | Typing | Search | room_frames.RoomFrame


def parse_client_frame(data: str | bytes, max_text_chars: int) -> ClientFrame:
    """Parse one WebSocket message from a client.

    ``data`` is ``bytes`` for a binary frame (always refused) and ``str`` for a text
    frame. Raises ``ProtocolError`` for anything that is not a valid v1 frame.
    """
    if not isinstance(data, str):
        raise ProtocolError(ErrorCode.BAD_FRAME, "binary frames are not part of the protocol; send JSON text")
    if _too_deep(data):
        raise ProtocolError(ErrorCode.BAD_JSON, f"frame is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        raise ProtocolError(ErrorCode.BAD_JSON, "frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_FRAME, "frame must be a JSON object")
    frame_id = obj.get("id")
    if not _is_echoable_id(frame_id):
        frame_id = None
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_FRAME, "field 'type' must be a string", frame_id)
    parser = _PARSERS.get(kind)
    if parser is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {_shorten(kind)!r}", frame_id)
    try:
        return parser(obj, frame_id, max_text_chars)
    except ProtocolError as exc:
        exc.frame_id = frame_id
        raise


def _too_deep(data: str) -> bool:
    """Whether arrays and objects nest deeper than ``MAX_JSON_DEPTH`` (brackets inside strings do not count)."""
    if data.count("[") + data.count("{") <= MAX_JSON_DEPTH:
        return False  # the common case, decided without a scan
    depth = 0
    for match in _JSON_NESTING.finditer(data):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif token in "]}":
            depth -= 1
    return False


def _one_target(obj: dict[str, Any], user_field: str) -> None:
    if ("room" in obj) == (user_field in obj):
        raise ProtocolError(ErrorCode.BAD_FRAME, f"give exactly one of 'room' and {user_field!r}")


def clean_text(text: str, max_text_chars: int) -> str:
    """Message text as stored: control characters other than tab and newline, and invisible format characters,
    removed (``text_cleaning``).

    Raises ``ProtocolError(bad_text)`` when nothing visible is left, when it is
    longer than ``max_text_chars``, or when it is not valid Unicode.
    """
    if text.isascii() and text.isprintable():
        cleaned = text  # the common case: nothing to remove, nothing to check for surrogates
    else:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError(ErrorCode.BAD_TEXT, "text is not valid Unicode") from None
        cleaned = without_invisible_chars(text)
    if not cleaned.strip():
        raise ProtocolError(ErrorCode.BAD_TEXT, "text is empty")
    if len(cleaned) > max_text_chars:
        raise ProtocolError(ErrorCode.BAD_TEXT, f"text is longer than {max_text_chars} characters")
    return cleaned


def _parse_join(obj: dict[str, Any], frame_id: FrameId, max_text_chars: int) -> Join:
    return Join(_room(obj), frame_id)


def _parse_leave(obj: dict[str, Any], frame_id: FrameId, max_text_chars: int) -> Leave:
    return Leave(_room(obj), frame_id)


def _parse_send(obj: dict[str, Any], frame_id: FrameId, max_text_chars: int) -> Send:
    client_id = obj.get("id")
    if not isinstance(client_id, str) or not _is_echoable_id(client_id):
        raise ProtocolError(
            ErrorCode.BAD_FRAME, f"field 'id' must be a string of 1-{MAX_CLIENT_ID_CHARS} printable characters"
        )
    _one_target(obj, "to")
    text = obj.get("text")
    if not isinstance(text, str):
        raise ProtocolError(ErrorCode.BAD_FRAME, "field 'text' must be a string")
    text = clean_text(text, max_text_chars)
    if "room" in obj:
        return Send(client_id, text, room=_room(obj))
    if isinstance(obj.get("to"), list):
        return Send(client_id, text, group=people_field(obj, "to"))
    return Send(client_id, text, to=_username(obj, "to"))


def _parse_ping(obj: dict[str, Any], frame_id: FrameId, max_text_chars: int) -> Ping:
    if obj.get("id") is not None and frame_id is None:
        raise ProtocolError(ErrorCode.BAD_FRAME, "field 'id' must be a short string or an integer")
    return Ping(frame_id)


def _parse_history(obj: dict[str, Any], frame_id: FrameId, max_text_chars: int) -> History:
    _one_target(obj, "with")
    before = _optional_int(obj, "before", 1, MAX_SEQ)
    limit = _optional_int(obj, "limit", 1, HISTORY_MAX_LIMIT)
    limit = HISTORY_DEFAULT_LIMIT if limit is None else limit
    if "room" in obj:
        return History(room=_room(obj), before=before, limit=limit, frame_id=frame_id)
    if isinstance(obj.get("with"), list):
        return History(with_group=people_field(obj, "with"), before=before, limit=limit, frame_id=frame_id)
    return History(with_user=_username(obj, "with"), before=before, limit=limit, frame_id=frame_id)


def parse_history(query: dict[str, Any]) -> History:
    """A history request given as fields (``room`` or ``with``, ``before``, ``limit``), as the HTTP API takes it."""
    return _parse_history(query, None, 0)


def _parse_rooms(obj: dict[str, Any], frame_id: FrameId, max_text_chars: int) -> ListRooms:
    after = _room(obj, "after") if obj.get("after") is not None else None
    limit = _optional_int(obj, "limit", 1, ROOM_PAGE_MAX)
    return ListRooms(after, ROOM_PAGE_DEFAULT if limit is None else limit, frame_id)


def _parse_resume(obj: dict[str, Any], frame_id: FrameId, max_text_chars: int) -> Resume:
    since = _optional_int(obj, "since", 0, MAX_SEQ)
    if since is None:
        raise ProtocolError(ErrorCode.BAD_FRAME, "field 'since' is required: the last seq you have, or 0")
    return Resume(since, frame_id)


class _Fields:
    """The field checks of this module, for the parsers of ``room_frames`` (which cannot import them)."""

    room = staticmethod(_room)
    user = staticmethod(_username)

    @staticmethod
    def seq(obj: dict[str, Any], field: str) -> int:
        value = _optional_int(obj, field, 1, MAX_SEQ)
        if value is None:
            raise ProtocolError(ErrorCode.BAD_FRAME, f"field {field!r} is required: a message's seq")
        return value

    optional_int = staticmethod(_optional_int)

    @staticmethod
    def text(obj: dict[str, Any], field: str, max_chars: int) -> str:
        value = obj.get(field)
        if not isinstance(value, str):
            raise ProtocolError(ErrorCode.BAD_FRAME, f"field {field!r} must be a string")
        return clean_text(value, max_chars)

    @staticmethod
    def line(obj: dict[str, Any], field: str, max_chars: int) -> str:
        value = obj.get(field, "")
        if not isinstance(value, str):
            raise ProtocolError(ErrorCode.BAD_FRAME, f"field {field!r} must be a string")
        value = " ".join(value.split())
        return clean_text(value, max_chars) if value else ""

    @staticmethod
    def flag(obj: dict[str, Any], field: str) -> bool:
        value = obj.get(field, False)
        if not isinstance(value, bool):
            raise ProtocolError(ErrorCode.BAD_FRAME, f"field {field!r} must be true or false")
        return value

    @staticmethod
    def refuse(message: str) -> NoReturn:
        raise ProtocolError(ErrorCode.BAD_FRAME, message)


_PARSERS: dict[str, Callable[[dict[str, Any], FrameId, int], ClientFrame]] = {
    "join": _parse_join,
    "leave": _parse_leave,
    "send": _parse_send,
    "ping": _parse_ping,
    "history": _parse_history,
    "rooms": _parse_rooms,
    "resume": _parse_resume,
    **room_frames.parsers(_Fields()),
    "read": parse_read,
    "typing": parse_typing,
    "search": parse_search,
}
CLIENT_FRAME_TYPES = tuple(_PARSERS)
