"""A fuzz run against a live server: random and mutated frames from many connections at once.

The server must stay up, keep its memory bounded, count what it refused, and
keep serving a pair of well-behaved users who talk throughout.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from pathlib import Path

from .support import (
    RawClient,
    Recorder,
    ServerProcess,
    http,
    login,
    metric,
    rss_kib,
    scrape,
    wait_until,
)

FUZZERS = 12
FUZZ_SECONDS = 6.0
SEEDS: list[dict[str, object]] = [
    {"type": "join", "room": "fuzz"},
    {"type": "leave", "room": "fuzz"},
    {"type": "send", "id": "a1", "room": "fuzz", "text": "hello"},
    {"type": "send", "id": "a2", "to": "talker-b", "text": "psst"},
    {"type": "ping", "id": 7},
    {"type": "history", "room": "fuzz", "limit": 5, "before": 10},
    {"type": "history", "with": "talker-a"},
    {"type": "rooms"},
    {"type": "resume", "since": 0},
]
ODD_VALUES: list[object] = [
    *(None, True, -1, 0, 2**70, 1.5, "", "x" * 5000, "\u0000\u202e", "\ud800", [], {}, [[[]]], "fuzz"),
]


def mutate(rng: random.Random) -> tuple[int, bytes]:
    """An (opcode, payload) pair: mostly broken variations of valid frames, some pure noise."""
    choice = rng.random()
    if choice < 0.1:
        return 0x2, rng.randbytes(rng.randint(0, 200))  # binary frame
    if choice < 0.15:
        return 0x1, bytes(rng.randint(0x80, 0xFF) for _ in range(rng.randint(1, 30)))  # invalid UTF-8
    if choice < 0.2:
        return 0x1, ("[" * rng.randint(100, 20000)).encode()
    frame = dict(rng.choice(SEEDS))
    if choice < 0.5:
        frame[rng.choice(["type", "room", "to", "with", "text", "id", "before", "limit", "since", "from"])] = (
            rng.choice(ODD_VALUES)
        )
    text = json.dumps(frame).encode()
    if choice > 0.7:
        data = bytearray(text)
        for _ in range(rng.randint(1, 4)):
            operation = rng.random()
            position = rng.randrange(len(data) or 1)
            if operation < 0.4 and data:
                data[position] = rng.randrange(256)
            elif operation < 0.7:
                del data[position : position + rng.randint(1, 10)]
            else:
                data[position:position] = rng.randbytes(rng.randint(1, 10))
        text = bytes(data)
    return 0x1, text


def fuzz(port: int, token: str, seed: int, stop: threading.Event, counts: list[int]) -> None:
    rng = random.Random(seed)
    client: RawClient | None = None
    while not stop.is_set():
        try:
            if client is None:
                client = RawClient(port, token)
                client.sock.setblocking(False)
            opcode, payload = mutate(rng)
            client.sock.setblocking(True)
            client.send_frame(payload, opcode)
            client.sock.setblocking(False)
            counts[0] += 1
            with contextlib.suppress(BlockingIOError):
                while True:
                    if not client.sock.recv(65536, socket.MSG_DONTWAIT):
                        raise ConnectionError("the server closed the connection")
        except (OSError, ConnectionError):
            # Closed by the server (invalid UTF-8, rate limit...): come back, as a fuzzer would.
            if client is not None:
                client.close()
            client = None
            counts[1] += 1
    if client is not None:
        client.close()


def test_fuzzing_from_many_connections_leaves_the_server_up_and_others_served(tmp_path: Path) -> None:
    server = ServerProcess(
        "--data-dir", str(tmp_path / "data"), "--sync", "normal", "--rate-limit", "2000", "--rate-limit-burst", "2000"
    ).start()
    assert server.proc is not None
    try:
        a = Recorder(server.base_url, "talker-a", login(server.base_url, "talker-a"))
        b = Recorder(server.base_url, "talker-b", login(server.base_url, "talker-b"))
        tokens = [login(server.base_url, f"fuzzer{i}") for i in range(FUZZERS)]
        baseline_kib = rss_kib(server.proc.pid)

        def from_a() -> list[dict[str, object]]:
            """What talker-b got from talker-a (fuzzers may write to talker-b too)."""
            return [f for f in b.of_type("message") if f["from"] == "talker-a"]

        stop = threading.Event()
        counts = [[0, 0] for _ in range(FUZZERS)]
        threads = [
            threading.Thread(target=fuzz, args=(server.port, token, i, stop, counts[i]), daemon=True)
            for i, token in enumerate(tokens)
        ]
        for thread in threads:
            thread.start()
        # The well-behaved pair talks throughout; every message must arrive.
        deadline = time.monotonic() + FUZZ_SECONDS
        sent = 0
        while time.monotonic() < deadline:
            a.ws.send(json.dumps({"type": "send", "id": f"ok{sent}", "to": "talker-b", "text": f"n{sent}"}))
            sent += 1
            expected = sent
            wait_until(lambda: len(from_a()) >= expected, f"message {expected} to arrive")  # noqa: B023
        stop.set()
        for thread in threads:
            thread.join(10)
        assert sum(c[0] for c in counts) > 2000, counts
        assert [f["text"] for f in from_a()] == [f"n{i}" for i in range(sent)]
        assert server.proc.poll() is None
        assert http("GET", server.ops_url + "healthz")[0] == 200
        samples = scrape(server.ops_url)
        assert metric(samples, "chat_frames_received_total", type="invalid") > 100
        # Broken frames (binary garbage, invalid UTF-8, bad masks) ended connections as protocol errors.
        assert metric(samples, "chat_connections_closed_total", reason="protocol_error") > 10
        assert metric(samples, "chat_errors_total", code="bad_json") > 0
        assert metric(samples, "chat_errors_total", code="internal") == 0
        # Memory: whatever the fuzzers did, the server did not keep it.
        wait_until(lambda: metric(scrape(server.ops_url), "chat_connections") == 2, "fuzzers to disconnect")
        growth_kib = rss_kib(server.proc.pid) - baseline_kib
        assert growth_kib < 40 * 1024, growth_kib
        a.ws.close()
        b.ws.close()
    finally:
        server.stop()
