"""WebSocket frames built once and written as-is to every recipient (RFC 6455 section 5.2)."""

from __future__ import annotations

import struct

WS_CLOSE_NORMAL = 1000
WS_CLOSE_POLICY = 1008
WS_CLOSE_TOO_LARGE = 1009
WS_CLOSE_SERVICE_RESTART = 1012
WS_CLOSE_TRY_AGAIN_LATER = 1013


def ws_ping_frame(payload: bytes) -> bytes:
    """An unmasked WebSocket ping frame; control frame payloads are at most 125 bytes."""
    assert len(payload) <= 125
    return bytes((0x89, len(payload))) + payload


def ws_text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame carrying ``payload``."""
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length <= 0xFFFF:
        return struct.pack("!BBH", 0x81, 126, length) + payload
    return struct.pack("!BBQ", 0x81, 127, length) + payload
