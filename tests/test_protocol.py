"""The protocol parser and encoders, without a server."""

from __future__ import annotations

import json

import pytest

from tornado_chat import protocol, server_frames
from tornado_chat.protocol import ErrorCode, History, Join, Leave, ListRooms, Ping, ProtocolError, Send
from tornado_chat.server_frames import Message

pytestmark = pytest.mark.unit

MAX_TEXT = 4000


def parse(frame: object) -> protocol.ClientFrame:
    return protocol.parse_client_frame(json.dumps(frame), MAX_TEXT)


def error_of(raw: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        protocol.parse_client_frame(raw, MAX_TEXT)
    return caught.value


def test_every_client_frame_parses_into_its_type() -> None:
    assert parse({"type": "join", "room": "lobby"}) == Join("lobby")
    assert parse({"type": "leave", "room": "lobby", "id": 3}) == Leave("lobby", 3)
    assert parse({"type": "send", "id": "c1", "room": "lobby", "text": "hi"}) == Send("c1", "hi", room="lobby")
    assert parse({"type": "send", "id": "c2", "to": "bob", "text": "hi"}) == Send("c2", "hi", to="bob")
    assert parse({"type": "ping"}) == Ping()
    assert parse({"type": "ping", "id": "p"}) == Ping("p")
    assert parse({"type": "history", "room": "lobby"}) == History(room="lobby", limit=50)
    assert parse({"type": "history", "with": "bob", "before": 9, "limit": 200}) == History(
        with_user="bob", before=9, limit=200
    )
    assert parse({"type": "rooms"}) == ListRooms()


def test_unknown_fields_are_ignored_and_from_is_never_read() -> None:
    frame = parse({"type": "send", "id": "c", "to": "bob", "text": "x", "from": "mallory", "extra": [1]})
    assert frame == Send("c", "x", to="bob")


def test_text_loses_control_characters_but_keeps_newlines_and_tabs() -> None:
    frame = parse({"type": "send", "id": "c", "to": "bob", "text": "a\u0000b\u001bc\td\ne\u0085f\u007f"})
    assert isinstance(frame, Send)
    assert frame.text == "abc\td\nef"


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("pay \u202eTXT.exe", "pay TXT.exe"),  # a bidi override
        ("a\u200bb\u2060c\ufeffd\u00ade", "abcde"),  # zero-width space, word joiner, BOM, soft hyphen
        ("\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f468\u200d\U0001f469\u200d\U0001f467"),  # family
        ("\U0001f3f3\ufe0f\u200d\U0001f308", "\U0001f3f3\ufe0f\u200d\U0001f308"),  # rainbow flag
        ("\U0001f469\U0001f3fd\u200d\U0001f4bb", "\U0001f469\U0001f3fd\u200d\U0001f4bb"),  # with a skin tone
        ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"),
        ("\u200dx\u200d", "x"),  # a joiner that joins nothing
        ("1\u200d2", "12"),
    ],
)
def test_text_loses_invisible_format_characters_but_keeps_joiners_that_join(text: str, kept: str) -> None:
    frame = parse({"type": "send", "id": "c", "to": "bob", "text": text})
    assert isinstance(frame, Send) and frame.text == kept


@pytest.mark.parametrize("text", ["\u200b", "\u200b\u200c\u200d\u2060", " \u202e ", "\ufeff\n"])
def test_text_of_invisible_characters_only_is_refused(text: str) -> None:
    assert error_of(json.dumps({"type": "send", "id": "c", "to": "b", "text": text})).code == ErrorCode.BAD_TEXT


def test_text_length_is_counted_in_characters_after_cleaning() -> None:
    assert isinstance(parse({"type": "send", "id": "c", "to": "b", "text": "é" * MAX_TEXT}), Send)
    assert isinstance(parse({"type": "send", "id": "c", "to": "b", "text": "x" * MAX_TEXT + "\u0000"}), Send)
    assert error_of(json.dumps({"type": "send", "id": "c", "to": "b", "text": "x" * 4001})).code == ErrorCode.BAD_TEXT


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{}", ErrorCode.BAD_FRAME),
        ("nope", ErrorCode.BAD_JSON),
        ("[" * 5000 + "]" * 5000, ErrorCode.BAD_JSON),
        ("1" * 5000, ErrorCode.BAD_JSON),
        ("null", ErrorCode.BAD_FRAME),
        ('{"type": null}', ErrorCode.BAD_FRAME),
        ('{"type": "JOIN", "room": "a"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type": "join", "room": "a b"}', ErrorCode.BAD_ROOM),
        ('{"type": "join", "room": ""}', ErrorCode.BAD_ROOM),
        ('{"type": "send", "id": "", "to": "b", "text": "x"}', ErrorCode.BAD_FRAME),
        ('{"type": "send", "id": 5, "to": "b", "text": "x"}', ErrorCode.BAD_FRAME),
        ('{"type": "send", "id": "a\\u0000", "to": "b", "text": "x"}', ErrorCode.BAD_FRAME),
        ('{"type": "send", "id": "a", "to": 5, "text": "x"}', ErrorCode.BAD_FRAME),
        ('{"type": "send", "id": "a", "to": "bad name", "text": "x"}', ErrorCode.UNKNOWN_USER),
        ('{"type": "history", "room": "a", "with": "b"}', ErrorCode.BAD_FRAME),
        ('{"type": "history", "room": "a", "before": 0}', ErrorCode.BAD_FRAME),
        ('{"type": "history", "room": "a", "before": 1.5}', ErrorCode.BAD_FRAME),
        ('{"type": "history", "room": "a", "before": 99999999999999999999999}', ErrorCode.BAD_FRAME),
        ('{"type": "ping", "id": true}', ErrorCode.BAD_FRAME),
    ],
)
def test_bad_frames_raise_protocol_errors_with_their_code(raw: str | bytes, code: ErrorCode) -> None:
    assert error_of(raw).code == code


def test_errors_carry_an_echoable_id_only() -> None:
    assert error_of('{"type": "join", "id": "j1", "room": "A"}').frame_id == "j1"
    assert error_of('{"type": "join", "id": {"x": 1}, "room": "A"}').frame_id is None
    assert error_of('{"type": "join", "id": "\\ud800", "room": "A"}').frame_id is None


def test_server_frames_are_compact_utf8_json() -> None:
    message = Message(7, "alice", "héllo ✓", 1_700_000_000.5, "c1", room="lobby")
    frame = server_frames.message_frame(message, own=False)
    assert (
        frame
        == (
            '{"type":"message","seq":7,"from":"alice","room":"lobby","text":"héllo ✓","ts":"2023-11-14T22:13:20.500Z"}'
        ).encode()
    )
    assert json.loads(server_frames.message_frame(message, own=True))["id"] == "c1"
    assert json.loads(server_frames.ack_frame(message)) == {
        "type": "ack",
        "id": "c1",
        "seq": 7,
        "ts": "2023-11-14T22:13:20.500Z",
    }
    assert json.loads(server_frames.error_frame(ErrorCode.BAD_JSON, "no")) == {
        "type": "error",
        "code": "bad_json",
        "message": "no",
    }
    assert json.loads(server_frames.pong_frame("p", 12.3456)) == {"type": "pong", "id": "p", "ts": 12346}
    assert json.loads(server_frames.presence_frame("bob", False)) == {
        "type": "presence",
        "user": "bob",
        "status": "offline",
    }


def test_history_frame_marks_own_messages() -> None:
    mine = Message(2, "alice", "a", 0.0, "c2", to="bob")
    theirs = Message(1, "bob", "b", 0.0, "c1", to="alice")
    frame = json.loads(server_frames.history_frame(History(with_user="bob"), [mine, theirs], True, "alice"))
    assert frame["with"] == "bob" and frame["more"] is True
    assert [m.get("id") for m in frame["messages"]] == ["c2", None]
