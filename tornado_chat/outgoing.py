"""Server frames on their way out: the JSON payload encoded once, then framed once per transport.

Pure code: no sockets. A fan-out builds one ``Outgoing`` for a payload however
many sessions receive it, framed once (RFC 6455 section 5.2: a final, unmasked
frame), and every WebSocket recipient writes the same bytes. A connection that
negotiated compression cannot share those bytes and hands ``payload`` to
Tornado's ``write_message`` instead.

Heartbeat pings are ``Outgoing`` too (``Outgoing.ping``): one per tick, written
to every connection that is due.

An event stream (``GET /events``) takes the same frame as one Server-Sent
Event (``Outgoing.sse``), built on first use and then shared by every
event-stream recipient of the fan-out: ``id:`` is the seq of a ``message`` or
an ``ack`` (so that a browser's ``Last-Event-ID`` is a resume point), and a
heartbeat ping is a comment line.
"""

from __future__ import annotations

import re
import struct

OP_TEXT = 0x1
OP_PING = 0x9
# RFC 6455 section 5.5: control frames carry at most 125 bytes.
MAX_CONTROL_PAYLOAD_BYTES = 125
# Payload lengths that still fit the 7-bit and the 16-bit length fields (section 5.2).
_SHORT_LENGTH_MAX = 125
_MEDIUM_LENGTH_MAX = 0xFFFF
# A heartbeat ping on an event stream: a comment line, which EventSource ignores and proxies pass on.
SSE_PING = b": ping\n\n"
# The frames that carry a resume point (docs/protocol.md), as server_frames writes them: the seq comes first
# in a message, after the client id (a JSON string, in which a quote is always escaped) in an ack.
_SEQ_FRAME = re.compile(rb'\{"type":"(?:message","seq":([0-9]+)|ack","id":"(?:[^"\\]|\\.)*","seq":([0-9]+)),')


def websocket_frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame as a server sends it."""
    length = len(payload)
    if length <= _SHORT_LENGTH_MAX:
        return bytes((0x80 | opcode, length)) + payload
    if length <= _MEDIUM_LENGTH_MAX:
        return struct.pack("!BBH", 0x80 | opcode, 126, length) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, length) + payload


def sse_event(payload: bytes) -> bytes:
    """One JSON frame as a Server-Sent Event; ``id:`` is its seq when it is a ``message`` or an ``ack``."""
    match = _SEQ_FRAME.match(payload)
    head = b"id: " + (match.group(1) or match.group(2)) + b"\n" if match else b""
    # Compact JSON never holds a raw line break; a payload that did would still be one event.
    return head + b"data: " + payload.replace(b"\n", b"\ndata: ") + b"\n\n"


class Outgoing:
    """One server frame: ``payload`` (UTF-8 JSON, or a ping's bytes) and its WebSocket framing, built once."""

    __slots__ = ("_sse", "opcode", "payload", "websocket")

    def __init__(self, payload: bytes, opcode: int = OP_TEXT) -> None:
        self.payload = payload
        self.opcode = opcode
        # The frame's bytes on a WebSocket without compression, shared by every recipient.
        self.websocket = websocket_frame(opcode, payload)
        self._sse: bytes | None = None

    @property
    def sse(self) -> bytes:
        """The frame on an event stream, built by the first event-stream recipient and shared by the rest."""
        event = self._sse
        if event is None:
            event = self._sse = SSE_PING if self.opcode == OP_PING else sse_event(self.payload)
        return event

    @classmethod
    def ping(cls, payload: bytes) -> Outgoing:
        """A ping frame; ``payload`` is at most 125 bytes."""
        if len(payload) > MAX_CONTROL_PAYLOAD_BYTES:
            raise ValueError("a ping payload is at most 125 bytes")
        return cls(payload, OP_PING)

    @property
    def is_ping(self) -> bool:
        return self.opcode == OP_PING
