"""Every error the protocol defines, triggered by a real bad frame or handshake against a real server."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from tornado_chat.memory_store import MemoryStore
from tornado_chat.store import AppendCallback, AppendResult, Draft
from tornado_chat.tokens import TokenSigner

from .conftest import make_settings
from .support import SECRET, WAIT_S, RawClient, ServerThread, clients, connect, http, login, metric, scrape, ws_url

pytestmark = pytest.mark.integration

BAD_FRAMES = [
    ("not json at all", "bad_json"),
    ('{"type": "send", "id": "x", ', "bad_json"),
    ("[" * 30_000 + "]" * 30_000, "bad_json"),
    ("[1, 2, 3]", "bad_frame"),
    ('"a string"', "bad_frame"),
    ("{}", "bad_frame"),
    ('{"type": 7}', "bad_frame"),
    ('{"type": "dance"}', "unknown_type"),
    ('{"type": "join"}', "bad_frame"),
    ('{"type": "join", "room": 5}', "bad_frame"),
    ('{"type": "join", "room": "Not A Room!"}', "bad_room"),
    ('{"type": "join", "room": "' + "a" * 65 + '"}', "bad_room"),
    ('{"type": "send", "room": "lobby", "text": "no id"}', "bad_frame"),
    ('{"type": "send", "id": "' + "x" * 65 + '", "room": "lobby", "text": "long id"}', "bad_frame"),
    ('{"type": "send", "id": "a", "text": "no target"}', "bad_frame"),
    ('{"type": "send", "id": "a", "room": "lobby", "to": "bob", "text": "two targets"}', "bad_frame"),
    ('{"type": "send", "id": "a", "room": "lobby", "text": 5}', "bad_frame"),
    ('{"type": "send", "id": "a", "room": "lobby", "text": ""}', "bad_text"),
    ('{"type": "send", "id": "a", "room": "lobby", "text": " \\n\\t "}', "bad_text"),
    ('{"type": "send", "id": "a", "room": "lobby", "text": "\\u0007\\u0000"}', "bad_text"),
    ('{"type": "send", "id": "a", "room": "lobby", "text": "' + "x" * 4001 + '"}', "bad_text"),
    ('{"type": "send", "id": "a", "room": "lobby", "text": "\\ud800"}', "bad_text"),
    ('{"type": "send", "id": "a", "room": "nowhere", "text": "hi"}', "unknown_room"),
    ('{"type": "send", "id": "a", "to": "nobody", "text": "hi"}', "unknown_user"),
    ('{"type": "send", "id": "a", "to": "no such user!", "text": "hi"}', "unknown_user"),
    ('{"type": "leave", "room": "nowhere"}', "unknown_room"),
    ('{"type": "history", "room": "nowhere"}', "unknown_room"),
    ('{"type": "history", "with": "nobody"}', "unknown_user"),
    ('{"type": "history", "room": "lobby", "limit": 0}', "bad_frame"),
    ('{"type": "history", "room": "lobby", "limit": 201}', "bad_frame"),
    ('{"type": "history", "room": "lobby", "limit": true}', "bad_frame"),
    ('{"type": "history", "room": "lobby", "before": "9"}', "bad_frame"),
    ('{"type": "ping", "id": {"nested": 1}}', "bad_frame"),
]


@pytest.mark.parametrize(("raw", "code"), BAD_FRAMES, ids=[f"{c}-{i}" for i, (_, c) in enumerate(BAD_FRAMES)])
def test_bad_frame_gets_an_error_and_the_connection_stays_open(base_url: str, raw: str, code: str) -> None:
    with clients(base_url, "alice") as (alice,):
        alice.send(raw)
        error = alice.expect("error")
        assert error["code"] == code, error
        assert error["message"]
        # Still usable afterwards.
        alice.barrier()


def test_error_frames_carry_the_frame_id(base_url: str) -> None:
    with clients(base_url, "alice") as (alice,):
        alice.send({"type": "send", "id": "m-1", "room": "nowhere", "text": "hi"})
        assert alice.expect("error", id="m-1")["code"] == "unknown_room"
        alice.send({"type": "join", "id": 42, "room": "BAD"})
        assert alice.expect("error", id=42)["code"] == "bad_room"


def test_binary_frames_are_refused(base_url: str) -> None:
    with clients(base_url, "alice") as (alice,):
        alice.send(b"\x00\x01binary")
        assert alice.expect("error")["code"] == "bad_frame"
        alice.barrier()


def test_a_1mib_frame_closes_with_1009_and_others_are_unaffected(server: ServerThread) -> None:
    with clients(server.base_url, "alice", "bob") as (alice, bob):
        alice.join("lobby")
        bob.join("lobby")
        mallory = RawClient(server.port, login(server.base_url, "mallory"))
        try:
            big = json.dumps({"type": "send", "id": "big", "room": "lobby", "text": "x" * (1024 * 1024)})
            with contextlib.suppress(OSError):  # the server may close before all of it is sent
                mallory.send_frame(big.encode())
            frames, code = mallory.frames_until_close()
            assert code == 1009 and frames[-1]["code"] == "too_large"
        finally:
            mallory.close()
        ack = alice.send_message("still fine", room="lobby")
        assert bob.expect("message", seq=ack["seq"])["text"] == "still fine"


def test_oversize_frame_gets_too_large_then_a_1009_close(server: ServerThread) -> None:
    # A raw socket shows the exact frames; a library client may report the reset
    # that follows the close before handing over frames it already received.
    client = RawClient(server.port, login(server.base_url, "alice"))
    try:
        client.send_frame(b"x" * (65536 + 1))
        frames, code = client.frames_until_close()
        assert frames[0]["type"] == "welcome"
        assert frames[-1]["type"] == "error" and frames[-1]["code"] == "too_large"
        assert code == 1009
    finally:
        client.close()


def _handshake_status(url: str) -> tuple[int, dict[str, object]]:
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(url, open_timeout=WAIT_S, legacy=True)
    response = refused.value.response
    return response.status_code, json.loads(response.body or b"{}")


def test_handshake_without_a_token_is_refused_with_401(base_url: str) -> None:
    status, body = _handshake_status(ws_url(base_url))
    assert status == 401 and body["error"] == "no_token"


def test_handshake_with_a_forged_token_is_refused_with_401(base_url: str) -> None:
    forged, _ = TokenSigner(b"some other secret").issue("alice", "x", time.time(), 3600)
    login(base_url, "alice")
    status, body = _handshake_status(ws_url(base_url, forged))
    assert status == 401 and body["error"] == "bad_signature"
    status, body = _handshake_status(ws_url(base_url, "v1.garbage"))
    assert status == 401 and body["error"] == "bad_token"
    good = login(base_url, "alice")
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    status, _ = _handshake_status(ws_url(base_url, tampered))
    assert status == 401


def test_handshake_with_an_expired_token_is_refused_with_401(base_url: str) -> None:
    login(base_url, "alice")
    expired, _ = TokenSigner(SECRET).issue("alice", "x", time.time() - 7200, 3600)
    status, body = _handshake_status(ws_url(base_url, expired))
    assert status == 401 and body["error"] == "expired_token"


def test_a_token_for_a_never_logged_in_user_is_refused(base_url: str) -> None:
    token, _ = TokenSigner(SECRET).issue("ghost", "x", time.time(), 3600)
    status, _ = _handshake_status(ws_url(base_url, token))
    assert status == 401


def test_handshake_with_a_bad_since_is_refused_with_400(base_url: str) -> None:
    token = login(base_url, "alice")
    status, body = _handshake_status(ws_url(base_url, token, since="-1"))
    assert status == 400 and body["error"] == "bad_since"


def test_login_rejects_bad_names_and_bodies(base_url: str) -> None:
    for name in ["", "a" * 33, "has space", "ünïcode", 5, None]:
        status, _, body = http("POST", base_url + "api/login", {"username": name})
        assert status == 400 and body["error"] == "bad_username", name
    status, _, body = http("POST", base_url + "api/login", raw=b"{nope", headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"] == "bad_json"
    status, _, body = http("POST", base_url + "api/login", raw=b"username=a", headers={"Content-Type": "text/plain"})
    assert status == 415 and body["error"] == "unsupported_media_type"
    status, _, body = http("GET", base_url + "api/nothing-here")
    assert status == 404 and body["error"] == "not_found"


def test_login_sets_an_http_only_cookie_that_opens_a_socket(base_url: str) -> None:
    status, headers, body = http("POST", base_url + "api/register", {"username": "carol", "password": "x" * 12})
    assert status == 200 and body["username"] == "carol" and body["expires"].endswith("Z")
    cookie = headers["Set-Cookie"]
    assert f"chat_token={body['token']}" in cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    ws = ws_connect(ws_url(base_url), additional_headers={"Cookie": f"chat_token={body['token']}"}, legacy=True)
    try:
        assert json.loads(ws.recv(timeout=WAIT_S))["user"] == "carol"
    finally:
        ws.close()


def test_me_reports_the_token_owner(base_url: str) -> None:
    token = login(base_url, "dora")
    status, _, body = http("GET", base_url + "api/me", headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and body["username"] == "dora"
    status, _, body = http("GET", base_url + "api/me")
    assert status == 401 and body["error"] == "no_token"


def test_errors_do_not_end_the_connection(base_url: str) -> None:
    with clients(base_url, "alice") as (alice,):
        for _ in range(30):  # within the rate limit's burst
            alice.send("nonsense")
        for _ in range(30):
            assert alice.expect("error")["code"] == "bad_json"
        alice.barrier()
        other = connect(base_url, "bob")
        other.barrier()
        other.close()


def test_a_store_failure_is_an_internal_error_and_nothing_is_acked(tmp_path: Path) -> None:
    class FullDiskStore(MemoryStore):
        """A store whose writes fail, as SQLite's do when the disk is full."""

        def append(self, draft: Draft, done: AppendCallback) -> None:
            done(AppendResult(None, error="disk full"))

    running = ServerThread(make_settings(tmp_path), store=FullDiskStore()).start()
    try:
        with clients(running.base_url, "alice", "bob") as (alice, bob):
            alice.send({"type": "send", "id": "lost", "to": "bob", "text": "hello?"})
            assert alice.expect("error", id="lost")["code"] == "internal"
            bob.barrier()
            assert all(f["type"] != "message" for f in bob.backlog)
            alice.barrier()
            assert all(f["type"] != "ack" for f in alice.backlog)
    finally:
        running.stop()


def test_connection_limits_answer_503_with_a_reason(tmp_path: Path) -> None:
    running = ServerThread(make_settings(tmp_path, max_connections=3, max_connections_per_user=2)).start()
    try:
        token = login(running.base_url, "alice")
        tabs = [connect(running.base_url, "alice", token=token) for _ in range(2)]
        status, body = _handshake_status(ws_url(running.base_url, token))
        assert status == 503 and body["error"] == "too_many_for_user"
        bob = connect(running.base_url, "bob")
        status, body = _handshake_status(ws_url(running.base_url, login(running.base_url, "carol")))
        assert status == 503 and body["error"] == "too_many_connections"
        samples = scrape(running.ops_url)
        assert metric(samples, "chat_handshakes_rejected_total", reason="too_many_for_user") == 1
        assert metric(samples, "chat_handshakes_rejected_total", reason="too_many_connections") == 1
        assert metric(samples, "chat_connections_max") == 3
        bob.close()
        running.wait_for(lambda: len(running.chat.hub.sessions) == 2, "bob's connection to close")
        carol = connect(running.base_url, "carol")
        carol.barrier()
        for client in [*tabs, carol]:
            client.close()
    finally:
        running.stop()


@pytest.mark.parametrize(
    ("payload", "opcode", "masked", "code"),
    [
        (b'{"type": "ping"}', 0x1, False, 1002),  # clients must mask
        (b"\xff\xfe not utf-8", 0x1, True, 1007),
        (b"", 0x3, True, 1002),  # a reserved opcode
    ],
    ids=["unmasked", "invalid-utf8", "reserved-opcode"],
)
def test_protocol_violations_close_with_their_code_and_are_counted(
    server: ServerThread, payload: bytes, opcode: int, masked: bool, code: int
) -> None:
    client = RawClient(server.port, login(server.base_url, "rude"))
    try:
        client.send_frame(payload, opcode, masked=masked)
        _, received = client.frames_until_close()
        assert received == code
    finally:
        client.close()
    server.wait_for(lambda: not server.chat.hub.users["rude"].sessions, "the connection to be cleaned up")
    assert metric(scrape(server.ops_url), "chat_connections_closed_total", reason="protocol_error") == 1
