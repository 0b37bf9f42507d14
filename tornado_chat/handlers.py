"""The HTTP API and the page: handlers that parse requests and call the server; they hold no state.

Every handler gets an ``ApiBackend`` (a small protocol the server implements)
through ``initialize``. Errors are answered as ``{"error": CODE, "message":
TEXT}`` with no stack trace, and every response carries the security headers
(``httpbase``). A body is read as it arrives and is refused with 413 from its
``Content-Length`` before it is read (``--max-body-bytes``; the server cuts off
longer chunked bodies itself); no answer is cached (tokens are in them). The
WebSocket endpoint is in ``websocket.py``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Any, Protocol

import tornado.escape
import tornado.http1connection
import tornado.web

from . import __version__, protocol, server_frames
from .account_service import AccountService, AuthError
from .admission import parse_seq
from .assets import Assets
from .httpbase import TOKEN_COOKIE, ApiError, JsonErrors
from .inflight import Busy
from .protocol import ErrorCode, ProtocolError
from .settings import Settings
from .store import StoreError
from .tokens import Claims, TokenError

STATIC_MAX_AGE_S = 365 * 24 * 3600
# A private room is, to a non-member, a room that does not exist: both are 404 unknown_room.
_HISTORY_STATUS = {ErrorCode.NOT_MEMBER: 403, ErrorCode.UNKNOWN_USER: 404, ErrorCode.UNKNOWN_ROOM: 404}


class ApiBackend(Protocol):
    """What the HTTP handlers need from the server."""

    @property
    def settings(self) -> Settings: ...

    @property
    def accounts(self) -> AccountService: ...

    @property
    def assets(self) -> Assets: ...

    def count_auth_refusal(self, code: str) -> None: ...

    def count_http_refusal(self, code: str) -> None:
        """Count a request refused before it was served (``chat_http_refused_total``); other codes are ignored."""
        ...

    async def history_page(self, viewer: str, client: str, request: protocol.History) -> bytes:
        """A page of history, one at a time per ``client`` (a few wait); raises ``ProtocolError`` (no access),
        ``StoreError`` or ``Busy``."""
        ...


# A lone surrogate: what a JSON \ud800 escape decodes to, and what no UTF-8 text can hold.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@tornado.web.stream_request_body
class BaseHandler(JsonErrors):
    """JSON bodies in and out, tokens, and refusals."""

    server: ApiBackend

    def initialize(self, server: ApiBackend) -> None:
        self.server = server
        self._body = bytearray()
        # Set when an account request is refused: counted in chat_auth_refused_total, not again as an HTTP one.
        self._account_refusal = False
        declared = parse_seq(self.request.headers.get("Content-Length", "0"))
        self._oversize = declared is not None and declared > server.settings.max_body_bytes
        connection = self.request.connection
        if self._oversize and isinstance(connection, tornado.http1connection.HTTP1Connection):
            # Refused in prepare (or earlier: a cross-site POST). Seeing the length, Tornado would then write a
            # bare 400 after that answer; with its limit raised it drops what arrives instead, and the connection
            # closes as soon as the answer is out.
            connection.set_max_body_size(declared or 0)

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")

    def prepare(self) -> Awaitable[None] | None:
        if self._oversize:
            limit = self.server.settings.max_body_bytes
            raise ApiError(413, "too_large", f"request bodies are at most {limit} bytes")
        return None

    def data_received(self, chunk: bytes) -> None:
        if not self._finished:
            self._body += chunk

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError) and not self._account_refusal:
            self.server.count_http_refusal(exc.code)
        super().write_error(status_code, **kwargs)

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object; 415 for another content type, 400 for bad JSON or bad Unicode."""
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise ApiError(415, "unsupported_media_type", "send the body as application/json")
        try:
            body = tornado.escape.json_decode(bytes(self._body))
        except (ValueError, RecursionError):
            raise ApiError(400, "bad_json", "the body is not valid JSON in UTF-8") from None
        if not isinstance(body, dict):
            raise ApiError(400, "bad_request", "the body must be a JSON object")
        if _has_lone_surrogate(body):
            raise ApiError(400, "bad_json", "the body holds a \\u escape that is not a Unicode character")
        return body

    def token(self) -> str | None:
        """The request's token: ``Authorization: Bearer``, or else the cookie."""
        header = self.request.headers.get("Authorization", "")
        return header[7:].strip() if header.lower().startswith("bearer ") else self.get_cookie(TOKEN_COOKIE)

    def current_claims(self) -> Claims:
        """Claims of the request's token; 401 without a valid one."""
        try:
            return self.server.accounts.authenticate(self.token())
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
                "expires": server_frames.iso_time(claims.expires),
                "guest": self.server.accounts.is_guest(claims.user),
            }
        )

    def client_address(self) -> str:
        return self.request.remote_ip or "unknown"

    def refuse(self, error: AuthError) -> None:
        self.server.count_auth_refusal(error.code)
        self._account_refusal = True
        headers = {"Retry-After": str(max(1, round(error.retry_after_s)))} if error.retry_after_s > 0 else None
        raise ApiError(error.status, error.code, error.message, headers)


class RegisterHandler(BaseHandler):
    """``POST /api/register {"username", "password"}``: a new account, logged in."""

    async def post(self) -> None:
        body = self.json_body()
        try:
            token, claims = await self.server.accounts.register(
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
            token, claims = await self.server.accounts.login(
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
            await self.server.accounts.logout(claims)
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
            token, new_claims = await self.server.accounts.change_password(
                claims, body.get("password"), body.get("new_password"), self.client_address()
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
                "expires": server_frames.iso_time(claims.expires),
                "guest": self.server.accounts.is_guest(claims.user),
            }
        )


class SessionHandler(MeHandler):
    """``GET /api/session``: like ``/api/me``, but a visitor who is not logged in gets 200 and
    ``{"username": null}``, so that a page asking "am I logged in?" does not log an error in the console."""

    def get(self) -> None:
        try:
            super().get()
        except ApiError as error:
            if error.status_code != 401:
                raise
            self.write({"username": None})


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
                "fallback": {"websocket_retry_s": settings.websocket_retry_s},
            }
        )


class HistoryHandler(BaseHandler):
    """``GET /api/history?room=R|with=U|with=U,V,...&before=SEQ&limit=N``: a page of history, newest first."""

    async def get(self) -> None:
        claims = self.current_claims()
        query: dict[str, object] = {"type": "history"}
        for name in ("room", "with"):
            if (value := self.get_query_argument(name, None)) is not None:
                # A group conversation is named by its other members: with=bob,carol
                query[name] = value.split(",") if name == "with" and "," in value else value
        for name in ("before", "limit"):
            if (value := self.get_query_argument(name, None)) is not None:
                number = parse_seq(value)
                if number is None:
                    raise ApiError(400, "bad_request", f"{name} must be a positive integer")
                query[name] = number
        try:
            request = protocol.parse_history(query)
            page = await self.server.history_page(claims.user, claims.login_id, request)
        except ProtocolError as exc:
            status = _HISTORY_STATUS.get(exc.code, 400)
            raise ApiError(status, exc.code.value, exc.message) from None
        except StoreError:
            raise ApiError(503, "unavailable", "history is unavailable; try again", {"Retry-After": "1"}) from None
        except Busy:
            raise ApiError(429, "busy", "wait for your other history requests", {"Retry-After": "1"}) from None
        self.set_header("Content-Type", "application/json")
        self.finish(page)


class ApiNotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        super().prepare()
        raise ApiError(404, "not_found", "no such API endpoint")


def _has_lone_surrogate(value: object) -> bool:
    """Whether any string in a decoded JSON value holds a lone surrogate (walked without recursion)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not item.isascii() and _LONE_SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


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
