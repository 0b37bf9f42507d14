"""The network side of one WebSocket session: prepared frames written straight to the socket.

A fan-out frames each payload once (``outgoing.Outgoing``); ``WebSocketTransport``
writes the same bytes with one ``send`` when nothing is queued in the stream,
through ``IOStream.write`` otherwise, so bytes never overtake each other and a
delivery costs no Future in the common case. A connection that negotiated
permessage-deflate gets ``write_message``; over TLS the stream always writes.
Every byte queued in the stream (ours and the frames Tornado writes itself)
is counted until its write future resolves: the count decides the direct
path, paces replays (``drain``) and cuts off a client that stops reading
(past ``--max-buffered-bytes``, reported to the owner from the loop).

A peer that reads slower than it is written to gets at most
``STREAM_WINDOW_BYTES`` queued in the stream; the frames after them wait
whole in the transport's backlog. So when such a peer is cut off (close code
1013) the backlog is dropped and the close frame goes out right after the
frame in progress, without waiting behind a megabyte the peer was not
reading; and the memory goes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from collections import deque
from functools import partial
from typing import Protocol

import tornado.ioloop
import tornado.websocket
from tornado.iostream import IOStream, SSLIOStream, StreamClosedError

from .outgoing import Outgoing
from .session import CLOSE_TRY_AGAIN_LATER, STREAM_WINDOW_BYTES, cut_close_reason


class TransportOwner(Protocol):
    """What a transport needs of its WebSocket handler."""

    def write_message(self, message: bytes) -> asyncio.Future[None]: ...

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...

    def overflowed(self) -> None:
        """More is queued than the cap allows (called from the loop, never inline)."""
        ...


class WebSocketTransport:
    """The network side of one WebSocket session (``session.Transport``)."""

    __slots__ = (
        "_backlog",
        "_backlog_bytes",
        "_closing",
        "_direct",
        "_drain_waiter",
        "_in_stream",
        "_sock",
        "compressed",
        "handler",
        "max_buffered",
        "queued_bytes",
        "remote_ip",
        "stream",
    )

    kind = "websocket"

    def __init__(
        self, handler: TransportOwner, stream: IOStream, remote_ip: str, max_buffered: int, compressed: bool
    ) -> None:
        self.handler: TransportOwner | None = handler
        self.stream = stream
        self._sock = stream.socket
        self.remote_ip = remote_ip
        self.max_buffered = max_buffered
        self.compressed = compressed
        # Frames may go straight to the socket (while nothing is queued): plain TCP, no compression, not closing.
        self._direct = not compressed and not isinstance(stream, SSLIOStream)
        # Bytes handed to IOStream.write (ours and Tornado's own frames) and not yet reported written, and frames
        # waiting in the backlog: all the bytes the peer has still to take. While it is above zero every write
        # goes through the stream, so that no frame overtakes another.
        self.queued_bytes = 0
        self._in_stream = 0
        # Made when first needed: most sessions never fill their window, and an empty deque is 600 bytes.
        self._backlog: deque[bytes] | None = None
        self._backlog_bytes = 0
        # Set while a replay waits for the backlog to shrink (see ``drain``).
        self._drain_waiter: asyncio.Future[None] | None = None
        self._closing = False
        if stream.writing():  # the 101 response is still on its way
            self.track(stream.write(b""), 1)

    @property
    def buffered_bytes(self) -> int:
        return self.queued_bytes

    @property
    def closing(self) -> bool:
        return self._closing or self.stream.closed()

    def write(self, frame: Outgoing) -> None:
        """Write a prepared frame; never raises, never calls back into the core on this stack."""
        if self._direct and not self.queued_bytes:
            data = frame.websocket
            try:
                sent = self._sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._lost(exc)
                return
            if sent != len(data):
                self._queue(memoryview(data)[sent:])
            return
        if self._closing:
            return
        handler = self.handler
        if self.compressed and not frame.is_ping and handler is not None:
            # Tornado compresses and frames it; its frame write is counted by _ChatProtocol._write_frame.
            with contextlib.suppress(tornado.websocket.WebSocketClosedError):
                handler.write_message(frame.payload)
            return
        data = frame.websocket
        if self._backlog or self._in_stream >= STREAM_WINDOW_BYTES:
            if self._backlog is None:
                self._backlog = deque()
            self._backlog.append(data)
            self._backlog_bytes += len(data)
            self._count(len(data))
            return
        self._queue(data)

    def _queue(self, data: bytes | memoryview) -> None:
        try:
            future = self.stream.write(data)
        except StreamClosedError:
            self._stop_writing()
            return
        self.track(future, len(data))

    def track(self, future: asyncio.Future[None], size: int) -> None:
        """Count ``size`` bytes as queued until ``future`` (an IOStream write) resolves."""
        self._in_stream += size
        future.add_done_callback(partial(self._written, size))
        self._count(size)

    def _count(self, size: int) -> None:
        self.queued_bytes += size
        if self.queued_bytes > self.max_buffered and self.handler is not None:
            tornado.ioloop.IOLoop.current().add_callback(self.handler.overflowed)

    def _written(self, size: int, future: asyncio.Future[None]) -> None:
        self.queued_bytes -= size
        self._in_stream -= size
        if self._backlog and self._in_stream < STREAM_WINDOW_BYTES and not self._closing:
            self._feed(STREAM_WINDOW_BYTES)
        if self._drain_waiter is not None and self.queued_bytes <= self.max_buffered // 4:
            self._wake_drain_waiter()

    def _wake_drain_waiter(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _feed(self, window: float) -> None:
        """Move frames from the backlog into the stream while it holds less than ``window`` bytes."""
        backlog = self._backlog
        if backlog is None:
            return
        while backlog and self._in_stream < window:
            data = backlog.popleft()
            self._backlog_bytes -= len(data)
            self.queued_bytes -= len(data)  # counted again by track, as bytes in the stream
            self._queue(data)
            if self._closing:
                self._drop_backlog()
                return
        if not backlog and self._backlog is backlog:
            self._backlog = None

    def _drop_backlog(self) -> None:
        self.queued_bytes -= self._backlog_bytes
        self._backlog = None
        self._backlog_bytes = 0

    def _stop_writing(self) -> None:
        self._closing = True
        self._direct = False
        self._wake_drain_waiter()

    def _lost(self, exc: OSError) -> None:
        """The socket failed under a direct send (a reset peer): the stream reports the end from the loop."""
        self._stop_writing()
        self.stream.close(exc_info=exc)

    async def drain(self) -> None:
        """Wait until what is queued is down to a quarter of the cap: replays go at the reader's pace.

        Woken by the write callbacks (or the end of the connection), never by polling a future that may
        have completed before its callbacks ran.
        """
        while self.queued_bytes > self.max_buffered // 4 and not self.closing:
            if self._drain_waiter is None:
                self._drain_waiter = asyncio.get_running_loop().create_future()
            await self._drain_waiter

    def close(self, code: int, reason: str) -> None:
        """Close: after what is queued, or, for a slow consumer (1013), right after the frame in progress."""
        if self._closing:
            return
        if code == CLOSE_TRY_AGAIN_LATER:
            self._drop_backlog()
        else:
            self._feed(float("inf"))
        self._stop_writing()
        handler = self.handler
        if handler is not None:
            encoded = cut_close_reason(reason)
            handler.close(code, encoded)

    def abort(self) -> None:
        self._stop_writing()
        self._drop_backlog()
        self.stream.close()

    def detach_handler(self) -> None:
        """The connection has ended: drop the reference cycle to the handler, write nothing more."""
        self._stop_writing()
        self._drop_backlog()
        self.handler = None

    def has_unread_input(self) -> bool:
        """Whether the kernel holds input for this socket that the loop has not read yet (after a stall)."""
        if self.stream.closed():
            return False
        poller = select.poll()
        try:
            poller.register(self.stream.fileno(), select.POLLIN)
        except (OSError, ValueError):
            return False
        return bool(poller.poll(0))
