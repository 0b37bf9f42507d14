"""A fuzz run against a live server: random and mutated frames from many connections at once.

The server must stay up, keep its memory bounded, count what it refused, and
keep serving a pair of well-behaved users who talk throughout.
"""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import pytest

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

pytestmark = pytest.mark.integration

FUZZERS = 12
# Frames each fuzzer sends: a count, not a time window, so a loaded machine runs the same test, only slower.
FRAMES_PER_FUZZER = 250
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
    {"type": "create", "room": "fuzz-own", "private": True, "topic": "mine"},
    {"type": "invite", "room": "fuzz-own", "user": "talker-b"},
    {"type": "kick", "room": "fuzz", "user": "talker-b"},
    {"type": "ban", "room": "fuzz-own", "user": "talker-a"},
    {"type": "topic", "room": "fuzz", "topic": "taken over"},
    {"type": "edit", "seq": 1, "text": "rewritten"},
    {"type": "delete", "seq": 2},
    {"type": "disable", "user": "talker-b"},
    {"type": "audit", "room": "fuzz", "limit": 5},
]
FIELDS = ["type", "room", "to", "with", "text", "id", "before", "limit", "since", "from", "user", "seq", "topic"]
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
        frame[rng.choice(FIELDS)] = rng.choice(ODD_VALUES)
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


# Frame types that answer a client's own frame; each frame the server reads gets exactly one of them, or a close.
REPLIES = {"ack", "error", "joined", "left", "pong", "history", "rooms", "resumed"}
REPLIES |= {"room", "edited", "deleted", "disabled", "audit"}


def fuzz(port: int, token: str, seed: int, counts: list[int]) -> None:
    """Send ``FRAMES_PER_FUZZER`` frames, each answered (a reply or a close) before the next, reconnecting
    whenever the server closes. Twelve of these run at once: twelve frames in flight, and every one of them
    really read by the server rather than queued behind a connection that is already closing."""
    rng = random.Random(seed)
    client: RawClient | None = None
    while counts[0] < FRAMES_PER_FUZZER:
        try:
            if client is None:
                client = RawClient(port, token)
            opcode, payload = mutate(rng)
            client.send_frame(payload, opcode)
            counts[0] += 1
            while True:
                kind, data = client.read_frame()
                if kind == 0x8:
                    raise ConnectionError("the server closed the connection")
                if kind == 0x1 and json.loads(data).get("type") in REPLIES:
                    break
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

        counts = [[0, 0] for _ in range(FUZZERS)]
        threads = [
            threading.Thread(target=fuzz, args=(server.port, token, i, counts[i]), daemon=True)
            for i, token in enumerate(tokens)
        ]
        for thread in threads:
            thread.start()
        # The well-behaved pair talks throughout; every message must arrive.
        sent = 0
        while any(thread.is_alive() for thread in threads):
            a.ws.send(json.dumps({"type": "send", "id": f"ok{sent}", "to": "talker-b", "text": f"n{sent}"}))
            sent += 1
            expected = sent
            wait_until(lambda: len(from_a()) >= expected, f"message {expected} to arrive")  # noqa: B023
        assert all(c[0] >= FRAMES_PER_FUZZER for c in counts), counts
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
