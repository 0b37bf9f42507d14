"""What every chat-listener handler shares: security headers, JSON errors, and where a token is found.

Errors are answered as ``{"error": CODE, "message": TEXT}`` with no stack
trace; a refused request is logged once, by the access log, and only real
failures get a traceback.
"""

from __future__ import annotations

from typing import Any

import tornado.web

from . import server_frames

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


class JsonErrors(tornado.web.RequestHandler):
    """Security headers on every response, and errors as JSON bodies."""

    def set_default_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            code, message = exc.code, exc.message
            for name, value in exc.headers.items():
                self.set_header(name, value)
        else:
            # Never a stack trace: the log has it.
            code, message = self._reason.lower().replace(" ", "_"), self._reason
        self.write_json_error(code, message)

    def write_json_error(self, code: str, message: str) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(server_frames.encode({"error": code, "message": message}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if not isinstance(value, tornado.web.HTTPError):
            super().log_exception(typ, value, tb)
