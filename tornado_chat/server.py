"""The composition root: one chat server's parts, its two listeners, and its life cycle.

``ChatServer`` builds the hub, the chat service, the account service, the
heartbeat and the metrics, wires them to each other through the small
protocols they declare, and serves them: the chat listener (the page, the
HTTP API, ``/ws``) and the ops listener (metrics, probes, status page). It
holds no chat logic of its own.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable, Mapping

import tornado.ioloop
import tornado.netutil
import tornado.web
from prometheus_client import CollectorRegistry

from . import handlers, http_handlers, liveness
from .accept import GuardedHTTPServer
from .account_service import AccountService
from .admission import Admission, Admitted, Handshake, Refusal
from .assets import Assets
from .background import BackgroundTasks
from .heartbeat import HeartbeatMonitor
from .http_sessions import HttpSessions
from .hub import Hub
from .inflight import InFlight
from .liveness import Liveness, Report
from .metrics import ChatMetrics
from .ops import allowed_hosts, make_ops_app
from .protocol import History
from .service import ChatService
from .session import Session
from .settings import Settings
from .static_files import static_dir
from .status import SessionLike
from .store import Store, StoreError
from .tokens import TokenSigner
from .websocket import ChatSocketHandler

log = logging.getLogger("tornado_chat.server")

# On shutdown, how long clients get to complete the close handshake before they are cut off.
CLOSE_HANDSHAKE_WAIT_S = 3.0
# How often account changes made by other processes (the admin CLI) are picked up.
AUTH_SYNC_INTERVAL_S = 1.0

# History requests over HTTP that may wait behind the one running for the same login session (several tabs).
HTTP_HISTORY_WAITING = 2

STARTING = "starting"
READY = "ready"
STOPPING = "stopping"


class ChatServer:
    """One chat server (see the module docstring). ``listen`` on the loop that will run it, ``stop`` to end."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        secret: bytes,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.monotonic = monotonic
        self.ssl_context = ssl_context
        self.state = STARTING
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = ChatMetrics(
            self.registry,
            self.scrape_state,
            settings.ping_interval_s + settings.ping_timeout_s,
            read_connections=self.connections_by_transport,
        )
        self.hub = Hub()
        self.tasks = BackgroundTasks()
        self.heartbeat: HeartbeatMonitor[Session] = HeartbeatMonitor(
            settings.ping_interval_s, settings.ping_timeout_s, resolution_s=settings.heartbeat_tick_s
        )
        self.chat = ChatService(
            settings, self.hub, store, self.heartbeat, self.metrics, self.tasks, self, clock, monotonic
        )
        self.accounts = AccountService(settings, store, TokenSigner(secret), self.chat, clock, monotonic)
        self.admission = Admission(settings, self.accounts, self.chat, lambda: self.state == READY)
        self.liveness = Liveness(settings, self.heartbeat, self.metrics, self.chat, clock, monotonic)
        # Sessions carried over plain HTTP (event streams, long polls) where a WebSocket cannot go.
        self.http_sessions = HttpSessions(settings, self.admission, self.accounts, self.chat, self.metrics, monotonic)
        self.assets = Assets(static_dir())
        self.http_history = InFlight(waiting=HTTP_HISTORY_WAITING)
        self.auth_sync_timer = tornado.ioloop.PeriodicCallback(self._sync_accounts, AUTH_SYNC_INTERVAL_S * 1000)
        self._syncing = False
        self._http: GuardedHTTPServer | None = None
        self._ops_http: GuardedHTTPServer | None = None
        self.chat_port = 0
        self.ops_port = 0

    # ------------------------------------------------------------ life cycle

    def restore(self) -> None:
        """Load users, rooms and memberships from the store into the hub."""
        self.store.observer = self.metrics
        snapshot = self.store.load()
        self.accounts.restore(snapshot)
        hub = self.hub
        hub.last_seq = snapshot.last_seq
        for name, offline_since in snapshot.users.items():
            hub.add_user(name).offline_since_seq = offline_since
        # Rooms exist through their members: a room without members was deleted (with its roles and bans).
        for user, room in snapshot.memberships:
            hub.restore_membership(user, room)
        for a, b in snapshot.contacts:
            hub.restore_contact(a, b)
        moderation = snapshot.moderation
        for settings in moderation.rooms:
            hub.restore_room_state(settings.room, settings.private, settings.topic, settings.first_seq)
        for role in moderation.roles:
            hub.restore_role(role.room, role.user, role.role or "")
        for room, user in moderation.bans:
            hub.restore_ban(room, user)
        hub.admins = set(moderation.admins)
        for members in snapshot.groups:
            hub.restore_group(members)
        self.chat.read_state.restore(snapshot)

    def make_app(self) -> tornado.web.Application:
        args = {"server": self}
        http_args = {"sessions": self.http_sessions}
        return tornado.web.Application(
            [
                (r"/", handlers.PageHandler, args),
                (r"/static/(.+)", handlers.AssetHandler, args),
                (r"/ws", ChatSocketHandler, {"gate": self, "sink": self.chat}),
                (r"/api/config", handlers.ConfigHandler, args),
                (r"/api/register", handlers.RegisterHandler, args),
                (r"/api/login", handlers.LoginHandler, args),
                (r"/api/logout", handlers.LogoutHandler, args),
                (r"/api/password", handlers.PasswordHandler, args),
                (r"/api/me", handlers.MeHandler, args),
                (r"/api/session", handlers.SessionHandler, args),
                (r"/api/history", handlers.HistoryHandler, args),
                (r"/events", http_handlers.EventStreamHandler, http_args),
                (r"/poll", http_handlers.PollHandler, http_args),
                (r"/api/frames", http_handlers.FramesHandler, http_args),
                (r"/api/.*", handlers.ApiNotFoundHandler, args),
            ],
            default_handler_class=handlers.ApiNotFoundHandler,
            default_handler_args=args,
            cross_origin_protection=True,
            trusted_origins=[o for o in self.settings.allowed_origins if o != "*"],
            log_function=_log_request,
        )

    def listen(self) -> None:
        """Restore state, start the timers, and accept connections on both listeners (on the serving loop)."""
        self.restore()
        settings = self.settings
        accept_failed = self.metrics.accept_errors.inc
        ops_sockets = tornado.netutil.bind_sockets(settings.ops_port, settings.ops_address, family=socket.AF_INET)
        ops_app = make_ops_app(self, allowed_hosts(settings.ops_address, settings.ops_allowed_hosts))
        self._ops_http = GuardedHTTPServer(
            ops_app, idle_connection_timeout=settings.idle_timeout_s, body_timeout=settings.body_timeout_s
        )
        self._ops_http.add_guarded_sockets(ops_sockets, accept_failed)
        self.ops_port = ops_sockets[0].getsockname()[1]
        sockets = tornado.netutil.bind_sockets(settings.port, settings.address, family=socket.AF_INET)
        # The header timeout is the idle timeout: a client that sends its headers a byte at a time is idle too.
        self._http = GuardedHTTPServer(
            self.make_app(),
            xheaders=settings.trust_proxy_headers,
            ssl_options=self.ssl_context,
            idle_connection_timeout=settings.idle_timeout_s,
            body_timeout=settings.body_timeout_s,
            max_body_size=settings.max_body_bytes,
        )
        self._http.add_guarded_sockets(sockets, accept_failed)
        self.chat_port = sockets[0].getsockname()[1]
        self.liveness.start()
        self.auth_sync_timer.start()
        self.state = READY

    async def stop(self) -> None:
        """Graceful shutdown: refuse new connections, tell every client to come back later, commit, close.

        ``/readyz`` answers 503 from the first moment. Each client gets close code 1012
        (service restart) with ``{"retry_after_ms": N}`` as the reason, N drawn at random
        up to ``--reconnect-spread`` so that clients do not all return in the same second.
        Then everything queued for the store is committed.
        """
        if self.state == STOPPING:
            return
        self.state = STOPPING
        if self._http is not None:
            self._http.stop()
        wait_s = min(CLOSE_HANDSHAKE_WAIT_S, self.settings.shutdown_timeout_s / 2)
        await self.chat.close_all(self.settings.reconnect_spread_s, wait_s)
        self.liveness.stop()
        self.auth_sync_timer.stop()
        self.tasks.cancel_all()
        self.accounts.close()
        await self.store.close()
        if self._ops_http is not None:
            self._ops_http.stop()

    def _sync_accounts(self) -> None:
        if not self._syncing:
            self._syncing = True
            self.tasks.spawn(self._sync_accounts_once())

    async def _sync_accounts_once(self) -> None:
        try:
            await self.accounts.sync()
        except StoreError:
            log.warning("could not read account changes; will retry")
        finally:
            self._syncing = False

    def account_name(self, name: str) -> str | None:
        """The account a name means in any case (moderation.AccountControl), as a login finds it."""
        account = self.accounts.accounts.find(name)
        return account.name if account is not None else None

    async def disable_account(self, name: str, actor: str) -> bool:
        """An admin's ``disable`` frame (moderation.AccountControl)."""
        return await self.accounts.disable(name, actor)

    # ------------------------------------------------------------ the WebSocket gate (websocket.Gate)

    def admit(self, handshake: Handshake) -> Refusal | Admitted:
        return self.admission.admit(handshake)

    def origin_allowed(self, origin: str) -> bool:
        return self.admission.origin_allowed(origin)

    def refused(self, code: str) -> None:
        self.metrics.handshakes_rejected[code].inc()

    @property
    def compression(self) -> bool:
        return self.settings.compression == "on"

    @property
    def max_message_bytes(self) -> int:
        return self.settings.max_message_bytes

    @property
    def max_buffered_bytes(self) -> int:
        return self.settings.max_buffered_bytes

    # ------------------------------------------------------------ the HTTP API (handlers.ApiBackend)

    def count_auth_refusal(self, code: str) -> None:
        counter = self.metrics.auth_refused.get(code)
        if counter is not None:
            counter.inc()

    def count_http_refusal(self, code: str) -> None:
        counter = self.metrics.http_refused.get(code)
        if counter is not None:
            counter.inc()

    async def history_page(self, viewer: str, client: str, request: History) -> bytes:
        await self.http_history.enter(client)
        try:
            return await self.chat.history_page(viewer, request)
        finally:
            self.http_history.leave(client)

    # ------------------------------------------------------------ the ops listener (ops.OpsSource)

    @property
    def started_mono(self) -> float:
        return self.liveness.started_mono

    def scrape_state(self) -> Mapping[str, float]:
        """Current-state gauges, read at scrape time."""
        return {
            "chat_connections": len(self.hub.sessions),
            "chat_users_online": self.hub.users_online,
            "chat_rooms": len(self.hub.rooms),
            "chat_heartbeat_monitored": len(self.heartbeat),
            "chat_store_queue_depth": self.store.queue_depth,
            "chat_connections_max": self.settings.max_connections,
        }

    def connections_by_transport(self) -> dict[str, int]:
        """Open sessions by what carries them, counted at scrape time."""
        counts: dict[str, int] = {}
        for session in self.hub.sessions.values():
            kind = session.transport.kind
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def health(self) -> Report:
        return self.liveness.health(len(self.hub.sessions))

    def readiness(self) -> Report:
        return liveness.readiness(self.state, self.store.healthy)

    def status_sessions(self) -> list[SessionLike]:
        return list(self.hub.sessions.values())

    def totals(self) -> tuple[float, float]:
        tallies = self.metrics.tallies
        return sum(tallies.messages.values()), tallies.deliveries


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """One access-log line per request, without the query string (it can carry a token)."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    request = handler.request
    log.log(
        level,
        "%s %s %d",
        request.method,
        request.path,
        status,
        extra={"duration_ms": round(1000 * request.request_time(), 1), "remote": request.remote_ip},
    )
