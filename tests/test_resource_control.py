"""No cheap request stalls the server or grows its memory: each limit, tried against a real server.

The load-and-abuse suite (``tests/test_abuse.py``) measures the same attacks from the outside; these tests
pin down each defence on its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import re
import resource
import socket
import sqlite3
import stat
import subprocess
import time
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest

from bench.wsframe import encode_frame
from tornado_chat.memory_store import MemoryStore
from tornado_chat.protocol import History
from tornado_chat.server_frames import Message
from tornado_chat.session import STREAM_WINDOW_BYTES
from tornado_chat.sqlite_schema import MIGRATIONS
from tornado_chat.store import StoreError

from .conftest import make_settings
from .support import (
    WAIT_S,
    RawClient,
    ServerProcess,
    ServerThread,
    clients,
    connect,
    http,
    login,
    metric,
    password_for,
    run_cli,
    scrape,
    wait_until,
)

pytestmark = pytest.mark.integration

# A second loopback address: requests from it come from "another client address" without any proxy header.
OTHER_ADDRESS = "127.0.0.2"


def post_from(
    source: str, port: int, path: str, body: object, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """A JSON POST from the loopback address ``source``."""
    connection = HTTPConnection("127.0.0.1", port, timeout=WAIT_S, source_address=(source, 0))
    try:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        connection.request("POST", path, payload, {"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), json.loads(data) if data else None
    finally:
        connection.close()


def raw_request(port: int, head: bytes, *, timeout: float = WAIT_S) -> bytes:
    """Send ``head`` on a fresh socket and read until the server closes (or the timeout); what came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return received


def closed_by_server(sock: socket.socket, deadline: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) before ``deadline`` (monotonic seconds)."""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if sock.recv(4096) == b"":
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
    return False


# ---------------------------------------------------------------- logins, passwords, registrations


def test_hundreds_of_concurrent_wrong_passwords_from_one_address_are_counted_before_they_are_hashed(
    tmp_path: Path,
) -> None:
    running = ServerThread(make_settings(tmp_path, login_attempts_per_min=10)).start()
    try:
        login(running.base_url, "victim")
        body = {"username": "victim", "password": "a wrong guess"}
        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            statuses = list(pool.map(lambda _: http("POST", running.base_url + "api/login", body)[0], range(300)))
        assert set(statuses) <= {401, 429}
        assert statuses.count(401) <= 10  # at most the limit was ever hashed
        samples = scrape(running.ops_url)
        assert metric(samples, "chat_auth_refused_total", code="bad_credentials") == statuses.count(401)
        # The owner, from another address, logs in at once.
        right = {"username": "victim", "password": password_for("victim")}
        assert post_from(OTHER_ADDRESS, running.port, "/api/login", right)[0] == 200
    finally:
        running.stop()


def test_guessing_the_current_password_through_a_password_change_is_throttled(tmp_path: Path) -> None:
    running = ServerThread(make_settings(tmp_path, login_attempts_per_min=3)).start()
    try:
        token = login(running.base_url, "alice")
        guess = {"password": "a wrong guess", "new_password": "a brand new passphrase"}
        auth = {"Authorization": f"Bearer {token}"}
        for _ in range(3):
            assert http("POST", running.base_url + "api/password", guess, headers=auth)[0] == 401
        status, headers, body = http("POST", running.base_url + "api/password", guess, headers=auth)
        assert status == 429 and body["error"] == "too_many_attempts" and int(headers["Retry-After"]) >= 1
    finally:
        running.stop()


def test_registrations_are_limited_per_address(tmp_path: Path) -> None:
    running = ServerThread(make_settings(tmp_path, registrations_per_hour=3)).start()
    try:
        for i in range(3):
            assert (
                http("POST", running.base_url + "api/register", {"username": f"u{i}", "password": "x" * 10})[0] == 200
            )
        status, headers, body = http(
            "POST", running.base_url + "api/register", {"username": "u9", "password": "x" * 10}
        )
        assert status == 429 and body["error"] == "too_many_attempts" and int(headers["Retry-After"]) > 60
        assert (
            post_from(OTHER_ADDRESS, running.port, "/api/register", {"username": "u9", "password": "x" * 10})[0] == 200
        )
    finally:
        running.stop()


def test_user_names_are_unique_whatever_their_case_and_start_with_a_letter_or_digit(base_url: str) -> None:
    register = base_url + "api/register"
    assert http("POST", register, {"username": "alice", "password": "alice's password"})[0] == 200
    for taken in ("Alice", "ALICE", "aLiCe"):
        status, _, body = http("POST", register, {"username": taken, "password": "another password"})
        assert status == 409 and body["error"] == "username_taken", taken
    for bad in (".", "..", "-", "_x", ".hidden", "Guest-bob", "GUEST-x"):
        status, _, body = http("POST", register, {"username": bad, "password": "another password"})
        assert status == 400 and body["error"] == "bad_username", bad
    # Any spelling logs in to the account, which keeps the spelling it was registered with.
    status, _, body = http("POST", base_url + "api/login", {"username": "ALICE", "password": "alice's password"})
    assert status == 200 and body["username"] == "alice"
    assert connect(base_url, "alice", token=body["token"]).welcome["user"] == "alice"


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("api/register", b'{"username": "sue", "password": "abcdefgh\\ud800"}'),
        ("api/login", b'{"username": "sue", "password": "abcdefgh\\udfff"}'),
        ("api/login", b'{"username": "sue", "password": "\xff\xfe not UTF-8 at all"}'),
        ("api/register", b'{"username": "sue\\udc80", "password": "abcdefgh"}'),
    ],
    ids=["register-surrogate", "login-surrogate", "invalid-utf8", "surrogate-key"],
)
def test_bodies_with_invalid_utf8_or_lone_surrogates_are_a_400(base_url: str, path: str, raw: bytes) -> None:
    status, _, body = http("POST", base_url + path, raw=raw, headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"] == "bad_json"


def test_query_strings_with_invalid_utf8_or_odd_numbers_are_a_400_and_never_logged(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    token = login(base_url, "alice")
    auth = {"Authorization": f"Bearer {token}"}
    caplog.set_level(logging.INFO)
    for query in ("room=%ff", "room=lobby&before=%C2%B2", "room=lobby&limit=" + "9" * 5000, "with=bob&before=-1"):
        status, _, body = http("GET", base_url + "api/history?" + query, headers=auth)
        assert status == 400 and "error" in body, query
    for since in ("%C2%B2", "9" * 5000, "%ff"):
        raw = RawClient(int(base_url.rsplit(":", 1)[1].strip("/")), token, query=f"since={since}")
        raw.close()
        assert raw.status == 400, since
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "/api/history" in logged and "?" not in logged and "9999" not in logged


def test_token_answers_are_never_cached(base_url: str) -> None:
    body = {"username": "alice", "password": password_for("alice")}
    for path in ("api/register", "api/login"):
        status, headers, _ = http("POST", base_url + path, body)
        assert status == 200 and headers["Cache-Control"] == "no-store", path
    token = login(base_url, "alice")
    status, headers, _ = http(
        "POST",
        base_url + "api/password",
        {"password": password_for("alice"), "new_password": "a brand new passphrase"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert status == 200 and headers["Cache-Control"] == "no-store"


# ---------------------------------------------------------------- the store failing under a request


class BrokenStore(MemoryStore):
    """A store that cannot write login sessions or read history (a full disk, say)."""

    async def open_login(self, login_id: str, user: str, expires: float) -> None:
        if user == "unlucky":
            raise StoreError("database or disk is full")

    async def history(self, *args: Any, **kwargs: Any) -> tuple[list[Message], bool]:
        raise StoreError("disk I/O error")


def test_store_failures_on_http_endpoints_are_503_with_retry_after(tmp_path: Path) -> None:
    running = ServerThread(make_settings(tmp_path), store=BrokenStore()).start()
    try:
        status, headers, body = http(
            "POST", running.base_url + "api/register", {"username": "unlucky", "password": "x" * 10}
        )
        assert status == 503 and body["error"] == "unavailable" and headers["Retry-After"] == "1"
        token = login(running.base_url, "lucky")
        status, headers, body = http(
            "GET", running.base_url + "api/history?with=lucky", headers={"Authorization": f"Bearer {token}"}
        )
        assert status == 503 and headers["Retry-After"] == "1"
    finally:
        running.stop()


def test_an_uncaught_failure_is_logged_by_path_without_the_query(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    token = login(server.base_url, "alice")

    async def broken(viewer: str, client: str, request: History) -> bytes:
        raise RuntimeError("a bug")

    server.chat.history_page = broken  # type: ignore[method-assign]
    status, _, body = http(
        "GET", server.base_url + "api/history?with=alice&secret=s3cr3t", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 500 and body["error"] == "internal_server_error"
    failures = [r for r in caplog.records if r.exc_info]
    assert failures and "GET /api/history" in failures[0].getMessage()
    assert not [r for r in caplog.records if "s3cr3t" in r.getMessage()]


# ---------------------------------------------------------------- HTTP: bodies and timeouts


def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(tmp_path: Path) -> None:
    running = ServerThread(make_settings(tmp_path, max_body_bytes=64 * 1024)).start()
    try:
        for path in ("/api/login", "/api/me", "/api/nothing"):
            head = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {30 * 1024 * 1024}\r\n\r\n[[[["
            ).encode()
            answer = raw_request(running.port, head)
            status_line, _, rest = answer.partition(b"\r\n")
            assert status_line == b"HTTP/1.1 413 Request Entity Too Large", (path, answer[:200])
            body = json.loads(rest.partition(b"\r\n\r\n")[2])
            assert body["error"] == "too_large"
            assert answer.count(b"HTTP/1.1") == 1  # one answer, then the connection closed
        # A chunked body has no length to refuse it by: it is cut off as it passes the limit.
        chunk = b"x" * 65536
        head = b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        answer = raw_request(running.port, head + (b"10000\r\n" + chunk + b"\r\n") * 3)
        assert answer.startswith(b"HTTP/1.1 400")
        # Under the limit, bodies work as before.
        assert http("POST", running.base_url + "api/register", {"username": "ok", "password": "x" * 10})[0] == 200
        assert metric(scrape(running.ops_url), "chat_http_refused_total", code="too_large") == 3
    finally:
        running.stop()


def test_idle_connections_slow_headers_and_slow_bodies_are_closed(tmp_path: Path) -> None:
    running = ServerThread(make_settings(tmp_path, idle_timeout_s=1.0, body_timeout_s=1.0)).start()
    try:
        # A WebSocket is not an idle HTTP connection: the heartbeat watches it instead.
        alice = connect(running.base_url, "alice")
        idle = socket.create_connection(("127.0.0.1", running.port))
        slow_headers = socket.create_connection(("127.0.0.1", running.port))
        slow_body = socket.create_connection(("127.0.0.1", running.port))
        slow_body.sendall(b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        try:
            deadline = time.monotonic() + WAIT_S
            assert closed_by_server(idle, deadline)
            assert closed_by_server(slow_body, deadline)
            # Headers a byte at a time never finish in time.
            closed = False
            for byte in b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"y" * 200:
                try:
                    slow_headers.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                if closed_by_server(slow_headers, time.monotonic() + 0.1):
                    closed = True
                    break
            assert closed
            alice.barrier()  # still open, long after the idle timeout
        finally:
            for sock in (idle, slow_headers, slow_body):
                sock.close()
            alice.close()
    finally:
        running.stop()


# ---------------------------------------------------------------- rooms


def test_rooms_a_user_may_create_and_belong_to_are_capped(tmp_path: Path) -> None:
    running = ServerThread(make_settings(tmp_path, max_rooms_per_user=3, room_creations_per_hour=4)).start()
    try:
        with clients(running.base_url, "alice", "bob") as (alice, bob):
            for room in ("a", "b", "c"):
                alice.join(room)
            alice.send({"type": "join", "room": "d", "id": "j"})
            error = alice.expect("error", id="j")
            assert error["code"] == "too_many_rooms" and "leave" in error["message"]
            alice.send({"type": "leave", "room": "a"})
            alice.expect("left", room="a")
            alice.join("d")  # the fourth room created this hour
            alice.send({"type": "leave", "room": "d"})
            alice.expect("left", room="d")
            alice.send({"type": "join", "room": "e", "id": "k"})
            error = alice.expect("error", id="k")
            assert error["code"] == "too_many_rooms" and "an hour" in error["message"]
            bob.join("b")  # joining a room that exists creates nothing
            assert metric(scrape(running.ops_url), "chat_errors_total", code="too_many_rooms") == 2
    finally:
        running.stop()


def test_the_room_list_comes_in_pages_and_empty_rooms_are_gone(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    running = ServerThread(settings).start()
    try:
        with clients(running.base_url, "alice", "bob") as (alice, bob):
            for room in ("r1", "r2", "r3", "r4", "r5"):
                alice.join(room)
            bob.join("r3")
            bob.send({"type": "rooms", "limit": 2})
            first = bob.expect("rooms")
            assert [r["room"] for r in first["rooms"]] == ["r1", "r2"] and first["next"] == "r2"
            assert first["total"] == 5 and first["after"] is None
            bob.send({"type": "rooms", "after": first["next"], "limit": 2})
            second = bob.expect("rooms")
            assert second["rooms"][0] == {
                "room": "r3",
                "members": 2,
                "online": 2,
                "member": True,
                "private": False,
                "topic": "",
                "unread": 0,
                "mentions": 0,
            }  # a member's own room carries its counts; the others do not
            assert "unread" not in first["rooms"][0]
            bob.send({"type": "rooms"})
            assert bob.expect("rooms")["next"] is None
            for room in ("r1", "r2"):
                alice.send({"type": "leave", "room": room})
                alice.expect("left", room=room)
            bob.send({"type": "rooms"})
            assert [r["room"] for r in bob.expect("rooms")["rooms"]] == ["r3", "r4", "r5"]
            alice.barrier()
    finally:
        running.stop()
    restarted = ServerThread(settings).start()
    try:
        assert sorted(restarted.call(lambda: list(restarted.chat.hub.rooms))) == ["r3", "r4", "r5"]
    finally:
        restarted.stop()


# ---------------------------------------------------------------- history


def test_one_history_request_at_a_time_per_connection(server: ServerThread) -> None:
    token = login(server.base_url, "alice")
    with clients(server.base_url, "bob") as (bob,):
        bob.send_message("hi alice", to="alice")
    raw = RawClient(server.port, token)
    try:
        raw.read_frame()  # welcome
        # Two frames in one write: the second is read while the first is still being answered.
        request = json.dumps({"type": "history", "with": "bob", "id": "h1"}).encode()
        second = json.dumps({"type": "history", "with": "bob", "id": "h2"}).encode()
        raw.sock.sendall(encode_frame(0x1, request, masked=True) + encode_frame(0x1, second, masked=True))
        frames: list[dict[str, Any]] = []
        while len(frames) < 2:
            opcode, payload = raw.read_frame()
            if opcode == 0x1 and (frame := json.loads(payload))["type"] in ("history", "error"):
                frames.append(frame)
        kinds = sorted((f["type"], f.get("code"), f.get("id")) for f in frames)
        assert kinds == [("error", "rate_limited", "h2"), ("history", None, None)]
    finally:
        raw.close()


class GatedStore(MemoryStore):
    """History waits until the test lets it go: requests pile up in a known state."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Event | None = None
        self.reads = 0

    async def history(self, *args: Any, **kwargs: Any) -> tuple[list[Message], bool]:
        self.reads += 1
        if self.gate is None:
            self.gate = asyncio.Event()
        await self.gate.wait()
        return await super().history(*args, **kwargs)


def test_one_history_request_at_a_time_per_http_client(tmp_path: Path) -> None:
    store = GatedStore()
    running = ServerThread(make_settings(tmp_path), store=store).start()
    try:
        token = login(running.base_url, "alice")
        url = running.base_url + "api/history?with=alice"
        auth = {"Authorization": f"Bearer {token}"}
        other_auth = {"Authorization": f"Bearer {login(running.base_url, 'alice')}"}
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            waiting = [pool.submit(lambda: http("GET", url, headers=auth)) for _ in range(3)]
            gate = running.chat.http_history
            running.wait_for(lambda: store.reads == 1 and gate.waiting_count == 2, "one running and two waiting")
            status, headers, body = http("GET", url, headers=auth)
            assert status == 429 and body["error"] == "busy" and headers["Retry-After"] == "1"
            # Another login session of the same user is another client.
            other = pool.submit(lambda: http("GET", url, headers=other_auth))
            running.wait_for(lambda: store.reads == 2, "the other client's request to run")
            running.call(lambda: store.gate.set() if store.gate else None)
            assert [future.result(WAIT_S)[0] for future in waiting] == [200, 200, 200]
            assert other.result(WAIT_S)[0] == 200
        assert metric(scrape(running.ops_url), "chat_http_refused_total", code="busy") == 1
        assert store.reads == 4
    finally:
        running.stop()


# ---------------------------------------------------------------- the ops listener


def test_the_ops_listener_answers_only_loopback_or_configured_hosts(tmp_path: Path) -> None:
    running = ServerThread(make_settings(tmp_path, ops_allowed_hosts=("metrics.internal",))).start()
    try:
        url = running.ops_url + "status.json"
        port = running.chat.ops_port
        for host, expected in (
            (f"127.0.0.1:{port}", 200),
            (f"localhost:{port}", 200),
            (f"metrics.internal:{port}", 200),
            (f"evil.example:{port}", 403),
            ("rebound.attacker.test", 403),
        ):
            status, _, body = http("GET", url, headers={"Host": host})
            assert status == expected, (host, body)
        assert http("GET", running.ops_url + "healthz", headers={"Host": "evil.example"})[0] == 403
        assert metric(scrape(running.ops_url), "chat_http_refused_total", code="bad_host") == 3
    finally:
        running.stop()


def test_one_refusal_metric_counts_the_api_the_http_fallback_and_the_ops_listener(tmp_path: Path) -> None:
    running = ServerThread(make_settings(tmp_path, max_body_bytes=4096)).start()
    try:
        base = running.base_url
        token = login(base, "alice")
        assert http("POST", base + "api/login", raw=b"{" * 8192, headers={"Content-Type": "application/json"})[0] == 413
        auth = {"Authorization": f"Bearer {token}"}
        assert http("GET", base + "poll?session=nope&cursor=0", headers=auth)[2]["error"] == "unknown_session"
        assert http("GET", base + "poll?session=nope&cursor=%C2%B2", headers=auth)[2]["error"] == "unknown_session"
        assert http("GET", running.ops_url + "healthz", headers={"Host": "evil.example"})[0] == 403
        assert http("POST", base + "api/login", {"username": "alice", "password": "wrong password"})[0] == 401
        samples = scrape(running.ops_url)
        counted = {
            dict(labels)["code"]: value
            for (name, labels), value in samples.items()
            if name == "chat_http_refused_total" and value
        }
        assert counted == {"too_large": 1, "unknown_session": 2, "bad_host": 1}  # the 401 is an account refusal
        assert {
            key for (name, labels), _ in samples.items() if name == "chat_http_refused_total" for key, _ in labels
        } == {"code"}
    finally:
        running.stop()


# ---------------------------------------------------------------- start-up


def test_files_the_server_creates_are_for_its_user_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess("--data-dir", str(data_dir), secret=False).start()
    try:
        login(server.base_url, "alice")
    finally:
        server.stop()
    created = [path for path in data_dir.iterdir()]
    assert {p.name for p in created} >= {"chat.sqlite3", "secret"}
    for path in created:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, (path, oct(path.stat().st_mode))


def start_failure(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("--data-dir", str(data_dir), "--port", "0", "--ops-port", "0")


def test_a_corrupt_database_stops_the_start_with_one_line_and_exit_code_2(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "chat.sqlite3").write_bytes(os.urandom(8192))
    result = start_failure(data_dir)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"tornado-chat: error: database {data_dir / 'chat.sqlite3'}: "), lines


def test_a_read_only_database_stops_the_start_with_one_line_and_exit_code_2(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess("--data-dir", str(data_dir)).start()
    server.stop()
    database = data_dir / "chat.sqlite3"
    # As root, file modes do not stop writes; the immutable attribute does.
    if subprocess.run(["chattr", "+i", str(database)], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr +i is not supported on this file system")
    try:
        result = start_failure(data_dir)
    finally:
        subprocess.run(["chattr", "-i", str(database)], capture_output=True, check=True)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(database) in lines[0] and "Traceback" not in result.stderr, lines


def test_case_variant_accounts_stop_the_start_until_the_admin_closes_all_but_one(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # What an older version allowed: two accounts whose names differ only in case (a version 3 database).
    connection = sqlite3.connect(data_dir / "chat.sqlite3")
    for version, script in MIGRATIONS[:3]:
        connection.executescript(script)
        connection.execute(f"PRAGMA user_version = {version}")
    connection.execute("INSERT INTO users (name, created_at) VALUES ('alice', 1), ('Alice', 1)")
    connection.commit()
    connection.close()
    result = start_failure(data_dir)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "Alice, alice" in lines[0] and "tornado-chat user remove NAME" in lines[0]
    # Until then the command line lists and removes (names exactly as written), and does nothing else.
    listed = run_cli("--data-dir", str(data_dir), "user", "list")
    assert listed.returncode == 0 and sorted(listed.stdout.splitlines()) == ["Alice\tactive", "alice\tactive"]
    refused = run_cli("--data-dir", str(data_dir), "user", "disable", "alice")
    assert refused.returncode == 1 and "differ only in case" in refused.stderr
    fix = run_cli("--data-dir", str(data_dir), "user", "remove", "Alice")
    assert fix.returncode == 0 and fix.stdout.strip() == "remove: Alice: done", fix.stderr
    # Then every command works on the new schema, with names in any case; the flags are listed again.
    made_admin = run_cli("--data-dir", str(data_dir), "user", "admin", "ALICE", "on")
    assert made_admin.stdout.strip() == "admin: alice: done", made_admin.stderr
    listed = run_cli("--data-dir", str(data_dir), "user", "list")
    assert sorted(listed.stdout.splitlines()) == ["Alice\tremoved", "alice\tactive\tadmin"]
    server = ServerProcess("--data-dir", str(data_dir)).start()
    try:
        status, _, body = http("POST", server.base_url + "api/register", {"username": "ALICE", "password": "x" * 10})
        assert status == 409 and body["error"] == "username_taken"
    finally:
        server.stop()


# ---------------------------------------------------------------- accepting without descriptors


def test_running_out_of_file_descriptors_backs_off_quietly_and_recovers(tmp_path: Path) -> None:
    limit = 64

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    server = ServerProcess(
        "--data-dir", str(tmp_path / "data"), "--store", "memory", "--idle-timeout", "60", preexec=few_descriptors
    ).start()
    assert server.proc is not None
    held: list[socket.socket] = []
    try:
        token = login(server.base_url, "alice")
        alice = connect(server.base_url, "alice", token=token)
        for _ in range(limit + 20):
            try:
                held.append(socket.create_connection(("127.0.0.1", server.port), timeout=1))
            except OSError:
                break
        server.wait_for_line(re.compile(r"cannot accept connections: Too many open files"))
        cpu_before = process_cpu_s(server.proc.pid)
        started = time.monotonic()
        wait_until(lambda: time.monotonic() - started > 2.0, "two seconds at the limit")
        cpu_used = process_cpu_s(server.proc.pid) - cpu_before
        assert cpu_used < 0.5 * (time.monotonic() - started)  # backing off, not spinning
        alice.barrier()  # a connection already open is served all along
        for sock in held:
            sock.close()
        held.clear()
        server.wait_for_line(re.compile(r"accepting connections again after \d+ failed accepts"))
        wait_until(lambda: http("GET", server.ops_url + "healthz")[0] == 200, "the ops listener to answer")
        lines = [line for line in server.lines if "Too many open files" in line or "Traceback" in line]
        assert len(lines) <= 2, lines
        assert metric(scrape(server.ops_url), "chat_accept_errors_total") >= 1
        alice.close()
    finally:
        for sock in held:
            sock.close()
        server.stop()


def process_cpu_s(pid: int) -> float:
    """CPU time (user and system) a process has used, in seconds, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- slow consumers


def test_a_slow_consumer_gets_its_1013_right_after_the_frame_in_progress(tmp_path: Path) -> None:
    cap = 256 * 1024
    running = ServerThread(
        make_settings(tmp_path, max_buffered_bytes=cap, rate_limit_per_s=100_000.0, rate_limit_burst=100_000)
    ).start()
    try:
        with clients(running.base_url, "sender") as (sender,):
            sender.join("flood")
            slow = RawClient(running.port, login(running.base_url, "slow"), small_window=True)
            try:
                slow.send_frame(b'{"type": "join", "room": "flood"}')
                running.wait_for(lambda: "slow" in running.chat.hub.rooms["flood"].members, "slow to join")
                transport = running.call(lambda: next(iter(running.chat.hub.users["slow"].sessions.values())).transport)
                text = "x" * 3800
                sent = 0
                while running.call(lambda: bool(running.chat.hub.users["slow"].sessions)):
                    sender.send_message(text, room="flood")
                    sent += 1
                    assert sent < 5000, "the slow consumer was never cut off"
                # Cut off: what was queued for it and not yet in the stream is dropped at once, so its close
                # frame follows the frame in progress instead of the backlog it was not reading.
                left = running.call(lambda: transport.buffered_bytes)
                assert left <= STREAM_WINDOW_BYTES + 2 * 4096, (left, sent)
                _, code = slow.frames_until_close()
                assert code == 1013
            finally:
                slow.close()
    finally:
        running.stop()
