"""Client WebSocket frames (RFC 6455 section 5.2): the one encoder the load generator and the tests share.

A client masks every frame it sends (section 5.3); ``masked=False`` and ``final=False`` exist for tests that
send what a client must not (an unmasked frame) or what a server must reassemble (fragments). Nothing here
parses: each side reads frames its own way.
"""

from __future__ import annotations

import os
import struct

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def encode_frame(opcode: int, payload: bytes, *, masked: bool = True, final: bool = True) -> bytes:
    """One frame: final unless ``final`` is False, masked with a fresh random key unless ``masked`` is False."""
    length = len(payload)
    first = (0x80 if final else 0) | opcode
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 0x10000:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not masked:
        return header + payload
    key = os.urandom(4)
    if not length:
        return header + key
    # XOR the whole payload at once as one big integer: far faster in Python than a byte loop.
    repeated = (key * ((length + 3) // 4))[:length]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(length, "big")
    return header + key + body
