"""The /ws endpoint as Tornado's WebSocketHandler serves it: TLS in the process, compression, the subprotocol,
frames counted by the rate limit, and a thousand connections reset at once."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import socket
import sqlite3
import ssl
import struct
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser
from websockets.sync.client import connect as ws_connect

from tornado_chat.sqlite_schema import DB_FILE

from .conftest import make_settings
from .support import (
    SECRET,
    WAIT_S,
    Client,
    RawClient,
    ServerProcess,
    ServerThread,
    clients,
    connect,
    http,
    login,
    metric,
    password_for,
    scrape,
    self_signed_certificate,
    wait_until,
    ws_url,
)


def guest_token(base_url: str, name: str) -> str:
    status, _, body = http("POST", base_url + "api/login", {"username": name})
    assert status == 200, body
    return str(body["token"])


# ---------------------------------------------------------------- a mass disconnect


@pytest.mark.integration
def test_a_thousand_connections_reset_at_once_are_each_announced_once_and_logged_without_tracebacks(
    tmp_path: Path,
) -> None:
    members = 1000
    data_dir = tmp_path / "data"
    server = ServerProcess("--allow-guests", "--data-dir", str(data_dir)).start()
    raw: list[RawClient] = []
    try:
        base = server.base_url
        observer = connect(base, "guest-observer", token=guest_token(base, "observer"))
        observer.join("crowd")
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            tokens = list(pool.map(lambda i: guest_token(base, f"m{i}"), range(members)))
        for token in tokens:
            client = RawClient(server.port, token)
            client.send_frame(b'{"type": "join", "room": "crowd"}')
            raw.append(client)
        joined = {observer.expect("member", event="joined")["user"] for _ in range(members)}
        assert len(joined) == members
        seq = observer.send_message("everyone here?", room="crowd")["seq"]
        # A NAT or Wi-Fi drop: every member's connection is reset at the same moment.
        for client in raw:
            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
        offline: list[str] = []
        while len(offline) < members:
            offline.append(observer.expect("presence", status="offline", timeout=30)["user"])
        observer.barrier()
        late = [f for f in observer.backlog if f.get("type") == "presence"]
        assert sorted(offline) == sorted(joined) and late == [], "an offline frame was missing or repeated"
        observer.close()

        def offline_times() -> dict[str, int]:
            with sqlite3.connect(data_dir / DB_FILE) as db:
                return dict(db.execute("SELECT name, offline_since_seq FROM users WHERE name LIKE 'guest-m%'"))

        wait_until(lambda: set(offline_times().values()) == {seq}, "every departed member's offline time")
        assert len(offline_times()) == members
        assert metric(scrape(server.ops_url), "chat_connections") == 0
    finally:
        for client in raw:
            client.close()
        server.stop()
    log = "\n".join(server.lines)
    assert "Traceback" not in log and "RecursionError" not in log, log[-3000:]
    assert " ERROR " not in log, [line for line in server.lines if " ERROR " in line][:5]


# ---------------------------------------------------------------- frames against the rate limit


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["continuation", "ping"])
def test_every_frame_counts_against_the_rate_limit(tmp_path: Path, kind: str) -> None:
    """Tiny frames that carry no message (empty continuations, pings) cannot dodge the limit."""
    running = ServerThread(make_settings(tmp_path, rate_limit_per_s=5.0, rate_limit_burst=10)).start()
    client = RawClient(running.port, login(running.base_url, "tiny"))
    try:
        if kind == "continuation":
            client.send_frame(b'{"type": "pi', final=False)
            frame, opcode = b"", 0x0
        else:
            frame, opcode = b"are you there", 0x9
        with contextlib.suppress(OSError):  # closed before all of them were sent
            for _ in range(500):
                client.send_frame(frame, opcode, final=kind != "continuation")
        _, code = client.frames_until_close()
        assert code == 1008
        running.wait_for(lambda: not running.chat.hub.sessions, "the session to end")
        assert metric(scrape(running.ops_url), "chat_connections_closed_total", reason="policy") == 1
    finally:
        client.close()
        running.stop()


@pytest.mark.integration
def test_a_fragmented_message_is_one_message(server: ServerThread) -> None:
    client = RawClient(server.port, login(server.base_url, "frag"))
    try:
        client.send_frame(b'{"type": "ping", ', final=False)
        client.send_frame(b'"id": ', opcode=0x0, final=False)
        client.send_frame(b'"in-parts"}', opcode=0x0)
        answer: dict[str, Any] = {}
        while answer.get("type") != "pong":
            opcode, payload = client.read_frame()
            if opcode == 0x1:
                answer = json.loads(payload)
        assert answer["id"] == "in-parts"
    finally:
        client.close()


# ---------------------------------------------------------------- subprotocol and compression


@pytest.mark.integration
def test_the_subprotocol_is_selected_when_offered_and_optional_otherwise(server: ServerThread) -> None:
    token = login(server.base_url, "sub")
    with ws_connect(ws_url(server.base_url, token), subprotocols=["tornado-chat.v1"], open_timeout=WAIT_S) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "tornado-chat.v1"
        assert json.loads(ws.recv(timeout=WAIT_S))["type"] == "welcome"
    with ws_connect(ws_url(server.base_url, token), subprotocols=["mqtt", "stomp"], open_timeout=WAIT_S) as ws:  # type: ignore[list-item]
        assert ws.subprotocol is None
        assert json.loads(ws.recv(timeout=WAIT_S))["type"] == "welcome"


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["on", "off"])
def test_compression_is_negotiated_only_when_enabled(tmp_path: Path, mode: str) -> None:
    running = ServerThread(make_settings(tmp_path, compression=mode)).start()
    try:
        with clients(running.base_url, "plain") as (plain,):
            plain.join("zip")
            token = login(running.base_url, "zipper")
            # The websockets client offers permessage-deflate by default.
            ws = ws_connect(ws_url(running.base_url, token), open_timeout=WAIT_S, ping_interval=None, legacy=True)
            try:
                assert ws.response is not None
                extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
                if mode == "on":
                    assert extensions is not None and "permessage-deflate" in extensions
                    assert "server_no_context_takeover" in extensions and "client_no_context_takeover" in extensions
                else:
                    assert extensions is None
                zipper = Client(ws, "zipper")
                zipper.welcome = zipper.recv()
                zipper.join("zip")
                text = "compressible " * 200
                plain.send_message(text, room="zip")
                assert zipper.expect("message", room="zip")["text"] == text
                zipper.send_message("and back", room="zip")
                assert plain.expect("message", room="zip")["text"] == "and back"
            finally:
                ws.close()
    finally:
        running.stop()


# ---------------------------------------------------------------- TLS in the process


@pytest.fixture
def tls_server(tmp_path: Path) -> Any:
    cert, key = self_signed_certificate(tmp_path)
    server = ServerProcess("--certfile", str(cert), "--keyfile", str(key), "--store", "memory").start()
    try:
        yield server, ssl.create_default_context(cafile=str(cert))
    finally:
        server.stop()


@pytest.mark.integration
def test_wss_with_a_self_signed_certificate(tls_server: Any) -> None:
    server, context = tls_server
    origin = f"https://127.0.0.1:{server.port}"
    request = urllib.request.Request(
        origin + "/api/register",
        data=json.dumps({"username": "secure", "password": password_for("secure")}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, context=context, timeout=WAIT_S) as response:
        token = json.loads(response.read())["token"]
        cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie
    url = f"wss://127.0.0.1:{server.port}/ws?token={token}"
    with ws_connect(url, ssl=context, open_timeout=WAIT_S, ping_interval=None) as ws:
        secure = Client(ws, "secure")
        assert secure.recv()["user"] == "secure"
        secure.join("tls")
        assert secure.send_message("over TLS", room="tls")["seq"] >= 1
    # Plain HTTP on the TLS port is not served.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/api/config", timeout=WAIT_S)


@pytest.mark.system
def test_chromium_chats_over_wss_served_by_the_process(browser: Browser, tls_server: Any) -> None:
    server, _ = tls_server
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        response = page.goto(f"https://127.0.0.1:{server.port}/")
        assert response is not None and response.status == 200
        opened = page.evaluate(
            """async () => {
                const response = await fetch("api/register", {
                    method: "POST",
                    headers: {"Content-Type": "application/json"},
                    body: JSON.stringify({username: "chromium-tls", password: "chromium-password"}),
                });
                const socket = new WebSocket(`wss://${location.host}/ws`);
                const welcome = await new Promise((resolve, reject) => {
                    socket.onmessage = (event) => resolve(JSON.parse(event.data));
                    socket.onclose = (event) => reject(new Error(`closed ${event.code}`));
                });
                socket.close();
                return [response.status, welcome.type, welcome.user];
            }"""
        )
        assert opened == [200, "welcome", "chromium-tls"]
    finally:
        context.close()


@pytest.mark.integration
@pytest.mark.parametrize("problem", ["missing", "mismatch", "only-cert", "not-pem"])
def test_bad_tls_files_stop_the_start_with_one_line(tmp_path: Path, problem: str) -> None:
    cert, key = self_signed_certificate(tmp_path)
    if problem == "missing":
        args = ["--certfile", str(tmp_path / "nope.pem"), "--keyfile", str(key)]
    elif problem == "mismatch":
        other = tmp_path / "other"
        other.mkdir()
        _, other_key = self_signed_certificate(other)
        args = ["--certfile", str(cert), "--keyfile", str(other_key)]
    elif problem == "only-cert":
        args = ["--certfile", str(cert)]
    else:
        (tmp_path / "garbage.pem").write_text("not a certificate\n")
        args = ["--certfile", str(tmp_path / "garbage.pem"), "--keyfile", str(key)]
    result = subprocess.run(
        [sys.executable, "-m", "tornado_chat", "--port", "0", "--ops-port", "0", "--secret", SECRET.decode(),
         "--data-dir", str(tmp_path / "data"), *args],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tornado-chat: error: --certfile"), result.stderr
