"""Who may open a session: one decision, made before the upgrade (or before an event stream or a poll opens).

``Admission.admit`` takes what the handshake request says (``Handshake``) and
returns either a ``Refusal`` (an HTTP status and a stable error code, answered
with a JSON body) or an ``Admitted`` session-to-be, in this order of checks:
server state, upgrade headers, origin, token, connection limits, resume point.
``Admission.admit_http`` makes the same checks for the HTTP transports, less
the upgrade headers.
It does no I/O: the identity check is an in-memory lookup, and the counts come
from the session registry.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from .protocol import MAX_SEQ
from .settings import Settings
from .tokens import Claims, TokenError

# A resume point: a decimal sequence number, as digits only (no sign, no other digits that int() accepts).
_SEQ_TEXT = re.compile(r"[0-9]{1,19}")
# A Sec-WebSocket-Key is 16 random bytes in base64 (RFC 6455 section 4.1).
_CLIENT_KEY_BYTES = 16


@dataclass(frozen=True, slots=True)
class Handshake:
    """What admission reads of an upgrade request."""

    headers: Mapping[str, str]
    token: str | None
    since: str | None
    remote_ip: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """An upgrade refused before it happens: HTTP ``status`` with ``{"error": code, "message": message}``."""

    status: int
    code: str
    message: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Admitted:
    """An accepted session-to-be: whose it is, and where to resume (None: from where the user left off)."""

    claims: Claims
    since: int | None
    remote_ip: str


SHUTTING_DOWN = Refusal(503, "shutting_down", "the server is restarting; reconnect in a few seconds")


class Authenticator(Protocol):
    def authenticate(self, token: str | None) -> Claims:
        """The claims of a valid token; raises ``TokenError``."""
        ...


class SessionCounts(Protocol):
    def session_count(self) -> int: ...

    def session_count_of(self, user: str) -> int: ...


def valid_client_key(client_key: str) -> bool:
    """A ``Sec-WebSocket-Key`` is 16 bytes in base64 (RFC 6455 section 4.1)."""
    try:
        return len(base64.b64decode(client_key.encode("ascii"), validate=True)) == _CLIENT_KEY_BYTES
    except (ValueError, UnicodeEncodeError):
        return False


def parse_seq(text: str) -> int | None:
    """A sequence number written as 1 to 19 ASCII digits, at most ``MAX_SEQ``; None for anything else."""
    if not _SEQ_TEXT.fullmatch(text):
        return None
    value = int(text)
    return value if value <= MAX_SEQ else None


def same_origin(headers: Mapping[str, str]) -> bool | None:
    """True for a same-origin (or non-browser) request, False for a cross-site one, None when undecided.

    Browsers send ``Sec-Fetch-Site`` and ``Origin`` (RFC 6455 section 10.2); a
    request with neither comes from a program, not a page.
    """
    fetch_site = headers.get("Sec-Fetch-Site")
    origin = headers.get("Origin")
    if fetch_site in ("same-origin", "none"):
        return True
    if origin is None:
        return True if fetch_site is None else None
    if fetch_site is None and urllib.parse.urlsplit(origin).netloc.lower() == headers.get("Host", "").lower():
        return True
    return None


class Admission:
    """Decides each WebSocket upgrade (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        accounts: Authenticator,
        sessions: SessionCounts,
        ready: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.sessions = sessions
        self.ready = ready

    def origin_allowed(self, origin: str) -> bool:
        """Whether a page of another origin may open a socket (``--allowed-origins``)."""
        allowed = self.settings.allowed_origins
        return "*" in allowed or origin.rstrip("/") in allowed

    def admit(self, handshake: Handshake) -> Refusal | Admitted:
        """A WebSocket upgrade: the server's state, the upgrade headers, then what every transport checks."""
        headers = handshake.headers
        if not self.ready():
            return SHUTTING_DOWN
        connection_tokens = {part.strip().lower() for part in headers.get("Connection", "").split(",")}
        if headers.get("Upgrade", "").lower() != "websocket" or "upgrade" not in connection_tokens:
            return Refusal(400, "bad_handshake", "this endpoint speaks WebSocket only")
        if headers.get("Sec-WebSocket-Version") != "13":
            return Refusal(426, "bad_handshake", "WebSocket version 13 is required", (("Sec-WebSocket-Version", "13"),))
        if not valid_client_key(headers.get("Sec-WebSocket-Key", "")):
            return Refusal(400, "bad_handshake", "Sec-WebSocket-Key must be 16 bytes in base64")
        return self._admit(handshake)

    def admit_http(self, handshake: Handshake) -> Refusal | Admitted:
        """A session opened over HTTP (an event stream, a first long poll): the same checks, without an upgrade."""
        if not self.ready():
            return SHUTTING_DOWN
        return self._admit(handshake)

    def _admit(self, handshake: Handshake) -> Refusal | Admitted:
        headers = handshake.headers
        if not same_origin(headers) and not self.origin_allowed(headers.get("Origin", "")):
            return Refusal(403, "origin", "this origin may not open a WebSocket here")
        try:
            claims = self.accounts.authenticate(handshake.token)
        except TokenError as exc:
            return Refusal(401, exc.problem.value, "a valid login token is required (cookie or ?token=)")
        if self.sessions.session_count() >= self.settings.max_connections:
            return Refusal(503, "too_many_connections", "the server is full; try again later")
        if self.sessions.session_count_of(claims.user) >= self.settings.max_connections_per_user:
            return Refusal(503, "too_many_for_user", "you have too many connections open; close one")
        since = None
        if handshake.since is not None:
            since = parse_seq(handshake.since)
            if since is None:
                return Refusal(400, "bad_since", "since must be a non-negative integer sequence number")
        return Admitted(claims, since, handshake.remote_ip)


class Gate(Protocol):
    """What a WebSocket handler asks before the upgrade: admission, and how to serve the connection."""

    def admit(self, handshake: Handshake) -> Refusal | Admitted: ...

    def origin_allowed(self, origin: str) -> bool: ...

    def refused(self, code: str) -> None:
        """Count a refused handshake (``chat_handshakes_rejected_total``)."""
        ...

    @property
    def compression(self) -> bool: ...

    @property
    def max_message_bytes(self) -> int: ...

    @property
    def max_buffered_bytes(self) -> int: ...
