"""The frames of rooms, roles, moderation, edits and deletes: parsed into types, or refused with a code."""

from __future__ import annotations

import json

import pytest

from tornado_chat import protocol, server_frames
from tornado_chat.protocol import ErrorCode, ProtocolError
from tornado_chat.room_frames import (
    TOPIC_MAX_CHARS,
    Audit,
    Ban,
    CreateRoom,
    Delete,
    Demote,
    Disable,
    Edit,
    Invite,
    Kick,
    Promote,
    SetTopic,
    Transfer,
    Unban,
)
from tornado_chat.server_frames import Message

pytestmark = pytest.mark.unit

MAX_TEXT = 4000


def parse(frame: object) -> protocol.ClientFrame:
    return protocol.parse_client_frame(json.dumps(frame), MAX_TEXT)


def code_of(frame: object) -> ErrorCode:
    with pytest.raises(ProtocolError) as caught:
        parse(frame)
    return caught.value.code


def test_every_new_frame_parses_into_its_type() -> None:
    assert parse({"type": "create", "room": "ops"}) == CreateRoom("ops")
    assert parse({"type": "create", "room": "ops", "private": True, "topic": " on\tcall \n", "id": "c"}) == (
        CreateRoom("ops", True, "on call", "c")
    )
    for kind in (Invite, Kick, Ban, Unban, Promote, Demote, Transfer):
        assert parse({"type": kind.label, "room": "ops", "user": "bob", "id": 7}) == kind("ops", "bob", 7)
    assert parse({"type": "topic", "room": "ops", "topic": ""}) == SetTopic("ops", "")
    assert parse({"type": "edit", "seq": 12, "text": "fixed\u0007"}) == Edit(12, "fixed")
    assert parse({"type": "delete", "seq": 12, "id": "d"}) == Delete(12, "d")
    assert parse({"type": "disable", "user": "mallory"}) == Disable("mallory")
    assert parse({"type": "audit"}) == Audit()
    assert parse({"type": "audit", "room": "ops", "before": 9, "limit": 200}) == Audit("ops", 9, 200)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "create"}, ErrorCode.BAD_FRAME),
        ({"type": "create", "room": "Ops!"}, ErrorCode.BAD_ROOM),
        ({"type": "create", "room": "ops", "private": "yes"}, ErrorCode.BAD_FRAME),
        ({"type": "create", "room": "ops", "topic": 5}, ErrorCode.BAD_FRAME),
        ({"type": "create", "room": "ops", "topic": "x" * (TOPIC_MAX_CHARS + 1)}, ErrorCode.BAD_TEXT),
        ({"type": "kick", "room": "ops"}, ErrorCode.BAD_FRAME),
        ({"type": "ban", "room": "ops", "user": "no one"}, ErrorCode.UNKNOWN_USER),
        ({"type": "topic", "room": "ops"}, ErrorCode.BAD_FRAME),
        ({"type": "edit", "seq": 0, "text": "x"}, ErrorCode.BAD_FRAME),
        ({"type": "edit", "seq": "3", "text": "x"}, ErrorCode.BAD_FRAME),
        ({"type": "edit", "seq": 3, "text": " "}, ErrorCode.BAD_TEXT),
        ({"type": "edit", "seq": 3}, ErrorCode.BAD_FRAME),
        ({"type": "delete"}, ErrorCode.BAD_FRAME),
        ({"type": "delete", "seq": True}, ErrorCode.BAD_FRAME),
        ({"type": "disable"}, ErrorCode.BAD_FRAME),
        ({"type": "audit", "limit": 201}, ErrorCode.BAD_FRAME),
        ({"type": "audit", "room": 3}, ErrorCode.BAD_FRAME),
    ],
)
def test_bad_new_frames_are_refused_with_their_code(frame: object, code: ErrorCode) -> None:
    assert code_of(frame) == code


def test_messages_carry_their_changes_and_changes_have_their_own_frames() -> None:
    edited = Message(7, "alice", "fixed", 1_700_000_000.0, "c1", room="ops", edited=1_700_000_060.0, rev=9)
    wire = json.loads(server_frames.message_frame(edited, own=False))
    assert (wire["text"], wire["edited"], "deleted" in wire) == ("fixed", "2023-11-14T22:14:20.000Z", False)
    assert json.loads(server_frames.change_frame(edited, "e1")) == {
        "type": "edited",
        "seq": 7,
        "rev": 9,
        "from": "alice",
        "room": "ops",
        "text": "fixed",
        "ts": "2023-11-14T22:13:20.000Z",
        "edited": "2023-11-14T22:14:20.000Z",
        "id": "e1",
    }
    gone = Message(8, "alice", "", 1_700_000_000.0, "c2", to="bob", deleted=True, rev=10)
    assert json.loads(server_frames.change_frame(gone)) == {
        "type": "deleted",
        "seq": 8,
        "rev": 10,
        "from": "alice",
        "to": "bob",
    }
    tombstone = json.loads(server_frames.message_frame(gone, own=True))
    assert tombstone["deleted"] is True and tombstone["text"] == "" and "edited" not in tombstone
    # An unchanged message keeps the fast encoding, byte for byte.
    plain = Message(9, "bob", "hi", 1_700_000_000.0, "c3", room="ops")
    assert server_frames.message_frame(plain, own=False) == server_frames.encode(
        {"type": "message", **server_frames.message_fields(plain, own=False)}
    )
