"""The live status page of the ops listener: counts, recent rates, and the connections worth a look.

``GET /status`` is an HTML page (with ``/status.js`` and ``/status.css``, shipped as
package data in ``tornado_chat/ops_status/``) that fetches ``GET /status.json``
every 2 seconds and renders it. ``build_status`` is the pure part: it turns the
server's state into that JSON and takes ``now`` (monotonic seconds), so it is
unit-tested with a fake clock and fake sessions. ``StatusPage`` reads a
``StatusSource``, a small protocol the server implements.

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
from typing import Any, Protocol

from . import __version__

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


class TransportLike(Protocol):
    @property
    def remote_ip(self) -> str: ...

    @property
    def buffered_bytes(self) -> int: ...


class SessionLike(Protocol):
    """What the status page reads of a ``session.Session``."""

    @property
    def user(self) -> UserLike: ...

    @property
    def peer(self) -> PeerLike | None: ...

    @property
    def transport(self) -> TransportLike: ...

    @property
    def opened_at(self) -> float: ...

    @property
    def held_bytes(self) -> int: ...


class StatusSource(Protocol):
    """What the status page reads of a running server."""

    @property
    def started_mono(self) -> float: ...

    @property
    def state(self) -> str: ...

    def monotonic(self) -> float: ...

    def scrape_state(self) -> Mapping[str, float]:
        """The current-state gauges, by metric name (``metrics.STATE_GAUGES``)."""
        ...

    def status_sessions(self) -> list[SessionLike]: ...

    def totals(self) -> tuple[float, float]:
        """Messages stored and deliveries made since start."""
        ...


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


def _rtt(session: SessionLike) -> float:
    peer = session.peer
    rtt = peer.rtt_s if peer is not None else None
    return -1.0 if rtt is None else rtt


def _silent_for(now: float) -> Callable[[SessionLike], float]:
    def silent(session: SessionLike) -> float:
        peer = session.peer
        return -1.0 if peer is None else now - peer.last_seen

    return silent


def _buffered(session: SessionLike) -> int:
    """Bytes waiting for the client: queued in its transport, and held behind a running replay."""
    return session.transport.buffered_bytes + session.held_bytes


def session_row(session: SessionLike, now: float) -> dict[str, Any]:
    """One table row: who, from where, for how long, in how many rooms, and the three measures."""
    peer = session.peer
    return {
        "user": session.user.name,
        "address": session.transport.remote_ip,
        "age_s": round(max(0.0, now - session.opened_at), 1),
        "rooms": len(session.user.rooms),
        "rtt_s": None if peer is None or peer.rtt_s is None else round(peer.rtt_s, 6),
        "silent_s": None if peer is None else round(max(0.0, now - peer.last_seen), 1),
        "buffered": _buffered(session),
    }


def build_status(
    *,
    now: float,
    counts: Mapping[str, float],
    sessions: Iterable[SessionLike],
    samples: Sequence[Sample],
    uptime_s: float,
    state: str,
    top: int = TOP,
) -> dict[str, Any]:
    """The body of ``/status.json``; ``now`` and every time in the sessions are monotonic seconds."""
    everyone = sessions if isinstance(sessions, list) else list(sessions)
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
            "rtt": [session_row(s, now) for s in by_rtt if _rtt(s) >= 0],
            "silence": [session_row(s, now) for s in by_silence],
            "buffered": [session_row(s, now) for s in by_buffered],
        },
    }


def load_assets() -> dict[str, tuple[bytes, str]]:
    """The page's files, read once from the package (works from a checkout and from an installed wheel)."""
    folder = resources.files(__package__ or "tornado_chat").joinpath("ops_status")
    return {path: (folder.joinpath(name).read_bytes(), kind) for path, (name, kind) in ASSETS.items()}


class StatusPage:
    """The state behind ``/status.json`` for one server: its ring of rate samples."""

    def __init__(self, source: StatusSource) -> None:
        self.source = source
        self.ring = SampleRing()
        self.sample()

    def sample(self) -> Sample:
        """Counter totals now; kept in the ring unless the last kept sample is very recent."""
        messages, deliveries = self.source.totals()
        current = Sample(self.source.monotonic(), messages, deliveries)
        self.ring.add(current)
        return current

    def snapshot(self) -> dict[str, Any]:
        source = self.source
        earlier = list(self.ring.samples)
        current = self.sample()
        now = current.at
        return build_status(
            now=now,
            counts=source.scrape_state(),
            sessions=source.status_sessions(),
            samples=[*earlier, current],
            uptime_s=now - source.started_mono,
            state=source.state,
        )
