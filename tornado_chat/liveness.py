"""Liveness: the heartbeat timer that pings sessions and reaps dead ones, the loop-lag probe, the health probes.

One ``tornado.ioloop.PeriodicCallback`` runs ``tick`` every ``--heartbeat-tick``
seconds. The pure ``HeartbeatMonitor`` says who is due a ping and who has been
silent too long; this module acts on it: one ping frame per tick, written to
the due sessions ``PING_WRITE_BATCH`` at a time with the loop free between
batches, and each dead session ended and counted once.

A session found silent while the kernel still holds input for it (the loop
stalled and has not read it yet) gets a reprieve: it is watched again and the
loop reads its frames before the next tick judges it. A reprieve is given only
within twice the deadline, so a peer that trickles bytes without completing a
frame is still reaped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

import tornado.ioloop

from .heartbeat import HeartbeatMonitor, Peer
from .metrics import ChatMetrics
from .outgoing import Outgoing
from .session import CLOSED_REAPED, Session
from .settings import Settings

log = logging.getLogger("tornado_chat.liveness")

# Ping frames written in one go before the heartbeat lets other callbacks run.
PING_WRITE_BATCH = 128
# How often the loop-lag probe timer runs, in seconds; each run observes how late it fired.
LOOP_LAG_PROBE_INTERVAL_S = 0.1
# /healthz fails when the heartbeat has missed this many ticks in a row.
HEALTH_MISSED_TICKS = 3
# A silent session with unread input is reprieved only while its silence is under this many deadlines.
REPRIEVE_DEADLINES = 2.0

Report = tuple[bool, dict[str, object]]


class Reaper(Protocol):
    """Ends a dead session (the chat service)."""

    def forget_session(self, session: Session) -> None: ...


class Liveness:
    """The heartbeat driver and the probes of one server."""

    def __init__(
        self,
        settings: Settings,
        heartbeat: HeartbeatMonitor[Session],
        metrics: ChatMetrics,
        reaper: Reaper,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.heartbeat = heartbeat
        self.metrics = metrics
        self.reaper = reaper
        self.clock = clock
        self.monotonic = monotonic
        self.started_mono = monotonic()
        self.last_tick_mono = self.started_mono
        self.last_loop_lag_s = 0.0
        self.timer = tornado.ioloop.PeriodicCallback(self.tick, settings.heartbeat_tick_s * 1000)
        self._lag_probe: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start the heartbeat timer and the loop-lag probe (on the serving loop)."""
        self.last_tick_mono = self.monotonic()
        self.timer.start()
        self._schedule_lag_probe()

    def stop(self) -> None:
        self.timer.stop()
        if self._lag_probe is not None:
            self._lag_probe.cancel()

    # ------------------------------------------------------------ heartbeat

    def tick(self) -> None:
        """One run of the heartbeat timer: ping the sessions that are due, reap the silent ones."""
        started = time.perf_counter()
        now = self.monotonic()
        self.last_tick_mono = now
        result = self.heartbeat.tick(now)
        metrics = self.metrics
        if result.pings:
            ping = Outgoing.ping(result.ping_payload)
            self._write_pings(ping, result.pings, 0)
            metrics.heartbeat_pings.inc(len(result.pings))
            metrics.tallies.sent_bytes += len(ping.websocket) * len(result.pings)
        for peer, silence in result.dead:
            self._judge(peer, silence, now)
        metrics.heartbeat_last_tick.set(self.clock())
        metrics.heartbeat_tick_seconds.observe(time.perf_counter() - started)

    def _judge(self, peer: Peer[Session], silence: float, now: float) -> None:
        session = peer.owner
        if session is None:
            return  # ended by another path since the tick began
        deadline = self.heartbeat.dead_after_s
        if silence < REPRIEVE_DEADLINES * deadline and session.transport.has_unread_input():
            self.heartbeat.revive(peer, now)
            return
        log.info("reaping a silent connection", extra={"user": session.user.name, "silent_s": round(silence, 3)})
        session.close_reason = CLOSED_REAPED
        session.transport.abort()
        self.reaper.forget_session(session)
        self.metrics.heartbeat_reaped.inc()
        self.metrics.heartbeat_detection_seconds.observe(silence)

    def _write_pings(self, ping: Outgoing, peers: list[Peer[Session]], start: int) -> None:
        """Write the tick's ping to ``PING_WRITE_BATCH`` peers, then yield to the loop before the next batch.

        A tick may owe thousands of pings (many connections, a short interval, or a
        stall); between batches other callbacks run, so the tick never holds the loop
        for all of them.
        """
        end = start + PING_WRITE_BATCH
        for peer in peers[start:end]:
            session = peer.owner
            if session is not None:
                session.transport.write(ping)
        if end < len(peers):
            asyncio.get_running_loop().call_soon(self._write_pings, ping, peers, end)

    # ------------------------------------------------------------ probes

    def _schedule_lag_probe(self) -> None:
        loop = asyncio.get_running_loop()
        expected = loop.time() + LOOP_LAG_PROBE_INTERVAL_S
        self._lag_probe = loop.call_at(expected, self._lag_probe_fired, loop, expected)

    def _lag_probe_fired(self, loop: asyncio.AbstractEventLoop, expected: float) -> None:
        lag = max(0.0, loop.time() - expected)
        self.last_loop_lag_s = lag
        self.metrics.event_loop_lag_seconds.observe(lag)
        self._schedule_lag_probe()

    def health(self, connections: int) -> Report:
        """Liveness: the heartbeat has ticked recently and the event loop is not lagging."""
        now = self.monotonic()
        tick_age = now - self.last_tick_mono
        problems = []
        if tick_age > HEALTH_MISSED_TICKS * self.settings.heartbeat_tick_s:
            problems.append(f"heartbeat has not ticked for {tick_age:.2f}s")
        limit = self.settings.loop_lag_unhealthy_s
        if self.last_loop_lag_s > limit:
            problems.append(f"event loop lag {self.last_loop_lag_s:.3f}s is over {limit}s")
        body: dict[str, object] = {
            "status": "ok" if not problems else "unhealthy",
            "uptime_s": round(now - self.started_mono, 3),
            "connections": connections,
            "heartbeat_tick_age_s": round(tick_age, 3),
            "loop_lag_s": round(self.last_loop_lag_s, 6),
        }
        if problems:
            body["reasons"] = problems
        return not problems, body


def readiness(state: str, store_healthy: bool) -> Report:
    """Readiness: serving (not starting or stopping), and the store can write."""
    problems = []
    if state != "ready":
        problems.append(state)
    if not store_healthy:
        problems.append("store unavailable")
    body: dict[str, object] = {"status": "ready" if not problems else "not ready", "state": state}
    if problems:
        body["reasons"] = problems
    return not problems, body
