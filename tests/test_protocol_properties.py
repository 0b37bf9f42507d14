"""Property tests of the parser: whatever a client sends, a typed frame or a ProtocolError, nothing else."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tornado_chat import conversation_frames, protocol, room_frames, server_frames
from tornado_chat.protocol import CLIENT_FRAME_TYPES, ProtocolError

pytestmark = pytest.mark.unit

MAX_TEXT = 4000
CLIENT_FRAMES = (
    protocol.Join,
    protocol.Leave,
    protocol.Send,
    protocol.Ping,
    protocol.History,
    protocol.ListRooms,
    protocol.Resume,
    room_frames.CreateRoom,
    room_frames.MemberAction,
    room_frames.SetTopic,
    room_frames.Edit,
    room_frames.Delete,
    room_frames.Disable,
    room_frames.Audit,
    conversation_frames.Read,
    conversation_frames.Typing,
    conversation_frames.Search,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=80),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
# Frames that look like ours, with every field drawn from anything JSON can hold.
frame_like = st.fixed_dictionaries(
    {"type": st.sampled_from(CLIENT_FRAME_TYPES) | st.text(max_size=10)},
    optional={
        key: json_values | st.text(max_size=100)
        for key in (
            *("id", "room", "to", "with", "text", "before", "limit", "since", "from"),
            *("user", "seq", "topic", "private", "q"),
        )
    },
)


def outcome(data: str | bytes) -> object:
    try:
        frame = protocol.parse_client_frame(data, MAX_TEXT)
    except ProtocolError as exc:
        assert exc.code in set(protocol.ErrorCode)
        assert exc.message and isinstance(exc.message, str)
        # Whatever id is echoed must encode, or the error frame itself would fail.
        server_frames.error_frame(exc.code, exc.message, exc.frame_id)
        return exc
    assert isinstance(frame, CLIENT_FRAMES)
    return frame


@settings(max_examples=250, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes(data: bytes) -> None:
    outcome(data)
    outcome(data.decode("utf-8", "replace"))


@settings(max_examples=250, deadline=None)
@given(st.text(max_size=300))
def test_any_text(data: str) -> None:
    outcome(data)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_any_json_value(value: Any) -> None:
    outcome(json.dumps(value))


@settings(max_examples=800, deadline=None)
@given(frame_like)
def test_any_frame_shaped_object(value: dict[str, Any]) -> None:
    result = outcome(json.dumps(value))
    if isinstance(result, protocol.Send):
        # Accepted text is clean, within limits, and encodes.
        assert 0 < len(result.text) <= MAX_TEXT and result.text.strip()
        result.text.encode("utf-8")
        assert "\x00" not in result.text and "\x1b" not in result.text
        assert sum(target is not None for target in (result.room, result.to, result.group)) == 1
    if isinstance(result, conversation_frames.Search):
        assert result.query.strip() == result.query and 0 < len(result.query) <= 200


names = st.from_regex(r"[A-Za-z0-9_.-]{1,32}", fullmatch=True)
texts = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=200)


@settings(max_examples=300, deadline=None)
@given(
    seq=st.integers(1, 2**63 - 1),
    sender=names,
    text=texts,
    ts=st.floats(0, 4e9),
    client_id=texts,
    room=st.none() | st.from_regex(r"[a-z0-9_-]{1,64}", fullmatch=True),
    to=names,
    group=st.none() | st.lists(names, min_size=3, max_size=10, unique=True),
    mentions=st.lists(names | st.just("@room"), max_size=5, unique=True),
    own=st.booleans(),
)
def test_hand_built_frames_are_the_json_encoder_s_bytes(
    seq: int,
    sender: str,
    text: str,
    ts: float,
    client_id: str,
    room: str | None,
    to: str,
    group: list[str] | None,
    mentions: list[str],
    own: bool,
) -> None:
    members = tuple(sorted(group)) if group is not None and room is None else None
    recipient = None if room or members else to
    message = server_frames.Message(seq, sender, text, ts, client_id, recipient, room, members, tuple(mentions))
    assert server_frames.message_frame(message, own) == server_frames.encode(
        {"type": "message", **server_frames.message_fields(message, own)}
    )
    expected_ack = {"type": "ack", "id": client_id, "seq": seq, "ts": server_frames.iso_time(ts)}
    assert server_frames.ack_frame(message) == server_frames.encode(expected_ack)


@settings(max_examples=500, deadline=None)
@given(st.floats(0, 4e9))
def test_iso_time_matches_datetime(ts: float) -> None:
    expected = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert server_frames.iso_time(ts) == expected
