"""Every Prometheus metric the server exports, declared here and nowhere else.

Naming: ``chat_<noun>[_<verb>]_<unit>``, following
https://prometheus.io/docs/practices/naming/ : counters end in ``_total``
(prometheus_client adds it), durations are histograms in ``_seconds``, sizes
in ``_bytes``. Every label takes values from a fixed list, declared below and
pre-initialised, so a series exists (at zero) before its first event and
dashboards and alerts never see gaps; no label value ever comes from a client.

Gauges that describe current state (connections, users online, rooms, store
queue depth) are not kept up to date by the code that changes that state:
``StateCollector`` reads them from the server at scrape time, so they cannot
drift from the truth.

The counters bumped for every frame and every delivery (``Tallies``) are plain
integers, read by ``TallyCollector`` at scrape time: prometheus_client's
counters take a lock on every increment, which the hot path would pay once per
frame. They are only touched from the event loop, which also serves scrapes.

Everything is registered on the ``CollectorRegistry`` passed in, never on the
global default registry, so several servers (as in the tests) can run in one
process.
"""

from __future__ import annotations

import bisect
import itertools
import platform
from collections.abc import Callable, Iterable, Mapping

import tornado
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from . import __version__
from .protocol import CLIENT_FRAME_TYPES, ErrorCode
from .session import CLOSE_REASONS

# What carries a session (``session.Transport.kind``): a WebSocket, an event stream, long polls.
TRANSPORTS = ("websocket", "sse", "poll")
# Why an HTTP request was refused before it was served: an API request, a request about an HTTP-transport
# session (a poll, a POST of frames), a request to the ops listener. Account refusals are counted apart
# (AUTH_REFUSALS).
HTTP_REFUSALS = (
    "no_token",
    "bad_token",
    "bad_signature",
    "expired_token",
    "revoked_token",
    "unknown_session",
    "session_closed",
    "bad_request",
    "bad_json",
    "bad_cursor",
    "too_large",
    "unsupported_media_type",
    "busy",
    "bad_host",
)
# Why a WebSocket handshake was refused before the upgrade.
HANDSHAKE_REJECT_REASONS = (
    "no_token",
    "bad_token",
    "bad_signature",
    "expired_token",
    "revoked_token",
    "bad_since",
    "bad_handshake",
    "origin",
    "too_many_connections",
    "too_many_for_user",
    "shutting_down",
)
# Frame types as counted: the client frame types, plus frames that could not be parsed at all.
FRAME_TYPE_LABELS = (*CLIENT_FRAME_TYPES, "invalid")
MESSAGE_KINDS = ("direct", "group", "room")
# Why an account request (register, login, logout, password change) was refused.
AUTH_REFUSALS = (
    "bad_username",
    "bad_password",
    "bad_credentials",
    "too_many_attempts",
    "username_taken",
    "registration_closed",
    "password_required",
    "no_password",
    "unavailable",
    "account_disabled",
    "busy",
)
# Moderation actions, as the audit log names them (room_admin, moderation).
MODERATION_ACTIONS = ("invite", "kick", "ban", "unban", "topic", "promote", "demote", "transfer", "delete", "disable")
ERROR_CODES = tuple(code.value for code in ErrorCode)

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
RTT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TICK_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LOOP_LAG_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Detection time is judged against the configured deadline (ping interval + timeout),
# so its buckets are fractions and multiples of that deadline.
DETECTION_BUCKET_FRACTIONS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.02, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0)
# Gauges read from the server at scrape time: (name, help). ``chat_connections`` (by transport) is read apart.
STATE_GAUGES = (
    ("chat_users_online", "Users with at least one open session."),
    ("chat_rooms", "Rooms that exist."),
    ("chat_heartbeat_monitored", "Connections the heartbeat is watching."),
    ("chat_store_queue_depth", "Store writes waiting for their transaction."),
    ("chat_connections_max", "Most connections (sessions, any transport) the server accepts (--max-connections)."),
)
COMMIT_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


CONNECTIONS_HELP = "Open connections (sessions), by transport."


class StateCollector(Collector):
    """Gauges read from live server state at scrape time."""

    def __init__(
        self, read_state: Callable[[], Mapping[str, float]], read_connections: Callable[[], Mapping[str, int]]
    ) -> None:
        self._read_state = read_state
        self._read_connections = read_connections

    def describe(self) -> Iterable[Metric]:
        return [
            GaugeMetricFamily("chat_connections", CONNECTIONS_HELP, labels=["transport"]),
            *(GaugeMetricFamily(name, text) for name, text in STATE_GAUGES),
        ]

    def collect(self) -> Iterable[Metric]:
        connections = GaugeMetricFamily("chat_connections", CONNECTIONS_HELP, labels=["transport"])
        counts = self._read_connections()
        for kind in TRANSPORTS:
            connections.add_metric([kind], counts.get(kind, 0))
        yield connections
        state = self._read_state()
        for name, text in STATE_GAUGES:
            yield GaugeMetricFamily(name, text, value=state[name])


class FastHistogram:
    """A histogram for the event loop's hot path: plain counts per bucket, exported at scrape time.

    prometheus_client's Histogram takes a lock for its sum and for a bucket on every
    observation, several times what this costs; only the event loop observes these.
    """

    __slots__ = ("name", "help", "bounds", "counts", "sum")

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self.name = name
        self.help = help_text
        self.bounds = (*buckets, float("inf"))
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self) -> HistogramMetricFamily:
        cumulative = list(itertools.accumulate(self.counts))
        buckets = [
            ("+Inf" if bound == float("inf") else str(bound), count)
            for bound, count in zip(self.bounds, cumulative, strict=True)
        ]
        return HistogramMetricFamily(self.name, self.help, buckets=buckets, sum_value=self.sum)


class Tallies:
    """Hot-path counters, as plain integers; exported as counters by ``TallyCollector``."""

    __slots__ = (
        "frames_received",
        "messages",
        "deliveries",
        "received_bytes",
        "sent_bytes",
        "fanout_seconds",
        "heartbeat_pongs",
        "heartbeat_rtt_seconds",
    )

    def __init__(self) -> None:
        self.frames_received = dict.fromkeys(FRAME_TYPE_LABELS, 0)
        self.messages = dict.fromkeys(MESSAGE_KINDS, 0)
        self.deliveries = 0
        self.received_bytes = 0
        self.sent_bytes = 0
        self.fanout_seconds = FastHistogram(
            "chat_fanout_seconds",
            "From a send frame received to its ack and every recipient's write issued (includes storing it).",
            LATENCY_BUCKETS_S,
        )
        self.heartbeat_pongs = 0
        self.heartbeat_rtt_seconds = FastHistogram(
            "chat_heartbeat_rtt_seconds", "Round trip from a heartbeat ping to its pong.", RTT_BUCKETS_S
        )


class TallyCollector(Collector):
    """Exports ``Tallies`` as counters (prometheus_client adds ``_total``)."""

    def __init__(self, tallies: Tallies) -> None:
        self.tallies = tallies

    def describe(self) -> Iterable[Metric]:
        return list(self.collect())

    def collect(self) -> Iterable[Metric]:
        tallies = self.tallies
        frames = CounterMetricFamily(
            "chat_frames_received", "Frames received from clients, by frame type.", labels=["type"]
        )
        for kind, value in tallies.frames_received.items():
            frames.add_metric([kind], value)
        yield frames
        messages = CounterMetricFamily("chat_messages", "Chat messages stored and delivered, by kind.", labels=["kind"])
        for kind, value in tallies.messages.items():
            messages.add_metric([kind], value)
        yield messages
        yield CounterMetricFamily(
            "chat_deliveries", "Message frames written to recipient sessions.", value=tallies.deliveries
        )
        received = tallies.received_bytes
        yield CounterMetricFamily(
            "chat_received_bytes", "Bytes of WebSocket messages received (payload, UTF-8).", value=received
        )
        yield CounterMetricFamily(
            "chat_sent_bytes", "Bytes of WebSocket frames written to clients (with framing).", value=tallies.sent_bytes
        )
        yield tallies.fanout_seconds.family()
        yield CounterMetricFamily(
            "chat_heartbeat_pongs",
            "Pong frames that answered the heartbeat's latest ping.",
            value=tallies.heartbeat_pongs,
        )
        yield tallies.heartbeat_rtt_seconds.family()


class ChatMetrics:
    """The server's metrics on one registry. ``read_state`` supplies the scrape-time gauges, and
    ``read_connections`` the open sessions by transport."""

    def __init__(
        self,
        registry: CollectorRegistry,
        read_state: Callable[[], Mapping[str, float]],
        dead_after_s: float,
        *,
        process_metrics: bool = True,
        read_connections: Callable[[], Mapping[str, int]] = dict,
    ) -> None:
        self.registry = registry
        registry.register(StateCollector(read_state, read_connections))
        if process_metrics:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)

        build = Gauge(
            "chat_build_info",
            "Version of this server and of what it runs on (always 1).",
            ["version", "python", "tornado"],
            registry=registry,
        )
        build.labels(__version__, platform.python_version(), tornado.version).set(1)

        # Connections and handshakes.
        opened = Counter(
            "chat_connections_opened",
            "Connections (sessions) accepted, by transport.",
            ["transport"],
            registry=registry,
        )
        self.connections_opened = {kind: opened.labels(kind) for kind in TRANSPORTS}
        closed = Counter(
            "chat_connections_closed",
            "Connections (sessions) ended, by why they ended and by transport.",
            ["reason", "transport"],
            registry=registry,
        )
        self.connections_closed = {
            (reason, kind): closed.labels(reason, kind) for reason in CLOSE_REASONS for kind in TRANSPORTS
        }
        rejected = Counter(
            "chat_handshakes_rejected",
            "Sessions refused before they opened (WebSocket upgrades, event streams, first polls), by why.",
            ["reason"],
            registry=registry,
        )
        self.handshakes_rejected = {reason: rejected.labels(reason) for reason in HANDSHAKE_REJECT_REASONS}
        self.accept_errors = Counter(
            "chat_accept_errors",
            "Connections that could not be accepted (out of file descriptors or memory); accepts then back off.",
            registry=registry,
        )

        refused = Counter(
            "chat_auth_refused",
            "Account requests (register, login, logout, password change) refused, by why.",
            ["code"],
            registry=registry,
        )
        self.auth_refused = {code: refused.labels(code) for code in AUTH_REFUSALS}
        http_refused = Counter(
            "chat_http_refused",
            "HTTP requests refused before they were served (API, HTTP-transport sessions, ops listener), by error"
            " code; account refusals are counted in chat_auth_refused.",
            ["code"],
            registry=registry,
        )
        self.http_refused = {code: http_refused.labels(code) for code in HTTP_REFUSALS}

        # Traffic.
        self.tallies = Tallies()
        registry.register(TallyCollector(self.tallies))
        errors = Counter("chat_errors", "Error frames sent to clients, by error code.", ["code"], registry=registry)
        self.errors = {code: errors.labels(code) for code in ERROR_CODES}
        moderation = Counter(
            "chat_moderation_actions",
            "Moderation actions carried out (room roles, invites, kicks, bans, topics, deletes of others' "
            "messages, accounts disabled), by action.",
            ["action"],
            registry=registry,
        )
        self.moderation_actions = {action: moderation.labels(action) for action in MODERATION_ACTIONS}
        self.search_seconds = Histogram(
            "chat_search_seconds",
            "Time the store took to answer a search frame.",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )

        # Heartbeat.
        self.heartbeat_pings = Counter(
            "chat_heartbeat_pings",
            "Pings sent by the heartbeat (WebSocket ping frames, event-stream comment lines).",
            registry=registry,
        )
        self.heartbeat_reaped = Counter(
            "chat_heartbeat_reaped", "Connections closed by the heartbeat for silence.", registry=registry
        )
        self.heartbeat_detection_seconds = Histogram(
            "chat_heartbeat_detection_seconds",
            "How long a reaped connection had been silent: last sign of life to reap.",
            buckets=tuple(round(f * dead_after_s, 6) for f in DETECTION_BUCKET_FRACTIONS),
            registry=registry,
        )
        self.heartbeat_tick_seconds = Histogram(
            "chat_heartbeat_tick_seconds",
            "Time one heartbeat tick took (sending due pings, reaping dead connections).",
            buckets=TICK_BUCKETS_S,
            registry=registry,
        )
        self.heartbeat_last_tick = Gauge(
            "chat_heartbeat_last_tick_timestamp_seconds",
            "Unix time of the last heartbeat tick.",
            registry=registry,
        )
        self.event_loop_lag_seconds = Histogram(
            "chat_event_loop_lag_seconds",
            "How late a probe timer ran on the event loop (scheduling delay).",
            buckets=LOOP_LAG_BUCKETS_S,
            registry=registry,
        )

        # Store.
        self.store_commit_seconds = Histogram(
            "chat_store_commit_seconds",
            "Time to apply and commit one store transaction (fsync included).",
            buckets=COMMIT_BUCKETS_S,
            registry=registry,
        )
        self.store_batch_size = Histogram(
            "chat_store_batch_size",
            "Writes committed together in one store transaction (group commit).",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.store_errors = Counter(
            "chat_store_errors", "Store transactions that failed (nothing in them was acked).", registry=registry
        )

    def store_committed(self, seconds: float, batch_size: int) -> None:
        """A store transaction committed (called from the store's writer thread)."""
        self.store_commit_seconds.observe(seconds)
        self.store_batch_size.observe(batch_size)

    def store_failed(self) -> None:
        self.store_errors.inc()
