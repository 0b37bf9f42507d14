"""HTTP-transport sessions: who may open one, which requests may address it, and the frames POSTed to it.

An event stream (``GET /events``) or a first long poll (``GET /poll``) is
admitted by the same ``Admission`` as a WebSocket upgrade (origin, token,
connection limits, resume point) and opens a session through the chat service;
the session's id (the ``session`` of its ``welcome``) then addresses it. A
request naming a session must carry a valid token, and the very token that
opened the session: another token, even of the same user, gets ``404
unknown_session`` as if the session did not exist.

``POST /api/frames`` hands each frame of its JSON array to the chat service as
the WebSocket handler hands over a message: the same parser, rate limit, size
limit and idempotent sends. Its answer is the frames' replies
(``http_transport.ReplyCapture``): the acks and errors, in order, waiting up to
``REPLY_WAIT_S`` for the acks of its sends.

A session the server ends keeps its transport here for a ping interval plus a
timeout, so that a long poller comes back to find out why (``close`` in the
poll's answer); then it is forgotten, and its id is unknown.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from typing import NoReturn, Protocol

from .admission import Admitted, Authenticator, Handshake, Refusal
from .heartbeat import HeartbeatMonitor
from .http_transport import HttpTransport, PollTransport
from .metrics import ChatMetrics
from .protocol import ErrorCode, FrameId
from .session import CLOSE_INTERNAL_ERROR, CLOSE_NORMAL, CLOSED_BY_CLIENT, Session, Transport
from .settings import Settings
from .tokens import TokenError

log = logging.getLogger("tornado_chat.http_sessions")

# Most frames one POST may carry, and its body's limit in multiples of --max-message-bytes.
FRAMES_PER_POST_MAX = 64
POST_BODY_MESSAGES = 4
# How long a POST waits for the acks of its sends (they come once the store commits); later ones go down the
# session's stream.
REPLY_WAIT_S = 10.0
_JSON_SPACE = re.compile(r"[ \t\n\r]*")


class HttpRefused(Exception):
    """A request about an HTTP-transport session refused: HTTP ``status`` with ``{"error", "message"}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Gate(Protocol):
    def admit_http(self, handshake: Handshake) -> Refusal | Admitted: ...


class ChatPort(Protocol):
    """What HTTP-transport sessions need of the chat service."""

    def open_session(self, transport: Transport, admitted: Admitted) -> Session: ...

    def receive(self, session: Session, data: str | bytes) -> None: ...

    def frame_received(self, session: Session) -> None: ...

    def send_error(self, session: Session, code: ErrorCode, message: str, frame_id: FrameId = None) -> None: ...

    def transport_overflowed(self, session: Session) -> None: ...

    def end_session(self, session: Session, why: str, code: int, reason: str) -> None: ...

    def forget_session(self, session: Session) -> None: ...


def token_digest(token: str | None) -> bytes:
    return hashlib.sha256((token or "").encode("utf-8", "surrogatepass")).digest()


def split_frames(body: bytes, max_frames: int) -> list[tuple[str, str | None]]:
    """The frames of a POST body (a JSON array), each as the JSON text the client wrote, with its client id
    when it is a ``send``. Raises ``HttpRefused`` for a body that is not a JSON array of at most ``max_frames``.

    Each frame is handed to the chat service as it was written, as a WebSocket message would be: its size,
    its parse and its errors are the same.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpRefused(400, "bad_json", "the body is not UTF-8") from None
    decoder = json.JSONDecoder()
    position = _JSON_SPACE.match(text).end()  # type: ignore[union-attr]
    if text[position : position + 1] != "[":
        raise HttpRefused(400, "bad_request", "the body must be a JSON array of frames")
    position = _JSON_SPACE.match(text, position + 1).end()  # type: ignore[union-attr]
    frames: list[tuple[str, str | None]] = []
    if text[position : position + 1] == "]":
        position += 1
    else:
        while True:
            try:
                value, end = decoder.raw_decode(text, position)
            except (ValueError, RecursionError):
                raise HttpRefused(400, "bad_json", "the body is not valid JSON") from None
            if len(frames) == max_frames:
                raise HttpRefused(400, "bad_request", f"a POST carries at most {max_frames} frames")
            send_id = value.get("id") if isinstance(value, dict) and value.get("type") == "send" else None
            frames.append((text[position:end], send_id if isinstance(send_id, str) else None))
            position = _JSON_SPACE.match(text, end).end()  # type: ignore[union-attr]
            separator = text[position : position + 1]
            position = _JSON_SPACE.match(text, position + 1).end()  # type: ignore[union-attr]
            if separator == "]":
                break
            if separator != ",":
                raise HttpRefused(400, "bad_json", "the body is not valid JSON")
    if _JSON_SPACE.match(text, position).end() != len(text):  # type: ignore[union-attr]
        raise HttpRefused(400, "bad_json", "the body is not valid JSON")
    return frames


class HttpSessions:
    """The HTTP-transport sessions of one server, by session id (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        gate: Gate,
        accounts: Authenticator,
        chat: ChatPort,
        metrics: ChatMetrics,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.gate = gate
        self.accounts = accounts
        self.chat = chat
        self.metrics = metrics
        self.monotonic = monotonic
        self._transports: dict[str, HttpTransport] = {}
        # How long a session the server ended stays addressable, so that its client can learn why.
        self.linger_s = settings.ping_interval_s + settings.ping_timeout_s

    @property
    def max_post_bytes(self) -> int:
        return POST_BODY_MESSAGES * self.settings.max_message_bytes

    def __len__(self) -> int:
        return len(self._transports)

    def get(self, sid: str) -> HttpTransport | None:
        """The transport of session ``sid`` (for the status page and tests), whoever asks."""
        return self._transports.get(sid)

    # ------------------------------------------------------------ opening and finding

    def admit(self, handshake: Handshake) -> Refusal | Admitted:
        """Admission for a new session, refusals counted like refused WebSocket handshakes."""
        decision = self.gate.admit_http(handshake)
        if isinstance(decision, Refusal):
            self.metrics.handshakes_rejected[decision.code].inc()
        return decision

    def start(self, transport: HttpTransport, admitted: Admitted) -> Session:
        """Open the session (its ``welcome`` is the transport's first frame) and make its id addressable."""
        session = self.chat.open_session(transport, admitted)
        transport.session = session
        self._transports[session.sid] = transport
        return session

    def find(self, sid: str | None, token: str | None) -> HttpTransport:
        """The transport of session ``sid`` if ``token`` is valid and is the one that opened it."""
        if not sid:
            self.refuse(400, "bad_request", "name the session: ?session=ID (from its welcome frame)")
        try:
            self.accounts.authenticate(token)
        except TokenError as exc:
            self.refuse(401, exc.problem.value, "a valid login token is required")
        transport = self._transports.get(sid or "")
        if transport is None or not hmac.compare_digest(transport.token_digest, token_digest(token)):
            self.refuse(404, "unknown_session", "no such session: open a new one")
        return transport

    def refuse(self, status: int, code: str, message: str) -> NoReturn:
        """Count and raise a refusal (``chat_http_refused_total``)."""
        self.metrics.http_refused[code].inc()
        raise HttpRefused(status, code, message)

    # ------------------------------------------------------------ what clients do

    async def post(self, transport: HttpTransport, frames: list[tuple[str, str | None]]) -> list[bytes]:
        """Hand each frame to the chat service in order; returns their replies (``ReplyCapture``)."""
        session = transport.session
        if session is None or transport.closing:
            self.refuse(410, "session_closed", "this session has ended: open a new one")
        capture = transport.begin_capture()
        try:
            for text, send_id in frames:
                if transport.closing:
                    break
                capture.begin_frame()
                transport.receiving = capture
                try:
                    self._receive(session, transport, text)
                finally:
                    transport.receiving = None
                # A send that got no reply at once went to the store: its ack (or error) comes later.
                if send_id is not None and not capture.answered:
                    capture.wait_for(send_id)
            if not transport.closing:
                await capture.wait(REPLY_WAIT_S)
        finally:
            transport.end_capture(capture)
        return capture.replies

    def _receive(self, session: Session, transport: HttpTransport, text: str) -> None:
        try:
            size = len(text) if text.isascii() else len(text.encode())
            if size > self.settings.max_message_bytes:
                self.chat.frame_received(session)
                if not session.forgotten:
                    self.chat.send_error(session, ErrorCode.TOO_LARGE, "frame is larger than the server accepts")
                return
            self.chat.receive(session, text)
        except Exception:
            log.exception("the chat service failed on a posted frame; closing that session")
            transport.close(CLOSE_INTERNAL_ERROR, "internal error")

    def poll_arrived(self, transport: HttpTransport) -> None:
        """A long poller came back: that is its sign of life."""
        self.alive(transport)

    def end_by_client(self, transport: HttpTransport) -> None:
        """The client closed its session (``DELETE /poll``): forgotten at once, like a WebSocket closed."""
        session = transport.session
        self._unlink(transport)
        if session is not None and not session.forgotten:
            self.chat.end_session(session, CLOSED_BY_CLIENT, CLOSE_NORMAL, "closed by the client")

    def notice_delivered(self, transport: HttpTransport) -> None:
        """The client has been told why the session ended: its id can go."""
        self._unlink(transport)

    # ------------------------------------------------------------ http_transport.TransportOwner

    def overflowed(self, transport: HttpTransport) -> None:
        session = transport.session
        if session is not None:
            self.chat.transport_overflowed(session)

    def ended(self, transport: HttpTransport) -> None:
        session = transport.session
        if session is not None:
            self.chat.forget_session(session)
        lingers = isinstance(transport, PollTransport) and transport.notice is not None and not transport.aborted
        if lingers and self._is_linked(transport):
            asyncio.get_running_loop().call_later(self.linger_s, self._unlink, transport)
        else:
            self._unlink(transport)

    def alive(self, transport: HttpTransport) -> None:
        session = transport.session
        peer = session.peer if session is not None else None
        if peer is not None:
            HeartbeatMonitor.seen(peer, self.monotonic())

    def _is_linked(self, transport: HttpTransport) -> bool:
        session = transport.session
        return session is not None and self._transports.get(session.sid) is transport

    def _unlink(self, transport: HttpTransport) -> None:
        session = transport.session
        if session is not None and self._transports.get(session.sid) is transport:
            del self._transports[session.sid]
