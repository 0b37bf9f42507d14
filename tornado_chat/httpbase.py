"""What every chat-listener handler shares: security headers, JSON errors, and where a token is found.

Errors are answered as ``{"error": CODE, "message": TEXT}`` with no stack
trace; a refused request is logged once, by the access log, and only real
failures get a traceback. A store that fails under a request is a 503 with
``Retry-After``, not a 500. Logs name a request by its method and path,
never its query string (a WebSocket's token rides in it).
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

import tornado.httputil
import tornado.web

from . import server_frames
from .store import StoreError

log = logging.getLogger("tornado_chat.http")

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


class ApiError(tornado.web.HTTPError):
    """An HTTP error answered with ``{"error": code, "message": message}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, reason=None, log_message=message)
        self.code = code
        self.message = message
        self.headers = headers or {}


def request_summary(request: tornado.httputil.HTTPServerRequest) -> str:
    """``METHOD /path (address)``: a request as logs name it, without its query string."""
    return f"{request.method} {request.path} ({request.remote_ip})"


def log_failure(
    request: tornado.httputil.HTTPServerRequest,
    typ: type[BaseException] | None,
    value: BaseException | None,
    tb: TracebackType | None,
) -> None:
    """Log an exception that escaped a handler: a store failure in one line, anything else with its traceback."""
    if isinstance(value, tornado.web.HTTPError):
        return  # a refusal: the access log has its line
    if isinstance(value, StoreError):
        log.warning("store unavailable for %s: %s", request_summary(request), value)
        return
    log.error("uncaught exception in %s", request_summary(request), exc_info=(typ, value, tb))  # type: ignore[arg-type]


class PathOnlyLogs(tornado.web.RequestHandler):
    """Failures logged by ``log_failure``, and Tornado's own lines naming the request without its query string."""

    def log_exception(
        self, typ: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        log_failure(self.request, typ, value, tb)

    def _request_summary(self) -> str:
        return request_summary(self.request)


class JsonErrors(PathOnlyLogs):
    """Security headers on every response, and errors as JSON bodies."""

    def set_default_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        if isinstance(kwargs.get("exc_info", (None, None, None))[1], StoreError):
            status_code = 503
        super().send_error(status_code, **kwargs)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            code, message = exc.code, exc.message
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif isinstance(exc, StoreError):
            code, message = "unavailable", "the server cannot reach its data right now; try again"
            self.set_header("Retry-After", "1")
        else:
            # Never a stack trace: the log has it.
            code, message = self._reason.lower().replace(" ", "_"), self._reason
        self.write_json_error(code, message)

    def write_json_error(self, code: str, message: str) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(server_frames.encode({"error": code, "message": message}))
