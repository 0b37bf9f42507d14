"""The WebSocket frame parser and builders, section by section of RFC 6455, without sockets."""

from __future__ import annotations

import os
import struct

import pytest

from bench.wsframe import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, encode_frame
from tornado_chat import wsproto
from tornado_chat.wsproto import Close, FrameParser, Message, Ping, Pong, WsProtocolError

MAX = 65536


def client_frame(opcode: int, payload: bytes, *, final: bool = True, mask: bool = True, rsv: int = 0) -> bytes:
    """A frame as a client sends it: masked with a random key (section 5.3), reserved bits ``rsv`` set."""
    frame = encode_frame(opcode, payload, masked=mask, final=final)
    return bytes((frame[0] | rsv,)) + frame[1:]


def parse(data: bytes, max_bytes: int = MAX) -> list[wsproto.Event]:
    return FrameParser(max_bytes).feed(data)


def error_of(data: bytes, max_bytes: int = MAX) -> WsProtocolError:
    with pytest.raises(WsProtocolError) as caught:
        FrameParser(max_bytes).feed(data)
    return caught.value


def test_4_2_2_accept_key_matches_the_rfc_example() -> None:
    assert wsproto.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert wsproto.valid_client_key("dGhlIHNhbXBsZSBub25jZQ==")
    assert not wsproto.valid_client_key("too-short")
    assert not wsproto.valid_client_key("ÿÿÿÿ")


def test_5_2_payload_lengths_of_7_16_and_64_bits() -> None:
    for size in (0, 125, 126, 65535, 65536, 70000):
        payload = b"x" * size
        [event] = parse(client_frame(OP_BINARY, payload), max_bytes=10**6)
        assert event == Message(payload)


def test_5_3_client_frames_must_be_masked() -> None:
    assert error_of(client_frame(OP_TEXT, b"hi", mask=False)).code == wsproto.CLOSE_PROTOCOL_ERROR


def test_5_2_reserved_bits_and_opcodes_are_refused() -> None:
    assert error_of(client_frame(OP_TEXT, b"hi", rsv=0x40)).code == wsproto.CLOSE_PROTOCOL_ERROR
    assert error_of(client_frame(0x3, b"hi")).code == wsproto.CLOSE_PROTOCOL_ERROR
    assert error_of(client_frame(0xB, b"")).code == wsproto.CLOSE_PROTOCOL_ERROR


def test_5_4_fragments_are_joined_and_control_frames_may_interleave() -> None:
    data = (
        client_frame(OP_TEXT, "hé".encode()[:2], final=False)
        + client_frame(OP_PING, b"p")
        + client_frame(OP_CONT, "hé".encode()[2:] + b"llo")
    )
    assert parse(data) == [Ping(b"p"), Message("héllo")]


def test_5_4_continuation_rules() -> None:
    assert error_of(client_frame(OP_CONT, b"x")).code == wsproto.CLOSE_PROTOCOL_ERROR
    nested = client_frame(OP_TEXT, b"a", final=False) + client_frame(OP_TEXT, b"b")
    assert error_of(nested).code == wsproto.CLOSE_PROTOCOL_ERROR


def test_5_5_control_frames_are_final_and_short() -> None:
    assert error_of(client_frame(OP_PING, b"x" * 126)).code == wsproto.CLOSE_PROTOCOL_ERROR
    assert error_of(client_frame(OP_PING, b"x", final=False)).code == wsproto.CLOSE_PROTOCOL_ERROR
    assert parse(client_frame(OP_PONG, b"x" * 125)) == [Pong(b"x" * 125)]


def test_5_5_1_close_payloads() -> None:
    assert parse(client_frame(OP_CLOSE, b"")) == [Close(None, "")]
    assert parse(client_frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye")) == [Close(1000, "bye")]
    assert parse(client_frame(OP_CLOSE, struct.pack("!H", 4001))) == [Close(4001, "")]
    for bad in (b"\x03", struct.pack("!H", 1005), struct.pack("!H", 999), struct.pack("!H", 2000)):
        assert error_of(client_frame(OP_CLOSE, bad)).code == wsproto.CLOSE_PROTOCOL_ERROR
    invalid_reason = client_frame(OP_CLOSE, struct.pack("!H", 1000) + b"\xff")
    assert error_of(invalid_reason).code == wsproto.CLOSE_INVALID_DATA


def test_8_1_text_must_be_utf8_even_across_fragments() -> None:
    assert error_of(client_frame(OP_TEXT, b"\xff\xfe")).code == wsproto.CLOSE_INVALID_DATA
    split = client_frame(OP_TEXT, b"\xc3", final=False) + client_frame(OP_CONT, b"\x28")
    assert error_of(split).code == wsproto.CLOSE_INVALID_DATA


def test_10_4_oversize_messages_are_refused_from_the_header() -> None:
    # Only the header of a 1 MiB frame is given: it is refused before its payload arrives.
    header_only = client_frame(OP_TEXT, b"x" * (1 << 20))[:14]
    assert error_of(header_only, max_bytes=MAX).code == wsproto.CLOSE_TOO_LARGE
    fragments = client_frame(OP_TEXT, b"x" * 40000, final=False) + client_frame(OP_CONT, b"x" * 40000)
    assert error_of(fragments, max_bytes=MAX).code == wsproto.CLOSE_TOO_LARGE


def test_bytes_may_arrive_in_any_split() -> None:
    data = b"".join(client_frame(OP_TEXT, f"message {i}".encode()) for i in range(20))
    for chunk in (1, 2, 3, 7, 64):
        parser = FrameParser(MAX)
        events: list[wsproto.Event] = []
        for start in range(0, len(data), chunk):
            events.extend(parser.feed(data[start : start + chunk]))
        assert events == [Message(f"message {i}") for i in range(20)]
        assert parser.pending_bytes == 0


def test_server_frames_are_unmasked_and_final() -> None:
    assert wsproto.text_frame(b"hi") == b"\x81\x02hi"
    assert wsproto.text_frame(b"x" * 200)[:4] == b"\x81\x7e\x00\xc8"
    assert wsproto.text_frame(b"x" * 70000)[:2] == b"\x81\x7f"
    assert wsproto.ping_frame(b"12345678") == b"\x89\x0812345678"
    assert wsproto.close_frame(1012, "restart") == b"\x88\x09\x03\xf4restart"
    assert len(wsproto.close_frame(1000, "é" * 200)) <= 2 + 125


def test_unmask_matches_the_pure_python_definition() -> None:
    key = os.urandom(4)
    for size in (0, 1, 3, 4, 5, 1000):
        data = os.urandom(size)
        assert wsproto.unmask(key, data) == bytes(b ^ key[i % 4] for i, b in enumerate(data))
