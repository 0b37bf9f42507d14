"""The live status page of the ops listener: counts, recent rates, and the connections worth a look.

``GET /status`` is an HTML page (with ``/status.js`` and ``/status.css``, shipped as
package data in ``tornado_chat/ops_status/``) that fetches ``GET /status.json``
every 2 seconds and renders it. ``build_status`` is the pure part: it turns the
server's state into that JSON and takes ``now`` (monotonic seconds), so it is
unit-tested with a fake clock and fake connections.

Cost: the three tables are three ``heapq.nlargest`` passes, O(n log k) for n
connections and the top k (20), with no sort and no dict per connection; only
the rows shown are built. Rates come from a small ring of counter samples taken
when the page asks, so a server nobody watches pays nothing.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol

from . import __version__

if TYPE_CHECKING:
    from .server import ChatServer

# Rows per table.
TOP = 20
# Rates are computed over about this many seconds of samples...
RATE_WINDOW_S = 10.0
# ...and not at all when the newest two samples are further apart than this (nobody was watching).
RATE_MAX_SPAN_S = 60.0
# Samples closer together than this are not kept (several viewers polling at once).
MIN_SAMPLE_GAP_S = 0.5
RING_SIZE = 32
# The status page's files, served from the ops listener: URL path -> (file, content type).
ASSETS = {
    "/status": ("status.html", "text/html; charset=utf-8"),
    "/status.js": ("status.js", "text/javascript; charset=utf-8"),
    "/status.css": ("status.css", "text/css; charset=utf-8"),
    "/status.svg": ("status.svg", "image/svg+xml"),
}
# Same-origin script, style and fetch only; no inline code, no framing, no forms.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class PeerLike(Protocol):
    @property
    def last_seen(self) -> float: ...

    @property
    def rtt_s(self) -> float | None: ...


class UserLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def rooms(self) -> set[str]: ...


class SessionLike(Protocol):
    @property
    def user(self) -> UserLike: ...


class ConnectionLike(Protocol):
    """What the status page reads of ``server.Connection``."""

    @property
    def session(self) -> SessionLike | None: ...

    @property
    def peer(self) -> PeerLike | None: ...

    @property
    def remote_ip(self) -> str: ...

    @property
    def opened_at(self) -> float: ...

    @property
    def buffered(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Sample:
    """Counter totals at one moment (monotonic seconds)."""

    at: float
    messages: float
    deliveries: float


class SampleRing:
    """The last few samples, at least ``min_gap_s`` apart."""

    def __init__(self, size: int = RING_SIZE, min_gap_s: float = MIN_SAMPLE_GAP_S) -> None:
        self.samples: deque[Sample] = deque(maxlen=size)
        self.min_gap_s = min_gap_s

    def add(self, sample: Sample) -> None:
        if self.samples and sample.at - self.samples[-1].at < self.min_gap_s:
            return
        self.samples.append(sample)


def rates(samples: Sequence[Sample], now: float, window_s: float = RATE_WINDOW_S) -> dict[str, float | None]:
    """Messages and deliveries per second from the newest sample back to one about ``window_s`` older.

    The newest sample is the last (normally taken just now). The base is the oldest
    earlier sample within the window, or else the one just before the newest, unless
    that is more than ``RATE_MAX_SPAN_S`` older: then nobody was watching and the rates
    are unknown (None), rather than an average over a long quiet time.
    """
    unknown: dict[str, float | None] = {"messages_per_s": None, "deliveries_per_s": None, "window_s": None}
    if len(samples) < 2 or now - samples[-1].at > RATE_MAX_SPAN_S:
        return unknown
    *earlier, newest = samples
    base = next((sample for sample in earlier if newest.at - sample.at <= window_s), earlier[-1])
    span = newest.at - base.at
    if span <= 0 or span > RATE_MAX_SPAN_S:
        return unknown
    return {
        "messages_per_s": round(max(0.0, newest.messages - base.messages) / span, 3),
        "deliveries_per_s": round(max(0.0, newest.deliveries - base.deliveries) / span, 3),
        "window_s": round(span, 6),
    }


def _rtt(connection: ConnectionLike) -> float:
    peer = connection.peer
    rtt = peer.rtt_s if peer is not None else None
    return -1.0 if rtt is None else rtt


def _silent_for(now: float) -> Callable[[ConnectionLike], float]:
    def silent(connection: ConnectionLike) -> float:
        peer = connection.peer
        return -1.0 if peer is None else now - peer.last_seen

    return silent


def _buffered(connection: ConnectionLike) -> int:
    return connection.buffered


def connection_row(connection: ConnectionLike, now: float) -> dict[str, Any]:
    """One table row: who, from where, for how long, in how many rooms, and the three measures."""
    session = connection.session
    peer = connection.peer
    return {
        "user": session.user.name if session is not None else None,
        "address": connection.remote_ip,
        "age_s": round(max(0.0, now - connection.opened_at), 1),
        "rooms": len(session.user.rooms) if session is not None else 0,
        "rtt_s": None if peer is None or peer.rtt_s is None else round(peer.rtt_s, 6),
        "silent_s": None if peer is None else round(max(0.0, now - peer.last_seen), 1),
        "buffered": connection.buffered,
    }


def build_status(
    *,
    now: float,
    counts: Mapping[str, float],
    connections: Iterable[ConnectionLike],
    samples: Sequence[Sample],
    uptime_s: float,
    state: str,
    top: int = TOP,
) -> dict[str, Any]:
    """The body of ``/status.json``; ``now`` and every time in the connections are monotonic seconds."""
    everyone = connections if isinstance(connections, list) else list(connections)
    by_rtt = heapq.nlargest(top, everyone, key=_rtt)
    by_silence = heapq.nlargest(top, everyone, key=_silent_for(now))
    by_buffered = heapq.nlargest(top, everyone, key=_buffered)
    return {
        "version": __version__,
        "state": state,
        "uptime_s": round(uptime_s, 1),
        "counts": {
            "connections": int(counts["chat_connections"]),
            "users_online": int(counts["chat_users_online"]),
            "rooms": int(counts["chat_rooms"]),
            "heartbeat_monitored": int(counts["chat_heartbeat_monitored"]),
            "store_queue_depth": int(counts["chat_store_queue_depth"]),
            "connections_max": int(counts["chat_connections_max"]),
        },
        "rates": rates(samples, now),
        "top": top,
        "tables": {
            "rtt": [connection_row(c, now) for c in by_rtt if _rtt(c) >= 0],
            "silence": [connection_row(c, now) for c in by_silence],
            "buffered": [connection_row(c, now) for c in by_buffered],
        },
    }


def load_assets() -> dict[str, tuple[bytes, str]]:
    """The page's files, read once from the package (works from a checkout and from an installed wheel)."""
    folder = resources.files(__package__ or "tornado_chat").joinpath("ops_status")
    return {path: (folder.joinpath(name).read_bytes(), kind) for path, (name, kind) in ASSETS.items()}


class StatusPage:
    """The state behind ``/status.json`` for one server: its ring of rate samples."""

    def __init__(self, server: ChatServer) -> None:
        self.server = server
        self.ring = SampleRing()
        self.sample()

    def sample(self) -> Sample:
        """Counter totals now; kept in the ring unless the last kept sample is very recent."""
        tallies = self.server.metrics.tallies
        current = Sample(self.server.monotonic(), sum(tallies.messages.values()), tallies.deliveries)
        self.ring.add(current)
        return current

    def snapshot(self) -> dict[str, Any]:
        server = self.server
        earlier = list(self.ring.samples)
        current = self.sample()
        now = current.at
        return build_status(
            now=now,
            counts=server.scrape_state(),
            connections=[session.transport for session in server.hub.sessions.values()],
            samples=[*earlier, current],
            uptime_s=now - server.started_mono,
            state=server.state,
        )
