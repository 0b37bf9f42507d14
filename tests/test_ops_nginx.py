"""ops/nginx/tornado-chat.conf in a real nginx on loopback, with a self-signed certificate from openssl:
a Python client chats over wss:// through it, and Chromium loads the page over https:// and talks through
the WebSocket from the page's own origin."""

from __future__ import annotations

import concurrent.futures
import json
import re
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import HTTPSConnection
from pathlib import Path

import pytest
from playwright.sync_api import Browser
from websockets.sync.client import connect as ws_connect

from tornado_chat.memory_store import MemoryStore
from tornado_chat.settings import Settings

from .conftest import make_settings
from .support import (
    WAIT_S,
    Client,
    ServerThread,
    clients,
    metric,
    password_for,
    scrape,
    self_signed_certificate,
    wait_until,
)

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "ops" / "nginx" / "tornado-chat.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TIMEOUT_MS = 10_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def substitute(text: str, old: str, new: str) -> str:
    """Replace ``old`` exactly once: the test breaks loudly if the shipped file changes shape."""
    assert text.count(old) == 1, f"{old!r} appears {text.count(old)} times in {CONF.name}"
    return text.replace(old, new)


def directives(block: str, name: str) -> list[str]:
    return re.findall(rf"^\s*{name}\s+([^;]+);", block, re.M)


def location_block(text: str, head: str) -> str:
    match = re.search(rf"location {re.escape(head)} \{{(.*?)\n    \}}", text, re.S)
    assert match is not None, f"no `location {head}` block"
    return match.group(1)


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h)?", value.strip())
    assert match is not None, value
    return int(match.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[match.group(2)]


@dataclass
class Proxy:
    https_port: int
    http_port: int
    cert: Path
    server: ServerThread

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    """The chat server behind nginx running the shipped file, ports and certificate paths substituted."""
    cert, key = self_signed_certificate(tmp_path)
    settings = make_settings(tmp_path, trust_proxy_headers=True)
    server = ServerThread(settings, store=MemoryStore()).start()
    https_port, http_port = free_port(), free_port()
    text = CONF.read_text()
    text = substitute(text, "server 127.0.0.1:8888;", f"server 127.0.0.1:{server.port};")
    text = substitute(text, "listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    text = substitute(text, "listen 80;", f"listen 127.0.0.1:{http_port};")
    text = substitute(text, "/etc/letsencrypt/live/chat.example.org/fullchain.pem", str(cert))
    text = substitute(text, "/etc/letsencrypt/live/chat.example.org/privkey.pem", str(key))
    (tmp_path / "tornado-chat.conf").write_text(text)
    # The surrounding nginx.conf: everything nginx would write goes under tmp_path.
    temp = {name: tmp_path / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"daemon off;\nworker_processes 1;\npid {tmp_path / 'nginx.pid'};\n"
        f"error_log {tmp_path / 'error.log'} info;\n"
        "user root;\n"  # workers write temp files under tmp_path, which only root can enter
        "events { worker_connections 256; }\n"
        "http {\n"
        f"  access_log {tmp_path / 'access.log'};\n"
        + "".join(f"  {name}_temp_path {path};\n" for name, path in temp.items())
        + f"  include {tmp_path / 'tornado-chat.conf'};\n"
        "}\n"
    )
    args = ["-c", str(main), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")]
    checked = subprocess.run([NGINX, "-t", *args], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    nginx = subprocess.Popen([NGINX, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = Proxy(https_port, http_port, cert, server)
    try:

        def answering() -> bool:
            try:
                urllib.request.urlopen(result.origin + "/api/me", context=result.tls(), timeout=WAIT_S)
            except urllib.error.HTTPError as exc:
                return exc.code == 401
            except OSError:
                assert nginx.poll() is None, (tmp_path / "error.log").read_text()
                return False
            return False

        wait_until(answering, "nginx to proxy the API")
        yield result
    finally:
        nginx.send_signal(3)  # SIGQUIT: graceful stop
        try:
            nginx.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait(WAIT_S)
        server.stop()


def https_login(proxy: Proxy, username: str) -> tuple[str, str]:
    """Register through nginx; returns the token and the Set-Cookie header."""
    request = urllib.request.Request(
        proxy.origin + "/api/register",
        data=json.dumps({"username": username, "password": password_for(username)}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, context=proxy.tls(), timeout=WAIT_S) as response:
        return json.loads(response.read())["token"], response.headers["Set-Cookie"]


def test_the_conf_keeps_websockets_open_longer_than_the_ping_interval_and_does_not_proxy_ops() -> None:
    text = CONF.read_text()
    ws = location_block(text, "= /ws")
    ping_interval = Settings().ping_interval_s
    (read_timeout,) = directives(ws, "proxy_read_timeout")
    (send_timeout,) = directives(ws, "proxy_send_timeout")
    assert seconds(read_timeout) > ping_interval and seconds(send_timeout) > ping_interval
    assert "Host $http_host" in " ".join(directives(text, "proxy_set_header"))
    assert directives(text, "proxy_http_version") == ["1.1"]
    # Headers are set once, at server level: a location with its own proxy_set_header would drop them all.
    assert "proxy_set_header" not in ws and "proxy_set_header" not in location_block(text, "/")
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    assert "8889" not in code and "/metrics" not in code, "the ops listener must not be proxied"


def test_a_python_client_chats_over_wss_through_nginx(proxy: Proxy) -> None:
    token, cookie = https_login(proxy, "tls-user")
    # X-Forwarded-Proto reached the server: the cookie is marked Secure.
    assert "Secure" in cookie and "HttpOnly" in cookie
    url = f"wss://127.0.0.1:{proxy.https_port}/ws?token={token}"
    forged = {"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9", "X-Scheme": "http"}
    with (
        clients(proxy.server.base_url, "direct") as (direct,),
        ws_connect(url, ssl=proxy.tls(), additional_headers=forged, open_timeout=WAIT_S, ping_interval=None) as ws,
    ):
        proxied = Client(ws, "tls-user")
        proxied.welcome = proxied.recv()
        assert proxied.welcome["type"] == "welcome" and proxied.welcome["user"] == "tls-user"
        proxied.join("proxied")
        direct.join("proxied")
        proxied.send_message("through nginx", room="proxied")
        assert direct.expect("message", text="through nginx")["from"] == "tls-user"
        direct.send_message("back through nginx", room="proxied")
        assert proxied.expect("message", text="back through nginx")["from"] == "direct"

        # The server saw the client's real address (nginx's, on loopback), not the forged one.
        def proxied_address() -> str:
            sessions = proxy.server.chat.hub.users["tls-user"].sessions.values()
            return next(iter(sessions)).transport.remote_ip

        assert proxy.server.call(proxied_address) == "127.0.0.1"


def test_nginx_redirects_http_and_does_not_serve_the_ops_endpoints(proxy: Proxy) -> None:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(f"http://127.0.0.1:{proxy.http_port}/api/me", timeout=WAIT_S)
    assert redirect.value.code == 301
    assert redirect.value.headers["Location"] == f"https://127.0.0.1:{proxy.http_port}/api/me"
    for path in ("/metrics", "/healthz", "/status", "/status.json"):
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(proxy.origin + path, context=proxy.tls(), timeout=WAIT_S)
        assert missing.value.code == 404, path


def test_chromium_loads_the_page_over_https_and_chats_through_the_websocket(browser: Browser, proxy: Proxy) -> None:
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        response = page.goto(proxy.origin + "/")
        assert response is not None and response.status == 200
        with clients(proxy.server.base_url, "listener") as (listener,):
            listener.join("browsers")
            # The page's own origin: fetch logs in (cookie set over TLS), then a WebSocket to wss://same-host.
            status = page.evaluate(
                """async () => {
                    const response = await fetch("api/register", {
                        method: "POST",
                        headers: {"Content-Type": "application/json"},
                        body: JSON.stringify({username: "chromium", password: "chromium-password"}),
                    });
                    window.frames_seen = [];
                    const socket = new WebSocket(`wss://${location.host}/ws`);
                    window.chat_socket = socket;
                    socket.onmessage = (event) => window.frames_seen.push(JSON.parse(event.data));
                    await new Promise((resolve, reject) => {
                        socket.onopen = resolve;
                        socket.onclose = (event) => reject(new Error(`closed ${event.code}`));
                    });
                    socket.send(JSON.stringify({type: "join", room: "browsers"}));
                    return response.status;
                }"""
            )
            assert status == 200
            page.wait_for_function("() => window.frames_seen.some((f) => f.type === 'joined')")
            page.evaluate(
                """() => window.chat_socket.send(JSON.stringify(
                    {type: "send", id: "b1", room: "browsers", text: "hello from chromium over wss"}))"""
            )
            got = listener.expect("message", text="hello from chromium over wss")
            assert got["from"] == "chromium" and got["room"] == "browsers"
            listener.send_message("hello back, chromium", room="browsers")
            page.wait_for_function(
                "() => window.frames_seen.some((f) => f.type === 'message' && f.text === 'hello back, chromium')"
            )
        # Tornado's origin check passed: nothing was refused for its origin.
        samples = scrape(proxy.server.ops_url)
        assert metric(samples, "chat_handshakes_rejected_total", reason="origin") == 0
    finally:
        context.close()


def test_nginx_limits_the_requests_of_one_address(proxy: Proxy) -> None:
    """What the server cannot do before it has accepted a connection, the shipped file does: 20 requests a
    second per address, after a burst of 100."""

    def ask(count: int) -> list[int]:
        connection = HTTPSConnection("127.0.0.1", proxy.https_port, timeout=WAIT_S, context=proxy.tls())
        statuses = []
        try:
            for _ in range(count):
                connection.request("GET", "/api/config")
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
        finally:
            connection.close()
        return statuses

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        statuses = [status for batch in pool.map(ask, [50] * 6) for status in batch]
    assert statuses.count(200) >= 100 and statuses.count(429) > 0, sorted(set(statuses))
    assert set(statuses) <= {200, 429}
