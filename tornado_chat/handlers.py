"""HTTP and WebSocket handlers: they parse requests and call the server; they hold no state of their own.

Every handler gets the one ``ChatServer`` through ``initialize``. Errors are
answered as ``{"error": CODE, "message": TEXT}`` with no stack trace, and every
response carries the security headers of ``SECURITY_HEADERS``.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any

import tornado.escape
import tornado.web

from . import __version__, protocol, wsproto
from .auth import Claims, TokenError
from .identity import AuthError
from .protocol import ErrorCode, ProtocolError
from .store import StoreError

if TYPE_CHECKING:
    from .server import ChatServer

TOKEN_COOKIE = "chat_token"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
STATIC_MAX_AGE_S = 365 * 24 * 3600


def _set_security_headers(handler: tornado.web.RequestHandler) -> None:
    for name, value in SECURITY_HEADERS.items():
        handler.set_header(name, value)


class ApiError(tornado.web.HTTPError):
    """An HTTP error answered with ``{"error": code, "message": message}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, reason=None, log_message=message)
        self.code = code
        self.message = message
        self.headers = headers or {}


class BaseHandler(tornado.web.RequestHandler):
    """Security headers and JSON errors for every HTTP response."""

    server: ChatServer

    def initialize(self, server: ChatServer) -> None:
        self.server = server

    def set_default_headers(self) -> None:
        _set_security_headers(self)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            code, message = exc.code, exc.message
            for name, value in exc.headers.items():
                self.set_header(name, value)
        else:
            # Never a stack trace: the log has it.
            code, message = self._reason.lower().replace(" ", "_"), self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(protocol.encode({"error": code, "message": message}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # A refused request is logged once, by the access log; only real failures get a traceback.
        if not isinstance(value, tornado.web.HTTPError):
            super().log_exception(typ, value, tb)

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object; 415 for another content type, 400 for bad JSON."""
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise ApiError(415, "unsupported_media_type", "send the body as application/json")
        try:
            body = tornado.escape.json_decode(self.request.body)
        except (ValueError, RecursionError):
            raise ApiError(400, "bad_json", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "bad_request", "the body must be a JSON object")
        return body

    def token(self) -> str | None:
        """The request's token: ``Authorization: Bearer``, or else the cookie."""
        header = self.request.headers.get("Authorization", "")
        return header[7:].strip() if header.lower().startswith("bearer ") else self.get_cookie(TOKEN_COOKIE)

    def current_claims(self) -> Claims:
        """Claims of the request's token; 401 without a valid one."""
        try:
            return self.server.identity.authenticate(self.token())
        except TokenError as exc:
            raise ApiError(401, exc.problem.value, "a valid login token is required") from None

    def answer_login(self, token: str, claims: Claims) -> None:
        """The token in the body and in an HttpOnly cookie (Secure over HTTPS, proxies included)."""
        self.set_cookie(
            TOKEN_COOKIE,
            token,
            path="/",
            expires=claims.expires,
            httponly=True,
            samesite="Lax",
            secure=self.request.protocol == "https",
        )
        self.write(
            {
                "token": token,
                "username": claims.user,
                "expires": protocol.iso_time(claims.expires),
                "guest": self.server.identity.is_guest(claims.user),
            }
        )

    def client_address(self) -> str:
        return self.request.remote_ip or "unknown"

    def refuse(self, error: AuthError) -> None:
        self.server.metrics.auth_refused[error.code].inc()
        headers = {"Retry-After": str(max(1, round(error.retry_after_s)))} if error.retry_after_s > 0 else None
        raise ApiError(error.status, error.code, error.message, headers)


class RegisterHandler(BaseHandler):
    """``POST /api/register {"username", "password"}``: a new account, logged in."""

    async def post(self) -> None:
        body = self.json_body()
        try:
            token, claims = await self.server.identity.register(
                body.get("username"), body.get("password"), self.client_address()
            )
        except AuthError as error:
            self.refuse(error)
            return
        self.answer_login(token, claims)


class LoginHandler(BaseHandler):
    """``POST /api/login {"username", "password"}``: a token (guests: no password, when allowed)."""

    async def post(self) -> None:
        body = self.json_body()
        try:
            token, claims = await self.server.identity.login(
                body.get("username"), body.get("password"), self.client_address()
            )
        except AuthError as error:
            self.refuse(error)
            return
        self.answer_login(token, claims)


class LogoutHandler(BaseHandler):
    """``POST /api/logout``: end this login session; its open sockets close."""

    async def post(self) -> None:
        claims = self.current_claims()
        try:
            await self.server.identity.logout(claims)
        except AuthError as error:
            self.refuse(error)
            return
        self.clear_cookie(TOKEN_COOKIE, path="/")
        self.write({"ok": True})


class PasswordHandler(BaseHandler):
    """``POST /api/password {"password", "new_password"}``: every session of the user ends; a new token."""

    async def post(self) -> None:
        claims = self.current_claims()
        body = self.json_body()
        try:
            token, new_claims = await self.server.identity.change_password(
                claims, body.get("password"), body.get("new_password")
            )
        except AuthError as error:
            self.refuse(error)
            return
        self.answer_login(token, new_claims)


class MeHandler(BaseHandler):
    """``GET /api/me``: who the token belongs to."""

    def get(self) -> None:
        claims = self.current_claims()
        self.write(
            {
                "username": claims.user,
                "expires": protocol.iso_time(claims.expires),
                "guest": self.server.identity.is_guest(claims.user),
            }
        )


class ConfigHandler(BaseHandler):
    """``GET /api/config``: what a client needs to know before logging in."""

    def get(self) -> None:
        settings = self.server.settings
        self.write(
            {
                "version": __version__,
                "protocol": protocol.PROTOCOL_VERSION,
                "registration": settings.registration,
                "guests": settings.allow_guests,
                "heartbeat": {"interval": settings.ping_interval_s, "timeout": settings.ping_timeout_s},
                "limits": {"text_chars": settings.max_text_chars, "message_bytes": settings.max_message_bytes},
            }
        )


class HistoryHandler(BaseHandler):
    """``GET /api/history?room=R|with=U&before=SEQ&limit=N``: a page of history, newest first."""

    async def get(self) -> None:
        claims = self.current_claims()
        query: dict[str, Any] = {"type": "history"}
        for name in ("room", "with"):
            if (value := self.get_query_argument(name, None)) is not None:
                query[name] = value
        for name in ("before", "limit"):
            if (value := self.get_query_argument(name, None)) is not None:
                if not value.isdigit():
                    raise ApiError(400, "bad_request", f"{name} must be a positive integer")
                query[name] = int(value)
        hub = self.server.hub
        try:
            request = protocol.parse_client_frame(protocol.encode(query).decode(), 1)
            assert isinstance(request, protocol.History)
            hub.check_target(hub.users[claims.user], request.room, request.with_user)
        except ProtocolError as exc:
            status = 403 if exc.code == ErrorCode.NOT_MEMBER else 404 if exc.code == ErrorCode.UNKNOWN_USER else 400
            raise ApiError(status, exc.code.value, exc.message) from None
        try:
            messages, more = await self.server.store.history(
                claims.user, request.room, request.with_user, request.before, request.limit
            )
        except StoreError:
            raise ApiError(503, "internal", "history is unavailable; try again") from None
        self.set_header("Content-Type", "application/json")
        self.finish(protocol.history_page(request, messages, more, claims.user))


class ChatSocketHandler(BaseHandler):
    """``GET /ws``: check the upgrade, the origin, the token and the limits, then hand the socket to the server.

    Every refusal is an HTTP answer with a JSON body, before anything is
    upgraded. After the 101 response the socket belongs to a ``Connection``;
    no Tornado object stays behind for it.
    """

    async def get(self) -> None:
        server = self.server
        headers = self.request.headers
        if server.state != "ready":
            self._refuse(503, "shutting_down", "the server is restarting; reconnect in a few seconds")
            return
        connection_tokens = {part.strip().lower() for part in headers.get("Connection", "").split(",")}
        if headers.get("Upgrade", "").lower() != "websocket" or "upgrade" not in connection_tokens:
            self._refuse(400, "bad_handshake", "this endpoint speaks WebSocket only")
            return
        if headers.get("Sec-WebSocket-Version") != "13":
            self.set_header("Sec-WebSocket-Version", "13")
            self._refuse(426, "bad_handshake", "WebSocket version 13 is required")
            return
        key = headers.get("Sec-WebSocket-Key", "")
        if not wsproto.valid_client_key(key):
            self._refuse(400, "bad_handshake", "Sec-WebSocket-Key must be 16 bytes in base64")
            return
        if not self._origin_allowed():
            self._refuse(403, "origin", "this origin may not open a WebSocket here")
            return
        token = self.get_query_argument("token", None) or self.get_cookie(TOKEN_COOKIE)
        try:
            claims = server.identity.authenticate(token)
        except TokenError as exc:
            self._refuse(401, exc.problem.value, "a valid login token is required (cookie or ?token=)")
            return
        if len(server.hub.sessions) >= server.settings.max_connections:
            self._refuse(503, "too_many_connections", "the server is full; try again later")
            return
        user = server.hub.users.get(claims.user)
        if user is not None and len(user.sessions) >= server.settings.max_connections_per_user:
            self._refuse(503, "too_many_for_user", "you have too many connections open; close one")
            return
        since_text = self.get_query_argument("since", None)
        since = None
        if since_text is not None:
            if not since_text.isdigit() or int(since_text) > protocol.MAX_SEQ:
                self._refuse(400, "bad_since", "since must be a non-negative integer sequence number")
                return
            since = int(since_text)
        remote_ip = self.request.remote_ip or ""
        server.log_upgrade(self.request, claims.user)
        server.accept_websocket(self.detach(), key, claims, since, remote_ip)

    def _origin_allowed(self) -> bool:
        """Browsers send Origin and Sec-Fetch-Site; a page of another site is refused (section 10.2)."""
        headers = self.request.headers
        fetch_site = headers.get("Sec-Fetch-Site")
        origin = headers.get("Origin")
        if fetch_site in ("same-origin", "none"):
            return True
        if origin is None:
            return fetch_site is None  # not a browser
        if fetch_site is None and urllib.parse.urlsplit(origin).netloc.lower() == headers.get("Host", "").lower():
            return True
        return self.server.origin_allowed(origin)

    def _refuse(self, status: int, code: str, message: str) -> None:
        self.server.metrics.handshakes_rejected[code].inc()
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(protocol.encode({"error": code, "message": message}))


class ApiNotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        raise ApiError(404, "not_found", "no such API endpoint")


class PageHandler(BaseHandler):
    """``GET /``: the chat page, with versioned asset URLs; always revalidated."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(self.server.assets.page)


class AssetHandler(BaseHandler):
    """``GET /static/NAME``: cached for a year when asked for by its current version, else revalidated."""

    def get(self, name: str) -> None:
        asset = self.server.assets.files.get(name)
        if asset is None:
            raise ApiError(404, "not_found", "no such file")
        etag = f'"{asset.version}"'
        self.set_header("Content-Type", asset.content_type)
        self.set_header("ETag", etag)
        if self.get_query_argument("v", None) == asset.version:
            self.set_header("Cache-Control", f"public, max-age={STATIC_MAX_AGE_S}, immutable")
        else:
            self.set_header("Cache-Control", "no-cache")
        if self.request.headers.get("If-None-Match") == etag:
            self.set_status(304)
            self.finish()
            return
        self.finish(asset.content)

    def compute_etag(self) -> str | None:
        return None  # set from the asset's version above
