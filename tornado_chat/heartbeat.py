"""Heartbeat bookkeeping: who is due a ping, who has gone silent for too long.

Pure code: no sockets, no timers; every call takes ``now`` (seconds on a
monotonic clock). A ``tornado.ioloop.PeriodicCallback`` calls ``tick`` every
``--heartbeat-tick`` seconds and acts on what it returns.

Each peer has one pending event in a timing wheel: a dict from time slot
(``resolution_s`` wide, the tick period) to the peers due in it. A tick pops
only the slots that have come, so its cost follows the number of peers due,
not the number connected, and each event costs a list append instead of a
heap operation. Signs of life (any frame, a pong) only update ``last_seen``: the
wheel is not touched on the hot path. A peer's events follow its own phase: a
ping, then a check ``timeout`` later; a peer heard from since its ping waits
for its next ping, one that has not been heard from waits for its deadline.
Healthy peers therefore cost two events per interval, spread by phase, and
peers that connected together never fall due together.

Timing, with interval I and timeout T:
- the first ping goes out at a random point in [I/2, I] after the peer is
  added, so peers that connect together do not stay in step;
- later pings follow every I seconds on the peer's own phase;
- a peer with no sign of life for I + T seconds is dead, and ``tick`` reports
  it at the first tick after that moment.
"""

from __future__ import annotations

import itertools
import random
import struct
from dataclasses import dataclass, field
from typing import Generic, TypeVar

_PAYLOAD = struct.Struct("!Q")

# What the caller watches through a peer (the chat server: a session); the monitor never looks inside.
T = TypeVar("T")


class Peer(Generic[T]):
    """Heartbeat state of one connection; ``owner`` is what the caller watches (None once it is gone)."""

    __slots__ = ("due", "last_seen", "monitored", "next_ping_at", "owner", "ping_payload", "ping_sent_at", "rtt_s")

    def __init__(self, owner: T, now: float, first_ping_at: float) -> None:
        self.owner: T | None = owner
        self.last_seen = now
        self.next_ping_at = first_ping_at
        self.ping_payload: bytes | None = None
        self.ping_sent_at = 0.0
        self.monitored = True
        # Round trip of the latest answered ping, in seconds (None until the first pong).
        self.rtt_s: float | None = None
        # When this peer's pending event is due.
        self.due = first_ping_at


@dataclass(slots=True)
class TickResult(Generic[T]):
    """What one tick decided: peers to ping, dead peers with their silence in seconds.

    Every peer pinged in one tick gets the same ``ping_payload`` (the tick's ping
    number), so the network layer builds one ping frame per tick, not per peer; a
    pong still matches only the latest ping of its peer.
    """

    pings: list[Peer[T]] = field(default_factory=list)
    dead: list[tuple[Peer[T], float]] = field(default_factory=list)
    ping_payload: bytes = b""
    touched: int = 0


class HeartbeatMonitor(Generic[T]):
    """Schedules pings and finds dead peers for any number of connections."""

    def __init__(
        self, interval_s: float, timeout_s: float, rng: random.Random | None = None, resolution_s: float = 0.25
    ) -> None:
        if interval_s <= 0 or timeout_s <= 0 or resolution_s <= 0:
            raise ValueError("interval, timeout and resolution must be positive")
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.dead_after_s = interval_s + timeout_s
        self.resolution_s = resolution_s
        self._rng = rng or random.Random()
        self._wheel: dict[int, list[Peer[T]]] = {}
        # The first slot the next tick looks at (None until something is scheduled).
        self._cursor: int | None = None
        self._ping_numbers = itertools.count(1)
        self.peers = 0

    def __len__(self) -> int:
        return self.peers

    def add(self, owner: T, now: float) -> Peer[T]:
        """Start watching a connection that opened at ``now``."""
        first_ping_at = now + self._rng.uniform(self.interval_s / 2, self.interval_s)
        peer = Peer(owner, now, first_ping_at)
        peer.ping_sent_at = now
        self._schedule(peer, first_ping_at)
        self.peers += 1
        return peer

    def _schedule(self, peer: Peer[T], due: float) -> None:
        peer.due = due
        slot = int(due // self.resolution_s)
        if self._cursor is None:
            self._cursor = slot
        bucket = self._wheel.get(slot)
        if bucket is None:
            self._wheel[slot] = [peer]
        else:
            bucket.append(peer)

    def remove(self, peer: Peer[T]) -> None:
        """Stop watching (idempotent); its pending event is dropped when it comes up."""
        if peer.monitored:
            peer.monitored = False
            self.peers -= 1

    @staticmethod
    def seen(peer: Peer[T], now: float) -> None:
        """A frame arrived from the peer."""
        peer.last_seen = now

    @staticmethod
    def pong(peer: Peer[T], payload: bytes, now: float) -> float | None:
        """A pong arrived: a sign of life, and the round trip in seconds if it answers the latest ping."""
        peer.last_seen = now
        if peer.ping_payload is None or payload != peer.ping_payload:
            return None
        peer.ping_payload = None
        peer.rtt_s = now - peer.ping_sent_at
        return peer.rtt_s

    def tick(self, now: float) -> TickResult[T]:
        """Take every event due by ``now``: send due pings, report peers silent for ``dead_after_s``."""
        result: TickResult[T] = TickResult()
        if self._cursor is None:
            return result
        current = int(now // self.resolution_s)
        for slot in range(self._cursor, current + 1):
            bucket = self._wheel.pop(slot, None)
            if bucket:
                self._tick_bucket(bucket, now, result)
        # The current slot may hold events due later in it: look at it again next time.
        self._cursor = current
        return result

    def _tick_bucket(self, bucket: list[Peer[T]], now: float, result: TickResult[T]) -> None:
        interval = self.interval_s
        for peer in bucket:
            if not peer.monitored:
                continue
            if peer.due > now:
                self._schedule(peer, peer.due)  # the current slot, not due yet
                continue
            result.touched += 1
            deadline = peer.last_seen + self.dead_after_s
            if now >= deadline:
                self.remove(peer)
                result.dead.append((peer, now - peer.last_seen))
                continue
            if now >= peer.next_ping_at:
                if not result.ping_payload:
                    result.ping_payload = _PAYLOAD.pack(next(self._ping_numbers))
                peer.ping_payload = result.ping_payload
                peer.ping_sent_at = now
                result.pings.append(peer)
                # Keep the peer's phase, skipping pings a stall made us miss; restarting every late
                # peer from "now" would bunch them all into one tick for good.
                peer.next_ping_at += interval
                if peer.next_ping_at <= now:
                    peer.next_ping_at += interval * (int((now - peer.next_ping_at) / interval) + 1)
                due = min(now + self.timeout_s, deadline)
            elif peer.last_seen >= peer.ping_sent_at:
                due = peer.next_ping_at  # heard from since the last ping; its deadline is later still
            else:
                due = min(peer.next_ping_at, deadline)
            self._schedule(peer, due)

    def revive(self, peer: Peer[T], now: float) -> None:
        """Watch again a peer that ``tick`` reported dead but that turned out to have spoken.

        After the event loop stalls, frames that arrived in time can still be
        unread when the tick runs; the caller sees input waiting and revives the
        peer, so that the loop reads it before the next tick judges again.
        """
        if peer.monitored:
            return
        peer.monitored = True
        self.peers += 1
        self._schedule(peer, max(now, min(peer.next_ping_at, peer.last_seen + self.dead_after_s)))

    def next_event_at(self) -> float | None:
        """When the earliest pending event is due (for tests and status pages)."""
        for slot in sorted(self._wheel):
            dues = [peer.due for peer in self._wheel[slot] if peer.monitored]
            if dues:
                return min(dues)
        return None
