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


def history_page(request: History, messages: list[Message], more: bool, viewer: str) -> bytes:
    """A history frame of at most ``HISTORY_MAX_BYTES``: the oldest messages are left for the next page.

    ``limit`` bounds the count; long texts (4000 characters of four-byte emoji
    are 16 KB) could still make one frame too large to send to a slow link.
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

    An edit carries the text's mentions as parsed anew; it notifies nobody again (see ``edits.py``).
    """
    frame: dict[str, Any] = {"type": "deleted" if message.deleted else "edited", "seq": message.seq, "rev": message.rev}
    frame["from"] = message.sender
    if message.room is not None:
        frame["room"] = message.room
    elif message.members is not None:
        frame["members"] = list(message.members)
    else:
        frame["to"] = message.to
    if not message.deleted:
        frame["text"] = message.text
        frame["ts"] = iso_time(message.ts)
        if message.edited is not None:
            frame["edited"] = iso_time(message.edited)
        if message.mentions:
            frame["mentions"] = list(message.mentions)
    if frame_id is not None:
        frame["id"] = frame_id
    return encode(frame)
