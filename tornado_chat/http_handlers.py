"""The Tornado side of the HTTP transports: ``GET /events``, ``GET``/``DELETE /poll``, ``POST /api/frames``.

For networks that do not carry a WebSocket (docs/protocol.md, "Without
WebSocket"). The handlers only translate requests into calls on
``http_sessions.HttpSessions`` and its transports; they hold no chat state.
A token comes from ``Authorization: Bearer``, a ``token`` query parameter or
the ``chat_token`` cookie. Refusals are JSON, like the rest of the API; a
cross-site ``POST`` or ``DELETE`` is refused by Tornado's cross-origin
protection before it gets here.
"""

from __future__ import annotations

import asyncio
from typing import NoReturn

import tornado.web
from tornado.http1connection import HTTP1Connection

from .admission import Admitted, Handshake, Refusal, parse_seq
from .http_sessions import FRAMES_PER_POST_MAX, HttpRefused, HttpSessions, split_frames, token_digest
from .http_transport import HttpTransport, PollTransport, poll_answer
from .httpbase import TOKEN_COOKIE, ApiError, JsonErrors
from .sse import EventStreamTransport


class TransportHandler(JsonErrors):
    """Tokens, admission and session look-up for the HTTP transports."""

    sessions: HttpSessions

    def initialize(self, sessions: HttpSessions) -> None:
        self.sessions = sessions

    def token(self) -> str | None:
        header = self.request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        return self.get_query_argument("token", None) or self.get_cookie(TOKEN_COOKIE)

    def admit(self, since: str | None) -> Admitted | None:
        """Admission for a new session; a refusal is answered here (and None returned)."""
        handshake = Handshake(self.request.headers, self.token(), since, self.request.remote_ip or "")
        decision = self.sessions.admit(handshake)
        if isinstance(decision, Refusal):
            self.set_status(decision.status)
            for name, value in decision.headers:
                self.set_header(name, value)
            self.write_json_error(decision.code, decision.message)
            return None
        return decision

    def find(self) -> HttpTransport:
        """The session named by ``?session=``, if this request's token opened it."""
        try:
            return self.sessions.find(self.get_query_argument("session", None), self.token())
        except HttpRefused as refused:
            raise ApiError(refused.status, refused.code, refused.message) from None

    def refuse(self, status: int, code: str, message: str) -> NoReturn:
        try:
            self.sessions.refuse(status, code, message)
        except HttpRefused as refused:
            raise ApiError(refused.status, refused.code, refused.message) from None

    def answer_json(self, body: bytes) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(body)


class EventStreamHandler(TransportHandler):
    """``GET /events[?since=SEQ]``: a new session whose frames come as Server-Sent Events.

    ``Last-Event-ID`` (sent by a browser's EventSource when it reconnects by itself) wins over ``since``.
    """

    transport: EventStreamTransport | None = None
    done: asyncio.Future[None] | None = None

    async def get(self) -> None:
        since = self.request.headers.get("Last-Event-ID") or self.get_query_argument("since", None)
        admitted = self.admit(since)
        connection = self.request.connection
        if admitted is None or not isinstance(connection, HTTP1Connection):
            return
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")  # nginx: pass each event on at once, whatever the config
        self.flush()  # the headers now; HTTP/1.1 responses are chunked from here on
        stream = connection.stream
        stream.set_nodelay(True)
        settings = self.sessions.settings
        self.done = asyncio.get_running_loop().create_future()
        self.transport = EventStreamTransport(
            self.sessions,
            stream,
            chunked=self._headers.get("Transfer-Encoding") == "chunked",
            finish=self._end_stream,
            remote_ip=admitted.remote_ip,
            max_buffered=settings.max_buffered_bytes,
            token_digest=token_digest(self.token()),
            alive_within_s=settings.ping_interval_s,
        )
        self.sessions.start(self.transport, admitted)
        await self.done

    def _end_stream(self) -> None:
        if not self._finished:
            self.finish()
        self._resolve()

    def on_connection_close(self) -> None:
        if self.transport is not None:
            self.transport.lost()
        self._resolve()

    def _resolve(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(None)


class PollHandler(TransportHandler):
    """``GET /poll[?since=SEQ]`` opens a session; ``GET /poll?session=ID&cursor=N[&wait=S]`` polls it;
    ``DELETE /poll?session=ID`` ends it."""

    gone = False

    async def get(self) -> None:
        if self.get_query_argument("session", None) is None:
            self._open()
            return
        transport = self.find()
        if not isinstance(transport, PollTransport):
            self.refuse(400, "bad_request", "this session is an event stream: it is not polled")
        cursor = parse_seq(self.get_query_argument("cursor", ""))
        if cursor is None or not transport.acknowledge(cursor):
            self.refuse(400, "bad_cursor", "cursor must be the cursor of the last answer (0 before any)")
        interval = self.sessions.settings.ping_interval_s
        try:
            wait = min(float(self.get_query_argument("wait", str(interval))), interval)
        except ValueError:
            wait = -1.0
        if not wait >= 0:  # also refuses nan
            self.refuse(400, "bad_request", "wait must be a number of seconds")
        self.sessions.poll_arrived(transport)
        await transport.wait(wait)
        if not self.gone:
            self._answer(transport)

    def delete(self) -> None:
        self.sessions.end_by_client(self.find())
        self.answer_json(b'{"ok":true}')

    def _open(self) -> None:
        admitted = self.admit(self.get_query_argument("since", None))
        if admitted is None:
            return
        settings = self.sessions.settings
        transport = PollTransport(
            self.sessions, admitted.remote_ip, settings.max_buffered_bytes, token_digest(self.token())
        )
        self.sessions.start(transport, admitted)
        self._answer(transport)

    def _answer(self, transport: PollTransport) -> None:
        session = transport.session
        if session is None or transport.aborted:
            self.refuse(404, "unknown_session", "no such session: open a new one")
        notice = transport.notice if transport.closing else None
        self.answer_json(poll_answer(session.sid, transport.last_number, transport.pending(), notice))
        if notice is not None:
            self.sessions.notice_delivered(transport)

    def on_connection_close(self) -> None:
        self.gone = True


@tornado.web.stream_request_body
class FramesHandler(TransportHandler):
    """``POST /api/frames?session=ID`` with a JSON array of frames; answers their acks and errors, in order."""

    transport: HttpTransport
    body: bytearray

    def prepare(self) -> None:
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            self.refuse(415, "unsupported_media_type", "send the frames as an application/json array")
        limit = self.sessions.max_post_bytes
        length = parse_seq(self.request.headers.get("Content-Length", "0"))
        if length is None:
            self.refuse(400, "bad_request", "Content-Length must be a number of bytes")
        if length > limit:
            self.refuse(413, "too_large", f"a POST of frames is at most {limit} bytes")
        connection = self.request.connection
        if isinstance(connection, HTTP1Connection):
            connection.set_max_body_size(limit)  # a chunked body past it is cut off by Tornado
        self.transport = self.find()
        self.body = bytearray()

    def data_received(self, chunk: bytes) -> None:
        self.body += chunk

    async def post(self) -> None:
        try:
            frames = split_frames(bytes(self.body), FRAMES_PER_POST_MAX)
        except HttpRefused as refused:
            self.refuse(refused.status, refused.code, refused.message)
        try:
            replies = await self.sessions.post(self.transport, frames)
        except HttpRefused as refused:  # counted already
            raise ApiError(refused.status, refused.code, refused.message) from None
        self.answer_json(b"[" + b",".join(replies) + b"]")
