"""The event stream of ``GET /events``: a session's frames as Server-Sent Events on one long HTTP response.

``EventStreamTransport`` writes each frame's ``Outgoing.sse`` form (built once
per fan-out) straight to the response's ``IOStream``, in HTTP/1.1 chunks when
the response is chunked, and counts every byte queued in the stream until its
write future resolves: the count paces replays (``drain``) and cuts off a client
that stops reading (past ``--max-buffered-bytes``), as on a WebSocket. As there,
at most ``STREAM_WINDOW_BYTES`` are in the stream at once and later events wait
whole in a backlog, which a slow consumer's close (1013) drops. When the server
ends the session the stream carries a last ``close`` event (the close code and
reason, and a ``retry:`` hint when the server says when to come back), then the
response ends; a client that has not taken it within ``CLOSE_DEADLINE_S`` is
dropped, as a WebSocket that does not answer its close frame is.

Liveness: a client cannot answer on an event stream, so on each heartbeat tick
the stream shows that it is alive by its own ping, a comment line, and by how
its peer's TCP stack treats what it was sent before: a peer that has nothing
left unacknowledged, or has acknowledged something within the last ping
interval, is alive (Linux ``TCP_INFO``); a peer that stops acknowledging is
reaped after ping interval + timeout like a silent WebSocket. Where
``TCP_INFO`` cannot be read, a stream counts as alive while nothing it was sent
is still waiting in the process.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections import deque
from collections.abc import Callable
from functools import partial

from tornado.iostream import IOStream, StreamClosedError

from .http_transport import HttpTransport, TransportOwner
from .outgoing import Outgoing
from .session import CLOSE_DEADLINE_S, STREAM_WINDOW_BYTES

# struct tcp_info (linux/tcp.h): eight one-byte fields, then 32-bit counters; tcpi_unacked is the fifth of
# them (offset 24: segments sent and not acknowledged), tcpi_last_ack_recv the thirteenth (offset 56:
# milliseconds since the peer last acknowledged anything).
_TCP_INFO_BYTES = 104
_UNACKED_OFFSET = 24
_LAST_ACK_RECV_OFFSET = 56
_U32 = struct.Struct("=I")

Probe = Callable[[socket.socket, float], "bool | None"]


def peer_acknowledging(sock: socket.socket, within_s: float) -> bool | None:
    """Whether the peer's TCP has nothing unacknowledged or acknowledged something in the last ``within_s``
    seconds; None when the kernel does not say (no ``TCP_INFO``, or the socket is gone)."""
    option = getattr(socket, "TCP_INFO", None)
    if option is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, option, _TCP_INFO_BYTES)
    except OSError:
        return None
    if len(info) < _LAST_ACK_RECV_OFFSET + _U32.size:
        return None
    unacked: int = _U32.unpack_from(info, _UNACKED_OFFSET)[0]
    last_ack_ms: int = _U32.unpack_from(info, _LAST_ACK_RECV_OFFSET)[0]
    return unacked == 0 or last_ack_ms <= within_s * 1000


def close_event(code: int, reason: str) -> bytes:
    """The last event of a stream the server ends; ``retry:`` carries a restart's hint to EventSource."""
    retry = b""
    if code == 1012:
        try:
            hint = json.loads(reason).get("retry_after_ms")
        except (ValueError, AttributeError):
            hint = None
        if isinstance(hint, int) and hint >= 0:
            retry = b"retry: %d\n" % hint
    data = json.dumps({"code": code, "reason": reason}, separators=(",", ":")).encode()
    return retry + b"event: close\ndata: " + data + b"\n\n"


class EventStreamTransport(HttpTransport):
    """One ``GET /events`` response carrying a session (``session.Transport``)."""

    kind = "sse"

    __slots__ = ("_backlog", "_in_stream", "alive_within_s", "chunked", "finish", "probe", "stream")

    def __init__(
        self,
        owner: TransportOwner,
        stream: IOStream,
        *,
        chunked: bool,
        finish: Callable[[], None],
        remote_ip: str,
        max_buffered: int,
        token_digest: bytes,
        alive_within_s: float,
        probe: Probe = peer_acknowledging,
    ) -> None:
        super().__init__(owner, remote_ip, max_buffered, token_digest)
        self.stream = stream
        # HTTP/1.1 responses are chunked (the headers are out already, saying so); HTTP/1.0 ones end at close.
        self.chunked = chunked
        # Ends the response once the close event is written (the request handler's finish).
        self.finish = finish
        self.alive_within_s = alive_within_s
        self.probe = probe
        # Bytes handed to the stream and not yet written; events past STREAM_WINDOW_BYTES wait in the backlog.
        self._in_stream = 0
        self._backlog: deque[bytes] = deque()

    def _send(self, frame: Outgoing) -> None:
        if frame.is_ping:
            alive = self.probe(self.stream.socket, self.alive_within_s) if self.stream.socket is not None else None
            if alive or (alive is None and not self.queued_bytes):
                self._report(self.owner.alive)
        data = self._framed(frame.sse)
        if self._backlog or self._in_stream >= STREAM_WINDOW_BYTES:
            self._backlog.append(data)
        else:
            self._queue(data)

    def _framed(self, event: bytes) -> bytes:
        """``event`` as written (an HTTP/1.1 chunk when the response is chunked), counted in ``queued_bytes``."""
        data = b"%x\r\n%s\r\n" % (len(event), event) if self.chunked else event
        self.queued_bytes += len(data)
        return data

    def _queue(self, data: bytes) -> None:
        """Hand ``data`` (counted in ``queued_bytes`` already) to the stream."""
        try:
            future = self.stream.write(data)
        except StreamClosedError:
            self.queued_bytes -= len(data)
            self._drop_backlog()
            self.lost()
            return
        self._in_stream += len(data)
        future.add_done_callback(partial(self._written, len(data)))

    def _written(self, size: int, future: object) -> None:
        self.queued_bytes -= size
        self._in_stream -= size
        self._feed(STREAM_WINDOW_BYTES)
        self.made_progress()

    def _feed(self, window: float) -> None:
        """Move events from the backlog into the stream while it holds less than ``window`` bytes."""
        backlog = self._backlog
        while backlog and self._in_stream < window and not self.stream.closed():
            self._queue(backlog.popleft())

    def _drop_backlog(self) -> None:
        self.queued_bytes -= sum(len(data) for data in self._backlog)
        self._backlog.clear()

    def _closed(self) -> None:
        self._feed(float("inf"))  # all of it, unless a slow consumer's close dropped it
        notice = self.notice
        if notice is not None:
            self._queue(self._framed(close_event(notice.code, notice.reason)))
        self.finish()
        asyncio.get_running_loop().call_later(CLOSE_DEADLINE_S, self._past_deadline)

    def _past_deadline(self) -> None:
        """The client has not taken the end of its stream in time: drop the connection and what waits in it."""
        if self.queued_bytes > 0:
            self._drop()

    def _drop(self) -> None:
        self._drop_backlog()
        self.stream.close()
