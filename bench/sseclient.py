"""A lean client of tornado-chat's HTTP fallback for load generation: an event stream in, POSTed frames out.

``SseClient`` is a ``WSClient`` as far as the workloads can tell (the same ``on_text``, ``waiting``,
``send`` and free slots), carried by two connections instead of a WebSocket:

- ``GET /events`` on the client's own socket, read with a tight parser: HTTP/1.1 chunks are undone, the
  stream is cut into events at blank lines, comment lines (the server's pings) are dropped, and each
  event's ``data:`` is handed, as bytes and unparsed, to ``on_text(client, payload, now)``;
- ``POST /api/frames?session=ID`` on a keep-alive connection of its own, one request at a time in order;
  frames sent while one is on its way go together in the next. The POST's answer (the frames' acks and
  errors) goes to ``on_text`` as well, each frame on its own.

TCP_NODELAY is set on both sockets.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse
from time import perf_counter

from .wsclient import TextHandler, WSClient, post_json, setup_text


def events_path(ws_path: str) -> str:
    """The event-stream path for a client that would open ``ws_path`` (``/ws?token=...``)."""
    path, _, query = ws_path.partition("?")
    assert path == "/ws", ws_path
    return "/events?" + query


class SseClient(WSClient):
    """One tornado-chat session over ``GET /events`` and ``POST /api/frames`` (see the module docstring)."""

    def __init__(self, name: str, host: str, port: int, path: str, on_text: TextHandler = setup_text) -> None:
        super().__init__(name, host, port, events_path(path), on_text)
        self.token = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("token", [""])[0]
        self.session: str | None = None
        self._chunk_left = 0  # bytes of the current HTTP chunk still to come (-2, -1: its CRLF)
        self._pending_events = b""
        self._outbox: list[bytes] = []
        self._posting = False
        self._poster: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    # ---------------------------------------------------------------- the event stream

    def _request(self) -> bytes:
        return b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n\r\n" % (
            self.path.encode(),
            self.host.encode(),
            self.port,
        )

    def data_received(self, data: bytes) -> None:
        now = perf_counter()
        if self._handshaking:
            data = self._head(data)
            if not data:
                return
        body = self._unchunk(data)
        if not body:
            return
        events = self._pending_events + body
        end = events.rfind(b"\n\n")
        if end < 0:
            self._pending_events = events
            return
        self._pending_events = events[end + 2 :]
        for event in events[:end].split(b"\n\n"):
            self._event(event, now)

    def _head(self, data: bytes) -> bytes:
        """Read the answer's head; returns the bytes after it (the first chunks)."""
        buf = self._buf + data
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            self._buf = buf
            return b""
        head, rest = buf[:head_end], buf[head_end + 4 :]
        self._buf = b""
        status_line = head.split(b"\r\n", 1)[0]
        if status_line.split(b" ", 2)[1:2] != [b"200"]:
            self._fail(f"event stream refused: {status_line.decode('latin-1')} {rest[:200]!r}")
            return b""
        if b"transfer-encoding: chunked" not in head.lower():
            self._fail("the event stream is not chunked")
            return b""
        self._handshaking = False
        if not self.opened.done():
            self.opened.set_result(None)
        return rest

    def _unchunk(self, data: bytes) -> bytes:
        """The body bytes in ``data`` (HTTP/1.1 chunked transfer coding), across reads."""
        buf = self._buf + data if self._buf else data
        self._buf = b""
        out: list[bytes] = []
        pos = 0
        size = len(buf)
        while pos < size:
            left = self._chunk_left
            if left > 0:
                take = min(left, size - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._chunk_left = left - take
                if self._chunk_left == 0:
                    self._chunk_left = -2  # the CRLF after the chunk
            elif left < 0:
                skip = min(-left, size - pos)
                pos += skip
                self._chunk_left = left + skip
            else:
                line_end = buf.find(b"\r\n", pos)
                if line_end < 0:
                    self._buf = buf[pos:]
                    break
                length = int(buf[pos:line_end].split(b";", 1)[0], 16)
                pos = line_end + 2
                if length == 0:  # the server ended the stream
                    break
                self._chunk_left = length
        return b"".join(out)

    def _event(self, event: bytes, now: float) -> None:
        if event.startswith(b":"):
            return  # a heartbeat ping
        start = event.find(b"data: ")
        if start < 0:
            return
        line_end = event.find(b"\n", start)
        payload = event[start + 6 :] if line_end < 0 else event[start + 6 : line_end]
        if event.startswith(b"event: close", 0) or b"\nevent: close" in event:
            self.errors.append("closed by the server: " + payload.decode("utf-8", "replace"))
            return
        if self.session is None and payload.startswith(b'{"type":"welcome"'):
            self.session = json.loads(payload)["session"]
        self.on_text(self, payload, now)

    # ---------------------------------------------------------------- frames out

    def send(self, payload: bytes) -> None:
        """POST one frame (with any others sent meanwhile); nothing when playing dead or before the welcome."""
        if self.dead or self.session is None:
            return
        self._outbox.append(payload)
        if not self._posting:
            self._posting = True
            asyncio.get_running_loop().create_task(self._post_all())

    async def _post_all(self) -> None:
        try:
            while self._outbox and not self.dead:
                frames, self._outbox = self._outbox, []
                status, answer = await self._post(b"[" + b",".join(frames) + b"]")
                now = perf_counter()
                if status != 200 or not isinstance(answer, list):
                    self.errors.append(f"POST answered {status}: {answer!r}"[:300])
                    continue
                for reply in answer:
                    self.on_text(self, json.dumps(reply, separators=(",", ":")).encode(), now)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.errors.append(f"POST failed: {exc!r}")
        finally:
            self._posting = False

    async def _post(self, body: bytes) -> tuple[int, object]:
        if self._poster is None:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._poster = (reader, writer)
        reader, writer = self._poster
        query = urllib.parse.urlencode({"session": self.session, "token": self.token})
        status, payload = await post_json(reader, writer, f"{self.host}:{self.port}", f"/api/frames?{query}", body)
        return status, json.loads(payload) if payload else None

    def abort(self) -> None:
        super().abort()
        if self._poster is not None:
            self._poster[1].close()
            self._poster = None
