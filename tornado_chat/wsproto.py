"""The WebSocket protocol after the handshake (RFC 6455), without I/O: bytes in, events out.

``FrameParser`` takes whatever bytes a client's socket gave and returns the
complete messages and control frames in them; it raises ``WsProtocolError``
with the close code to answer with when the client breaks the protocol. The
``*_frame`` functions build server frames, unmasked, to be written as they are:
a fan-out builds one and writes the same bytes to every recipient.

What a server must refuse, by RFC 6455 section: unmasked client frames (5.1),
reserved bits without a negotiated extension (5.2), unknown opcodes (5.2),
fragmented or oversized control frames (5.4, 5.5), a continuation with nothing
to continue or a new message inside a fragmented one (5.4), text that is not
UTF-8 (8.1), and close frames with a bad code or payload (5.5.1, 7.4).
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass

_mask_c: Callable[[bytes, bytes], bytes] | None
try:
    from tornado.speedups import websocket_mask as _mask_c
except ImportError:  # a Tornado built without its C speedups
    _mask_c = None

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_LARGE = 1009
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013
MAX_CONTROL_PAYLOAD = 125
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WsProtocolError(Exception):
    """The client broke the protocol; close with ``code`` (1002, 1007 or 1009) and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(slots=True)
class Message:
    """A complete data message: ``str`` for text, ``bytes`` for binary."""

    data: str | bytes


@dataclass(slots=True)
class Ping:
    payload: bytes


@dataclass(slots=True)
class Pong:
    payload: bytes


@dataclass(slots=True)
class Close:
    """The client's close frame; ``code`` is None when it carried none."""

    code: int | None
    reason: str


Event = Message | Ping | Pong | Close


def accept_key(client_key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (section 4.2.2)."""
    digest = hashlib.sha1(client_key.encode("ascii") + _ACCEPT_GUID, usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


def valid_client_key(client_key: str) -> bool:
    """A key is 16 random bytes in base64 (section 4.1)."""
    try:
        return len(base64.b64decode(client_key.encode("ascii"), validate=True)) == 16
    except (ValueError, UnicodeEncodeError):
        return False


def unmask(mask: bytes, data: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (section 5.3)."""
    if _mask_c is not None:
        return bytes(_mask_c(mask, data))
    length = len(data)
    key = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")


def _frame(opcode: int, payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        return bytes((0x80 | opcode, length)) + payload
    if length <= 0xFFFF:
        return struct.pack("!BBH", 0x80 | opcode, 126, length) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, length) + payload


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame carrying UTF-8 ``payload``."""
    return _frame(OP_TEXT, payload)


def ping_frame(payload: bytes) -> bytes:
    assert len(payload) <= MAX_CONTROL_PAYLOAD
    return _frame(OP_PING, payload)


def pong_frame(payload: bytes) -> bytes:
    assert len(payload) <= MAX_CONTROL_PAYLOAD
    return _frame(OP_PONG, payload)


def close_frame(code: int | None, reason: str = "") -> bytes:
    """A close frame; the reason is cut to fit the 125-byte control payload."""
    if code is None:
        return _frame(OP_CLOSE, b"")
    encoded = reason.encode("utf-8")[: MAX_CONTROL_PAYLOAD - 2]
    return _frame(OP_CLOSE, struct.pack("!H", code) + encoded.decode("utf-8", "ignore").encode("utf-8"))


def _valid_close_code(code: int) -> bool:
    """Codes a peer may send (section 7.4.1): 1000-1014 less the reserved ones, and 3000-4999."""
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


class FrameParser:
    """Incremental parser of client frames. ``feed`` returns the events completed by the new bytes."""

    __slots__ = ("_buffer", "_fragments", "_fragments_size", "_fragment_opcode", "max_message_bytes")

    def __init__(self, max_message_bytes: int) -> None:
        self.max_message_bytes = max_message_bytes
        self._buffer = b""
        self._fragments: list[bytes] | None = None
        self._fragments_size = 0
        self._fragment_opcode = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes held for an incomplete frame or message."""
        return len(self._buffer) + self._fragments_size

    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data`` (appended to what was left over); raises ``WsProtocolError``."""
        buffer = self._buffer + data if self._buffer else data
        events: list[Event] = []
        position = 0
        end = len(buffer)
        while end - position >= 2:
            first = buffer[position]
            second = buffer[position + 1]
            if not second & 0x80:
                raise WsProtocolError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
            if first & 0x70:
                raise WsProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set without an extension")
            opcode = first & 0x0F
            final = first & 0x80
            length = second & 0x7F
            header = 6
            if length == 126:
                if end - position < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, position + 2)
                header = 8
            elif length == 127:
                if end - position < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, position + 2)
                header = 14
            if opcode >= OP_CLOSE:
                if not final or length > MAX_CONTROL_PAYLOAD:
                    raise WsProtocolError(CLOSE_PROTOCOL_ERROR, "control frames must be final and short")
            elif length + self._fragments_size > self.max_message_bytes:
                # Refused from the header alone: the payload is never read into memory.
                raise WsProtocolError(CLOSE_TOO_LARGE, "message too big")
            if end - position < header + length:
                break
            mask = buffer[position + header - 4 : position + header]
            payload = unmask(mask, buffer[position + header : position + header + length]) if length else b""
            position += header + length
            event = self._frame(opcode, bool(final), payload)
            if event is not None:
                events.append(event)
        self._buffer = buffer[position:]
        return events

    def _frame(self, opcode: int, final: bool, payload: bytes) -> Event | None:
        if opcode in (OP_TEXT, OP_BINARY):
            if self._fragments is not None:
                raise WsProtocolError(CLOSE_PROTOCOL_ERROR, "a new message began inside a fragmented one")
            if final:
                return self._message(opcode, payload)
            self._fragments = [payload]
            self._fragments_size = len(payload)
            self._fragment_opcode = opcode
            return None
        if opcode == OP_CONTINUATION:
            if self._fragments is None:
                raise WsProtocolError(CLOSE_PROTOCOL_ERROR, "a continuation frame with nothing to continue")
            self._fragments.append(payload)
            self._fragments_size += len(payload)
            if not final:
                return None
            data = b"".join(self._fragments)
            self._fragments = None
            self._fragments_size = 0
            return self._message(self._fragment_opcode, data)
        if opcode == OP_PING:
            return Ping(payload)
        if opcode == OP_PONG:
            return Pong(payload)
        if opcode == OP_CLOSE:
            return self._close(payload)
        raise WsProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")

    @staticmethod
    def _message(opcode: int, payload: bytes) -> Message:
        if opcode == OP_BINARY:
            return Message(payload)
        try:
            return Message(codecs.decode(payload, "utf-8"))
        except UnicodeDecodeError:
            raise WsProtocolError(CLOSE_INVALID_DATA, "text frames must be UTF-8") from None

    @staticmethod
    def _close(payload: bytes) -> Close:
        if not payload:
            return Close(None, "")
        if len(payload) == 1:
            raise WsProtocolError(CLOSE_PROTOCOL_ERROR, "a close payload needs a two-byte code")
        (code,) = struct.unpack_from("!H", payload)
        if not _valid_close_code(code):
            raise WsProtocolError(CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise WsProtocolError(CLOSE_INVALID_DATA, "close reasons must be UTF-8") from None
        return Close(code, reason)
