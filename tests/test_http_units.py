"""The pure parts of the HTTP transports: event framing, POST bodies, poll cursors, POST replies, TCP liveness."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Coroutine
from typing import Any

import pytest

from tornado_chat import server_frames
from tornado_chat.http_sessions import HttpRefused, split_frames
from tornado_chat.http_transport import HttpTransport, PollTransport, poll_answer
from tornado_chat.outgoing import SSE_PING, Outgoing
from tornado_chat.protocol import ErrorCode
from tornado_chat.server_frames import Message
from tornado_chat.session import STREAM_WINDOW_BYTES
from tornado_chat.sse import EventStreamTransport, close_event, peer_acknowledging

from .support import run_async

pytestmark = pytest.mark.unit


class Owner:
    """Records what a transport reports (from the loop)."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, HttpTransport]] = []

    def overflowed(self, transport: HttpTransport) -> None:
        self.reports.append(("overflowed", transport))

    def ended(self, transport: HttpTransport) -> None:
        self.reports.append(("ended", transport))

    def alive(self, transport: HttpTransport) -> None:
        self.reports.append(("alive", transport))


def run(coro: Coroutine[Any, Any, None]) -> None:
    """On a loop of its own in a thread: the browser tests keep one running in this one."""
    run_async(lambda: coro)


async def settle() -> None:
    """Let callbacks scheduled with call_soon run."""
    for _ in range(3):
        await asyncio.sleep(0)


# ---------------------------------------------------------------- event framing


def test_a_message_or_an_ack_is_an_event_with_its_seq_as_id_and_other_frames_have_none() -> None:
    message = Message(42, "alice", "hi\nthere", 1_700_000_000.0, "c-1", room="general")
    event = Outgoing(server_frames.message_frame(message, own=False)).sse
    assert event.startswith(b'id: 42\ndata: {"type":"message","seq":42,') and event.endswith(b"}\n\n")
    assert event.count(b"\n") == 3  # the text's line break is escaped inside the JSON
    # A client id that looks like a seq field cannot fool it: its quotes are escaped.
    sneaky = Message(7, "bob", "x", 1_700_000_000.0, '","seq":99,"', to="alice")
    assert Outgoing(server_frames.ack_frame(sneaky)).sse.startswith(b"id: 7\n")
    error = Outgoing(server_frames.error_frame(ErrorCode.BAD_FRAME, "no", "a")).sse
    assert error.startswith(b"data: ") and b"id:" not in error
    welcome = Outgoing(server_frames.encode({"type": "welcome", "seq": 5})).sse
    assert not welcome.startswith(b"id:")
    assert Outgoing.ping(b"12345678").sse == SSE_PING == b": ping\n\n"


def test_the_event_is_built_once_and_shared_by_every_recipient() -> None:
    frame = Outgoing(b'{"type":"presence","user":"a","status":"online"}')
    assert frame.sse is frame.sse
    assert Outgoing(b'{"x":1}\n{"y":2}').sse == b'data: {"x":1}\ndata: {"y":2}\n\n'


def test_a_restart_close_event_carries_its_retry_hint() -> None:
    assert close_event(1012, '{"retry_after_ms":1500}') == (
        b'retry: 1500\nevent: close\ndata: {"code":1012,"reason":"{\\"retry_after_ms\\":1500}"}\n\n'
    )
    assert close_event(1008, "logged out") == b'event: close\ndata: {"code":1008,"reason":"logged out"}\n\n'
    assert close_event(1012, "not json").startswith(b"event: close\n")


# ---------------------------------------------------------------- POST bodies


def test_a_post_body_splits_into_the_frames_as_written() -> None:
    body = b' [ {"type":"send","id":"a1","room":"r","text":"\\u00e9 [x]"} ,\n"str", 5,{"type":"send","id":7} ] '
    frames = split_frames(body, 64)
    assert frames == [
        ('{"type":"send","id":"a1","room":"r","text":"\\u00e9 [x]"}', "a1"),
        ('"str"', None),
        ("5", None),
        ('{"type":"send","id":7}', None),  # not a usable client id: the parser answers it
    ]
    assert split_frames(b"[]", 64) == [] and split_frames(b" [ ] ", 64) == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "bad_request"),
        (b'{"type": "ping"}', "bad_request"),
        (b"[", "bad_json"),
        (b"[1,]", "bad_json"),
        (b"[1 2]", "bad_json"),
        (b"[1] [2]", "bad_json"),
        (b"\xc3\x28", "bad_json"),
        (b"[" + b"[" * 100_000 + b"]" * 100_000 + b"]", "bad_json"),
        (b"[" + b",".join([b"1"] * 4) + b"]", "bad_request"),
    ],
)
def test_a_bad_post_body_is_refused_with_a_code(body: bytes, code: str) -> None:
    with pytest.raises(HttpRefused) as refused:
        split_frames(body, 3)
    assert refused.value.status == 400 and refused.value.code == code


# ---------------------------------------------------------------- long polls


def test_poll_frames_are_numbered_kept_until_acknowledged_and_pings_are_not_kept() -> None:
    async def scenario() -> None:
        owner = Owner()
        poll = PollTransport(owner, "192.0.2.1", 1 << 20, b"digest")
        for n in range(3):
            poll.write(Outgoing(b'{"type":"pong","id":%d}' % n))
        poll.write(Outgoing.ping(b"\x00" * 8))
        assert poll.last_number == 3 and poll.buffered_bytes == 3 * len(b'{"type":"pong","id":0}')
        assert poll.acknowledge(0) and len(poll.pending()) == 3
        assert poll.acknowledge(2) and poll.pending() == [b'{"type":"pong","id":2}']
        assert poll.acknowledge(1) and len(poll.pending()) == 1  # an older cursor drops nothing more
        assert not poll.acknowledge(4) and not poll.acknowledge(-1)
        assert poll_answer("sid", 3, poll.pending(), None) == (
            b'{"session":"sid","cursor":3,"frames":[{"type":"pong","id":2}]}'
        )
        poll.close(1012, '{"retry_after_ms":10}')
        poll.write(Outgoing(b'{"type":"late"}'))
        assert poll.last_number == 3
        assert json.loads(poll_answer("sid", 3, [], poll.notice))["close"] == {
            "code": 1012,
            "reason": '{"retry_after_ms":10}',
        }
        await settle()
        assert owner.reports == [("ended", poll)]

    run(scenario())


def test_a_parked_poll_wakes_for_a_frame_and_a_newer_poll_answers_the_older_one() -> None:
    async def scenario() -> None:
        poll = PollTransport(Owner(), "192.0.2.1", 1 << 20, b"digest")
        first = asyncio.ensure_future(poll.wait(30))
        await settle()
        assert poll.parked
        second = asyncio.ensure_future(poll.wait(30))
        await settle()
        assert first.done() and not second.done()
        poll.write(Outgoing(b'{"type":"pong"}'))
        await asyncio.wait_for(second, 1)
        assert not poll.parked
        await poll.wait(30)  # a frame is waiting already: no wait at all
        poll.acknowledge(1)
        await asyncio.wait_for(poll.wait(0.01), 1)  # nothing comes: the wait ends by itself

    run(scenario())


def test_a_poll_backlog_past_the_cap_is_reported_once_and_drain_waits_for_acknowledgements() -> None:
    async def scenario() -> None:
        owner = Owner()
        poll = PollTransport(owner, "192.0.2.1", 100, b"digest")
        for _ in range(5):
            poll.write(Outgoing(b'{"type":"x","pad":"' + b"p" * 20 + b'"}'))
        await settle()
        assert owner.reports == [("overflowed", poll)]
        drained = asyncio.ensure_future(poll.drain())
        await settle()
        assert not drained.done()
        poll.acknowledge(5)
        await asyncio.wait_for(drained, 1)

    run(scenario())


# ---------------------------------------------------------------- POST replies


def test_replies_are_captured_per_frame_in_frame_order_and_the_rest_goes_on() -> None:
    async def scenario() -> None:
        poll = PollTransport(Owner(), "192.0.2.1", 1 << 20, b"digest")
        capture = poll.begin_capture()
        # Frame 1, a send handed to the store; frame 2 refused at once; frame 3 the same id again.
        for immediate in (None, b'{"type":"error","code":"bad_text","message":"no","id":"b"}', None):
            capture.begin_frame()
            poll.receiving = capture
            poll.write(Outgoing(b'{"type":"joined","room":"r"}'))  # not a reply: down the stream
            if immediate is not None:
                poll.write(Outgoing(immediate))
            poll.receiving = None
            if immediate is None:
                capture.wait_for("a")
        waiting = asyncio.ensure_future(capture.wait(5))
        poll.write(Outgoing(b'{"type":"ack","id":"zzz","seq":1,"ts":"t"}'))  # another POST's: down the stream
        poll.write(Outgoing(b'{"type":"ack","id":"a","seq":2,"ts":"t"}'))
        await settle()
        assert not waiting.done()
        poll.write(Outgoing(b'{"type":"ack","id":"a","seq":2,"ts":"t"}'))
        await asyncio.wait_for(waiting, 1)
        poll.end_capture(capture)
        assert [json.loads(r)["type"] for r in capture.replies] == ["ack", "error", "ack"]
        assert [json.loads(p)["type"] for p in poll.pending()] == ["joined", "joined", "joined", "ack"]
        poll.write(Outgoing(b'{"type":"error","code":"internal","message":"x","id":"a"}'))
        assert json.loads(poll.pending()[-1])["type"] == "error"  # nobody waits now

    run(scenario())


def test_a_capture_stops_waiting_when_the_session_ends() -> None:
    async def scenario() -> None:
        poll = PollTransport(Owner(), "192.0.2.1", 1 << 20, b"digest")
        capture = poll.begin_capture()
        capture.begin_frame()
        capture.wait_for("a")
        waiting = asyncio.ensure_future(capture.wait(30))
        await settle()
        poll.abort()
        await asyncio.wait_for(waiting, 1)
        assert capture.replies == [] and poll.closing and poll.aborted

    run(scenario())


# ---------------------------------------------------------------- TCP liveness of an event stream


class FakeSocket:
    def __init__(self, info: bytes | None) -> None:
        self.info = info

    def getsockopt(self, level: int, option: int, size: int) -> bytes:
        if self.info is None:
            raise OSError("not a TCP socket")
        return self.info


def tcp_info(unacked: int, last_ack_ms: int) -> bytes:
    info = bytearray(104)
    struct.pack_into("=I", info, 24, unacked)
    struct.pack_into("=I", info, 56, last_ack_ms)
    return bytes(info)


def test_a_peer_is_acknowledging_when_nothing_is_outstanding_or_it_acked_lately() -> None:
    assert peer_acknowledging(FakeSocket(tcp_info(0, 3_600_000)), 25.0) is True  # type: ignore[arg-type]
    assert peer_acknowledging(FakeSocket(tcp_info(3, 1_000)), 25.0) is True  # type: ignore[arg-type]
    assert peer_acknowledging(FakeSocket(tcp_info(3, 26_000)), 25.0) is False  # type: ignore[arg-type]
    assert peer_acknowledging(FakeSocket(None), 25.0) is None  # type: ignore[arg-type]
    assert peer_acknowledging(FakeSocket(b"\x00" * 16), 25.0) is None  # type: ignore[arg-type]


# ---------------------------------------------------------------- slow consumers, as on a WebSocket


def test_a_slow_pollers_close_drops_the_frames_it_was_not_taking_and_other_closes_keep_them() -> None:
    async def scenario() -> None:
        for code, kept in ((1013, 0), (1012, 2)):
            poll = PollTransport(Owner(), "192.0.2.1", 1 << 20, b"digest")
            for n in range(2):
                poll.write(Outgoing(b'{"type":"pong","id":%d}' % n))
            poll.close(code, "bye")
            assert len(poll.pending()) == kept and poll.buffered_bytes == kept * len(b'{"type":"pong","id":0}')
            assert poll.notice is not None and poll.notice.code == code

    run(scenario())


class FakeStream:
    """An IOStream whose writes complete when the test says (``take``): a peer that reads when told."""

    socket = None

    def __init__(self) -> None:
        self.pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self.written = b""
        self.is_closed = False

    def write(self, data: bytes) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((data, future))
        return future

    def take(self) -> None:
        """The peer reads everything handed to the stream so far."""
        pending, self.pending = self.pending, []
        for data, future in pending:
            self.written += data
            future.set_result(None)

    @property
    def in_flight(self) -> int:
        return sum(len(data) for data, _ in self.pending)

    def closed(self) -> bool:
        return self.is_closed

    def close(self) -> None:
        self.is_closed = True


def stream_transport(stream: FakeStream) -> EventStreamTransport:
    return EventStreamTransport(
        Owner(),
        stream,  # type: ignore[arg-type]
        chunked=False,
        finish=lambda: None,
        remote_ip="192.0.2.1",
        max_buffered=1 << 20,
        token_digest=b"digest",
        alive_within_s=1.0,
    )


def test_an_event_stream_keeps_a_window_in_the_stream_and_a_slow_consumers_close_drops_the_rest() -> None:
    event = Outgoing(b'{"type":"message","text":"' + b"x" * 4000 + b'"}')
    size = len(event.sse)

    async def scenario() -> None:
        for code in (1013, 1000):
            stream = FakeStream()
            transport = stream_transport(stream)
            for _ in range(100):
                transport.write(event)
            # At most a window (and the event that crossed it) in the stream; the rest waits whole.
            assert stream.in_flight <= STREAM_WINDOW_BYTES + size and transport.buffered_bytes == 100 * size
            stream.take()
            await settle()
            assert len(stream.written) < 2 * STREAM_WINDOW_BYTES + size  # fed again, a window at a time
            transport.close(code, "slow consumer" if code == 1013 else "bye")
            stream.take()
            await settle()
            stream.take()
            events = stream.written.split(b"\n\n")[:-1]
            assert events[-1].startswith(b"event: close") and f'"code":{code}'.encode() in events[-1]
            if code == 1013:  # dropped: the close right after what was in the stream
                assert len(events) - 1 < 100 and transport.buffered_bytes == 0
            else:  # everything first, then the close
                assert len(events) - 1 == 100

    run(scenario())
