"""Test helpers: a real server (in a thread or a subprocess) and real WebSocket clients.

Nothing here sleeps to synchronise: every wait is for a specific frame, line
or condition, with a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from bench.wsframe import OP_TEXT, encode_frame
from tornado_chat.server import ChatServer
from tornado_chat.settings import Settings
from tornado_chat.sqlite_store import SqliteStore
from tornado_chat.store import Store

T = TypeVar("T")
WAIT_S = 10.0
SECRET = b"test-secret-not-for-production"


class ServerThread:
    """A ChatServer running on its own event loop in a background thread."""

    def __init__(self, settings: Settings, store: Store | None = None, secret: bytes = SECRET) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = store if store is not None else SqliteStore(settings.data_dir, settings.sync)
        self.secret = secret
        self.server: ChatServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="chat-server", daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(WAIT_S):
            raise TimeoutError("server thread did not start")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            self.server = ChatServer(self.settings, self.store, self.secret)
            self.server.listen()
        except Exception as exc:  # noqa: BLE001 - re-raised in the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stopping.wait()
        await self.server.stop()

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(WAIT_S)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's event loop and return its result."""
        assert self._loop is not None
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except Exception as exc:  # noqa: BLE001 - re-raised in the calling thread
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(WAIT_S)

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
        """Poll ``condition`` on the server's loop until it holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        event = threading.Event()
        while not self.call(condition):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            event.wait(0.01)

    @property
    def chat(self) -> ChatServer:
        """The running server object (only touch it on its loop, through ``call``/``wait_for``)."""
        assert self.server is not None
        return self.server

    @property
    def port(self) -> int:
        return self.chat.chat_port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.chat.ops_port}/"


class ServerProcess:
    """``python -m tornado_chat`` as a subprocess; the port is read from its 'listening' log line."""

    LISTENING = re.compile(r"listening on https?://[^:/]+:(\d+)/ \(ops on http://[^:/]+:(\d+)/\)")

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        secret: bool = True,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.args = ["--port", "0", "--ops-port", "0", *(["--secret", SECRET.decode()] if secret else []), *args]
        self.env = {**os.environ, **(env or {})}
        # Run in the child before the server starts (resource limits, say).
        self.preexec = preexec
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.ops_port = 0
        self.lines: list[str] = []
        self._lines_changed = threading.Condition()
        self.ports: dict[str, int] = {}

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tornado_chat", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            preexec_fn=self.preexec,
        )
        threading.Thread(target=self._read, daemon=True).start()
        line = self.wait_for_line(self.LISTENING)
        match = self.LISTENING.search(line)
        assert match is not None
        self.port = int(match.group(1))
        self.ops_port = int(match.group(2))
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lines_changed:
                self.lines.append(line.rstrip("\n"))
                self._lines_changed.notify_all()
        with self._lines_changed:
            self._lines_changed.notify_all()

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float = WAIT_S) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._lines_changed:
            while True:
                for line in self.lines[seen:]:
                    if pattern.search(line):
                        return line
                seen = len(self.lines)
                assert self.proc is not None
                if self.proc.poll() is not None and seen == len(self.lines):
                    raise AssertionError(
                        f"server exited ({self.proc.returncode}) before {pattern.pattern!r}:\n" + "\n".join(self.lines)
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no line matching {pattern.pattern!r}:\n" + "\n".join(self.lines))
                self._lines_changed.wait(min(remaining, 0.2))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}/"

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = WAIT_S) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT_S)


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m tornado_chat ARGS`` to its end (a start that fails, an admin command): its exit and output."""
    return subprocess.run(
        [sys.executable, "-m", "tornado_chat", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )


def http(
    method: str,
    url: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One HTTP request; returns status, headers and the body (parsed as JSON when it is JSON)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    all_headers = {"Content-Type": "application/json"} if body is not None else {}
    all_headers.update(headers or {})
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=WAIT_S) as response:
            status, response_headers, payload = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, response_headers, payload = exc.code, dict(exc.headers), exc.read()
    content_type = response_headers.get("Content-Type", "")
    parsed: Any = json.loads(payload) if content_type.startswith("application/json") else payload
    return status, response_headers, parsed


def password_for(username: str) -> str:
    return f"pw-{username}-secret"


def login(base_url: str, username: str) -> str:
    """A token for ``username``: registers the account on first use, logs in afterwards."""
    body: Any = {"username": username, "password": password_for(username)}
    status, _, answer = http("POST", base_url + "api/register", body)
    if status == 409:
        status, _, answer = http("POST", base_url + "api/login", body)
    assert status == 200, answer
    return str(answer["token"])


class ChatCalls:
    """The protocol's round trips, on any client that can ``send`` a frame and ``expect`` one."""

    def send(self, frame: dict[str, Any]) -> Any:
        raise NotImplementedError

    def expect(self, kind: str, timeout: float = WAIT_S, **fields: Any) -> dict[str, Any]:
        raise NotImplementedError

    def new_id(self) -> str:
        raise NotImplementedError

    def send_message(self, text: str, *, room: str | None = None, to: str | None = None) -> dict[str, Any]:
        """Send and wait for the ack; returns it."""
        frame_id = self.new_id()
        frame: dict[str, Any] = {"type": "send", "id": frame_id, "text": text}
        frame.update({"room": room} if room is not None else {"to": to})
        self.send(frame)
        return self.expect("ack", id=frame_id)

    def join(self, room: str) -> dict[str, Any]:
        self.send({"type": "join", "room": room})
        return self.expect("joined", room=room)

    def barrier(self) -> None:
        """Round trip through the server: every frame written to us before it has arrived when this returns."""
        ping_id = self.new_id()
        self.send({"type": "ping", "id": ping_id})
        self.expect("pong", id=ping_id)


class Client(ChatCalls):
    """A real WebSocket client speaking the chat protocol, with frame-by-frame waits."""

    def __init__(self, ws: ClientConnection, username: str) -> None:
        self.ws = ws
        self.username = username
        self.welcome: dict[str, Any] = {}
        self.backlog: list[dict[str, Any]] = []
        self._next_id = 0

    def send(self, frame: dict[str, Any] | str | bytes) -> None:
        self.ws.send(json.dumps(frame) if isinstance(frame, dict) else frame)

    def new_id(self) -> str:
        self._next_id += 1
        return f"{self.username}-{self._next_id}"

    def recv(self, timeout: float = WAIT_S) -> dict[str, Any]:
        """The next frame (from the backlog first); fails after ``timeout`` seconds."""
        if self.backlog:
            return self.backlog.pop(0)
        frame: dict[str, Any] = json.loads(self.ws.recv(timeout=timeout))
        return frame

    def expect(self, kind: str, timeout: float = WAIT_S, **fields: Any) -> dict[str, Any]:
        """The first frame of type ``kind`` whose fields equal ``fields``; frames passed over stay in the backlog."""
        deadline = time.monotonic() + timeout
        for index, waiting in enumerate(self.backlog):
            if waiting.get("type") == kind and all(waiting.get(k) == v for k, v in fields.items()):
                return self.backlog.pop(index)
        skipped: list[dict[str, Any]] = []
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{self.username}: no {kind} frame with {fields}; got {skipped}")
                try:
                    frame: dict[str, Any] = json.loads(self.ws.recv(timeout=remaining))
                except TimeoutError:
                    raise AssertionError(f"{self.username}: no {kind} frame with {fields}; got {skipped}") from None
                if frame.get("type") == kind and all(frame.get(k) == v for k, v in fields.items()):
                    return frame
                skipped.append(frame)
        finally:
            self.backlog.extend(skipped)

    def outcome(self, frame_id: str) -> dict[str, Any]:
        """The ack or the error that answers the send with this id."""
        while True:
            for index, frame in enumerate(self.backlog):
                if frame.get("type") in ("ack", "error") and frame.get("id") == frame_id:
                    return self.backlog.pop(index)
            self.backlog.append(json.loads(self.ws.recv(timeout=WAIT_S)))

    def frames_until(self, kind: str, **fields: Any) -> list[dict[str, Any]]:
        """Every frame up to and including the first matching one (a barrier for exactly-once checks)."""
        frames: list[dict[str, Any]] = []
        while True:
            frame = self.recv()
            frames.append(frame)
            if frame.get("type") == kind and all(frame.get(k) == v for k, v in fields.items()):
                return frames

    def close_code(self, timeout: float = WAIT_S) -> int | None:
        """Read until the server closes; the close code it sent."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None
        raise AssertionError("server did not close the connection")

    def close(self) -> None:
        self.ws.close()


def ws_url(base_url: str, token: str | None = None, **params: str) -> str:
    query = {**params, **({"token": token} if token else {})}
    return base_url.replace("http://", "ws://") + "ws" + (f"?{urllib.parse.urlencode(query)}" if query else "")


def connect(base_url: str, username: str, token: str | None = None, **params: str) -> Client:
    """Log in (unless given a token), open a WebSocket and read the welcome frame."""
    token = token or login(base_url, username)
    ws = ws_connect(
        ws_url(base_url, token, **params), open_timeout=WAIT_S, max_size=None, ping_interval=None, legacy=True
    )
    client = Client(ws, username)
    client.welcome = client.recv()
    assert client.welcome["type"] == "welcome", client.welcome
    return client


@contextmanager
def clients(base_url: str, *names: str) -> Iterator[list[Client]]:
    opened = [connect(base_url, name) for name in names]
    try:
        yield opened
    finally:
        for client in opened:
            client.close()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 and its key, made by openssl; returns (cert, key) paths."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    openssl = shutil.which("openssl") or "/usr/bin/openssl"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def free_data_dir(tmp_path: Path, name: str = "data") -> Path:
    path = tmp_path / name
    path.mkdir(exist_ok=True)
    return path


class RawClient:
    """A WebSocket client on a plain socket, for what a library client hides: exact bytes, silence, resets."""

    def __init__(
        self, port: int, token: str, path: str = "/ws", *, small_window: bool = False, query: str = ""
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if small_window:
            # A small receive buffer, set before connecting, keeps the TCP window small: a slow link.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(WAIT_S)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        extra = f"&{query}" if query else ""
        self.sock.sendall(
            f"GET {path}?token={token}{extra} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])

    def send_frame(self, payload: bytes, opcode: int = OP_TEXT, *, masked: bool = True, final: bool = True) -> None:
        """One frame, final and masked as clients must (RFC 6455 section 5.3) unless told otherwise."""
        self.sock.sendall(encode_frame(opcode, payload, masked=masked, final=final))

    def _read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_frame(self) -> tuple[int, bytes]:
        """The next frame from the server as (opcode, payload)."""
        first, second = self._read_exact(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exact(8))
        return first & 0x0F, self._read_exact(length)

    def frames_until_close(self) -> tuple[list[dict[str, Any]], int | None]:
        """Every text frame up to the server's close frame, and the close code."""
        texts: list[dict[str, Any]] = []
        while True:
            opcode, payload = self.read_frame()
            if opcode == 0x8:
                return texts, struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            if opcode == 0x1:
                texts.append(json.loads(payload))

    def close(self) -> None:
        self.sock.close()


Sample = tuple[str, tuple[tuple[str, str], ...]]


def scrape(ops_url: str) -> dict[Sample, float]:
    """Every sample of ``/metrics`` as {(name, sorted labels): value}."""
    status, _, body = http("GET", ops_url + "metrics")
    assert status == 200
    samples: dict[Sample, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: dict[Sample, float], name: str, **labels: str) -> float:
    """The sample of ``name`` with exactly ``labels``; else the sum of those whose labels include them (so
    ``chat_connections`` is every transport's, and ``reason="client"`` of a close counts every transport)."""
    exact = samples.get((name, tuple(sorted(labels.items()))))
    if exact is not None:
        return exact
    wanted = set(labels.items())
    return sum(value for (key, have), value in samples.items() if key == name and wanted <= set(have))


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Poll ``condition`` (from this thread) until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        pause.wait(0.02)


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


class Recorder:
    """A client whose frames are collected by a reader thread, so that it can send without waiting."""

    def __init__(self, base_url: str, name: str, token: str) -> None:
        self.name = name
        self.ws = ws_connect(ws_url(base_url, token), open_timeout=WAIT_S, ping_interval=None, legacy=True)
        self.frames: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.acks = threading.Semaphore(0)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            while True:
                frame = json.loads(self.ws.recv())
                with self.lock:
                    self.frames.append(frame)
                if frame["type"] == "ack":
                    self.acks.release()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [f for f in self.frames if f["type"] == kind]

    def cursor(self) -> int:
        """The newest seq this client has seen, in messages or in acks of its own."""
        with self.lock:
            return max([f["seq"] for f in self.frames if f["type"] in ("message", "ack")], default=0)


def run_async(make: Callable[[], Coroutine[Any, Any, T]], timeout: float = 60.0) -> T:
    """Run a coroutine on a fresh event loop in its own thread.

    The browser tests keep Playwright's event loop running in the main thread for the
    whole session, so ``asyncio.run`` cannot be called from a test directly.
    """
    result: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        try:
            result.set_result(asyncio.run(make()))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            result.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return result.result(timeout)
