"""The workloads W1-W5. Each starts a fresh server, gets its clients ready, measures, and tears down.

Readiness is always an event (every client has its ``welcome``/101, every member its ``joined``), never
a sleep. The only timed waits are measurement windows themselves (W4 watches an idle server for a
fixed time). Every wait has a timeout. Latencies are taken in this process with ``perf_counter``: the
sender notes when it wrote a message, the receiver when the bytes came off its socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import sys
from array import array
from collections import Counter as Tally
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

from .sseclient import SseClient
from .sysinfo import (
    CpuWindow,
    bucket_delta,
    histogram_quantile,
    parse_metrics,
    quantiles,
    rss_kib,
)
from .targets import HOST, NotAvailable, ServerOptions, ServerProcess, Target
from .wsclient import Countdown, HttpPool, WSClient, http_get, ignore_text, setup_text


@dataclass
class Config:
    """Sizes and knobs of every workload (each has a command-line flag)."""

    w1_clients: tuple[int, ...] = (100, 1000)
    w1_messages: int = 0  # 0: about w1_deliveries / clients
    w1_deliveries: int = 500_000
    w1_window: int = 8
    w1_text_bytes: int = 64
    w2_idle: int = 10_000
    w2_pairs: int = 50
    w2_roundtrips: int = 500
    w3_connections: int = 10_000
    w4_connections: int = 10_000
    w4_dead: int = 100
    w4_window_s: float = 10.0
    w4_ping_interval_s: float = 2.0
    w4_ping_timeout_s: float = 1.0
    w4_heartbeat_tick_s: float = 0.1
    w4_probe_hz: float = 50.0
    w5_senders: int = 100
    w5_messages: int = 10_000
    w6_messages: int = 1_000_000
    w6_queries: int = 50
    connect_concurrency: int = 64
    timeout_s: float = 180.0
    server_loop: str = "asyncio"  # the event loop of every Python server: "asyncio" or "uvloop"
    server_cpus: set[int] | None = None
    bench_cpus: set[int] | None = None
    data_root: Path | None = None
    profile_dir: Path | None = None
    py_spy: str | None = None
    log: Callable[[str], None] = print
    profiles: dict[str, Any] = field(default_factory=dict)


Result = dict[str, Any]


class Bench:
    """What every workload needs: the config, server start/stop, and getting clients connected."""

    def __init__(self, config: Config) -> None:
        self.cfg = config
        self._clients: list[WSClient] = []
        self.event_loop: str | None = None  # what the last server started ran on (None: none started)

    @contextlib.asynccontextmanager
    async def server(self, target: Target, options: ServerOptions) -> AsyncIterator[ServerProcess]:
        """A fresh server for one workload run; its clients are dropped and it is stopped afterwards."""
        options = dataclasses.replace(options, event_loop=self.cfg.server_loop)
        process = ServerProcess(target, options, self.cfg.server_cpus, self.cfg.data_root)
        await process.start()
        self.event_loop = process.event_loop
        try:
            yield process
            if not process.alive:
                raise RuntimeError(f"{target.name} exited during the run:\n{process.tail()}")
        finally:
            for client in self._clients:
                client.abort()
            self._clients = []
            await process.stop()

    async def ws_paths(self, server: ServerProcess, names: list[str]) -> list[tuple[str, str]]:
        """Each client's WebSocket path (logging in where the target needs it) over a few keep-alive sockets."""
        http = HttpPool(HOST, server.port, size=8)
        try:
            return await asyncio.wait_for(
                asyncio.gather(*(server.target.ws_path(http, name) for name in names)), self.cfg.timeout_s
            )
        finally:
            await http.close()

    async def connect(
        self,
        server: ServerProcess,
        names: list[str],
        paths: list[tuple[str, str]] | None = None,
        client_class: type[WSClient] = WSClient,
    ) -> list[WSClient]:
        """Open one WebSocket (or ``client_class`` session) per name and wait until each is open (and greeted,
        where the server greets)."""
        if paths is None:
            paths = await self.ws_paths(server, names)
        loop = asyncio.get_running_loop()
        greeted = Countdown(len(names) if server.target.sends_welcome else 0, "welcome frames")
        gate = asyncio.Semaphore(self.cfg.connect_concurrency)
        timeout = self.cfg.timeout_s

        async def open_one(name: str, path_and_user: tuple[str, str]) -> WSClient:
            path, user = path_and_user
            client = client_class(name, HOST, server.port, path)
            client.user = user
            client.offer_deflate = server.target.offers_deflate
            if server.target.sends_welcome:
                client.waiting[b"welcome"] = greeted.hit
            self._clients.append(client)
            async with gate:
                await asyncio.wait_for(loop.create_connection(lambda: client, HOST, server.port), timeout)
                await asyncio.wait_for(client.opened, timeout)
            return client

        clients = await asyncio.gather(*(open_one(n, p) for n, p in zip(names, paths, strict=True)))
        await greeted.wait(timeout)
        for client in clients:
            if client.errors:
                raise RuntimeError(f"{client.name} got an error while connecting: {client.errors[0]}")
        return list(clients)

    async def join(self, clients: list[WSClient], room_of: Callable[[WSClient], str]) -> None:
        """Every client joins its room; returns once every one has its ``joined``."""
        joined = Countdown(len(clients), "joined frames")
        for client in clients:
            client.on_text = setup_text
            client.waiting[b"joined"] = joined.hit
            client.send_json({"type": "join", "room": room_of(client)})
        await joined.wait(self.cfg.timeout_s)
        for client in clients:
            if client.errors:
                raise RuntimeError(f"{client.name} got an error while joining: {client.errors[0]}")

    def cpu_window(self, server: ServerProcess) -> CpuWindow:
        """Start measuring CPU (the server's, this process's, and the cores') for one window."""
        return CpuWindow(server.pid, self.cfg.server_cpus, self.cfg.bench_cpus).start()

    async def scrape(self, server: ServerProcess) -> dict[str, float]:
        status, body = await http_get(HOST, server.ops_port, "/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return parse_metrics(body.decode())

    @contextlib.asynccontextmanager
    async def profiled(self, server: ServerProcess, label: str) -> AsyncIterator[None]:
        """Sample the server with py-spy while the block runs (with --profile, for Python servers)."""
        cfg = self.cfg
        if cfg.profile_dir is None or "python" not in os.path.basename(server.command[0]):
            yield
            return
        sibling = Path(sys.executable).with_name("py-spy")
        py_spy = cfg.py_spy or shutil.which("py-spy") or (str(sibling) if sibling.exists() else None)
        if py_spy is None:
            cfg.log("  (no py-spy found: not profiling)")
            yield
            return
        cfg.profile_dir.mkdir(parents=True, exist_ok=True)
        out = cfg.profile_dir / f"{label}.txt"
        spy = await asyncio.create_subprocess_exec(
            py_spy,
            "record",
            "--pid",
            str(server.pid),
            "--rate",
            "250",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(spy.pid, signal.SIGINT)
            await asyncio.wait_for(spy.wait(), 30)
            if out.exists():
                cfg.profiles[label] = summarize_profile(out)


def summarize_profile(path: Path, top: int = 12) -> dict[str, Any]:
    """Top functions of a py-spy raw (collapsed stacks) profile: by own samples and by inclusive samples."""
    own: Tally[str] = Tally()
    inclusive: Tally[str] = Tally()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short_frame(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    share = (lambda n: round(100 * n / total, 1)) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "file": str(path),
        "self": [(name, share(n)) for name, n in own.most_common(top)],
        "inclusive": [(name, share(n)) for name, n in inclusive.most_common(top * 2)],
    }


def _short_frame(frame: str) -> str:
    # py-spy frames look like "function (path/to/file.py:123)"; keep the function and the file's last parts.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file = where.rsplit(":", 1)[0]
    parts = file.split("/")
    return f"{name} ({'/'.join(parts[-2:])})" if where else name


def _latency_fields(prefix: str, samples: array[float] | list[float]) -> Result:
    p50, p99 = quantiles(samples, (0.5, 0.99))
    return {
        f"{prefix}_p50_ms": round(p50 * 1000, 3) if p50 is not None else None,
        f"{prefix}_p99_ms": round(p99 * 1000, 3) if p99 is not None else None,
        f"{prefix}_max_ms": round(max(samples) * 1000, 3) if samples else None,
        f"{prefix}_samples": len(samples),
    }


def _pad(n: int) -> bytes:
    return b"x" * max(0, n)


# ---------------------------------------------------------------- W1 room fan-out


async def w1_fanout(bench: Bench, target: Target, n_clients: int) -> Result:
    """C receivers and one sender in one room; at most K messages in flight (until every receiver has it)."""
    cfg = bench.cfg
    messages = cfg.w1_messages or max(50, cfg.w1_deliveries // n_clients)
    warmup = max(1, min(50, messages // 10))
    total = warmup + messages
    window = max(1, cfg.w1_window)
    pad = _pad(cfg.w1_text_bytes - 12)
    async with bench.server(target, ServerOptions()) as server:
        receivers = await bench.connect(server, [f"r{i}" for i in range(n_clients)])
        (sender,) = await bench.connect(server, ["sender"])
        await bench.join([*receivers, sender], lambda c: "w1")

        sent_at = [0.0] * total
        remaining = array("i", [n_clients]) * total
        latencies: array[float] = array("d")
        record = latencies.append
        duplicates = [0]
        state = {"next": 0, "limit": 0, "done": 0}
        finished = asyncio.Event()
        acks = Countdown(total, "acks to the sender")

        def send_next() -> None:
            idx = state["next"]
            state["next"] = idx + 1
            sent_at[idx] = perf_counter()
            sender.send(b'{"type":"send","id":"m%d","room":"w1","text":"`%d` %s"}' % (idx, idx, pad))

        def on_message(client: WSClient, payload: bytes, now: float) -> None:
            start = payload.find(b"`")
            if start < 0:
                return
            idx = int(payload[start + 1 : payload.index(b"`", start + 1)])
            seen = client.seen
            if seen[idx]:
                duplicates[0] += 1
                return
            seen[idx] = 1
            if idx >= warmup:
                record(now - sent_at[idx])
            left = remaining[idx] - 1
            remaining[idx] = left
            if left == 0:
                state["done"] += 1
                if state["next"] < state["limit"]:
                    send_next()
                elif state["done"] == state["limit"]:
                    finished.set()

        def on_sender(client: WSClient, payload: bytes, now: float) -> None:
            if b'"ack"' in payload:
                acks.hit()

        for client in receivers:
            client.seen = bytearray(total)
            client.on_text = on_message
        sender.on_text = on_sender

        async def phase(limit: int) -> None:
            state["limit"] = limit
            finished.clear()
            while state["next"] < min(limit, state["done"] + window):
                send_next()
            await asyncio.wait_for(finished.wait(), cfg.timeout_s)

        await phase(warmup)
        cpu = bench.cpu_window(server)
        async with bench.profiled(server, f"w1_{n_clients}-{target.name}"):
            await phase(total)
        cpu.stop()
        await acks.wait(cfg.timeout_s)
        missing = sum(total - sum(client.seen) for client in receivers)
        deliveries = n_clients * messages
        return {
            "clients": n_clients,
            "messages": messages,
            "warmup_messages": warmup,
            "window": window,
            "deliveries": deliveries,
            "deliveries_per_s": round(deliveries / cpu.wall_s, 1),
            "messages_per_s": round(messages / cpu.wall_s, 1),
            **_latency_fields("latency", latencies),
            "missing": missing,
            "duplicates": duplicates[0],
            "acks": total - acks.left,
            **cpu.fields(),
        }


# ---------------------------------------------------------------- ping-pong pairs (W2, W4 probe)


def _dm(client: WSClient, to: str, number: int) -> None:
    client.send(
        b'{"type":"send","id":"%s-%d","to":"%s","text":"`%d`"}' % (client.name.encode(), number, to.encode(), number)
    )


class PingPong:
    """Pairs (a, b) exchanging direct messages: a sends, b answers, a times the round trip.

    ``a.count`` counts answers in the current phase; ``b.count`` counts messages b received in all;
    ``a.extra`` is the number of round trips a still has to start in this phase.
    """

    def __init__(self, pairs: list[tuple[WSClient, WSClient]]) -> None:
        self.pairs = pairs
        self.latencies: array[float] = array("d")
        self.measuring = False
        self.done: Countdown = Countdown(0, "")
        self.acks = 0
        self.acks_expected = -1
        self.acks_event = asyncio.Event()
        self.numbers = 0
        for a, b in pairs:
            a.peer, b.peer = b, a
            a.on_text = self.on_a
            b.on_text = self.on_b
            a.count = b.count = 0
            a.extra = 0

    def count_ack(self, payload: bytes) -> None:
        if b'"ack"' in payload:
            self.acks += 1
            if self.acks == self.acks_expected:
                self.acks_event.set()

    async def wait_acks(self, n: int, timeout: float) -> None:
        """Until ``n`` acks have come in all (the last ones may trail the last answers)."""
        self.acks_expected = n
        if self.acks < n:
            try:
                await asyncio.wait_for(self.acks_event.wait(), timeout)
            except TimeoutError:
                raise TimeoutError(f"timed out waiting for acks: {self.acks} of {n}") from None

    def on_a(self, client: WSClient, payload: bytes, now: float) -> None:
        if b"`" not in payload:
            self.count_ack(payload)
            return
        if self.measuring:
            self.latencies.append(now - client.sent_at)
        client.count += 1
        if client.extra > 0:
            self.send(client)
        else:
            self.done.hit()

    def on_b(self, client: WSClient, payload: bytes, now: float) -> None:
        start = payload.find(b"`")
        if start < 0:
            self.count_ack(payload)
            return
        client.count += 1
        assert client.peer is not None
        _dm(client, client.peer.user, int(payload[start + 1 : payload.index(b"`", start + 1)]))

    def send(self, a: WSClient) -> None:
        assert a.peer is not None
        a.extra -= 1
        self.numbers += 1
        a.sent_at = perf_counter()
        _dm(a, a.peer.user, self.numbers)

    async def phase(self, roundtrips: int, measuring: bool, timeout: float) -> None:
        self.measuring = measuring
        self.done = Countdown(len(self.pairs), "ping-pong pairs to finish")
        for a, _ in self.pairs:
            a.count = 0
            a.extra = roundtrips
            self.send(a)
        await self.done.wait(timeout)


async def w2_direct(bench: Bench, target: Target, client_class: type[WSClient] = WSClient) -> Result:
    """Many idle connections, and pairs ping-ponging direct messages among them (over ``client_class``)."""
    cfg = bench.cfg
    async with bench.server(target, ServerOptions()) as server:
        idle = await bench.connect(server, [f"i{n}" for n in range(cfg.w2_idle)], client_class=client_class)
        for client in idle:
            client.on_text = ignore_text
        a_side = await bench.connect(server, [f"a{k}" for k in range(cfg.w2_pairs)], client_class=client_class)
        b_side = await bench.connect(server, [f"b{k}" for k in range(cfg.w2_pairs)], client_class=client_class)
        # Each pair joins its own room: the joined frame proves the server has registered both ends.
        await bench.join(a_side + b_side, lambda c: "p" + c.name[1:])
        game = PingPong(list(zip(a_side, b_side, strict=True)))
        warmup = max(1, min(20, cfg.w2_roundtrips // 10))
        await game.phase(warmup, False, cfg.timeout_s)
        cpu = bench.cpu_window(server)
        async with bench.profiled(server, f"w2-{target.name}"):
            await game.phase(cfg.w2_roundtrips, True, cfg.timeout_s)
        cpu.stop()
        sends = 2 * (warmup + cfg.w2_roundtrips) * cfg.w2_pairs
        await game.wait_acks(sends, cfg.timeout_s)
        messages = 2 * cfg.w2_roundtrips * cfg.w2_pairs
        received_by_b = sum(b.count for b in b_side)
        received_by_a = sum(a.count for a in a_side)
        return {
            "transport": "sse+post" if client_class is SseClient else "websocket",
            "idle_connections": cfg.w2_idle,
            "pairs": cfg.w2_pairs,
            "roundtrips_per_pair": cfg.w2_roundtrips,
            "warmup_roundtrips_per_pair": warmup,
            "messages": messages,
            "messages_per_s": round(messages / cpu.wall_s, 1),
            **_latency_fields("rtt", game.latencies),
            "delivered": received_by_a + received_by_b - cfg.w2_pairs * warmup,
            "sends": sends,
            "acks": game.acks,
            **cpu.fields(),
        }


async def w2_direct_sse(bench: Bench, target: Target) -> Result:
    """W2 with every session on the HTTP fallback: an event stream in, POSTed frames out."""
    if not target.http_fallback:
        raise NotAvailable(f"{target.name} has no HTTP fallback")
    try:
        return await w2_direct(bench, target, SseClient)
    except ConnectionError as exc:
        if "404" in str(exc):  # a commit from before the fallback
            raise NotAvailable(f"{target.name} has no /events") from None
        raise


# ---------------------------------------------------------------- W3 memory


async def w3_memory(bench: Bench, target: Target) -> Result:
    """Server RSS with no connection, after the logins, and with N idle connections."""
    cfg = bench.cfg
    n = cfg.w3_connections
    async with bench.server(target, ServerOptions()) as server:
        rss_empty = rss_kib(server.pid)
        names = [f"u{i}" for i in range(n)]
        paths = await bench.ws_paths(server, names)
        rss_logged_in = rss_kib(server.pid)
        clients = await bench.connect(server, names, paths)
        for client in clients:
            client.on_text = ignore_text
        rss_connected = rss_kib(server.pid)
        return {
            "connections": n,
            "rss_empty_kib": rss_empty,
            "rss_after_logins_kib": rss_logged_in,
            "rss_connected_kib": rss_connected,
            "kib_per_connection": round((rss_connected - rss_empty) / n, 2),
            "kib_per_connection_excluding_login": round((rss_connected - rss_logged_in) / n, 2),
        }


# ---------------------------------------------------------------- W4 heartbeat


async def w4_heartbeat(bench: Bench, target: Target) -> Result:
    """Many connections on a short ping interval: loop lag and tick cost, then how fast dead clients go."""
    cfg = bench.cfg
    interval, timeout = cfg.w4_ping_interval_s, cfg.w4_ping_timeout_s
    options = ServerOptions(interval, timeout, cfg.w4_heartbeat_tick_s)
    async with bench.server(target, options) as server:
        clients = await bench.connect(server, [f"h{i}" for i in range(cfg.w4_connections)])
        for client in clients:
            client.on_text = ignore_text
        probe_a, probe_b = await bench.connect(server, ["probe-a", "probe-b"])
        await bench.join([probe_a, probe_b], lambda c: "probe")
        # Clients the server dropped while the others were still connecting (they were answering pings).
        dropped_early = [c for c in clients if c.closed_at is not None]
        if probe_a.closed_at is not None or probe_b.closed_at is not None:
            raise RuntimeError("the server dropped the probe clients before the window")
        lost_live: list[str] = []
        open_clients = [c for c in clients if c.closed_at is None]
        dead = open_clients[len(open_clients) - min(cfg.w4_dead, len(open_clients)) :]
        dead_set = {id(c) for c in dead}
        reaped = Countdown(len(dead), "dead clients to be dropped by the server")

        def on_lost(client: WSClient) -> None:
            if id(client) in dead_set:
                reaped.hit()  # one fewer to wait for, whenever it went
                if client.dead:
                    return
            lost_live.append(client.name)

        for client in [*clients, probe_a, probe_b]:
            client.on_lost = on_lost

        # Phase 1: a fixed window over a busy heartbeat, with a probe pair timing round trips at a steady rate.
        game = PingPong([(probe_a, probe_b)])  # probe_b answers every direct message
        loop = asyncio.get_running_loop()
        probing = True
        awaiting = [False]

        def probe() -> None:
            if not probing:
                return
            if not awaiting[0]:
                awaiting[0] = True
                game.send(probe_a)
            loop.call_later(1 / cfg.w4_probe_hz, probe)

        def probe_answer(client: WSClient, payload: bytes, now: float) -> None:
            if b"`" in payload:
                game.latencies.append(now - client.sent_at)
                awaiting[0] = False

        probe_a.on_text = probe_answer
        before = await bench.scrape(server) if target.has_metrics else {}
        cpu = bench.cpu_window(server)
        probe()
        async with bench.profiled(server, f"w4-{target.name}"):
            await asyncio.sleep(cfg.w4_window_s)  # the measurement window itself, not a synchronisation
        probing = False
        cpu.stop()
        after = await bench.scrape(server) if target.has_metrics else {}
        result: Result = {
            "connections": cfg.w4_connections,
            "ping_interval_s": interval,
            "ping_timeout_s": timeout,
            "heartbeat_tick_s": cfg.w4_heartbeat_tick_s,
            **_latency_fields("probe_rtt", game.latencies),
            **cpu.fields(),
        }
        if target.has_metrics:
            lag = bucket_delta(before, after, "chat_event_loop_lag_seconds")
            tick = bucket_delta(before, after, "chat_heartbeat_tick_seconds")
            result.update(
                {
                    "loop_lag_p50_ms": _ms(histogram_quantile(0.5, lag)),
                    "loop_lag_p99_ms": _ms(histogram_quantile(0.99, lag)),
                    "loop_lag_samples": int(lag[-1][1]) if lag else 0,
                    "tick_p50_ms": _ms(histogram_quantile(0.5, tick)),
                    "tick_p99_ms": _ms(histogram_quantile(0.99, tick)),
                    "ticks": int(tick[-1][1]) if tick else 0,
                    "pings_sent": _delta(before, after, "chat_heartbeat_pings_total"),
                    "pongs_received": _delta(before, after, "chat_heartbeat_pongs_total"),
                    # Full (generation 2) collections stop the loop for a time that grows with the heap.
                    "gc_gen2_collections": _delta(before, after, 'python_gc_collections_total{generation="2"}'),
                    "gc_gen1_collections": _delta(before, after, 'python_gc_collections_total{generation="1"}'),
                }
            )

        # Phase 2: the last D clients stop answering (pings, close frames, everything) but keep reading,
        # so that this process sees the moment the server drops each of them.
        before = await bench.scrape(server) if target.has_metrics else {}
        stopped = perf_counter()
        for client in dead:
            client.dead = True
        give_up = 3 * (interval + timeout) + 30
        try:
            await reaped.wait(give_up)
        except TimeoutError:
            # Not a failure of the run: a finding. Report who is still connected.
            result["dead_not_dropped_after_s"] = round(give_up, 1)
            result["dead_not_dropped"] = [c.name for c in dead if c.closed_at is None][:10]
        # Only those dropped after they went silent count as found; one dropped before was a live client.
        detect = [c.closed_at - stopped for c in dead if c.closed_at is not None and c.closed_at >= stopped]
        after = await bench.scrape(server) if target.has_metrics else {}
        (p50,) = quantiles(detect, (0.5,))
        bound = interval + timeout + 0.5
        result.update(
            {
                "dead_clients": len(dead),
                "dead_dropped": len(detect),
                "detect_wall_p50_s": _round(p50),
                "detect_wall_max_s": _round(max(detect) if detect else None),
                "detect_bound_s": bound,
                "detect_within_bound": len(detect) == len(dead) and bool(detect) and max(detect) <= bound,
                "live_clients_dropped": len(lost_live) + len(dropped_early),
                "live_clients_dropped_while_connecting": len(dropped_early),
            }
        )
        if target.has_metrics:
            detection = bucket_delta(before, after, "chat_heartbeat_detection_seconds")
            result.update(
                {
                    "reaped": _delta(before, after, "chat_heartbeat_reaped_total"),
                    "reaped_since_start": int(after.get("chat_heartbeat_reaped_total", 0)),
                    "server_connections_after": int(after.get("chat_connections", -1)),
                    "server_monitored_after": int(after.get("chat_heartbeat_monitored", -1)),
                    "detection_metric_p50_s": _round(histogram_quantile(0.5, detection)),
                    "detection_metric_p99_s": _round(histogram_quantile(0.99, detection)),
                }
            )
        return result


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _delta(before: dict[str, float], after: dict[str, float], name: str) -> int:
    return int(after.get(name, 0.0) - before.get(name, 0.0))


# ---------------------------------------------------------------- W5 durable sends


W5_VARIANTS = {
    "w5_group": ("--store", "sqlite"),
    "w5_batch1": ("--store", "sqlite", "--max-commit-batch", "1"),
}


async def w5_durable(bench: Bench, target: Target, variant: str) -> Result:
    """Many senders, one message in flight each, on the durable store: acked messages per second."""
    cfg = bench.cfg
    if not target.durable_store:
        raise NotAvailable(f"{target.name} has no durable store")
    options = ServerOptions(extra_args=W5_VARIANTS[variant])
    per_sender = max(1, cfg.w5_messages // cfg.w5_senders)
    async with bench.server(target, options) as server:
        senders = await bench.connect(server, [f"d{i}" for i in range(cfg.w5_senders)])
        await bench.join(senders, lambda c: "w5-" + c.name)
        latencies: array[float] = array("d")
        measuring = [False]
        done = Countdown(0, "")
        serial = [0]

        def send(client: WSClient) -> None:
            client.extra -= 1
            serial[0] += 1
            client.sent_at = perf_counter()
            client.send(
                b'{"type":"send","id":"%d","room":"w5-%s","text":"durable %d"}'
                % (serial[0], client.name.encode(), serial[0])
            )

        def on_ack(client: WSClient, payload: bytes, now: float) -> None:
            if b'"ack"' not in payload:
                if b'"error"' in payload:
                    client.errors.append(payload.decode("utf-8", "replace"))
                return
            client.count += 1
            if measuring[0]:
                latencies.append(now - client.sent_at)
            if client.extra > 0:
                send(client)
            else:
                done.hit()

        async def phase(n: int, measure: bool) -> None:
            nonlocal done
            measuring[0] = measure
            done = Countdown(len(senders), "senders to finish")
            for client in senders:
                client.on_text = on_ack
                client.extra = n
                send(client)
            await done.wait(cfg.timeout_s)

        warmup = max(1, min(10, per_sender // 10))
        await phase(warmup, False)
        for client in senders:
            client.count = 0
        cpu = bench.cpu_window(server)
        async with bench.profiled(server, f"w5_{variant}-{target.name}"):
            await phase(per_sender, True)
        cpu.stop()
        errors = [e for c in senders for e in c.errors]
        messages = per_sender * cfg.w5_senders
        return {
            "variant": variant,
            "store_args": " ".join(W5_VARIANTS[variant]),
            "senders": cfg.w5_senders,
            "messages": messages,
            "acked": sum(c.count for c in senders),
            "acked_per_s": round(messages / cpu.wall_s, 1),
            **_latency_fields("ack", latencies),
            "errors": len(errors),
            **cpu.fields(),
        }


Workload = Callable[[Bench, Target], Awaitable[Result]]
