"""The Tornado layer: the one application object, and the network side of each connection.

``ChatServer`` owns the hub, the store, the identity service, the heartbeat
and the metrics; every handler (``handlers.py``) gets it through
``initialize`` and only translates socket and HTTP events into its calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

import tornado.httpserver
import tornado.httputil
import tornado.ioloop
import tornado.netutil
import tornado.web
from prometheus_client import CollectorRegistry
from tornado.iostream import IOStream, StreamClosedError

from . import __version__, handlers, protocol, wsproto
from .assets import Assets
from .auth import Claims, TokenSigner
from .connection import RECV_BYTES, Connection
from .heartbeat import HeartbeatMonitor, Peer
from .hub import Delivery, Hub, Session
from .identity import ACCOUNT_REMOVED, Identity
from .limits import TokenBucket
from .metrics import ChatMetrics
from .ops import make_ops_app
from .protocol import ErrorCode, FrameId, ProtocolError
from .settings import Settings
from .static_files import static_dir
from .store import AppendResult, Draft, Store, StoreError

log = logging.getLogger("tornado_chat.server")

# On shutdown, how long clients get to complete the close handshake before they are cut off.
CLOSE_HANDSHAKE_WAIT_S = 3.0
# How often account changes made by other processes (the admin CLI) are picked up.
AUTH_SYNC_INTERVAL_S = 1.0
# Ping frames written in one go before the heartbeat lets other callbacks run.
PING_WRITE_BATCH = 128
# How often the loop-lag probe timer runs; each run observes how late it fired.
LOOP_LAG_PROBE_INTERVAL_S = 0.1
# /healthz fails when the heartbeat has missed this many ticks in a row.
HEALTH_MISSED_TICKS = 3
FRAME_LABELS = {
    protocol.Join: "join",
    protocol.Leave: "leave",
    protocol.Send: "send",
    protocol.Ping: "ping",
    protocol.History: "history",
    protocol.ListRooms: "rooms",
    protocol.Resume: "resume",
}


class ChatServer:
    """One chat server: hub, store and signer, the Tornado application, and its listener."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        secret: bytes,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.monotonic = monotonic
        self.hub = Hub()
        self.identity = Identity(settings, store, TokenSigner(secret), self, clock, monotonic)
        self.assets = Assets(static_dir())
        self.started_mono = monotonic()
        self.state = "starting"
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = ChatMetrics(self.registry, self.scrape_state, settings.ping_interval_s + settings.ping_timeout_s)
        self.heartbeat = HeartbeatMonitor(
            settings.ping_interval_s, settings.ping_timeout_s, resolution_s=settings.heartbeat_tick_s
        )
        self.heartbeat_timer = tornado.ioloop.PeriodicCallback(self.heartbeat_tick, settings.heartbeat_tick_s * 1000)
        self.auth_sync_timer = tornado.ioloop.PeriodicCallback(self._sync_accounts, AUTH_SYNC_INTERVAL_S * 1000)
        self._syncing = False
        self.last_tick_mono = self.started_mono
        self.last_loop_lag_s = 0.0
        self._lag_probe: asyncio.TimerHandle | None = None
        self._drained = asyncio.Event()
        self._rng = random.Random()
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: tornado.httpserver.HTTPServer | None = None
        self._ops_http: tornado.httpserver.HTTPServer | None = None
        self.chat_port = 0
        self.ops_port = 0
        self._dispatch: dict[type, Callable[[Connection, Any], None]] = {
            protocol.Join: self._on_join,
            protocol.Leave: self._on_leave,
            protocol.Ping: self._on_ping,
            protocol.History: self._on_history,
            protocol.ListRooms: self._on_list_rooms,
            protocol.Resume: self._on_resume,
        }

    # ------------------------------------------------------------ life cycle

    def restore(self) -> None:
        """Load users, rooms and memberships from the store into the hub."""
        self.store.observer = self.metrics
        snapshot = self.store.load()
        self.identity.restore(snapshot)
        hub = self.hub
        hub.last_seq = snapshot.last_seq
        for name, offline_since in snapshot.users.items():
            hub.add_user(name).offline_since_seq = offline_since
        for room in snapshot.rooms:
            hub.restore_room(room)
        for user, room in snapshot.memberships:
            hub.restore_membership(user, room)
        for a, b in snapshot.contacts:
            hub.restore_contact(a, b)

    def make_app(self) -> tornado.web.Application:
        args = {"server": self}
        return tornado.web.Application(
            [
                (r"/", handlers.PageHandler, args),
                (r"/static/(.+)", handlers.AssetHandler, args),
                (r"/ws", handlers.ChatSocketHandler, args),
                (r"/api/config", handlers.ConfigHandler, args),
                (r"/api/register", handlers.RegisterHandler, args),
                (r"/api/login", handlers.LoginHandler, args),
                (r"/api/logout", handlers.LogoutHandler, args),
                (r"/api/password", handlers.PasswordHandler, args),
                (r"/api/me", handlers.MeHandler, args),
                (r"/api/history", handlers.HistoryHandler, args),
                (r"/api/.*", handlers.ApiNotFoundHandler, args),
            ],
            default_handler_class=handlers.ApiNotFoundHandler,
            default_handler_args=args,
            cross_origin_protection=True,
            trusted_origins=[o for o in self.settings.allowed_origins if o != "*"],
            log_function=self._log_request,
        )

    def listen(self) -> None:
        """Restore state, start the heartbeat and the loop probe, and accept connections on both listeners.

        Must be called on the event loop that will run the server. The listeners are
        plain TCP: terminate TLS in a reverse proxy (``Connection.write`` sends on the
        raw socket).
        """
        self.restore()
        settings = self.settings
        ops_sockets = tornado.netutil.bind_sockets(settings.ops_port, settings.ops_address, family=socket.AF_INET)
        self._ops_http = tornado.httpserver.HTTPServer(make_ops_app(self))
        self._ops_http.add_sockets(ops_sockets)
        self.ops_port = ops_sockets[0].getsockname()[1]
        sockets = tornado.netutil.bind_sockets(settings.port, settings.address, family=socket.AF_INET)
        self._http = tornado.httpserver.HTTPServer(self.make_app(), xheaders=settings.trust_proxy_headers)
        self._http.add_sockets(sockets)
        self.chat_port = sockets[0].getsockname()[1]
        self.last_tick_mono = self.monotonic()
        self.heartbeat_timer.start()
        self.auth_sync_timer.start()
        self._schedule_lag_probe()
        self.state = "ready"

    async def stop(self) -> None:
        """Graceful shutdown: refuse new connections, tell every client to come back later, commit, close.

        ``/readyz`` answers 503 from the first moment. Each client gets close code 1012
        (service restart) with ``{"retry_after_ms": N}`` as the reason, N drawn at random
        up to ``--reconnect-spread`` so that clients do not all return in the same second.
        Connections that have not finished their close handshake in time are aborted;
        then everything queued for the store is committed.
        """
        if self.state == "stopping":
            return
        self.state = "stopping"
        if self._http is not None:
            self._http.stop()
        spread_ms = self.settings.reconnect_spread_s * 1000
        for session in list(self.hub.sessions.values()):
            hint = protocol.encode({"retry_after_ms": round(self._rng.uniform(0, spread_ms))}).decode()
            session.transport.close(wsproto.CLOSE_SERVICE_RESTART, hint, "shutdown")
        if self.hub.sessions:
            wait_s = min(CLOSE_HANDSHAKE_WAIT_S, self.settings.shutdown_timeout_s / 2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), wait_s)
        for session in list(self.hub.sessions.values()):
            connection: Connection = session.transport
            connection.abort()
        self.heartbeat_timer.stop()
        self.auth_sync_timer.stop()
        if self._lag_probe is not None:
            self._lag_probe.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.store.close()
        if self._ops_http is not None:
            self._ops_http.stop()

    # ------------------------------------------------------------ health

    def scrape_state(self) -> dict[str, float]:
        """Current-state gauges, read at scrape time."""
        return {
            "chat_connections": len(self.hub.sessions),
            "chat_users_online": self.hub.users_online,
            "chat_rooms": len(self.hub.rooms),
            "chat_heartbeat_monitored": len(self.heartbeat),
            "chat_store_queue_depth": self.store.queue_depth,
            "chat_connections_max": self.settings.max_connections,
        }

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Liveness: the heartbeat has ticked recently and the event loop is not lagging."""
        now = self.monotonic()
        tick_age = now - self.last_tick_mono
        problems = []
        if tick_age > HEALTH_MISSED_TICKS * self.settings.heartbeat_tick_s:
            problems.append(f"heartbeat has not ticked for {tick_age:.2f}s")
        if self.last_loop_lag_s > self.settings.loop_lag_unhealthy_s:
            problems.append(f"event loop lag {self.last_loop_lag_s:.3f}s is over {self.settings.loop_lag_unhealthy_s}s")
        body: dict[str, Any] = {
            "status": "ok" if not problems else "unhealthy",
            "uptime_s": round(now - self.started_mono, 3),
            "connections": len(self.hub.sessions),
            "heartbeat_tick_age_s": round(tick_age, 3),
            "loop_lag_s": round(self.last_loop_lag_s, 6),
        }
        if problems:
            body["reasons"] = problems
        return not problems, body

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Readiness: serving, not starting or stopping, and the store can write."""
        problems = []
        if self.state != "ready":
            problems.append(self.state)
        if not self.store.healthy:
            problems.append("store unavailable")
        body: dict[str, Any] = {"status": "ready" if not problems else "not ready", "state": self.state}
        if problems:
            body["reasons"] = problems
        return not problems, body

    def _schedule_lag_probe(self) -> None:
        loop = asyncio.get_running_loop()
        expected = loop.time() + LOOP_LAG_PROBE_INTERVAL_S
        self._lag_probe = loop.call_at(expected, self._lag_probe_fired, loop, expected)

    def _lag_probe_fired(self, loop: asyncio.AbstractEventLoop, expected: float) -> None:
        lag = max(0.0, loop.time() - expected)
        self.last_loop_lag_s = lag
        self.metrics.event_loop_lag_seconds.observe(lag)
        self._schedule_lag_probe()

    # ------------------------------------------------------------ heartbeat

    def heartbeat_tick(self) -> None:
        """One run of the heartbeat timer: ping the connections that are due, reap the silent ones."""
        started = time.perf_counter()
        now = self.monotonic()
        self.last_tick_mono = now
        result = self.heartbeat.tick(now)
        metrics = self.metrics
        if result.pings:
            frame = wsproto.ping_frame(result.ping_payload)
            self._write_pings(frame, result.pings, 0)
            metrics.heartbeat_pings.inc(len(result.pings))
            metrics.tallies.sent_bytes += len(frame) * len(result.pings)
        for peer, _ in result.dead:
            connection: Connection | None = peer.connection
            if connection is None:
                continue  # closed by another path since the tick began
            # After a stall of the loop, pongs that came in time may still be unread: read before judging.
            connection.read_pending()
            if connection.lost or connection.peer is not peer:
                continue  # what it sent ended it (a close frame, a rate-limit cut): nothing to judge
            if now - peer.last_seen < self.heartbeat.dead_after_s:
                self.heartbeat.revive(peer, now)
                continue
            silence = now - peer.last_seen
            user = connection.session.user.name if connection.session else None
            log.info("reaping a silent connection", extra={"user": user, "silent_s": round(silence, 3)})
            connection.close_reason = "reaped"
            self.close_connection(connection)
            connection.abort()
            metrics.heartbeat_reaped.inc()
            metrics.heartbeat_detection_seconds.observe(silence)
        metrics.heartbeat_last_tick.set(self.clock())
        metrics.heartbeat_tick_seconds.observe(time.perf_counter() - started)

    def _write_pings(self, frame: bytes, peers: list[Peer], start: int) -> None:
        """Write a tick's ping frame to ``PING_WRITE_BATCH`` peers, then yield to the loop before the next batch.

        A tick may owe thousands of pings (many connections, a short interval, or a
        stall); between batches other callbacks run, so the tick never holds the loop
        for the whole of them.
        """
        end = start + PING_WRITE_BATCH
        for peer in peers[start:end]:
            connection: Connection | None = peer.connection
            if connection is not None:
                connection.write(frame)
        if end < len(peers):
            asyncio.get_running_loop().call_soon(self._write_pings, frame, peers, end)

    def on_pong(self, connection: Connection, payload: bytes) -> None:
        if connection.peer is None:
            return
        rtt = HeartbeatMonitor.pong(connection.peer, payload, self.monotonic())
        if rtt is not None:
            tallies = self.metrics.tallies
            tallies.heartbeat_pongs += 1
            tallies.heartbeat_rtt_seconds.observe(rtt)

    def on_client_ping(self, connection: Connection) -> None:
        if connection.peer is not None:
            connection.peer.last_seen = self.monotonic()

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run a coroutine in the background, keeping a reference and logging its failure."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("background task failed", exc_info=exc)

    @staticmethod
    def _log_request(handler: tornado.web.RequestHandler) -> None:
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

    # ------------------------------------------------------------ identity

    def user_added(self, name: str) -> None:
        self.hub.add_user(name)

    def user_removed(self, name: str) -> None:
        for session in self.hub.remove_user(name):
            self._close_for_policy(session.transport, ACCOUNT_REMOVED)

    def logins_ended(self, user: str, login_ids: set[str] | None, reason: str) -> None:
        """Close the user's connections opened with these login sessions (all when None)."""
        account = self.hub.users.get(user)
        if account is None:
            return
        for session in list(account.sessions.values()):
            connection: Connection = session.transport
            if login_ids is None or connection.login_id in login_ids:
                self._close_for_policy(connection, reason)

    def _close_for_policy(self, connection: Connection, reason: str) -> None:
        connection.close_reason = "policy"
        self.close_connection(connection)
        connection.close(wsproto.CLOSE_POLICY, reason, "policy")

    def _sync_accounts(self) -> None:
        if not self._syncing:
            self._syncing = True
            self.spawn(self._sync_accounts_once())

    async def _sync_accounts_once(self) -> None:
        try:
            await self.identity.sync()
        except StoreError:
            log.warning("could not read account changes; will retry")
        finally:
            self._syncing = False

    def origin_allowed(self, origin: str) -> bool:
        """Whether a cross-origin page may open a socket; same-origin requests never get here (the handler
        compares Origin with Host first)."""
        allowed = self.settings.allowed_origins
        return "*" in allowed or origin.rstrip("/") in allowed

    # ------------------------------------------------------------ connections

    def accept_websocket(self, stream: IOStream, key: str, claims: Claims, since: int | None, remote_ip: str) -> None:
        """Take over the socket of an accepted upgrade request: answer 101, then serve it as a session."""
        try:
            # Bytes the client sent right behind its request are in the stream's buffer already.
            pending = stream.read_bytes(RECV_BYTES, partial=True)
        except StreamClosedError:
            return
        early = b""
        assert isinstance(pending, asyncio.Future)
        if pending.done():
            with contextlib.suppress(StreamClosedError):
                early = pending.result()
        else:
            pending.add_done_callback(lambda f: f.exception())
        sock = stream.socket.dup()
        stream.close()
        settings = self.settings
        connection = Connection(
            sock,
            asyncio.get_running_loop(),
            self,
            remote_ip,
            self.monotonic(),
            settings.max_message_bytes,
            settings.max_buffered_bytes,
            self.metrics.tallies,
        )
        handshake = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {wsproto.accept_key(key)}\r\n\r\n"
        )
        connection.start(handshake.encode("ascii"))
        if connection.lost:
            return
        self.open_connection(connection, claims, since)
        connection.feed(early)

    def log_upgrade(self, request: tornado.httputil.HTTPServerRequest, user: str) -> None:
        log.info(
            "%s %s 101",
            request.method,
            request.path,
            extra={"user": user, "remote": request.remote_ip, "duration_ms": round(1000 * request.request_time(), 1)},
        )

    def open_connection(self, connection: Connection, claims: Claims, since: int | None) -> None:
        """Register a new WebSocket as a session, greet it, and replay what it missed."""
        now = connection.opened_at
        settings = self.settings
        connection.login_id = claims.login_id
        connection.bucket = TokenBucket(settings.rate_limit_per_s, settings.rate_limit_burst, now)
        connection.peer = self.heartbeat.add(connection, now)
        self.metrics.connections_opened.inc()
        hub = self.hub
        user = hub.users[claims.user]
        was_offline = not user.online
        session, deliveries = hub.open_session(user.name, secrets.token_urlsafe(9), connection, self.clock())
        connection.session = session
        connection.send(self._welcome(session))
        self.deliver(deliveries)
        if since is None and was_offline:
            since = user.offline_since_seq
        if since is not None:
            self.start_replay(connection, since)

    # ------------------------------------------------------------ connection events

    def protocol_error(self, connection: Connection, error: wsproto.WsProtocolError) -> None:
        """The client broke the WebSocket protocol; an oversize message also gets a ``too_large`` error frame."""
        if error.code == wsproto.CLOSE_TOO_LARGE:
            self.send_error(connection, ErrorCode.TOO_LARGE, "message is larger than the server accepts")
        log.info("closing a connection that broke the WebSocket protocol: %s", error.reason)

    def connection_lost(self, connection: Connection) -> None:
        self.close_connection(connection)

    def _welcome(self, session: Session) -> bytes:
        user = session.user
        return protocol.encode(
            {
                "type": "welcome",
                "user": user.name,
                "session": session.sid,
                "rooms": sorted(user.rooms),
                "contacts": sorted(user.contacts),
                "online": self.hub.peers_online(user),
                "heartbeat": {"interval": self.settings.ping_interval_s, "timeout": self.settings.ping_timeout_s},
                "server": __version__,
                "protocol": protocol.PROTOCOL_VERSION,
                "seq": self.hub.last_seq,
                "limits": {
                    "text_chars": self.settings.max_text_chars,
                    "message_bytes": self.settings.max_message_bytes,
                },
            }
        )

    def slow_consumer(self, connection: Connection) -> None:
        """A client stopped reading and its buffer passed the cap: cut it off, the others go on."""
        if connection.closed:
            return
        user = connection.session.user.name if connection.session else None
        log.info("closing a slow consumer", extra={"user": user, "buffered": connection.buffered})
        connection.close_reason = "slow_consumer"
        self.close_connection(connection)
        connection.close(wsproto.CLOSE_TRY_AGAIN_LATER, "slow consumer: not reading fast enough", "slow_consumer")

    def close_connection(self, connection: Connection) -> None:
        """Clean up after a closed connection, exactly once whatever closed it."""
        if connection.peer is not None:
            self.heartbeat.remove(connection.peer)
            # Break the connection's reference cycles, so that it is freed as soon as it is dropped
            # rather than at the next full garbage collection.
            connection.peer.connection = None
            connection.peer = None
            self.metrics.connections_closed[connection.close_reason].inc()
        session = connection.session
        if session is None or self.hub.sessions.get(session.sid) is not session:
            connection.closed = True
            return
        connection.closed = True
        user = session.user
        self.deliver(self.hub.close_session(session))
        session.transport = None
        if not user.online:
            self.store.set_offline_since(user.name, user.offline_since_seq)
        if self.state == "stopping" and not self.hub.sessions:
            self._drained.set()

    def deliver(self, deliveries: Iterable[Delivery]) -> None:
        """Write each frame that is not a message, framed once, to every recipient."""
        sent = 0
        for payload, recipients in deliveries:
            frame = wsproto.text_frame(payload)
            for session in recipients:
                session.transport.deliver(frame)
            sent += len(frame) * len(recipients)
        if sent:
            self.metrics.tallies.sent_bytes += sent

    def deliver_message(self, deliveries: Iterable[Delivery], seq: int, skip: Session | None) -> int:
        """Write a message frame, framed once, to every recipient but ``skip`` (the sender, who gets an ack).

        Returns the number of sessions it went to.
        """
        count = 0
        sent = 0
        for payload, recipients in deliveries:
            frame = wsproto.text_frame(payload)
            written = 0
            for session in recipients:
                if session is not skip:
                    session.transport.deliver_message(frame, seq)
                    written += 1
            count += written
            sent += len(frame) * written
        if count:
            tallies = self.metrics.tallies
            tallies.deliveries += count
            tallies.sent_bytes += sent
        return count

    # ------------------------------------------------------------ frames

    def send_error(self, connection: Connection, code: ErrorCode, message: str, frame_id: FrameId = None) -> None:
        self.metrics.errors[code].inc()
        connection.send(protocol.error_frame(code, message, frame_id))

    def receive(self, connection: Connection, data: str | bytes) -> None:
        """Handle one client frame; a bad frame gets an error frame and the connection stays open."""
        received_at = time.perf_counter()
        metrics = self.metrics
        now = self.monotonic()
        if connection.peer is not None:
            connection.peer.last_seen = now
        bucket = connection.bucket
        if bucket is not None and not bucket.take(now):
            if bucket.exhausted:
                log.info("closing a connection that kept sending over its rate limit")
                self._close_for_policy(connection, "rate limit exceeded")
            elif not connection.closed:
                self.send_error(connection, ErrorCode.RATE_LIMITED, "slow down: too many frames")
            return
        tallies = metrics.tallies
        tallies.received_bytes += len(data) if isinstance(data, bytes) or data.isascii() else len(data.encode())
        try:
            frame = protocol.parse_client_frame(data, self.settings.max_text_chars)
        except ProtocolError as exc:
            tallies.frames_received["invalid"] += 1
            self.send_error(connection, exc.code, exc.message, exc.frame_id)
            return
        frame_type = type(frame)
        tallies.frames_received[FRAME_LABELS[frame_type]] += 1
        try:
            if isinstance(frame, protocol.Send):
                self._on_send(connection, frame, received_at)
            else:
                self._dispatch[frame_type](connection, frame)
        except ProtocolError as exc:
            self.send_error(connection, exc.code, exc.message, frame.frame_id)
        except Exception:  # a bug in handling one frame must not end the session
            log.exception("handling a %s frame failed", frame_type.__name__)
            self.send_error(connection, ErrorCode.INTERNAL, "the server failed to handle this frame", frame.frame_id)

    def _on_join(self, connection: Connection, frame: protocol.Join) -> None:
        assert connection.session is not None
        changed, deliveries = self.hub.join(connection.session, frame.room)
        if changed:
            self.store.set_membership(connection.session.user.name, frame.room, True, self.hub.last_seq)
        self.deliver(deliveries)

    def _on_leave(self, connection: Connection, frame: protocol.Leave) -> None:
        assert connection.session is not None
        deliveries = self.hub.leave(connection.session, frame.room)
        self.store.set_membership(connection.session.user.name, frame.room, False, self.hub.last_seq)
        self.deliver(deliveries)

    def _on_send(self, connection: Connection, frame: protocol.Send, received_at: float) -> None:
        assert connection.session is not None
        user = connection.session.user
        self.hub.check_target(user, frame.room, frame.to)
        draft = Draft(user.name, frame.text, self.clock(), frame.client_id, frame.to, frame.room)
        self.store.append(draft, partial(self._on_stored, connection, frame.client_id, received_at))

    def _on_stored(self, connection: Connection, client_id: str, received_at: float, result: AppendResult) -> None:
        """The store has the message (or failed): ack the sender, then deliver to everyone else."""
        message = result.message
        if message is None:
            self.send_error(connection, ErrorCode.INTERNAL, "the message was not stored; send it again", client_id)
            return
        connection.send_in_order(protocol.ack_frame(message))
        if result.duplicate:
            return
        deliveries, notices = self.hub.route(message)
        if notices:
            self.deliver(notices)
        self.deliver_message(deliveries, message.seq, connection.session)
        self.metrics.tallies.messages[message.kind] += 1
        self.metrics.tallies.fanout_seconds.observe(time.perf_counter() - received_at)

    def _on_ping(self, connection: Connection, frame: protocol.Ping) -> None:
        connection.send(protocol.pong_frame(frame.frame_id, self.clock()))

    def _on_history(self, connection: Connection, frame: protocol.History) -> None:
        assert connection.session is not None
        self.hub.check_target(connection.session.user, frame.room, frame.with_user)
        self.spawn(self._answer_history(connection, frame))

    async def _answer_history(self, connection: Connection, frame: protocol.History) -> None:
        assert connection.session is not None
        viewer = connection.session.user.name
        try:
            messages, more = await self.store.history(viewer, frame.room, frame.with_user, frame.before, frame.limit)
        except StoreError:
            self.send_error(connection, ErrorCode.INTERNAL, "history is unavailable; try again", frame.frame_id)
            return
        connection.send(protocol.history_page(frame, messages, more, viewer))

    def _on_resume(self, connection: Connection, frame: protocol.Resume) -> None:
        self.start_replay(connection, frame.since)

    def _on_list_rooms(self, connection: Connection, frame: protocol.ListRooms) -> None:
        assert connection.session is not None
        connection.send(self.hub.room_list(connection.session.user))

    # ------------------------------------------------------------ replay

    def start_replay(self, connection: Connection, since: int) -> None:
        """Send what the session missed after ``since``, before any live message; one replay at a time."""
        if connection.held is not None:
            raise ProtocolError(ErrorCode.BAD_FRAME, "a resume is already running on this connection")
        connection.held = []
        self.spawn(self._replay(connection, since))

    async def _replay(self, connection: Connection, since: int) -> None:
        assert connection.session is not None
        user = connection.session.user.name
        below = connection.live_floor or None
        replayed: set[int] = set()
        try:
            replay = await self.store.replay(user, since, below, self.settings.replay_limit)
        except StoreError:
            self.send_error(connection, ErrorCode.INTERNAL, "missed messages are unavailable; resume again")
        else:
            for message in replay.messages:
                await connection.drain()
                connection.send(protocol.message_frame(message, own=message.sender == user))
                replayed.add(message.seq)
            self.metrics.tallies.deliveries += len(replay.messages)
            until = replay.last_seq if below is None else below - 1
            connection.send(
                protocol.encode(
                    {
                        "type": "resumed",
                        "since": since,
                        "until": max(since, until),
                        "count": len(replay.messages),
                        "truncated": replay.truncated,
                    }
                )
            )
        # Held frames were counted as sent when they were fanned out.
        for seq, frame in connection.take_held():
            if seq:
                if seq in replayed:
                    continue
                connection.deliver_message(frame, seq)
            else:
                connection.write(frame)
