"""Who gets in, and what one bad client can do to the others: accounts, origins, limits, slow consumers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from .conftest import make_settings
from .support import (
    WAIT_S,
    RawClient,
    Recorder,
    ServerProcess,
    ServerThread,
    clients,
    connect,
    http,
    login,
    metric,
    password_for,
    rss_kib,
    run_cli,
    scrape,
    wait_until,
    ws_url,
)

pytestmark = pytest.mark.integration


def post(url: str, body: Mapping[str, object], **headers: str) -> tuple[int, dict[str, str], Any]:
    return http("POST", url, body, headers=headers)


def handshake(url: str, **headers: str) -> int:
    """The HTTP status of a WebSocket handshake (101 when it upgrades)."""
    try:
        ws = ws_connect(url, additional_headers=headers, open_timeout=WAIT_S, legacy=True)
    except InvalidStatus as refused:
        return refused.response.status_code
    ws.close()
    return 101


def closed_with(client_ws: object) -> tuple[int | None, str | None]:
    """Read until the server closes; its close code and reason."""
    ws = client_ws
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=WAIT_S)  # type: ignore[attr-defined]
    received = closed.value.rcvd
    return (received.code, received.reason) if received is not None else (None, None)


# ---------------------------------------------------------------- origins


def test_cross_origin_handshakes_are_refused_and_listed_origins_accepted(tmp_path: Path) -> None:
    running = ServerThread(make_settings(tmp_path, allowed_origins=("https://chat.example.org",))).start()
    try:
        url = ws_url(running.base_url, login(running.base_url, "alice"))
        own = f"http://127.0.0.1:{running.port}"
        assert handshake(url, Origin="https://evil.example") == 403
        assert handshake(url, Origin="https://chat.example.org.evil.example") == 403
        assert handshake(url, Origin=own) == 101
        assert handshake(url, Origin="https://chat.example.org") == 101
        assert handshake(url) == 101  # programs send no Origin
        assert metric(scrape(running.ops_url), "chat_handshakes_rejected_total", reason="origin") == 2
        # A page on another site cannot log in (or do anything else) with a cross-site POST either.
        body = {"username": "alice", "password": password_for("alice")}
        status, _, _ = post(running.base_url + "api/login", body, Origin="https://evil.example")
        assert status == 403
        status, _, _ = post(running.base_url + "api/login", body, Origin=own)
        assert status == 200
    finally:
        running.stop()


# ---------------------------------------------------------------- accounts


def test_wrong_passwords_and_unknown_users_get_the_same_answer(base_url: str) -> None:
    login(base_url, "alice")
    wrong = post(base_url + "api/login", {"username": "alice", "password": "not the password"})
    unknown = post(base_url + "api/login", {"username": "nobody", "password": "not the password"})
    for status, _, body in (wrong, unknown):
        assert status == 401 and body["error"] == "bad_credentials"
    assert post(base_url + "api/login", {"username": "alice"})[2]["error"] == "password_required"
    status, _, body = post(base_url + "api/register", {"username": "alice", "password": "another password"})
    assert status == 409 and body["error"] == "username_taken"
    status, _, body = post(base_url + "api/register", {"username": "bob", "password": "short"})
    assert status == 400 and body["error"] == "bad_password"
    status, _, body = post(base_url + "api/register", {"username": "guest-x", "password": "long enough"})
    assert status == 400 and body["error"] == "bad_username"


def test_brute_force_is_stopped_by_address_and_slowed_by_name_without_locking_its_owner_out(tmp_path: Path) -> None:
    running = ServerThread(make_settings(tmp_path, trust_proxy_headers=True, login_attempts_per_min=5)).start()
    try:
        url = running.base_url + "api/login"
        login(running.base_url, "victim")
        # One attacker address trying many names.
        for i in range(5):
            status, _, _ = post(
                url, {"username": f"user{i}", "password": "guess-guess"}, **{"X-Forwarded-For": "10.0.0.1"}
            )
            assert status == 401
        status, headers, body = post(
            url, {"username": "user9", "password": "guess-guess"}, **{"X-Forwarded-For": "10.0.0.1"}
        )
        assert status == 429 and body["error"] == "too_many_attempts"
        assert 1 <= int(headers["Retry-After"]) <= 60
        # Several addresses guessing one name (in any case): each guesser's next attempt on it waits longer,
        # but the owner, from an address of their own, gets in with the right password at once.
        for i in range(5):
            forwarded = {"X-Forwarded-For": f"10.1.0.{i % 2}"}
            name = "victim" if i % 2 else "VICTIM"
            assert post(url, {"username": name, "password": "guess-guess"}, **forwarded)[0] == 401
        started = time.monotonic()
        assert post(url, {"username": "victim", "password": "guess"}, **{"X-Forwarded-For": "10.1.0.1"})[0] == 401
        assert time.monotonic() - started >= 0.9  # five failures on the name: a guesser's next attempt waits 1 s
        right = {"username": "victim", "password": password_for("victim")}
        assert post(url, right, **{"X-Forwarded-For": "10.2.0.1"})[0] == 200
        samples = scrape(running.ops_url)
        assert metric(samples, "chat_auth_refused_total", code="too_many_attempts") == 1
        assert metric(samples, "chat_auth_refused_total", code="bad_credentials") == 11
    finally:
        running.stop()


def test_logout_ends_that_login_only_and_cuts_its_sockets(base_url: str) -> None:
    first = login(base_url, "alice")
    second = login(base_url, "alice")
    a1 = connect(base_url, "alice", token=first)
    a2 = connect(base_url, "alice", token=first)
    other_device = connect(base_url, "alice", token=second)
    status, headers, _ = http("POST", base_url + "api/logout", headers={"Authorization": f"Bearer {first}"})
    assert status == 200 and "chat_token=;" in headers["Set-Cookie"].replace('""', "")
    for client in (a1, a2):
        assert closed_with(client.ws) == (1008, "logged out")
    other_device.barrier()
    assert handshake(ws_url(base_url, first)) == 401
    assert http("GET", base_url + "api/me", headers={"Authorization": f"Bearer {first}"})[0] == 401
    other_device.close()


def test_a_password_change_ends_every_session_of_the_user(base_url: str) -> None:
    token = login(base_url, "alice")
    tabs = [connect(base_url, "alice", token=login(base_url, "alice")) for _ in range(2)]
    with clients(base_url, "bob") as (bob,):
        status, _, body = http(
            "POST",
            base_url + "api/password",
            {"password": password_for("alice"), "new_password": "a brand new passphrase"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert status == 200
        for tab in tabs:
            assert closed_with(tab.ws) == (1008, "password changed")
        assert handshake(ws_url(base_url, token)) == 401
        fresh = connect(base_url, "alice", token=str(body["token"]))
        fresh.barrier()
        fresh.close()
        old = post(base_url + "api/login", {"username": "alice", "password": password_for("alice")})
        assert old[0] == 401
        assert post(base_url + "api/login", {"username": "alice", "password": "a brand new passphrase"})[0] == 200
        bob.barrier()  # others unaffected


def test_the_token_a_password_change_answers_with_survives_the_servers_account_sync(server: ServerThread) -> None:
    token = login(server.base_url, "alice")
    status, _, body = http(
        "POST",
        server.base_url + "api/password",
        {"password": password_for("alice"), "new_password": "a brand new passphrase"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert status == 200
    # The server reads back account changes every second (the admin CLI's, and its own). Once it has read
    # this one, the caller's new login session must still be open.
    synced: concurrent.futures.Future[BaseException | None] = concurrent.futures.Future()

    def sync_now() -> None:
        task = asyncio.ensure_future(server.chat.accounts.sync())
        task.add_done_callback(lambda done: synced.set_result(done.exception()))

    server.call(sync_now)
    assert synced.result(WAIT_S) is None
    me = http("GET", server.base_url + "api/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me[0] == 200, me[2]
    assert handshake(ws_url(server.base_url, token)) == 401  # the old one is still over


def admin(data_dir: Path, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("--data-dir", str(data_dir), "user", *args, stdin=None if password is None else password + "\n")


def test_the_admin_cli_manages_accounts_of_a_running_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    # Polling for the new account fails logins on purpose: lift the brute-force limit for this test.
    server = ServerProcess(
        "--data-dir", str(data_dir), "--registration", "closed", "--login-attempts-per-min", "10000"
    ).start()
    try:
        status, _, body = post(server.base_url + "api/register", {"username": "eve", "password": "long enough"})
        assert status == 403 and body["error"] == "registration_closed"
        assert admin(data_dir, "add", "carol", "--password-stdin", password="carol's password").returncode == 0
        # The running server learns of the new account within a second.
        credentials = {"username": "carol", "password": "carol's password"}
        wait_until(lambda: post(server.base_url + "api/login", credentials)[0] == 200, "carol to be able to log in")
        token = str(post(server.base_url + "api/login", credentials)[2]["token"])
        carol = connect(server.base_url, "carol", token=token)
        assert admin(data_dir, "passwd", "carol", "--password-stdin", password="a new password").returncode == 0
        assert closed_with(carol.ws)[0] == 1008
        assert post(server.base_url + "api/login", credentials)[0] == 401
        token = str(
            post(server.base_url + "api/login", {"username": "carol", "password": "a new password"})[2]["token"]
        )
        carol = connect(server.base_url, "carol", token=token)
        assert admin(data_dir, "remove", "carol").returncode == 0
        assert closed_with(carol.ws) == (1008, "account removed")
        assert handshake(ws_url(server.base_url, token)) == 401
        listing = admin(data_dir, "list")
        assert listing.returncode == 0 and "carol\tremoved" in listing.stdout
        again = admin(data_dir, "add", "carol", "--password-stdin", password="carol's password")
        assert again.returncode == 1 and "never reused" in again.stderr
        assert admin(data_dir, "add", "dave", "--password-stdin", password="short").returncode == 1
    finally:
        server.stop()


def test_guests_are_marked_and_only_allowed_when_enabled(tmp_path: Path) -> None:
    running = ServerThread(make_settings(tmp_path, allow_guests=True)).start()
    try:
        status, _, body = post(running.base_url + "api/login", {"username": "visitor"})
        assert status == 200 and body["username"] == "guest-visitor" and body["guest"] is True
        guest = connect(running.base_url, "guest-visitor", token=str(body["token"]))
        # A guest's name is its only credential: nobody else may log in under it.
        status, _, taken = post(running.base_url + "api/login", {"username": "visitor"})
        assert status == 409 and taken["error"] == "username_taken"
        assert guest.welcome["user"] == "guest-visitor"
        status, _, body = http(
            "POST",
            running.base_url + "api/password",
            {"password": "x" * 8, "new_password": "y" * 8},
            headers={"Authorization": f"Bearer {body['token']}"},
        )
        assert status == 400 and body["error"] == "no_password"
        with clients(running.base_url, "member") as (member,):
            member.send_message("hello guest", to="guest-visitor")
            assert guest.expect("message")["from"] == "member"
        guest.close()
    finally:
        running.stop()


# ---------------------------------------------------------------- frames


def test_a_flood_gets_rate_limited_then_cut_off_and_others_are_unaffected(base_url: str) -> None:
    with clients(base_url, "flooder", "alice", "bob") as (flooder, alice, bob):
        for client in (flooder, alice, bob):
            client.join("lobby")
        for i in range(400):
            with contextlib.suppress(ConnectionClosed):
                flooder.send({"type": "send", "id": f"f{i}", "room": "lobby", "text": "spam"})
        frames: list[dict[str, object]] = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                frames.append(json.loads(flooder.ws.recv(timeout=WAIT_S)))
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert any(f.get("code") == "rate_limited" for f in frames)
        # About one burst of the flood got through to the room; the rest was refused.
        ack = alice.send_message("still here", room="lobby")
        before = bob.frames_until("message", seq=ack["seq"])
        spam = [f for f in before if f["type"] == "message" and f["text"] == "spam"]
        assert 30 <= len(spam) <= 60, len(spam)
        assert before[-1]["text"] == "still here"


# ---------------------------------------------------------------- slow consumers


def test_a_client_that_never_reads_is_cut_off_and_memory_stays_bounded(tmp_path: Path) -> None:
    cap = 256 * 1024
    server = ServerProcess(
        "--data-dir",
        str(tmp_path / "data"),
        "--sync",
        "normal",
        "--max-buffered-bytes",
        str(cap),
        "--rate-limit",
        "100000",
        "--rate-limit-burst",
        "100000",
    ).start()
    try:
        assert server.proc is not None
        # The sender and the healthy member read on threads of their own, as fast as frames come.
        sender = Recorder(server.base_url, "sender", login(server.base_url, "sender"))
        healthy = Recorder(server.base_url, "healthy", login(server.base_url, "healthy"))
        slow = RawClient(server.port, login(server.base_url, "slow"))
        try:
            for client in (sender, healthy):
                client.ws.send(json.dumps({"type": "join", "room": "flood"}))
            wait_until(lambda: bool(sender.of_type("joined") and healthy.of_type("joined")), "both to join")
            slow.send_frame(b'{"type": "join", "room": "flood"}')
            wait_until(lambda: any(f.get("user") == "slow" for f in healthy.of_type("member")), "slow to join")
            baseline_kib = rss_kib(server.proc.pid)
            peak_kib = baseline_kib
            text = "x" * 3800
            count = 4000  # about 16 MB to every member, far more than the cap
            window = 200
            for i in range(count):
                if i >= window:
                    assert sender.acks.acquire(timeout=WAIT_S)
                sender.ws.send(json.dumps({"type": "send", "id": f"m{i}", "room": "flood", "text": text}))
                if i % 250 == 0:
                    peak_kib = max(peak_kib, rss_kib(server.proc.pid))
            wait_until(lambda: len(healthy.of_type("message")) >= count, "the healthy member to get every message")
            peak_kib = max(peak_kib, rss_kib(server.proc.pid))
            # The healthy member got everything, in order, exactly once.
            received = [f["seq"] for f in healthy.of_type("message")]
            assert received == sorted(set(received)) and len(received) == count
            samples = scrape(server.ops_url)
            assert metric(samples, "chat_connections_closed_total", reason="slow_consumer") == 1
            # Without the cap the server would hold the whole flood (16 MB) for the slow client.
            assert peak_kib - baseline_kib < 12 * 1024, (baseline_kib, peak_kib)
            # The slow client finds a 1013 close after what was buffered for it.
            _, code = slow.frames_until_close()
            assert code == 1013
        finally:
            slow.close()
            sender.ws.close()
            healthy.ws.close()
    finally:
        server.stop()


# ---------------------------------------------------------------- HTTP


def test_security_headers_on_every_response(base_url: str) -> None:
    for method, path in (
        ("GET", ""),
        ("GET", "static/chat.js"),
        ("GET", "api/config"),
        ("GET", "api/me"),
        ("GET", "nowhere"),
        ("POST", ""),
    ):
        status, headers, body = http(method, base_url + path, raw=b"" if method == "POST" else None)
        csp = headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "default-src 'none'" in csp, path
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Frame-Options"] == "DENY"
        if status >= 400:
            assert isinstance(body, dict) and "error" in body, (path, body)
            assert "Traceback" not in json.dumps(body)


def test_cookies_are_secure_behind_a_tls_proxy_only_when_it_is_trusted(tmp_path: Path) -> None:
    body = {"username": "alice", "password": password_for("alice")}
    for trusted in (True, False):
        running = ServerThread(make_settings(tmp_path / str(trusted), trust_proxy_headers=trusted)).start()
        try:
            status, headers, _ = post(running.base_url + "api/register", body, **{"X-Forwarded-Proto": "https"})
            assert status == 200
            assert ("Secure" in headers["Set-Cookie"]) is trusted
            assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Lax" in headers["Set-Cookie"]
        finally:
            running.stop()
