"""Metrics as scraped from the ops listener: exact counts, promtool-clean, readable by a real Prometheus."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from tornado_chat.metrics import LATENCY_BUCKETS_S, FastHistogram

from .support import Client, ServerThread, clients, http, metric, scrape, wait_until, ws_url

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


@pytest.mark.integration
def test_a_scripted_session_moves_each_counter_by_exactly_what_happened(server: ServerThread) -> None:
    before = scrape(server.ops_url)
    sent_texts: list[str] = []
    with clients(server.base_url, "alice", "bob") as (alice, bob):

        def send(client: Client, frame: dict[str, object] | str) -> None:
            text = frame if isinstance(frame, str) else json.dumps(frame)
            sent_texts.append(text)
            client.send(text)

        send(alice, {"type": "join", "room": "metrics"})
        alice.expect("joined", room="metrics")
        send(bob, {"type": "join", "room": "metrics"})
        bob.expect("joined", room="metrics")
        send(alice, {"type": "send", "id": "r1", "room": "metrics", "text": "to the room ✓"})
        alice.expect("ack", id="r1")
        send(alice, {"type": "send", "id": "d1", "to": "bob", "text": "just for bob"})
        alice.expect("ack", id="d1")
        bob.expect("message", text="just for bob")
        send(bob, "{not json")
        bob.expect("error", code="bad_json")
        send(bob, {"type": "ping", "id": 1})
        bob.expect("pong", id=1)
        with pytest.raises(InvalidStatus):
            ws_connect(ws_url(server.base_url), legacy=True)
        during = scrape(server.ops_url)
    wait_until(lambda: metric(scrape(server.ops_url), "chat_connections") == 0, "both connections to close")
    after = scrape(server.ops_url)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("chat_connections_opened_total") == 2
    assert delta("chat_connections_closed_total", reason="client") == 2
    assert metric(during, "chat_connections") == 2 and metric(during, "chat_users_online") == 2
    assert metric(during, "chat_rooms") == 1
    assert delta("chat_frames_received_total", type="join") == 2
    assert delta("chat_frames_received_total", type="send") == 2
    assert delta("chat_frames_received_total", type="ping") == 1
    assert delta("chat_frames_received_total", type="invalid") == 1
    assert delta("chat_messages_total", kind="room") == 1
    assert delta("chat_messages_total", kind="direct") == 1
    assert delta("chat_deliveries_total") == 2  # bob got each message once; alice got acks
    assert delta("chat_errors_total", code="bad_json") == 1
    assert sum(delta("chat_errors_total", code=c) for c in ("bad_frame", "not_member", "internal")) == 0
    assert delta("chat_handshakes_rejected_total", reason="no_token") == 1
    assert delta("chat_received_bytes_total") == sum(len(t.encode()) for t in sent_texts)
    assert delta("chat_sent_bytes_total") > 0
    assert delta("chat_fanout_seconds_count") == 2


@pytest.mark.integration
def test_every_labelled_series_exists_before_its_first_event(server: ServerThread) -> None:
    samples = scrape(server.ops_url)
    transports = ("websocket", "sse", "poll")
    for reason in ("client", "reaped", "slow_consumer", "shutdown", "protocol_error", "policy"):
        for transport in transports:
            assert ("chat_connections_closed_total", (("reason", reason), ("transport", transport))) in samples
    for transport in transports:
        assert ("chat_connections", (("transport", transport),)) in samples
        assert ("chat_connections_opened_total", (("transport", transport),)) in samples
    for code in ("unknown_session", "session_closed", "bad_cursor"):
        assert ("chat_http_refused_total", (("code", code),)) in samples
    for code in ("bad_json", "bad_frame", "unknown_type", "too_large", "not_member", "internal"):
        assert ("chat_errors_total", (("code", code),)) in samples
    assert ("chat_messages_total", (("kind", "direct"),)) in samples
    build = [key for key in samples if key[0] == "chat_build_info"]
    assert len(build) == 1 and dict(build[0][1])["version"]


@pytest.mark.integration
def test_openmetrics_is_served_when_asked_for(server: ServerThread) -> None:
    status, headers, body = http(
        "GET", server.ops_url + "metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


@pytest.mark.system
def test_promtool_finds_nothing_to_lint_in_the_real_exposition(server: ServerThread) -> None:
    with clients(server.base_url, "alice", "bob") as (alice, bob):
        alice.join("lint")
        bob.join("lint")
        alice.send_message("make the histograms move", room="lint")
        bob.expect("message", room="lint")
        status, _, body = http("GET", server.ops_url + "metrics")
    assert status == 200
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.strip() == b"" and result.stderr.strip() == b""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.system
def test_a_real_prometheus_scrapes_the_ops_port(server: ServerThread, tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: tornado-chat\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{server.chat.ops_port}']\n"
    )
    port = free_port()
    prometheus = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with clients(server.base_url, "p1", "p2", "p3"):

            def prometheus_sees_three() -> bool:
                query = urllib.parse.quote("sum(chat_connections)")
                try:
                    status, _, body = http("GET", f"http://127.0.0.1:{port}/api/v1/query?query={query}")
                except OSError:
                    return False
                if status != 200 or body.get("status") != "success":
                    return False
                result = body["data"]["result"]
                return len(result) == 1 and float(result[0]["value"][1]) == 3

            # The first scrape lands about 5 s after start (Prometheus throttles discovery).
            wait_until(prometheus_sees_three, "Prometheus to report 3 connections", timeout=30)
    finally:
        prometheus.terminate()
        prometheus.wait(10)


@pytest.mark.unit
def test_the_fast_histogram_exports_what_prometheus_client_would() -> None:
    ours = FastHistogram("chat_x_seconds", "x", LATENCY_BUCKETS_S)
    registry = CollectorRegistry()
    reference = Histogram("chat_x_seconds", "x", buckets=LATENCY_BUCKETS_S, registry=registry)
    for value in (0.0001, 0.0005, 0.003, 0.003, 0.2, 2.5, 99.0):
        ours.observe(value)
        reference.observe(value)

    class One:
        def collect(self) -> list[object]:
            return [ours.family()]

    mine = CollectorRegistry()
    mine.register(One())  # type: ignore[arg-type]
    expected = [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]
    assert generate_latest(mine).decode().splitlines() == expected
