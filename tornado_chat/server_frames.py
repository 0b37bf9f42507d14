"""Server frames of wire protocol v1: stored messages and every frame the server sends, as UTF-8 JSON.

Pure code: no sockets, no clock. Encoders return bytes ready to be framed
once (``outgoing.Outgoing``) and written to every recipient. The frames are
documented, with examples, in ``docs/protocol.md``.
"""

from __future__ import annotations

import functools
import json
import json.encoder
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .protocol import HISTORY_MAX_BYTES, ErrorCode, FrameId, History


@dataclass(slots=True)
class Message:
    """A stored chat message. ``ts`` is seconds since the epoch; exactly one of ``to``/``room``/``members`` is set.

    ``members`` is the sorted member set of a group conversation; ``mentions`` the users it mentions
    (``"@room"`` for everyone in its room), sorted. ``edited`` (seconds since the epoch) is set once its author
    changed the text; a ``deleted`` message is a tombstone whose text is empty (and mentions nobody). ``rev`` is
    the position of its latest change in the sequence that numbers messages too (0: never changed), so that a
    resume replays changes like messages.
    """

    seq: int
    sender: str
    text: str
    ts: float
    client_id: str
    to: str | None = None
    room: str | None = None
    members: tuple[str, ...] | None = None
    mentions: tuple[str, ...] = ()
    edited: float | None = None
    deleted: bool = False
    rev: int = 0

    @property
    def kind(self) -> str:
        """``room``, ``group`` or ``direct``, the label used by metrics."""
        return "room" if self.room is not None else "group" if self.members is not None else "direct"


# A JSON string literal with non-ASCII kept as is: what json.dumps(ensure_ascii=False) writes for a str.
_quote: Callable[[str], str] = json.encoder.encode_basestring


def encode(frame: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON; the one place server frames become bytes."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@functools.lru_cache(maxsize=64)
def _iso_second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def iso_time(ts: float) -> str:
    """``ts`` (seconds since the epoch) as ISO 8601 UTC with milliseconds, e.g. 2026-11-26T02:15:40.123Z.

    Messages of the same second share the formatted date; only the milliseconds are new.
    Like ``datetime``, the time is rounded to microseconds, then cut to milliseconds. As there, the fraction
    is split off first (exactly): ``ts * 1e6`` would round in the multiplication and, at a half microsecond,
    sometimes the other way.
    """
    fraction, whole = math.modf(ts)
    second, micros = divmod(int(whole) * 1_000_000 + round(fraction * 1_000_000), 1_000_000)
    return f"{_iso_second(second)}.{micros // 1000:03d}Z"


def message_fields(message: Message, own: bool) -> dict[str, Any]:
    """A message as it appears on the wire; ``own`` adds the sender's client id."""
    fields: dict[str, Any] = {"seq": message.seq, "from": message.sender}
    if message.room is not None:
        fields["room"] = message.room
    elif message.members is not None:
        fields["members"] = list(message.members)
    else:
        fields["to"] = message.to
    fields["text"] = message.text
    fields["ts"] = iso_time(message.ts)
    if message.mentions:
        fields["mentions"] = list(message.mentions)
    if own:
        fields["id"] = message.client_id
    if message.rev:
        fields["rev"] = message.rev
    if message.deleted:
        fields["deleted"] = True
    elif message.edited is not None:
        fields["edited"] = iso_time(message.edited)
    return fields


def message_frame(message: Message, own: bool) -> bytes:
    """The same bytes as ``encode({"type": "message", **message_fields(message, own)})``, built directly:
    this runs for every message, and a dict round trip through the JSON encoder costs several times more.
    """
    if message.rev:
        return encode({"type": "message", **message_fields(message, own)})
    if message.room is not None:
        target = f'"room":{_quote(message.room)}'
    elif message.members is not None:
        target = f'"members":{_names(message.members)}'
    else:
        target = f'"to":{_quote(message.to or "")}'
    mentions = f',"mentions":{_names(message.mentions)}' if message.mentions else ""
    own_id = f',"id":{_quote(message.client_id)}' if own else ""
    return (
        f'{{"type":"message","seq":{message.seq},"from":{_quote(message.sender)},{target},'
        f'"text":{_quote(message.text)},"ts":"{iso_time(message.ts)}"{mentions}{own_id}}}'
    ).encode()


def _names(names: tuple[str, ...]) -> str:
    return "[" + ",".join(_quote(name) for name in names) + "]"


def ack_frame(message: Message) -> bytes:
    return (
        f'{{"type":"ack","id":{_quote(message.client_id)},"seq":{message.seq},"ts":"{iso_time(message.ts)}"}}'
    ).encode()


def error_frame(code: ErrorCode, message: str, frame_id: FrameId = None) -> bytes:
    frame: dict[str, Any] = {"type": "error", "code": str(code), "message": message}
    if frame_id is not None:
        frame["id"] = frame_id
    return encode(frame)


def pong_frame(ping_id: FrameId, now: float) -> bytes:
    """``ts`` is the server's clock in milliseconds since the epoch, for clock-offset estimates."""
    return encode({"type": "pong", "id": ping_id, "ts": round(now * 1000)})


def presence_frame(user: str, online: bool) -> bytes:
    return encode({"type": "presence", "user": user, "status": "online" if online else "offline"})


# What a history entry costs beyond its strings: the field names, punctuation, a 19-digit seq and the time.
HISTORY_ENTRY_OVERHEAD_BYTES = 120
# What an edited or deleted message's entry costs beyond that: its "rev" and its "edited" time or "deleted".
HISTORY_CHANGE_OVERHEAD_BYTES = 64
# What a list of names in an entry (a group's "members", a message's "mentions") costs beyond its names, each of
# which adds its quotes and a comma: the field's name and brackets.
HISTORY_NAMES_OVERHEAD_BYTES = 16
# What a history frame costs beyond its entries: type, more, and the room or the people it is with (a group
# conversation names up to nine others of up to 32 characters each).
HISTORY_FRAME_OVERHEAD_BYTES = 512
# The bytes a page's entries may take: stores select rows up to this (see history_entry_bytes).
HISTORY_BUDGET_BYTES = HISTORY_MAX_BYTES - HISTORY_FRAME_OVERHEAD_BYTES
_ESCAPED = str.maketrans(dict.fromkeys('"\\\n\t', ""))


def history_entry_bytes(message: Message) -> int:
    """An upper bound of a message's size in a history frame, as it now stands (``message_fields``).

    The text's UTF-8 bytes and one more for each character JSON escapes (quote, backslash, newline, tab: the
    only control characters texts keep), the client id twice over (any printable text), the names as they are
    (user names are ASCII and need no escapes): the sender, the room or the recipient, or a group's member
    list, and the list of mentions. The text is the message's as it now stands: an edit's (with the mentions
    parsed anew), or none for a tombstone, which carries the fields of a change instead
    (``HISTORY_CHANGE_OVERHEAD_BYTES``); a store keeps the size up to date with each change
    (``sqlite_messages.HISTORY_SQL`` cuts pages by it; schema version 4 computes it in SQL for older rows).
    """
    text = message.text
    escaped = len(text) - len(text.translate(_ESCAPED))
    text_bytes = len(text) if text.isascii() else len(text.encode())
    if message.members is not None:
        target = HISTORY_NAMES_OVERHEAD_BYTES + _names_bytes(message.members)
    else:
        target = len(message.room or message.to or "")
    return (
        text_bytes
        + escaped
        + 2 * len(message.client_id.encode())
        + len(message.sender)
        + target
        + (HISTORY_NAMES_OVERHEAD_BYTES + _names_bytes(message.mentions) if message.mentions else 0)
        + HISTORY_ENTRY_OVERHEAD_BYTES
        + (HISTORY_CHANGE_OVERHEAD_BYTES if message.rev else 0)
    )


def _names_bytes(names: tuple[str, ...]) -> int:
    """What a list of user names takes in JSON: each name, its quotes and a comma."""
    return sum(len(name) + 3 for name in names)


def history_page(request: History, messages: list[Message], more: bool, viewer: str) -> bytes:
    """A history frame of at most ``HISTORY_MAX_BYTES``: the oldest messages are left for the next page.

    Stores select a page's rows within ``HISTORY_BUDGET_BYTES`` already; the halving here only guards the
    bound against a store that did not.
    """
    return fit_page(lambda page, page_more: history_frame(request, page, page_more, viewer), messages, more)


def fit_page(build: Callable[[list[Message], bool], bytes], messages: list[Message], more: bool) -> bytes:
    """``build(messages, more)``, with the oldest messages left out (and ``more`` set) until it is at most
    ``HISTORY_MAX_BYTES`` long, or holds one message."""
    frame = build(messages, more)
    while len(frame) > HISTORY_MAX_BYTES and len(messages) > 1:
        messages = messages[: len(messages) // 2]
        frame = build(messages, True)
    return frame


def history_frame(request: History, messages: list[Message], more: bool, viewer: str) -> bytes:
    frame: dict[str, Any] = {"type": "history"}
    if request.room is not None:
        frame["room"] = request.room
    elif request.with_group is not None:
        frame["with"] = list(request.with_group)
    else:
        frame["with"] = request.with_user
    frame["messages"] = [message_fields(m, m.sender == viewer) for m in messages]
    frame["more"] = more
    return encode(frame)


def change_frame(message: Message, frame_id: FrameId = None) -> bytes:
    """``edited`` or ``deleted``: a message's new state, at position ``rev``; ``id`` answers the change's frame.

    An edit carries the text as it stands and its mentions as parsed anew (it notifies nobody again); a delete
    carries only who, where and the position.
    """
    frame: dict[str, Any] = {"type": "deleted" if message.deleted else "edited", **message_fields(message, own=False)}
    if message.deleted:
        del frame["text"], frame["ts"], frame["deleted"]
        frame.pop("mentions", None)
    if frame_id is not None:
        frame["id"] = frame_id
    return encode(frame)
