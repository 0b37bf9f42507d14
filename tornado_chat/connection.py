"""One WebSocket connection after its handshake: the socket, read and written directly on the event loop.

Tornado answers the HTTP upgrade request; the handler then detaches the
socket, and from there on a ``Connection`` owns it. Reading is one ``recv``
per readiness callback fed to the sans-I/O ``FrameParser``; writing is one
``send`` straight to the socket, and only what the kernel does not take waits
in a per-connection buffer until the socket is writable again. This keeps a
connection to a few small objects (no coroutines, no futures, no HTTP request
kept alive) and a delivery to one system call.

The connection reports to ``ConnectionEvents`` (the server): messages, pings
and pongs, a buffer over its cap, and its end. Whatever ends it (a close
frame, EOF, a reset, a protocol error, an abort), ``connection_lost`` is
called exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TYPE_CHECKING, Protocol

from . import wsproto
from .wsproto import Close, FrameParser, Message, Ping, Pong, WsProtocolError

if TYPE_CHECKING:
    from .heartbeat import Peer
    from .hub import Session
    from .limits import TokenBucket
    from .metrics import Tallies

log = logging.getLogger("tornado_chat.connection")

RECV_BYTES = 65536
# After the server sends a close frame, how long the client gets to answer before the socket is cut.
CLOSE_TIMEOUT_S = 5.0


class ConnectionEvents(Protocol):
    """What a connection tells its server."""

    def receive(self, connection: Connection, data: str | bytes) -> None: ...

    def on_pong(self, connection: Connection, payload: bytes) -> None: ...

    def on_client_ping(self, connection: Connection) -> None: ...

    def protocol_error(self, connection: Connection, error: WsProtocolError) -> None: ...

    def slow_consumer(self, connection: Connection) -> None: ...

    def connection_lost(self, connection: Connection) -> None: ...


class Connection:
    """The network side of one session."""

    __slots__ = (
        "sock",
        "fd",
        "loop",
        "events",
        "parser",
        "out",
        "session",
        "peer",
        "remote_ip",
        "opened_at",
        "closed",
        "close_sent",
        "close_reason",
        "discarding",
        "finishing",
        "lost",
        "held",
        "held_bytes",
        "live_floor",
        "tallies",
        "max_buffered",
        "login_id",
        "bucket",
        "_close_timer",
        "_drain_waiter",
    )

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        events: ConnectionEvents,
        remote_ip: str,
        opened_at: float,
        max_message_bytes: int,
        max_buffered: int,
        tallies: Tallies,
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = loop
        self.events = events
        self.parser = FrameParser(max_message_bytes)
        # Bytes the kernel has not taken yet; None while there are none.
        self.out: bytearray | None = None
        self.session: Session | None = None
        self.peer: Peer | None = None
        self.remote_ip = remote_ip
        self.opened_at = opened_at
        # No more frames are written once closed; a close frame may still go out.
        self.closed = False
        self.close_sent = False
        self.close_reason = "client"
        # After a protocol error, input is read and dropped until the client goes.
        self.discarding = False
        # The close handshake is done: close the socket once the buffer is written.
        self.finishing = False
        self.lost = False
        # While a replay is running, live frames wait here as (seq or 0, frame).
        self.held: list[tuple[int, bytes]] | None = None
        # Their size: it counts against the buffer cap like written-but-unsent bytes do.
        self.held_bytes = 0
        # Sequence number of the first message delivered live; a later resume replays only below it.
        self.live_floor = 0
        self.tallies = tallies
        self.max_buffered = max_buffered
        self.login_id = ""
        self.bucket: TokenBucket | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        # Set once the buffer is down to a quarter of its cap (see ``drain``).
        self._drain_waiter: asyncio.Future[None] | None = None

    def start(self, handshake: bytes) -> None:
        """Send the handshake response and start reading."""
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._write_raw(handshake)
        if not self.lost:
            self.loop.add_reader(self.fd, self._on_readable)

    def feed(self, data: bytes) -> None:
        """Bytes that arrived for this connection by another way (read along with the upgrade request)."""
        if data and not self.lost:
            self._consume(data)

    @property
    def buffered(self) -> int:
        """Bytes written by the server and not yet taken by the kernel."""
        return len(self.out) if self.out is not None else 0

    # ------------------------------------------------------------ writing

    def _write_raw(self, data: bytes) -> None:
        if self.lost:
            return
        out = self.out
        if out is None:
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.abort()
                return
            if sent == len(data):
                return
            self.out = bytearray(memoryview(data)[sent:])
            self.loop.add_writer(self.fd, self._on_writable)
        else:
            out += data
        if self.out is not None and len(self.out) > self.max_buffered and not self.closed:
            self.events.slow_consumer(self)

    def _on_writable(self) -> None:
        out = self.out
        if out is None or self.lost:
            return
        try:
            sent = self.sock.send(out)
        except BlockingIOError:
            return
        except OSError:
            self.abort()
            return
        del out[:sent]
        if self._drain_waiter is not None and len(out) <= self.max_buffered // 4:
            self._wake_drain_waiter()
        if not out:
            self.out = None
            self.loop.remove_writer(self.fd)
            if self.finishing:
                self._close_socket()
            elif self.discarding:
                self._send_fin()

    async def drain(self) -> None:
        """Wait until the buffer is down to a quarter of its cap (or the connection is gone).

        A replay of a thousand messages would otherwise outrun a slow link and
        be taken for a slow consumer.
        """
        if self.buffered <= self.max_buffered // 4 or self.lost:
            return
        if self._drain_waiter is None:
            self._drain_waiter = self.loop.create_future()
        await self._drain_waiter

    def _wake_drain_waiter(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def write(self, frame: bytes) -> None:
        """Write an already built frame, uncounted (fan-out counts its bytes once for all recipients)."""
        if not self.closed:
            self._write_raw(frame)

    def send(self, payload: bytes) -> None:
        """Frame, write and count one server frame (a reply to this session)."""
        if not self.closed:
            frame = wsproto.text_frame(payload)
            self.tallies.sent_bytes += len(frame)
            self._write_raw(frame)

    def send_in_order(self, payload: bytes) -> None:
        """A reply that must not overtake a running replay (an ack carries a seq a client resumes from)."""
        frame = wsproto.text_frame(payload)
        self.tallies.sent_bytes += len(frame)
        self.deliver(frame)

    def deliver(self, frame: bytes) -> None:
        """A fan-out frame that is not a message (presence, membership)."""
        if self.held is not None:
            self._hold(0, frame)
        elif not self.closed:
            self._write_raw(frame)

    def deliver_message(self, frame: bytes, seq: int) -> None:
        """A message frame; held while a replay runs so that the replay comes first."""
        if self.held is not None:
            self._hold(seq, frame)
            return
        if not self.live_floor:
            self.live_floor = seq
        if not self.closed:
            self._write_raw(frame)

    def _hold(self, seq: int, frame: bytes) -> None:
        """Keep a live frame until the replay is done. A replay paced to a client that has stopped
        reading would otherwise let live traffic pile up here without limit."""
        assert self.held is not None
        if self.closed:
            return
        self.held.append((seq, frame))
        self.held_bytes += len(frame)
        if self.held_bytes + self.buffered > self.max_buffered:
            self.events.slow_consumer(self)

    def take_held(self) -> list[tuple[int, bytes]]:
        """End holding: the frames kept during the replay, in order."""
        held, self.held, self.held_bytes = self.held or [], None, 0
        return held

    # ------------------------------------------------------------ reading

    def read_pending(self) -> None:
        """Read and handle whatever input is waiting now, without waiting for the event loop to offer it."""
        if not self.lost and not self.discarding:
            self._on_readable()

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError:
            self.abort()
            return
        if not data:
            self.abort()
            return
        if not self.discarding:
            self._consume(data)

    def _consume(self, data: bytes) -> None:
        try:
            events = self.parser.feed(data)
        except WsProtocolError as error:
            self.close_reason = "protocol_error"
            self.events.protocol_error(self, error)
            self.discarding = True
            self.close(error.code, error.reason, "protocol_error")
            return
        for event in events:
            if self.lost:
                return
            kind = type(event)
            if kind is Message:
                if not self.close_sent:
                    self.events.receive(self, event.data)  # type: ignore[union-attr]
            elif kind is Ping:
                self._write_raw(wsproto.pong_frame(event.payload))  # type: ignore[union-attr]
                self.events.on_client_ping(self)
            elif kind is Pong:
                self.events.on_pong(self, event.payload)  # type: ignore[union-attr]
            else:
                assert isinstance(event, Close)
                self._on_close_frame(event)
                return

    def _on_close_frame(self, event: Close) -> None:
        """The client closes (or answers our close): echo its code if we have not sent one, then hang up."""
        if not self.close_sent:
            self.close_sent = True
            self._write_raw(wsproto.close_frame(event.code))
        self.closed = True
        self.finishing = True
        if self.out is None:
            self._close_socket()

    # ------------------------------------------------------------ ending

    def close(self, code: int, reason: str, close_reason: str) -> None:
        """Start the close handshake; the socket is cut if the client has not answered in CLOSE_TIMEOUT_S."""
        if self.close_sent or self.lost:
            return
        self.close_reason = close_reason
        self.close_sent = True
        self.closed = True
        self._write_raw(wsproto.close_frame(code, reason))
        if self.lost:
            return
        if self.discarding and self.out is None:
            self._send_fin()
        self._close_timer = self.loop.call_later(CLOSE_TIMEOUT_S, self.abort)

    def _send_fin(self) -> None:
        """After a protocol error no close frame can be parsed from the client, so do not wait for one:
        send FIN once our last frames are out, and drop input until the client hangs up. Closing the
        socket with its input unread instead would make the kernel reset the connection, which can
        throw away the frames we just wrote."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def abort(self) -> None:
        """Cut the TCP connection now, with no close handshake (a dead or misbehaving peer)."""
        self._close_socket()

    def _close_socket(self) -> None:
        if self.lost:
            return
        self.lost = True
        self.closed = True
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self.loop.remove_reader(self.fd)
        if self.out is not None:
            self.loop.remove_writer(self.fd)
            self.out = None
        self.sock.close()
        self._wake_drain_waiter()
        try:
            self.events.connection_lost(self)
        except Exception:
            log.exception("cleaning up a closed connection failed")
