"""Passwords: what makes one acceptable, and scrypt hashes that are slow to guess.

Hashing takes tens of milliseconds of CPU (``hashlib.scrypt``): callers run it
off the event loop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from .text_cleaning import encodable

PASSWORD_MIN_CHARS = 8
# Long passwords are fine; megabytes of one are a way to burn CPU in the hash.
PASSWORD_MAX_CHARS = 1024
SALT_BYTES = 16


@dataclass(frozen=True, slots=True)
class ScryptParams:
    """scrypt cost parameters; stored with every hash so that they can be raised later."""

    n: int = 2**14
    r: int = 8
    p: int = 1
    dklen: int = 32

    @property
    def maxmem(self) -> int:
        return 128 * self.r * (self.n + self.p + 2) + 1024 * 1024


DEFAULT_SCRYPT = ScryptParams()
_HASH_FORMAT = re.compile(r"scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9_=-]+)\$([A-Za-z0-9_=-]+)")


def password_problem(password: object) -> str | None:
    """Why ``password`` cannot be used, or None when it can."""
    if not isinstance(password, str):
        return "password must be a string"
    if len(password) < PASSWORD_MIN_CHARS:
        return f"password must be at least {PASSWORD_MIN_CHARS} characters"
    if len(password) > PASSWORD_MAX_CHARS:
        return f"password must be at most {PASSWORD_MAX_CHARS} characters"
    if not encodable(password):
        return "password must be valid Unicode (no lone surrogates)"
    return None


def hash_password(password: str, params: ScryptParams = DEFAULT_SCRYPT, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` with a fresh random salt. Takes tens of milliseconds: not on the loop."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=params.n,
        r=params.r,
        p=params.p,
        dklen=params.dklen,
        maxmem=params.maxmem,
    )
    encode = base64.urlsafe_b64encode
    return f"scrypt${params.n}${params.r}${params.p}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, encoded: str | None) -> bool:
    """Whether ``password`` matches ``encoded``, compared in constant time.

    With no hash (unknown user, guest) the work is done against a dummy hash
    anyway, so that the answer takes as long whether or not the user exists.
    """
    match = _HASH_FORMAT.fullmatch(encoded or "")
    if match is None:
        hash_password(password)
        return False
    n, r, p = (int(match.group(i)) for i in (1, 2, 3))
    salt = base64.urlsafe_b64decode(match.group(4))
    expected = base64.urlsafe_b64decode(match.group(5))
    params = ScryptParams(n, r, p, len(expected))
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=params.maxmem
    )
    return hmac.compare_digest(digest, expected)
