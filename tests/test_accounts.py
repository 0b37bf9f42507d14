"""Accounts, password hashes and limits, as pure code with a fake clock."""

from __future__ import annotations

import pytest

from tornado_chat.accounts import Account, Accounts, Login
from tornado_chat.limits import TokenBucket
from tornado_chat.passwords import ScryptParams, hash_password, password_problem, verify_password

pytestmark = pytest.mark.unit

CHEAP = ScryptParams(n=2**10, r=8, p=1)


def test_hashes_verify_and_carry_their_parameters() -> None:
    encoded = hash_password("correct horse", CHEAP)
    assert encoded.startswith("scrypt$1024$8$1$")
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct horsf", encoded)
    # A fresh salt each time: the same password never hashes the same.
    assert hash_password("correct horse", CHEAP) != encoded
    # Parameters are read from the hash, so raising the defaults later keeps old hashes working.
    assert verify_password("x" * 8, hash_password("x" * 8, ScryptParams(n=2**11, r=4, p=2)))


def test_missing_or_garbled_hashes_never_verify() -> None:
    assert not verify_password("anything", None)
    assert not verify_password("anything", "scrypt$nonsense")
    assert not verify_password("anything", "")


@pytest.mark.parametrize(("password", "ok"), [("1234567", False), ("12345678", True), ("x" * 1025, False), (5, False)])
def test_password_rules(password: object, ok: bool) -> None:
    assert (password_problem(password) is None) is ok


def test_login_sessions_end_on_revoke_expiry_and_account_removal() -> None:
    accounts = Accounts()
    accounts.add(Account("alice", "hash"))
    accounts.open_login(Login("l1", "alice", expires=100.0))
    accounts.open_login(Login("l2", "alice", expires=200.0))
    assert accounts.valid("l1", "alice", now=50.0)
    assert not accounts.valid("l1", "bob", now=50.0)  # a session names its user
    assert not accounts.valid("l1", "alice", now=100.0)
    assert accounts.prune(now=150.0) == 1 and "l1" not in accounts.logins
    assert accounts.revoke("l2") is not None and not accounts.valid("l2", "alice", now=50.0)
    accounts.open_login(Login("l3", "alice", expires=300.0))
    assert accounts.remove("alice") == ["l3"]
    assert not accounts.valid("l3", "alice", now=50.0)


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=5, now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(0.1)  # one token back after 0.1 s at 10/s
    assert not bucket.take(0.1)


def test_token_bucket_is_exhausted_only_by_a_client_that_keeps_going() -> None:
    polite = TokenBucket(rate=10.0, burst=5, now=0.0)
    now = 0.0
    for _ in range(200):  # exactly at the rate, forever
        assert polite.take(now)
        now += 0.1
    assert not polite.exhausted
    rude = TokenBucket(rate=10.0, burst=5, now=0.0)
    refused = 0
    now = 0.0
    while not rude.exhausted:
        if not rude.take(now):
            refused += 1
        now += 0.01  # ten times the rate
    assert refused >= 5  # warned with at least a burst's worth of refusals first
