"""Signed login tokens: who a connection belongs to, and until when.

Pure code: the caller passes ``now`` (seconds since the epoch). A token is
``v1.<payload>.<signature>``: the payload is base64url JSON naming the user,
the login session and the expiry; the signature is HMAC-SHA256 over
``v1.<payload>`` with the server secret. Identity on a WebSocket comes only
from a verified token, never from a field of a frame.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from enum import StrEnum

TOKEN_PREFIX = "v1."
# Tokens are short; refusing long input early keeps HMAC and JSON work bounded.
MAX_TOKEN_CHARS = 512
_KEY_CONTEXT = b"tornado-chat login token v1\x00"


class TokenProblem(StrEnum):
    """Why a token was refused; used as the ``reason`` label of rejected handshakes."""

    MISSING = "no_token"
    MALFORMED = "bad_token"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired_token"
    REVOKED = "revoked_token"


class TokenError(Exception):
    def __init__(self, problem: TokenProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Claims:
    """What a valid token says: the user, the login session it names, and its expiry (epoch seconds)."""

    user: str
    login_id: str
    expires: float


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and verifies tokens with one secret."""

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("the token secret must not be empty")
        self._key = hashlib.sha256(_KEY_CONTEXT + secret).digest()

    def _sign(self, signed_part: str) -> str:
        return _b64encode(hmac.new(self._key, signed_part.encode("ascii"), hashlib.sha256).digest())

    def issue(self, user: str, login_id: str, now: float, ttl_s: float) -> tuple[str, Claims]:
        """A token for ``user`` valid for ``ttl_s`` seconds from ``now``."""
        claims = Claims(user, login_id, float(int(now + ttl_s)))
        payload = json.dumps({"u": user, "l": login_id, "e": int(claims.expires)}, separators=(",", ":"))
        signed_part = TOKEN_PREFIX + _b64encode(payload.encode("utf-8"))
        return f"{signed_part}.{self._sign(signed_part)}", claims

    def verify(self, token: str | None, now: float) -> Claims:
        """The claims of a valid, unexpired token; raises ``TokenError`` saying what is wrong otherwise."""
        if not token:
            raise TokenError(TokenProblem.MISSING)
        if len(token) > MAX_TOKEN_CHARS or not token.startswith(TOKEN_PREFIX) or not token.isascii():
            raise TokenError(TokenProblem.MALFORMED)
        signed_part, dot, signature = token.rpartition(".")
        if not dot or signed_part == TOKEN_PREFIX.rstrip("."):
            raise TokenError(TokenProblem.MALFORMED)
        if not hmac.compare_digest(self._sign(signed_part), signature):
            raise TokenError(TokenProblem.BAD_SIGNATURE)
        try:
            payload = json.loads(_b64decode(signed_part[len(TOKEN_PREFIX) :]))
            user, login_id, expires = payload["u"], payload["l"], payload["e"]
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise TokenError(TokenProblem.MALFORMED) from None
        if not isinstance(user, str) or not isinstance(login_id, str) or not isinstance(expires, int):
            raise TokenError(TokenProblem.MALFORMED)
        if expires <= now:
            raise TokenError(TokenProblem.EXPIRED)
        return Claims(user, login_id, float(expires))
