"""Heartbeat bookkeeping with a simulated clock: thousands of connections, no sockets, no event loop."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tornado_chat.heartbeat import HeartbeatMonitor, Peer

pytestmark = pytest.mark.unit

INTERVAL_S = 25.0
TIMEOUT_S = 10.0
TICK_S = 0.25
CONNECTIONS = 10_000


Owner = int | str


def make_monitor(seed: int = 7) -> HeartbeatMonitor[Owner]:
    return HeartbeatMonitor(INTERVAL_S, TIMEOUT_S, random.Random(seed), resolution_s=TICK_S)


def run(
    monitor: HeartbeatMonitor[Owner],
    start: float,
    end: float,
    answering: set[int] | None = None,
    on_tick: list[int] | None = None,
) -> tuple[Counter[Owner], dict[Owner, float]]:
    """Tick from ``start`` to ``end``; peers in ``answering`` (by connection id) pong at once.

    Returns pings per connection id and the time each dead connection was reported.
    """
    pings: Counter[Owner] = Counter()
    dead: dict[Owner, float] = {}
    now = start
    while now <= end:
        result = monitor.tick(now)
        if on_tick is not None:
            on_tick.append(result.touched)
        for peer in result.pings:
            owner = peer.owner
            assert owner is not None
            pings[owner] += 1
            if answering is None or owner in answering:
                assert monitor.pong(peer, result.ping_payload, now) == 0.0
        for peer, _silence in result.dead:
            assert peer.owner is not None
            dead[peer.owner] = now
        now = round(now + TICK_S, 6)
    return pings, dead


def test_first_pings_spread_over_the_second_half_of_the_interval() -> None:
    monitor = make_monitor()
    for connection in range(CONNECTIONS):
        monitor.add(connection, 0.0)
    first_ping_at: dict[Owner | None, float] = {}
    now = 0.0
    while len(first_ping_at) < CONNECTIONS:
        result = monitor.tick(now)
        for peer in result.pings:
            first_ping_at.setdefault(peer.owner, now)
            monitor.pong(peer, result.ping_payload, now)
        now = round(now + TICK_S, 6)
    times = sorted(first_ping_at.values())
    assert times[0] >= INTERVAL_S / 2
    assert times[-1] <= INTERVAL_S + TICK_S
    # Roughly uniform: each fifth of [I/2, I] holds about a fifth of the first pings.
    fifths = Counter(min(4, int((t - INTERVAL_S / 2) / (INTERVAL_S / 10))) for t in times)
    assert all(1500 <= fifths[i] <= 2500 for i in range(5)), fifths


def test_each_connection_is_pinged_once_per_interval_and_ticks_touch_only_the_due() -> None:
    monitor = make_monitor()
    for connection in range(CONNECTIONS):
        monitor.add(connection, 0.0)
    touched: list[int] = []
    pings, dead = run(monitor, 0.0, 10 * INTERVAL_S, on_tick=touched)
    assert not dead
    # First ping in [I/2, I], then one every I: 10 or 11 pings in 10 intervals, never more.
    assert set(pings.values()) <= {10, 11}
    assert len(pings) == CONNECTIONS
    # A tick touches only the due. Each healthy peer costs two events an interval (its ping, and a check
    # a timeout later): 10,000 peers over a 25 s interval at 0.25 s ticks is 200 per tick on average.
    # Phases fill half the interval ([I/2, I]), so a tick sees at most about twice that.
    steady = touched[int(INTERVAL_S / TICK_S) * 2 :]
    assert max(touched) <= 500, max(touched)
    assert 180 <= sum(steady) / len(steady) <= 220
    assert sum(touched) <= 2 * 11 * CONNECTIONS


def test_silent_connections_are_found_within_one_tick_of_their_deadline() -> None:
    monitor = make_monitor()
    for connection in range(CONNECTIONS):
        monitor.add(connection, 0.0)
    healthy = set(range(CONNECTIONS // 2))
    _, dead = run(monitor, 0.0, 5 * INTERVAL_S, answering=healthy)
    silent = set(range(CONNECTIONS // 2, CONNECTIONS))
    assert set(dead) == silent
    # They opened at 0 and never said anything: dead at I + T, found at the first tick after it.
    for found_at in dead.values():
        assert INTERVAL_S + TIMEOUT_S <= found_at <= INTERVAL_S + TIMEOUT_S + TICK_S
    assert len(monitor) == len(healthy)


def test_a_connection_that_stops_answering_midway_is_found_on_time() -> None:
    monitor = make_monitor()
    peers = [monitor.add(connection, 0.0) for connection in range(1000)]
    answering = set(range(1000))
    run(monitor, 0.0, 3 * INTERVAL_S, answering=answering)
    last_seen = {peer.owner: peer.last_seen for peer in peers[:100]}
    answering -= set(range(100))
    start = round(3 * INTERVAL_S + TICK_S, 6)
    _, dead = run(monitor, start, 6 * INTERVAL_S, answering=answering)
    assert set(dead) == set(range(100))
    for connection, found_at in dead.items():
        lingered = found_at - last_seen[connection]
        assert INTERVAL_S + TIMEOUT_S <= lingered <= INTERVAL_S + TIMEOUT_S + TICK_S


def test_any_frame_counts_as_life_without_pongs() -> None:
    monitor = make_monitor()
    peer = monitor.add("chatty", 0.0)
    now = 0.0
    while now < 10 * INTERVAL_S:
        monitor.seen(peer, now)  # a message every 5 s, but never a pong
        for _ in range(20):
            assert not monitor.tick(now).dead
            now += TICK_S
    assert peer.monitored


def test_a_pong_for_an_older_ping_does_not_measure_rtt() -> None:
    monitor = make_monitor()
    peer = monitor.add("c", 0.0)
    result = monitor.tick(INTERVAL_S)
    [_] = result.pings
    payload = result.ping_payload
    assert monitor.pong(peer, b"\x00" * 8, INTERVAL_S + 0.1) is None
    assert monitor.pong(peer, payload, INTERVAL_S + 0.2) == pytest.approx(0.2)
    assert monitor.pong(peer, payload, INTERVAL_S + 0.3) is None  # answered already
    assert peer.last_seen == INTERVAL_S + 0.3


def test_removed_connections_are_never_pinged_or_reported() -> None:
    monitor = make_monitor()
    peers = [monitor.add(connection, 0.0) for connection in range(100)]
    for peer in peers[::2]:
        monitor.remove(peer)
        monitor.remove(peer)  # idempotent
    assert len(monitor) == 50
    pings, dead = run(monitor, 0.0, 3 * INTERVAL_S, answering=set())
    assert set(pings) <= {p.owner for p in peers[1::2]}
    assert set(dead) == {p.owner for p in peers[1::2]}
    assert len(monitor) == 0


def test_after_a_stall_a_peer_gets_one_ping_not_a_burst() -> None:
    monitor = make_monitor()
    peer: Peer[Owner] = monitor.add("c", 0.0)
    first_ping_at = peer.next_ping_at
    # The loop stalls for three intervals while the peer keeps talking.
    monitor.seen(peer, 3 * INTERVAL_S)
    result = monitor.tick(3 * INTERVAL_S)
    assert len(result.pings) == 1 and not result.dead
    # The next ping is the next one on the peer's own phase, not one for every interval missed.
    assert 3 * INTERVAL_S < peer.next_ping_at <= 4 * INTERVAL_S
    assert (peer.next_ping_at - first_ping_at) / INTERVAL_S == pytest.approx(
        round((peer.next_ping_at - first_ping_at) / INTERVAL_S)
    )
    assert monitor.next_event_at() == 3 * INTERVAL_S + TIMEOUT_S  # the check on this ping


def test_settings_must_be_positive() -> None:
    with pytest.raises(ValueError):
        HeartbeatMonitor(0, 1)


def test_a_peer_reported_dead_can_be_revived_when_it_turns_out_to_have_spoken() -> None:
    monitor = make_monitor()
    peer = monitor.add("c", 0.0)
    [(reported, _)] = monitor.tick(INTERVAL_S + TIMEOUT_S).dead
    assert reported is peer and len(monitor) == 0
    # Its frames were waiting unread: the caller reads them, then revives it.
    monitor.seen(peer, INTERVAL_S + TIMEOUT_S)
    monitor.revive(peer, INTERVAL_S + TIMEOUT_S)
    monitor.revive(peer, INTERVAL_S + TIMEOUT_S)  # idempotent
    assert len(monitor) == 1
    assert not monitor.tick(2 * (INTERVAL_S + TIMEOUT_S) - 1).dead
    assert monitor.tick(2 * (INTERVAL_S + TIMEOUT_S) + 1).dead


def test_after_a_long_stall_late_peers_keep_their_phases() -> None:
    monitor = make_monitor()
    for connection in range(100):
        monitor.add(connection, 0.0)
    phases = {}
    result = monitor.tick(INTERVAL_S)
    for peer in result.pings:
        phases[peer.owner] = peer.next_ping_at % INTERVAL_S
        monitor.pong(peer, result.ping_payload, INTERVAL_S)
    # The loop stalls for ten intervals; everyone kept talking meanwhile.
    stalled_until = 11 * INTERVAL_S + 0.5
    for bucket in monitor._wheel.values():
        for peer in bucket:
            monitor.seen(peer, stalled_until)
    due_times = set()
    for peer in monitor.tick(stalled_until).pings:
        assert peer.next_ping_at % INTERVAL_S == pytest.approx(phases[peer.owner])
        due_times.add(peer.next_ping_at)
    assert len(due_times) > 50  # spread over the interval again, not bunched at one instant
