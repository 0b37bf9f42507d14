"""Real dead peers against a real server with a short heartbeat: reaped on time, counted once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import make_settings
from .support import (
    WAIT_S,
    RawClient,
    ServerThread,
    clients,
    http,
    login,
    metric,
    scrape,
    wait_until,
    ws_url,
)

pytestmark = pytest.mark.integration

INTERVAL_S = 0.5
TIMEOUT_S = 0.5
TICK_S = 0.1
# The reap happens at the first tick after the deadline; on a loaded machine timers fire late, so the upper
# bound is a margin, not the design's one tick. Never early is the strict half.
DETECTION_LIMIT_S = INTERVAL_S + TIMEOUT_S + 2.0


@pytest.fixture
def fast_server(tmp_path: Path) -> Iterator[ServerThread]:
    settings = make_settings(tmp_path, ping_interval_s=INTERVAL_S, ping_timeout_s=TIMEOUT_S, heartbeat_tick_s=TICK_S)
    running = ServerThread(settings).start()
    try:
        yield running
    finally:
        running.stop()


def assert_reaped_once(server: ServerThread, before: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> None:
    after = scrape(server.ops_url)

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("chat_connections_closed_total", reason="reaped") == 1
    assert delta("chat_heartbeat_reaped_total") == 1
    assert delta("chat_heartbeat_detection_seconds_count") == 1
    silence = delta("chat_heartbeat_detection_seconds_sum")
    assert INTERVAL_S + TIMEOUT_S <= silence <= DETECTION_LIMIT_S, silence
    assert delta("chat_connections_closed_total", reason="client") == 0


def test_a_client_that_never_reads_or_answers_is_reaped(fast_server: ServerThread) -> None:
    with clients(fast_server.base_url, "watcher") as (watcher,):
        watcher.join("lobby")
        silent = RawClient(fast_server.port, login(fast_server.base_url, "silent"))
        try:
            silent.send_frame(b'{"type": "join", "room": "lobby"}')
            watcher.expect("member", user="silent", event="joined")
            before = scrape(fast_server.ops_url)
            assert metric(before, "chat_connections") == 2
            # From here on the raw client neither reads nor answers pings.
            watcher.expect("presence", user="silent", status="offline")
            assert_reaped_once(fast_server, before)
            assert metric(scrape(fast_server.ops_url), "chat_connections") == 1
            watcher.barrier()  # the watcher itself, answering pings, is still connected
        finally:
            silent.close()


def test_a_stopped_client_process_is_reaped(fast_server: ServerThread) -> None:
    token = login(fast_server.base_url, "frozen")
    with clients(fast_server.base_url, "watcher") as (watcher,):
        watcher.join("lobby")
        peer = subprocess.Popen(
            [sys.executable, "-m", "tests.peer_client", ws_url(fast_server.base_url, token), "lobby"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        try:
            assert peer.stdout is not None and peer.stdout.readline().strip() == "ready"
            watcher.expect("member", user="frozen", event="joined")
            # Alive and answering pings before it is frozen.
            wait_until(lambda: metric(scrape(fast_server.ops_url), "chat_heartbeat_pongs_total") >= 1, "a pong")
            before = scrape(fast_server.ops_url)
            peer.send_signal(signal.SIGSTOP)
            watcher.expect("presence", user="frozen", status="offline")
            assert_reaped_once(fast_server, before)
        finally:
            peer.kill()
            peer.send_signal(signal.SIGCONT)
            peer.wait(10)


def test_a_well_behaved_idle_client_is_never_reaped(fast_server: ServerThread) -> None:
    with clients(fast_server.base_url, "idle") as (idle,):
        # Ten intervals pass: the server has pinged it and heard a pong at least ten times.
        wait_until(lambda: metric(scrape(fast_server.ops_url), "chat_heartbeat_pongs_total") >= 10, "ten pongs")
        samples = scrape(fast_server.ops_url)
        assert metric(samples, "chat_heartbeat_reaped_total") == 0
        assert metric(samples, "chat_connections") == 1
        assert metric(samples, "chat_heartbeat_pings_total") >= 10
        idle.barrier()


def test_rtt_histogram_observes_pongs(fast_server: ServerThread) -> None:
    with clients(fast_server.base_url, "alice"):
        wait_until(lambda: metric(scrape(fast_server.ops_url), "chat_heartbeat_rtt_seconds_count") >= 2, "two pongs")
        samples = scrape(fast_server.ops_url)
        count = metric(samples, "chat_heartbeat_rtt_seconds_count")
        total = metric(samples, "chat_heartbeat_rtt_seconds_sum")
        # Loopback round trips: positive, and far below a second each.
        assert 0 < total < count * 1.0
        assert metric(samples, "chat_heartbeat_rtt_seconds_bucket", le="+Inf") == count


def test_healthz_fails_while_the_heartbeat_is_stopped(fast_server: ServerThread) -> None:
    status, _, body = http("GET", fast_server.ops_url + "healthz")
    assert status == 200 and body["status"] == "ok"
    assert body["heartbeat_tick_age_s"] < 3 * TICK_S
    fast_server.call(fast_server.chat.liveness.timer.stop)
    wait_until(lambda: http("GET", fast_server.ops_url + "healthz")[0] == 503, "healthz to fail")
    status, _, body = http("GET", fast_server.ops_url + "healthz")
    assert status == 503 and body["status"] == "unhealthy"
    assert "heartbeat has not ticked" in body["reasons"][0]
    fast_server.call(fast_server.chat.liveness.timer.start)
    wait_until(lambda: http("GET", fast_server.ops_url + "healthz")[0] == 200, "healthz to recover")


def test_a_loop_stall_does_not_reap_peers_whose_frames_arrived_in_time(fast_server: ServerThread) -> None:
    chat = fast_server.chat
    client = RawClient(fast_server.port, login(fast_server.base_url, "patient"))
    try:
        client.read_frame()  # welcome
        frame_sent = threading.Event()
        stalling = threading.Event()

        def stall_then_tick() -> tuple[bool, bool]:
            """Block the loop past the deadline, with a frame from the client waiting unread; then tick."""
            session = next(iter(chat.hub.users["patient"].sessions.values()))
            peer = session.peer
            assert peer is not None
            stalling.set()
            assert frame_sent.wait(WAIT_S)
            while chat.monotonic() - peer.last_seen < INTERVAL_S + TIMEOUT_S + TICK_S:
                threading.Event().wait(0.02)  # the stall itself, not a wait for anything
            chat.liveness.tick()
            return session.forgotten, peer.monitored

        stalled = threading.Thread(target=lambda: results.append(fast_server.call(stall_then_tick)))
        results: list[tuple[bool, bool]] = []
        stalled.start()
        assert stalling.wait(WAIT_S)  # the loop is blocked: it cannot read the frame before the tick
        client.send_frame(b'{"type": "ping", "id": 1}')
        frame_sent.set()
        stalled.join(WAIT_S)
        assert results == [(False, True)], "a peer whose frame arrived during the stall was reaped"
        # Once the loop runs again it reads the waiting frame and answers it.
        answer: dict[str, object] = {}
        while answer.get("type") != "pong":
            opcode, payload = client.read_frame()
            if opcode == 0x1:
                answer = json.loads(payload)
        assert answer["id"] == 1
        assert metric(scrape(fast_server.ops_url), "chat_heartbeat_reaped_total") == 0
    finally:
        client.close()


def test_a_peer_cut_off_while_its_stalled_frames_are_read_is_not_watched_again(tmp_path: Path) -> None:
    """Frames read after a stall may end the connection (here: over its rate limit); it must stay forgotten."""
    settings = make_settings(
        tmp_path,
        ping_interval_s=INTERVAL_S,
        ping_timeout_s=TIMEOUT_S,
        heartbeat_tick_s=TICK_S,
        rate_limit_per_s=1.0,
        rate_limit_burst=2,
    )
    running = ServerThread(settings).start()
    client = RawClient(running.port, login(running.base_url, "burst"))
    try:
        client.read_frame()  # welcome
        chat = running.chat
        frames_sent = threading.Event()
        stalling = threading.Event()

        def stall_then_tick() -> bool:
            session = next(iter(chat.hub.users["burst"].sessions.values()))
            peer = session.peer
            assert peer is not None
            stalling.set()
            assert frames_sent.wait(WAIT_S)
            while chat.monotonic() - peer.last_seen < INTERVAL_S + TIMEOUT_S + TICK_S:
                threading.Event().wait(0.02)  # the stall itself, not a wait for anything
            chat.liveness.tick()
            return peer.monitored

        results: list[bool] = []
        stalled = threading.Thread(target=lambda: results.append(running.call(stall_then_tick)))
        stalled.start()
        assert stalling.wait(WAIT_S)  # the loop is blocked: the frames wait unread until after the tick
        for i in range(10):  # far over a burst of 2: the bucket runs dry and the connection is cut
            client.send_frame(f'{{"type": "ping", "id": {i}}}'.encode())
        frames_sent.set()
        stalled.join(WAIT_S)
        assert results == [True], "the stalled peer with unread frames was not given its reprieve"
        _, code = client.frames_until_close()
        assert code == 1008
        running.wait_for(lambda: not chat.hub.sessions, "the session to be forgotten")
        # Three more ticks: the peer its own frames closed is never watched (nor reaped) again.
        first = metric(scrape(running.ops_url), "chat_heartbeat_last_tick_timestamp_seconds")
        wait_until(
            lambda: metric(scrape(running.ops_url), "chat_heartbeat_last_tick_timestamp_seconds") > first + 3 * TICK_S,
            "three more heartbeat ticks",
        )
        assert running.call(lambda: len(chat.heartbeat)) == 0
        samples = scrape(running.ops_url)
        assert metric(samples, "chat_heartbeat_reaped_total") == 0
        assert metric(samples, "chat_connections_closed_total", reason="policy") == 1
    finally:
        client.close()
        running.stop()
