"""A lean WebSocket client for load generation: asyncio protocols and minimal RFC 6455 framing.

A high-level WebSocket library spends tens of microseconds per frame in Python; a thousand receiving
clients at 100k frames/s leave about ten. This client therefore does only what the benchmark needs:

- the opening handshake (a GET with ``Upgrade: websocket``, a check of ``Sec-WebSocket-Accept``);
- masked frames on send (RFC 6455 section 5.3: every client frame is masked), by ``wsframe``;
- a tight parser on receive that splits frames and hands each text payload, as bytes and unparsed, to
  ``on_text(client, payload, now)``, with ``now`` read once per read from the socket; workloads find
  the few bytes they need (a counter embedded in the message text) without decoding the JSON;
- pings answered with pongs (unless the client plays dead), close frames answered and the socket closed.

TCP_NODELAY is set on every socket. Nothing here allocates per frame beyond the payload slice.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import socket
from collections.abc import Callable
from time import perf_counter
from typing import Any, cast

from .wsframe import OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, encode_frame

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TYPE_RE = re.compile(rb'"type"\s*:\s*"([a-z_]+)"')

TextHandler = Callable[["WSClient", bytes, float], None]


def ignore_text(client: WSClient, payload: bytes, now: float) -> None:
    """A text handler that drops everything (idle clients)."""


def setup_text(client: WSClient, payload: bytes, now: float) -> None:
    """The handler while clients get ready: call the waiter registered for the frame's ``type``, if any.

    Frames nobody waits for (member and presence notices, acks during setup) cost one regex search.
    """
    waiting = client.waiting
    if not waiting:
        return
    match = TYPE_RE.search(payload)
    if match is None:
        return
    kind = match.group(1)
    if kind == b"error":
        client.errors.append(payload.decode("utf-8", "replace"))
    callback = waiting.pop(kind, None)
    if callback is not None:
        callback(payload)


class WSClient(asyncio.Protocol):
    """One WebSocket connection. ``opened`` resolves when the server answers 101."""

    def __init__(self, name: str, host: str, port: int, path: str, on_text: TextHandler = setup_text) -> None:
        self.name = name
        # The name the server knows this client by, and others address it by (a guest login may prefix it).
        self.user = name
        self.host = host
        self.port = port
        self.path = path
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting: dict[bytes, Callable[[bytes], None]] = {}
        self.errors: list[str] = []
        self.dead = False  # plays dead: reads and discards, answers nothing, sends nothing
        self.offer_deflate = False  # offers permessage-deflate in the handshake (frames are not inflated)
        self.closed_at: float | None = None
        self.on_lost: Callable[[WSClient], None] | None = None
        self._buf = b""
        self._fragments: list[bytes] | None = None
        self._handshaking = True
        self._key = base64.b64encode(os.urandom(16))
        # Free slots for workloads (counters, per-message bookkeeping), so they need no side tables.
        self.seen: bytearray = bytearray()
        self.count = 0
        self.peer: WSClient | None = None
        self.sent_at = 0.0
        self.extra: Any = None

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, though they are one.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.write(self._request())

    def _request(self) -> bytes:
        """The opening request: a WebSocket upgrade (offering permessage-deflate when asked to)."""
        extensions = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if self.offer_deflate else b""
        return (
            b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
            % (self.path.encode(), self.host.encode(), self.port, self._key, extensions)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed_at = perf_counter()
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"{self.name}: connection lost during the handshake ({exc})"))
        if self.on_lost is not None:
            self.on_lost(self)

    def data_received(self, data: bytes) -> None:
        now = perf_counter()
        if self._handshaking:
            data = self._handshake(data)
            if not data:
                return
        buf = self._buf + data if self._buf else data
        end_of_data = len(buf)
        pos = 0
        on_text = self.on_text
        while end_of_data - pos >= 2:
            first = buf[pos]
            length = buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if end_of_data - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            elif length == 127:
                if end_of_data - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > end_of_data:
                break
            if first == 0x81:  # final text frame: the hot path
                on_text(self, buf[start:end], now)
            else:
                self._other_frame(first, buf[start:end], now)
            pos = end
        self._buf = buf[pos:] if pos < end_of_data else b""

    # ---------------------------------------------------------------- frames

    def _handshake(self, data: bytes) -> bytes:
        """Read the HTTP answer to the upgrade; returns the bytes after it (the first frames)."""
        buf = self._buf + data
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            self._buf = buf
            if len(buf) > 65536:
                self._fail("handshake answer too long")
            return b""
        head, rest = buf[:head_end], buf[head_end + 4 :]
        self._buf = b""
        lines = head.split(b"\r\n")
        status = lines[0].split(b" ", 2)
        if len(status) < 2 or status[1] != b"101":
            self._fail(f"handshake refused: {lines[0].decode('latin-1')} {rest[:200].decode('utf-8', 'replace')}")
            return b""
        expected = base64.b64encode(hashlib.sha1(self._key + WS_GUID).digest())
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
        if headers.get(b"sec-websocket-accept") != expected:
            self._fail("handshake answer has a wrong Sec-WebSocket-Accept")
            return b""
        self._handshaking = False
        if not self.opened.done():
            self.opened.set_result(None)
        return rest

    def _fail(self, reason: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"{self.name}: {reason}"))
        if self.transport is not None:
            self.transport.abort()

    def _other_frame(self, first: int, payload: bytes, now: float) -> None:
        opcode = first & 0x0F
        final = first & 0x80
        if opcode == OP_PING:
            if not self.dead and self.transport is not None:
                self.transport.write(encode_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            if not self.dead and self.transport is not None:
                self.transport.write(encode_frame(OP_CLOSE, payload[:2]))
                self.transport.close()
        elif opcode in (OP_TEXT, OP_CONT):
            # A fragmented text message: collect the pieces, deliver the whole.
            if opcode == OP_TEXT:
                self._fragments = [payload]
            elif self._fragments is not None:
                self._fragments.append(payload)
            if final and self._fragments is not None:
                whole = b"".join(self._fragments)
                self._fragments = None
                self.on_text(self, whole, now)

    # ---------------------------------------------------------------- sending

    def send(self, payload: bytes) -> None:
        """Send one text frame (masked); nothing when playing dead or closed."""
        if not self.dead and self.transport is not None:
            self.transport.write(encode_frame(OP_TEXT, payload))

    def send_json(self, frame: dict[str, Any]) -> None:
        self.send(json.dumps(frame, separators=(",", ":")).encode())

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Countdown:
    """Wait for ``n`` events (every client has its ``joined``, every message arrived), with a timeout."""

    def __init__(self, n: int, what: str) -> None:
        self.left = n
        self.what = what
        self.event = asyncio.Event()
        if n <= 0:
            self.event.set()

    def hit(self, *_: Any) -> None:
        self.left -= 1
        if self.left == 0:
            self.event.set()

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"timed out after {timeout:g}s waiting for {self.what} ({self.left} still missing)"
            ) from None


class HttpPool:
    """A few keep-alive HTTP/1.1 connections for JSON POSTs (logins): thousands of logins, few sockets."""

    def __init__(self, host: str, port: int, size: int = 8) -> None:
        self.host = host
        self.port = port
        self.size = size
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = asyncio.Queue()
        for _ in range(size):
            self._idle.put_nowait(None)

    async def post_json(self, path: str, body: dict[str, Any], timeout: float = 30.0) -> tuple[int, Any]:
        conn = await self._idle.get()
        try:
            for attempt in range(2):
                if conn is None:
                    conn = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), timeout)
                    sock = conn[1].get_extra_info("socket")
                    if sock is not None:
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    return await asyncio.wait_for(self._post(conn, path, body), timeout)
                except (ConnectionError, asyncio.IncompleteReadError):
                    conn[1].close()
                    conn = None
                    if attempt:
                        raise
            raise AssertionError("unreachable")
        except BaseException:
            if conn is not None:
                conn[1].close()
            conn = None
            raise
        finally:
            self._idle.put_nowait(conn)

    async def _post(
        self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], path: str, body: dict[str, Any]
    ) -> tuple[int, Any]:
        reader, writer = conn
        status, payload = await post_json(reader, writer, f"{self.host}:{self.port}", path, json.dumps(body).encode())
        try:
            return status, json.loads(payload) if payload else None
        except ValueError:
            return status, payload.decode("utf-8", "replace")

    async def close(self) -> None:
        while not self._idle.empty():
            conn = self._idle.get_nowait()
            if conn is not None:
                conn[1].close()


async def post_json(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str, body: bytes
) -> tuple[int, bytes]:
    """One POST of a JSON body on a keep-alive connection (``host`` as for the Host header); the answer's
    status and body (read by its Content-Length)."""
    writer.write(
        b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (path.encode(), host.encode(), len(body), body)
    )
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def http_get(host: str, port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """One plain GET on a fresh connection (metrics scrapes); returns status and body."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(
            b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n" % (path.encode(), host.encode(), port)
        )
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b"\r\n", 1)[0].split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return status, body


def _dechunk(body: bytes) -> bytes:
    out: list[bytes] = []
    pos = 0
    while True:
        line_end = body.index(b"\r\n", pos)
        size = int(body[pos:line_end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[line_end + 2 : line_end + 2 + size])
        pos = line_end + 2 + size + 2
