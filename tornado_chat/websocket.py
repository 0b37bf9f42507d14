"""``/ws``: every chat session is a Tornado ``WebSocketHandler``.

The handler only translates Tornado's events into calls on two small
protocols: ``prepare`` asks the ``Gate`` (the server) to admit the request and
answers a refusal as HTTP with a JSON body before anything is upgraded; then
the ``SessionSink`` (the chat service) hears about the session: ``open`` opens a session;
``on_message`` hands over a frame; ``on_ping``/``on_pong`` feed the rate limit
and the heartbeat; ``on_close`` forgets the session. It holds no chat state.
Every call into the sink goes through ``_guarded``: an exception is logged once
and closes only this connection.

Writing is ``ws_transport.WebSocketTransport``'s: prepared frames, straight to
the socket while nothing is queued.

Three additions to Tornado's RFC 6455 code, in ``_ChatProtocol``: every frame
read (continuations and control frames included) is reported, so that the rate
limit counts frames rather than messages; a client that breaks the
protocol gets a close frame naming what it broke (1002, or 1007 for text that
is not UTF-8; 1009 for an oversize message, after a ``too_large`` error frame)
and the connection lingers until that frame is out, where Tornado would drop
the socket at once, unread input and all, and the peer could see a reset
instead; and a client that keeps sending after the server's close frame (a
flood it was closed for) is read no further. Compression, when enabled, is negotiated without context takeover in
either direction, so an idle compressed connection keeps no zlib state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import tornado.ioloop
import tornado.websocket
from tornado.iostream import IOStream, StreamClosedError

from .admission import Admitted, Gate, Handshake, Refusal
from .httpbase import TOKEN_COOKIE, JsonErrors
from .session import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_INVALID_DATA,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_LARGE,
    Session,
    SessionSink,
)
from .ws_transport import WebSocketTransport

log = logging.getLogger("tornado_chat.websocket")

P = ParamSpec("P")
R = TypeVar("R")

# The subprotocol this server speaks; offered by a client in Sec-WebSocket-Protocol, it is selected.
SUBPROTOCOL = "tornado-chat.v1"
_OP_TEXT = 0x1
_OP_CLOSE = 0x8
# What a 101 response carries (Tornado's defaults, ours, the upgrade's), dropped once sent.
_UPGRADE_RESPONSE_HEADERS = (
    "Server",
    "Date",
    "Content-Type",
    "X-Content-Type-Options",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Accept",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
)
# zlib level for permessage-deflate; 6 is zlib's own default trade-off.
DEFLATE_LEVEL = 6
# zlib memLevel 1..9: the compressor's hash table is 2**(memLevel + 9) bytes; 5 keeps it at 16 KiB per message.
DEFLATE_MEM_LEVEL = 5


class _ProtocolFlags:
    """``_ChatProtocol``'s own state, kept on the handler's ``_Link`` (see there for why)."""

    __slots__ = ("at_header", "handling_text", "in_frame", "linger_task", "lingering", "loop_ended_here")

    def __init__(self) -> None:
        self.in_frame = False
        self.at_header = False
        self.handling_text = False
        self.lingering = False
        # Set when this class ends the receive loop itself: the abort that follows is not a deadline.
        self.loop_ended_here = False
        self.linger_task: asyncio.Future[None] | None = None


class _ChatProtocol(tornado.websocket.WebSocketProtocol13):
    """Tornado's RFC 6455 protocol, reporting every frame read and naming the violations it closes for."""

    handler: ChatSocketHandler

    def __init__(self, handler: ChatSocketHandler, params: tornado.websocket._WebSocketParams) -> None:
        super().__init__(handler, False, params)

    @property
    def _flags(self) -> _ProtocolFlags:
        return self.handler.link.flags

    async def _receive_frame(self) -> None:
        flags = self._flags
        flags.in_frame = flags.at_header = True
        try:
            await super()._receive_frame()
        finally:
            flags.in_frame = False
        if not flags.lingering:
            self.handler.frame_read()

    def _read_bytes(self, n: int) -> Coroutine[Any, Any, bytes]:
        # Only a frame's first read (its two header bytes) is looked at; the others go to Tornado untouched.
        flags = self._flags
        if flags.at_header:
            flags.at_header = False
            return self._read_header(n)
        return super()._read_bytes(n)

    async def _read_header(self, n: int) -> bytes:
        data = await super()._read_bytes(n)
        if not data[1] & 0x80:  # RFC 6455 section 5.1: a server must close on an unmasked client frame
            self._violation(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
            self._flags.loop_ended_here = True
            raise StreamClosedError()
        return data

    def _handle_message(self, opcode: int, data: bytes) -> asyncio.Future[None] | None:
        flags = self._flags
        if self.server_terminated and opcode != _OP_CLOSE and not flags.lingering:
            # The client keeps sending after our close frame: a flood we closed it for. Read nothing more (and
            # answer no ping): TCP flow control holds it back until Tornado's close deadline drops it.
            self.client_terminated = True
            return None
        flags.handling_text = opcode == _OP_TEXT
        try:
            return super()._handle_message(opcode, data)
        finally:
            flags.handling_text = False

    def _write_frame(self, fin: bool, opcode: int, data: bytes, flags: int = 0) -> asyncio.Future[None]:
        # Tornado's own frames (pongs, close frames, compressed messages) count as queued like ours, so
        # that the transport never sends a frame straight to the socket ahead of one of them.
        future = super()._write_frame(fin, opcode, data, flags)
        transport = self.handler.link.transport
        if transport is not None:
            transport.track(future, len(data) + 2)
        return future

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if code == CLOSE_TOO_LARGE and self._flags.in_frame and not self.server_terminated:
            self.handler.violated(CLOSE_TOO_LARGE)
        super().close(code, reason)

    def _abort(self) -> None:
        flags = self._flags
        if flags.loop_ended_here:
            flags.loop_ended_here = False
            return
        stream = self.stream
        if flags.lingering or not flags.in_frame or stream is None or stream.closed():
            super()._abort()  # the peer is gone, or the close handshake ran out of time
            return
        # Tornado aborts from inside a frame it refused: the client broke the protocol.
        if self.server_terminated:
            self._linger()  # a close frame is on its way already (1009, too large)
        elif flags.handling_text:
            self._violation(CLOSE_INVALID_DATA, "text frames must be UTF-8")
        else:
            self._violation(CLOSE_PROTOCOL_ERROR, "protocol error")

    def _violation(self, code: int, reason: str) -> None:
        self.handler.violated(code)
        super().close(code, reason)  # arms Tornado's 5 s close timeout, which ends the linger
        self._linger()

    def _linger(self) -> None:
        """Stop reading frames, but keep the socket until our close frame is out.

        Closing it with the client's input unread would make the kernel send a
        reset, which can discard that frame on its way.
        """
        flags = self._flags
        if flags.lingering or self.stream is None:
            return
        flags.lingering = True
        self.client_terminated = True
        stream = self.stream
        if not stream.writing():  # our close frame is out already: FIN now, not a loop turn later
            with contextlib.suppress(OSError):
                stream.socket.shutdown(socket.SHUT_WR)
        flags.linger_task = asyncio.ensure_future(self._drop_input(stream))

    @staticmethod
    async def _drop_input(stream: IOStream) -> None:
        """Send FIN once our frames are out (if not sent yet), then drop input until the client hangs up."""
        with contextlib.suppress(StreamClosedError):
            if stream.writing():
                await stream.write(b"")
                with contextlib.suppress(OSError):
                    stream.socket.shutdown(socket.SHUT_WR)
            while True:
                await stream.read_bytes(65536, partial=True)
        stream.close()

    def _create_compressors(
        self, side: str, agreed_parameters: dict[str, Any], compression_options: dict[str, Any] | None = None
    ) -> None:
        # RFC 7692 7.1.1: a server may answer with either no-context-takeover parameter even when not offered;
        # Tornado echoes this dict in its response, so the client agrees to keep no state between messages.
        agreed_parameters.setdefault("server_no_context_takeover", None)
        agreed_parameters.setdefault("client_no_context_takeover", None)
        super()._create_compressors(side, agreed_parameters, compression_options)
        self.handler.link.compressed = True


class _Link:
    """A handler's own state, in one slotted object.

    Tornado's handler and protocol objects keep their attributes in instance
    dicts; at 30 keys CPython stops sharing a dict's keys between instances
    and each connection pays for a whole table. Tornado's protocol object has
    29 already, its handler 27: ours adds this one key to the handler only.
    """

    __slots__ = ("admitted", "compressed", "flags", "frame_counted", "gate", "session", "sink", "transport")

    def __init__(self, gate: Gate, sink: SessionSink) -> None:
        self.gate = gate
        self.sink = sink
        self.flags = _ProtocolFlags()
        self.admitted: Admitted | None = None
        self.session: Session | None = None
        self.transport: WebSocketTransport | None = None
        self.compressed = False
        # Set by a callback that counted its own frame for the rate limit (see ChatSocketHandler.frame_read).
        self.frame_counted = False


class ChatSocketHandler(tornado.websocket.WebSocketHandler, JsonErrors):
    """``GET /ws``: admission before the upgrade, then one chat session per connection."""

    link: _Link

    def initialize(self, gate: Gate, sink: SessionSink) -> None:
        self.link = _Link(gate, sink)

    def set_default_headers(self) -> None:
        # Only refusals have a body here (JSON); the page's security headers would ride along on every 101.
        self.set_header("X-Content-Type-Options", "nosniff")

    def prepare(self) -> None:
        """Admit or refuse before anything is upgraded; a refusal finishes the request here."""
        link = self.link
        handshake = Handshake(
            self.request.headers,
            self.get_query_argument("token", None) or self.get_cookie(TOKEN_COOKIE),
            self.get_query_argument("since", None),
            self.request.remote_ip or "",
        )
        decision = link.gate.admit(handshake)
        if isinstance(decision, Refusal):
            link.gate.refused(decision.code)
            self.set_status(decision.status)
            for name, value in decision.headers:
                self.set_header(name, value)
            self.write_json_error(decision.code, decision.message)
            return
        link.admitted = decision

    def check_origin(self, origin: str) -> bool:
        return self.link.gate.origin_allowed(origin)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return SUBPROTOCOL if SUBPROTOCOL in subprotocols else None

    def get_compression_options(self) -> dict[str, Any] | None:
        if not self.link.gate.compression:
            return None
        return {"compression_level": DEFLATE_LEVEL, "mem_level": DEFLATE_MEM_LEVEL}

    @property
    def max_message_size(self) -> int:
        return self.link.gate.max_message_bytes

    def get_websocket_protocol(self) -> tornado.websocket.WebSocketProtocol | None:
        if self.request.headers.get("Sec-WebSocket-Version") != "13":
            return None
        params = tornado.websocket._WebSocketParams(
            max_message_size=self.max_message_size, compression_options=self.get_compression_options()
        )
        return _ChatProtocol(self, params)

    # ------------------------------------------------------------ Tornado's events

    def open(self, *args: str, **kwargs: str) -> None:
        link = self.link
        connection = self.ws_connection
        admitted, link.admitted = link.admitted, None
        if connection is None or connection.stream is None or admitted is None:
            return
        self.set_nodelay(True)
        link.transport = WebSocketTransport(
            self, connection.stream, admitted.remote_ip, link.gate.max_buffered_bytes, link.compressed
        )
        link.session = self._guarded(link.sink.open_session, link.transport, admitted)
        self._forget_handshake()

    def _forget_handshake(self) -> None:
        """Drop the request's and the 101 response's headers: only the handshake needed them.

        Tornado keeps the request for as long as the connection lives (its
        coroutines hold it), so an idle connection would otherwise carry both
        header sets for hours.
        """
        request = self.request
        request.headers.clear()
        # The HTTP/1.1 connection objects that parsed the handshake; the stream is ours now.
        request.connection = None
        request.server_connection = None
        for name in _UPGRADE_RESPONSE_HEADERS:
            self.clear_header(name)

    def on_message(self, message: str | bytes) -> None:
        link = self.link
        if link.session is not None:
            link.frame_counted = True
            self._guarded(link.sink.receive, link.session, message)

    def on_ping(self, data: bytes) -> None:
        link = self.link
        if link.session is not None:
            link.frame_counted = True
            self._guarded(link.sink.ping_received, link.session)

    def on_pong(self, data: bytes) -> None:
        link = self.link
        if link.session is not None:
            link.frame_counted = True
            self._guarded(link.sink.pong_received, link.session, data)

    def on_close(self) -> None:
        link = self.link
        session, link.session = link.session, None
        if session is not None:
            self._guarded(link.sink.forget_session, session)
        transport, link.transport = link.transport, None
        if transport is not None:
            transport.detach_handler()

    # ------------------------------------------------------------ from the protocol and the transport

    def frame_read(self) -> None:
        """Every frame read ends here; one that no callback counted is counted now."""
        link = self.link
        if link.frame_counted:
            link.frame_counted = False
        elif link.session is not None:
            self._guarded(link.sink.frame_received, link.session)

    def violated(self, code: int) -> None:
        link = self.link
        if link.session is not None:
            self._guarded(link.sink.protocol_violated, link.session, code)

    def overflowed(self) -> None:
        link = self.link
        if link.session is not None:
            self._guarded(link.sink.transport_overflowed, link.session)

    def _guarded(self, call: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R | None:
        """The one place the network layer calls the core: a failure is logged once and ends this connection."""
        try:
            return call(*args, **kwargs)
        except Exception:
            log.exception("the chat service failed on a WebSocket event; closing that connection")
            if self.link.transport is not None:
                self.link.transport.close(CLOSE_INTERNAL_ERROR, "internal error")
            return None
