"""ops/nginx/tornado-chat.conf in a real nginx on loopback, with a self-signed certificate from openssl:
a Python client chats over wss:// through it, and Chromium loads the page over https:// and talks through
the WebSocket from the page's own origin; with the WebSocket refused, two pages chat over the event stream
through it across a server restart."""

from __future__ import annotations

import concurrent.futures
import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPSConnection
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from websockets.sync.client import connect as ws_connect

from tornado_chat.http_sessions import POST_BODY_MESSAGES
from tornado_chat.memory_store import MemoryStore
from tornado_chat.settings import Settings

from .conftest import make_settings
from .support import (
    WAIT_S,
    Client,
    ServerProcess,
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
# Two refused WebSocket attempts (with backoff between them) before the page moves to the event stream.
FALLBACK_MS = 15_000
COMEBACK_MS = 25_000
VIA_SSE = "Connected · via server-sent events"


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


@contextmanager
def nginx_in_front(
    tmp_path: Path, upstream_port: int, edit: Callable[[str], str] = str
) -> Iterator[tuple[int, int, Path]]:
    """A real nginx running the shipped file (after ``edit``), ports and certificate paths substituted, in
    front of a chat server on ``upstream_port``; yields its HTTPS and HTTP ports and the certificate."""
    cert, key = self_signed_certificate(tmp_path)
    https_port, http_port = free_port(), free_port()
    text = edit(CONF.read_text())
    text = substitute(text, "server 127.0.0.1:8888;", f"server 127.0.0.1:{upstream_port};")
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
    try:
        origin = f"https://127.0.0.1:{https_port}"
        tls = ssl.create_default_context(cafile=str(cert))

        def listening() -> bool:
            try:
                urllib.request.urlopen(origin + "/static/favicon.svg", context=tls, timeout=WAIT_S)
            except urllib.error.HTTPError:
                return True  # nginx answered (the upstream may not be up yet)
            except OSError:
                assert nginx.poll() is None, (tmp_path / "error.log").read_text()
                return False
            return True

        wait_until(listening, "nginx to listen")
        yield https_port, http_port, cert
    finally:
        nginx.send_signal(3)  # SIGQUIT: graceful stop
        try:
            nginx.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait(WAIT_S)


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    """The chat server behind nginx running the shipped file."""
    settings = make_settings(tmp_path, trust_proxy_headers=True)
    server = ServerThread(settings, store=MemoryStore()).start()
    try:
        with nginx_in_front(tmp_path, server.port) as (https_port, http_port, cert):
            result = Proxy(https_port, http_port, cert, server)

            def answering() -> bool:
                try:
                    urllib.request.urlopen(result.origin + "/api/me", context=result.tls(), timeout=WAIT_S)
                except urllib.error.HTTPError as exc:
                    return exc.code == 401
                except OSError:
                    return False
                return False

            wait_until(answering, "nginx to proxy the API")
            yield result
    finally:
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


# ---------------------------------------------------------------- the HTTP fallback through nginx


def test_the_conf_streams_events_unbuffered_for_hours_and_lets_polls_and_posts_through() -> None:
    text = CONF.read_text()
    settings = Settings()
    events = location_block(text, "= /events")
    assert directives(events, "proxy_buffering") == ["off"]
    (read_timeout,) = directives(events, "proxy_read_timeout")
    assert seconds(read_timeout) >= 3600  # the stream lives for hours; the server pings it all the while
    (poll_timeout,) = directives(location_block(text, "= /poll"), "proxy_read_timeout")
    assert seconds(poll_timeout) > settings.ping_interval_s  # a poll waits at most a ping interval
    (body_size,) = directives(location_block(text, "= /api/frames"), "client_max_body_size")
    assert int(body_size.removesuffix("k")) * 1024 >= POST_BODY_MESSAGES * settings.max_message_bytes
    page_limit = directives(location_block(text, "/"), "limit_req")
    for head in ("= /events", "= /poll", "= /api/frames"):
        assert "proxy_set_header" not in location_block(text, head), head
        # The fallback's requests are limited per address like the page's and the API's.
        assert directives(location_block(text, head), "limit_req") == page_limit != [], head


def refuse_websockets(text: str) -> str:
    """The test copy of the conf: /ws answers 403, as a proxy that strips Upgrade or blocks WebSocket would."""
    block = re.search(r"    location = /ws \{.*?\n    \}", text, re.S)
    assert block is not None
    return text.replace(block.group(0), "    location = /ws {\n        return 403;\n    }")


def test_with_websockets_refused_two_browsers_chat_through_nginx_across_a_restart(
    browser: Browser, tmp_path: Path
) -> None:
    args = (
        "--data-dir", str(tmp_path / "data"), "--ping-interval", "1", "--ping-timeout", "1",
        "--trust-proxy-headers",
    )  # fmt: skip
    server = ServerProcess(*args, "--reconnect-spread", "1").start()
    restarted: ServerProcess | None = None
    contexts = []
    try:
        with nginx_in_front(tmp_path, server.port, refuse_websockets) as (https_port, _, _):
            origin = f"https://127.0.0.1:{https_port}/"
            pages = {}
            for name in ("alice", "bob"):
                context = browser.new_context(ignore_https_errors=True)
                contexts.append(context)
                page = context.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(origin)
                page.get_by_label("Name", exact=True).fill(name)
                page.get_by_label("Password", exact=True).fill(password_for(name))
                page.get_by_role("button", name="Create account", exact=True).click()
                pages[name] = page
            for page in pages.values():
                # Two refused upgrades, while the API answers: the page moves to the event stream.
                expect(page.locator("#connection")).to_have_text(VIA_SSE, timeout=FALLBACK_MS)
                expect(page.locator("#connection")).to_have_attribute("data-transport", "sse")
                page.get_by_role("textbox", name="Room to join or create").fill("proxied")
                page.get_by_role("button", name="Join", exact=True).click()
                expect(page.locator("#conv-title")).to_have_text("#proxied")
            alice, bob = pages["alice"], pages["bob"]
            say(alice, "through nginx, without a websocket")
            expect(texts(bob, "through nginx, without a websocket")).to_have_count(1)

            # A restart: both are told when to come back; what they type meanwhile waits, then goes once.
            server.signal(signal.SIGTERM)
            assert server.wait() == 0
            for page in pages.values():
                expect(page.locator("#connection")).to_contain_text("Reconnecting", timeout=FALLBACK_MS)
            say(alice, "alice, while it restarted")
            say(bob, "bob, while it restarted")
            restarted = ServerProcess(*args, "--port", str(server.port)).start()
            for page in pages.values():
                expect(page.locator("#connection")).to_have_text(VIA_SSE, timeout=COMEBACK_MS)
                expect(page.locator("#messages li.pending")).to_have_count(0)
            say(bob, "and after it")
            everything = [
                "through nginx, without a websocket",
                "alice, while it restarted",
                "bob, while it restarted",
                "and after it",
            ]
            for page in pages.values():
                for text in everything:
                    expect(texts(page, text)).to_have_count(1)
                expect(page.locator("#connection")).to_have_text(VIA_SSE)
            with clients(restarted.base_url, "auditor") as (auditor,):
                auditor.join("proxied")
                auditor.send({"type": "history", "room": "proxied", "limit": 50})
                page_of = auditor.expect("history", room="proxied")
            stored = [m["text"] for m in reversed(page_of["messages"])]
            assert sorted(stored) == sorted(everything) and len(stored) == len(everything), stored
            # Every session went through nginx's event stream; none got a WebSocket.
            samples = scrape(restarted.ops_url)
            assert metric(samples, "chat_connections_opened_total", transport="sse") >= 2
            assert metric(samples, "chat_connections_opened_total", transport="websocket") == 1  # the auditor
    finally:
        for context in contexts:
            context.close()
        server.stop()
        if restarted is not None:
            restarted.stop()


def say(page: Page, text: str) -> None:
    box = page.get_by_role("textbox", name="Message", exact=True)
    box.fill(text)
    box.press("Enter")
    expect(box).to_have_value("")


def texts(page: Page, text: str) -> Locator:
    messages = page.get_by_role("list", name="Messages")
    return messages.locator(".text").filter(has_text=re.compile(f"^{re.escape(text)}$"))
