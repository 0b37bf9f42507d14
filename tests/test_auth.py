"""Login tokens: signed, expiring, and refused when anything about them is off."""

from __future__ import annotations

import base64
import json

import pytest

from tornado_chat.tokens import TokenError, TokenProblem, TokenSigner

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
signer = TokenSigner(b"k" * 32)


def problem(token: str | None, now: float = NOW, with_signer: TokenSigner = signer) -> TokenProblem:
    with pytest.raises(TokenError) as caught:
        with_signer.verify(token, now)
    return caught.value.problem


def test_a_token_round_trips_until_it_expires() -> None:
    token, claims = signer.issue("alice", "login-1", NOW, 3600)
    assert claims.user == "alice" and claims.login_id == "login-1" and claims.expires == NOW + 3600
    assert signer.verify(token, NOW + 3599) == claims
    assert problem(token, NOW + 3600) == TokenProblem.EXPIRED


def test_tokens_from_another_secret_or_edited_are_refused() -> None:
    token, _ = signer.issue("alice", "l", NOW, 60)
    assert problem(token, with_signer=TokenSigner(b"other")) == TokenProblem.BAD_SIGNATURE
    prefix, payload, signature = token.split(".")
    forged_payload = base64.urlsafe_b64encode(json.dumps({"u": "root", "l": "l", "e": 2**40}).encode()).rstrip(b"=")
    assert problem(f"{prefix}.{forged_payload.decode()}.{signature}") == TokenProblem.BAD_SIGNATURE
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    assert problem(f"{prefix}.{payload}.{flipped}") == TokenProblem.BAD_SIGNATURE


@pytest.mark.parametrize("token", ["v1.", "v1.abc", "v2.a.b", "x" * 600, "v1.é.x", "plain"])
def test_malformed_tokens_are_refused(token: str) -> None:
    assert problem(token) in (TokenProblem.MALFORMED, TokenProblem.BAD_SIGNATURE)


def test_a_signed_but_meaningless_payload_is_malformed() -> None:
    body = base64.urlsafe_b64encode(b'{"u": 5}').rstrip(b"=").decode()
    signed = "v1." + body
    token = f"{signed}.{signer._sign(signed)}"
    assert problem(token) == TokenProblem.MALFORMED


def test_missing_token() -> None:
    assert problem(None) == TokenProblem.MISSING
    assert problem("") == TokenProblem.MISSING
