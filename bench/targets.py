"""The servers under test: how to start each one, how a client gets in, how to stop it.

Every server runs as a subprocess on 127.0.0.1 with an ephemeral port and announces itself with a line
``listening on http://127.0.0.1:PORT/`` (tornado-chat adds `` (ops on http://127.0.0.1:OPSPORT/)``) on
stderr. It is stopped by its PID: SIGTERM, then SIGKILL if it has not exited in time.

Every Python server runs on the same event loop, the bench's ``--server-loop`` (tornado-chat's
``--event-loop``, the peers' ``--loop``), and each run reports the loop the server was found running on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .baseline import Baseline
from .wsclient import HttpPool

PEERS_DIR = Path(__file__).resolve().parent / "peers"
LISTENING = re.compile(r"listening on http://[^:/]+:(\d+)/(?: \(ops on http://[^:/]+:(\d+)/\))?")
HOST = "127.0.0.1"
BENCH_SECRET = "tornado-chat-bench-secret-not-for-production"
EXIT_USAGE = 2
PR_SET_PDEATHSIG = 1

TORNADO_CHAT = "tornado-chat"
# The same server with --store memory: what durability costs, next to peers that store nothing.
TORNADO_CHAT_MEMORY = "tornado-chat-memory"
# The memory target with --compression on, and clients that offer permessage-deflate: what an idle compressed
# connection costs (W3 only: the load generator does not inflate frames, so it cannot run the others).
TORNADO_CHAT_DEFLATE = "tornado-chat-deflate"
NODE_WS = "node-ws"
TORNADO_PLAIN = "tornado-plain"
# Plain Tornado written for fan-out: JSON and frame built once per message, written straight to the sockets.
TORNADO_FAST = "tornado-fast"
WEBSOCKETS = "websockets"
ALL_TARGETS = (
    TORNADO_CHAT,
    TORNADO_CHAT_MEMORY,
    TORNADO_CHAT_DEFLATE,
    NODE_WS,
    TORNADO_PLAIN,
    TORNADO_FAST,
    WEBSOCKETS,
)
NODE_LOOP = "Node (libuv)"
UVLOOP_LIBRARY = re.compile(r"/uvloop/loop\.[^/\s]*\.so")


class NotAvailable(Exception):
    """The server cannot run this workload in this build (for example it refuses a flag with exit code 2)."""


@dataclass
class ServerOptions:
    """What a workload asks of the server it starts."""

    ping_interval_s: float = 25.0
    ping_timeout_s: float = 10.0
    heartbeat_tick_s: float = 0.25
    extra_args: tuple[str, ...] = ()  # tornado-chat only, e.g. ("--store", "sqlite")
    event_loop: str = "asyncio"  # of every Python server: "asyncio" or "uvloop" (set by the bench, not workloads)


@dataclass
class PeerDeps:
    """Where the peers' third-party packages are (installed on request into a temporary directory)."""

    node_modules: Path | None = None
    python_path: Path | None = None
    versions: dict[str, str] = field(default_factory=dict)


@dataclass
class Target:
    """One server under test."""

    name: str
    command: Callable[[ServerOptions, Path], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    has_metrics: bool = False
    needs_login: bool = False
    sends_welcome: bool = False
    durable_store: bool = False
    http_fallback: bool = False  # serves sessions over GET /events and POST /api/frames (tornado-chat)
    python: bool = True  # a Python server, on the bench's --server-loop (else Node, on libuv)
    loop_flag: bool = True  # whether it is told which loop to run on (a commit older than --event-loop is not)
    cwd: Path | None = None  # the server's working directory (None: the bench's)
    source: Path | None = None  # where its tornado_chat must be imported from (checked before the run)
    imported_from: str | None = None  # where it was, once checked
    offers_deflate: bool = False  # its clients offer permessage-deflate in the handshake
    workloads: tuple[str, ...] | None = None  # the workloads it can run (None: all)

    def expected_loop(self, event_loop: str) -> str:
        """The loop this target is asked to run on (what it really ran on is read from each run's process)."""
        if not self.python:
            return NODE_LOOP
        return event_loop if self.loop_flag else "asyncio"

    async def ws_path(self, http: HttpPool, username: str) -> tuple[str, str]:
        """The path a client called ``username`` opens its WebSocket on, and the name the server knows it by.

        Logs in first where the target needs it.
        """
        if self.needs_login:
            token, user = await login(http, username)
            return "/ws?token=" + urllib.parse.quote(token), user
        return "/ws?user=" + urllib.parse.quote(username), username


async def login(http: HttpPool, username: str) -> tuple[str, str]:
    """How the bench gets a tornado-chat token: a guest login, ``POST /api/login {"username": U}``.

    The one place that knows how tornado-chat authenticates. The server runs with ``--allow-guests``
    (``tornado_chat_command``): registering thousands of accounts would spend the run hashing passwords.
    A guest is called ``guest-U``; that is the name other clients address it by.
    """
    status, body = await http.post_json("/api/login", {"username": username})
    if status != 200 or not isinstance(body, dict) or "token" not in body:
        raise RuntimeError(f"login of {username!r} failed: HTTP {status} {body!r}")
    return str(body["token"]), str(body["username"])


def tornado_chat_command(options: ServerOptions, data_dir: Path, *, event_loop_flag: bool = True) -> list[str]:
    """tornado-chat with the bench's flags; ``event_loop_flag`` False for commits older than --event-loop."""
    return [
        sys.executable,
        "-m",
        "tornado_chat",
        "--address",
        HOST,
        "--port",
        "0",
        "--ops-address",
        HOST,
        "--ops-port",
        "0",
        "--data-dir",
        str(data_dir),
        "--secret",
        BENCH_SECRET,
        "--ping-interval",
        f"{options.ping_interval_s:g}",
        "--ping-timeout",
        f"{options.ping_timeout_s:g}",
        "--heartbeat-tick",
        f"{options.heartbeat_tick_s:g}",
        # Load, not abuse: guests instead of accounts, and no per-connection rate limit or buffer cap.
        "--allow-guests",
        "--rate-limit",
        "1000000",
        "--rate-limit-burst",
        "1000000",
        "--max-buffered-bytes",
        str(64 * 1024 * 1024),
        "--max-connections",
        "100000",
        *(["--event-loop", options.event_loop] if event_loop_flag else []),
        *options.extra_args,
    ]


def _peer_args(options: ServerOptions, *, python: bool = True) -> list[str]:
    return [
        "--port",
        "0",
        "--ping-interval",
        f"{options.ping_interval_s:g}",
        "--ping-timeout",
        f"{options.ping_timeout_s:g}",
        *(["--loop", options.event_loop] if python else []),
    ]


def make_targets(deps: PeerDeps) -> dict[str, Target]:
    python_env = {}
    if deps.python_path is not None:
        python_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(deps.python_path), os.environ.get("PYTHONPATH", "")) if p
        )
    return {
        TORNADO_CHAT: Target(
            TORNADO_CHAT,
            tornado_chat_command,
            has_metrics=True,
            needs_login=True,
            sends_welcome=True,
            durable_store=True,
            http_fallback=True,
        ),
        TORNADO_CHAT_MEMORY: Target(
            TORNADO_CHAT_MEMORY,
            lambda o, d: [*tornado_chat_command(o, d), "--store", "memory"],
            has_metrics=True,
            needs_login=True,
            sends_welcome=True,
            http_fallback=True,
        ),
        TORNADO_CHAT_DEFLATE: Target(
            TORNADO_CHAT_DEFLATE,
            lambda o, d: [*tornado_chat_command(o, d), "--store", "memory", "--compression", "on"],
            has_metrics=True,
            needs_login=True,
            # Its welcome is compressed, which the load generator does not read: an open socket is ready.
            sends_welcome=False,
            offers_deflate=True,
            workloads=("w3",),
        ),
        NODE_WS: Target(
            NODE_WS,
            lambda o, d: ["node", str(PEERS_DIR / "node_ws_server.js"), *_peer_args(o, python=False)],
            env={"NODE_PATH": str(deps.node_modules)} if deps.node_modules else {},
            python=False,
        ),
        TORNADO_PLAIN: Target(
            TORNADO_PLAIN, lambda o, d: [sys.executable, str(PEERS_DIR / "tornado_plain.py"), *_peer_args(o)]
        ),
        TORNADO_FAST: Target(
            TORNADO_FAST, lambda o, d: [sys.executable, str(PEERS_DIR / "tornado_fast.py"), *_peer_args(o)]
        ),
        WEBSOCKETS: Target(
            WEBSOCKETS,
            lambda o, d: [sys.executable, str(PEERS_DIR / "websockets_server.py"), *_peer_args(o)],
            env=python_env,
        ),
    }


def baseline_target(baseline: Baseline) -> Target:
    """tornado-chat as checked out at another commit, with the tornado-chat target's flags."""
    return Target(
        baseline.name,
        lambda o, d: tornado_chat_command(o, d, event_loop_flag=baseline.event_loop_flag),
        env=baseline.env,
        has_metrics=True,
        needs_login=True,
        sends_welcome=True,
        durable_store=True,
        http_fallback=True,  # tried; a commit from before it is reported as not available
        loop_flag=baseline.event_loop_flag,
        cwd=baseline.path,
        source=baseline.path,
    )


def check_target(target: Target) -> str | None:
    """Why a target cannot run here (a missing dependency, the wrong checkout on the path), or None."""
    env = {**os.environ, **target.env}
    if target.source is not None:
        where = subprocess.run(
            [sys.executable, "-c", "import tornado_chat; print(tornado_chat.__file__)"],
            cwd=target.cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        target.imported_from = where.stdout.strip() or None
        if where.returncode != 0:
            return f"tornado_chat does not import from {target.source}: {where.stderr.strip()[-300:]}"
        if not Path(where.stdout.strip()).resolve().is_relative_to(target.source.resolve()):
            return f"tornado_chat imports from {where.stdout.strip()}, not from {target.source}"
    if target.name == NODE_WS:
        if shutil.which("node") is None:
            return "node is not installed"
        probe = subprocess.run(["node", "-e", "require('ws')"], env=env, capture_output=True, check=False, timeout=30)
        if probe.returncode != 0:
            return "the npm package ws is not installed (run with --install-peers)"
    elif target.name == WEBSOCKETS:
        probe = subprocess.run(
            [sys.executable, "-c", "import websockets.asyncio.server"], env=env, capture_output=True, check=False
        )
        if probe.returncode != 0:
            return "the Python package websockets (>= 13) is not importable (run with --install-peers)"
    return None


def install_peers(names: list[str], into: Path, log: Callable[[str], None]) -> PeerDeps:
    """Install the peers' dependencies into ``into`` (a temporary directory), never into the project."""
    deps = PeerDeps()
    if NODE_WS in names:
        node_dir = into / "node"
        node_dir.mkdir(parents=True, exist_ok=True)
        (node_dir / "package.json").write_text('{"name": "bench-peers", "private": true}\n')
        log(f"installing ws with npm into {node_dir}")
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", "ws"], cwd=node_dir, check=True, timeout=600
        )
        deps.node_modules = node_dir / "node_modules"
        package = json.loads((deps.node_modules / "ws" / "package.json").read_text())
        deps.versions["ws"] = package["version"]
    if WEBSOCKETS in names:
        py_dir = into / "python"
        log(f"installing websockets with pip into {py_dir}")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
                str(py_dir),
                "websockets",
            ],
            check=True,
            timeout=600,
        )
        deps.python_path = py_dir
    return deps


def peer_versions(deps: PeerDeps, targets: dict[str, Target]) -> dict[str, str]:
    """Versions of the peers' libraries as the peers will import them."""
    versions = dict(deps.versions)
    if NODE_WS in targets and "ws" not in versions:
        env = {**os.environ, **targets[NODE_WS].env}
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["node", "-e", "console.log(require('ws/package.json').version)"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
            if out.returncode == 0:
                versions["ws"] = out.stdout.strip()
    if WEBSOCKETS in targets:
        env = {**os.environ, **targets[WEBSOCKETS].env}
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [sys.executable, "-c", "import websockets; print(websockets.__version__)"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
            if out.returncode == 0:
                versions["websockets"] = out.stdout.strip()
    return versions


class ServerProcess:
    """A running server under test: its PID, ports, and the last lines it wrote."""

    def __init__(self, target: Target, options: ServerOptions, cpus: set[int] | None, data_root: Path | None) -> None:
        self.target = target
        self.options = options
        self.cpus = cpus
        self.data_root = data_root
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.ops_port = 0
        self.lines: collections.deque[str] = collections.deque(maxlen=200)
        self.command: list[str] = []
        self._reader: asyncio.Task[None] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.event_loop: str | None = None  # the loop it was found running on, once started

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _preexec(self) -> None:
        # Runs in the child between fork and exec: pin it, let it open as many files as allowed, and
        # have the kernel end it if the bench dies first (so no server outlives an interrupted run).
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)

    async def start(self, timeout: float = 30.0) -> ServerProcess:
        self._tmp = tempfile.TemporaryDirectory(prefix="chat-bench-", dir=self.data_root)
        self.command = self.target.command(self.options, Path(self._tmp.name) / "data")
        self.proc = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.target.env},
            cwd=self.target.cwd,
            preexec_fn=self._preexec,
        )
        listening: asyncio.Future[re.Match[str]] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.ensure_future(self._read(listening))
        try:
            match = await asyncio.wait_for(asyncio.shield(listening), timeout)
        except (TimeoutError, EOFError):
            listening.add_done_callback(lambda f: f.cancelled() or f.exception())
            await self.stop(grace=2)
            code = self.proc.returncode
            if code == EXIT_USAGE:
                last = self.tail(1).strip()
                raise NotAvailable(f"{self.target.name} refused its command line (exit 2): {last}") from None
            raise RuntimeError(f"{self.target.name} did not start (exit {code}):\n{self.tail()}") from None
        self.port = int(match.group(1))
        self.ops_port = int(match.group(2) or 0)
        self.event_loop = running_loop(self.pid) if self.target.python else NODE_LOOP
        return self

    async def _read(self, listening: asyncio.Future[re.Match[str]]) -> None:
        # Drain the server's output for as long as it runs, so that it never blocks on a full pipe.
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            text = line.decode("utf-8", "replace").rstrip()
            self.lines.append(text)
            if not listening.done() and (match := LISTENING.search(text)) is not None:
                listening.set_result(match)
        await self.proc.wait()
        if not listening.done():
            listening.set_exception(EOFError())

    def tail(self, n: int = 20) -> str:
        return "\n".join(list(self.lines)[-n:])

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM to the server's PID, SIGKILL after ``grace`` seconds; returns its exit code."""
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                await asyncio.wait_for(proc.wait(), 10)
        if self._reader is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, EOFError):
                await asyncio.wait_for(self._reader, 5)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return proc.returncode if proc is not None else None


def running_loop(pid: int) -> str:
    """The event loop a Python server runs on: "uvloop" if uvloop's extension is mapped into it, else "asyncio".

    Read from the process rather than taken from its command line, so that a server that ignored or predates
    the flag is reported as it ran. The servers here import uvloop only to run on it.
    """
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return "unknown"
    return "uvloop" if UVLOOP_LIBRARY.search(maps) else "asyncio"
