"""The chat service: sessions opened and forgotten, frames received and answered, messages delivered.

It sits between the transports (``websocket.py``) and the pure core (``hub``,
``protocol``, ``heartbeat``, ``limits``), and drives the message store. The
frames of one feature are handled by its own part: rooms, moderation, edits
and deletes (``moderation.py``), read state (``read_state.py``), typing
notices, search, replays. Every frame reaches its sessions through the
``Outbox`` (``outbox.py``): framed once per payload, held behind a running
replay.

A session is forgotten exactly once (``forget_session``), whatever ended it:
its transport reports the end from the event loop, and a close the server
starts (rate limit, slow consumer, logout, reaping) forgets it at once so that
presence is true immediately. Nothing here is called re-entrantly by a
transport: a transport that fails under a write reports it later.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from functools import partial

from . import __version__, addressing, protocol, server_frames
from .admission import Admitted
from .background import BackgroundTasks
from .conversation_frames import Read, Search, Target, Typing
from .conversations import is_group, people_of
from .heartbeat import HeartbeatMonitor
from .hub import Hub
from .inflight import InFlight
from .limits import TokenBucket
from .metrics import ChatMetrics
from .moderation import AccountControl, Moderation
from .outbox import Outbox
from .protocol import ErrorCode, FrameId, ProtocolError
from .read_state import ReadState
from .replay import Replayer
from .room_limits import RoomLimits
from .search import SearchService
from .session import (
    CLOSE_POLICY,
    CLOSE_SERVICE_RESTART,
    CLOSE_TOO_LARGE,
    CLOSE_TRY_AGAIN_LATER,
    CLOSED_POLICY,
    CLOSED_PROTOCOL_ERROR,
    CLOSED_SHUTDOWN,
    CLOSED_SLOW_CONSUMER,
    Session,
    Transport,
)
from .settings import Settings
from .store import AppendResult, MessageStore, StoreError
from .typing_notices import TypingNotices

log = logging.getLogger("tornado_chat.service")


class ChatService:
    """One server's chat: the hub of sessions and rooms, the message store, and the traffic between them."""

    def __init__(
        self,
        settings: Settings,
        hub: Hub,
        store: MessageStore,
        heartbeat: HeartbeatMonitor[Session],
        metrics: ChatMetrics,
        tasks: BackgroundTasks,
        accounts: AccountControl,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.store = store
        self.heartbeat = heartbeat
        self.metrics = metrics
        self.tasks = tasks
        self.clock = clock
        self.monotonic = monotonic
        self.outbox = outbox = Outbox(metrics, tasks, settings.max_buffered_bytes, self.transport_overflowed)
        self.replayer = Replayer(outbox, store, metrics.tallies, settings.replay_limit)
        self.read_state = ReadState(hub, store, outbox)
        hub.membership_observers.append(self.read_state)
        self.room_limits = RoomLimits(settings.max_rooms_per_user, settings.room_creations_per_hour)
        self.moderation = Moderation(
            outbox, hub, store, metrics, accounts, self.room_limits, clock, monotonic, self.read_state
        )
        self.typing = TypingNotices(hub, outbox, monotonic)
        self.searches = SearchService(hub, store, outbox, metrics.search_seconds)
        # Sessions with a history request running, whatever carries them: one at a time each.
        self.history_running = InFlight(waiting=0)
        # Set while a shutdown waits for every session to go.
        self._all_gone: asyncio.Event | None = None

    # ------------------------------------------------------------ sessions

    def open_session(self, transport: Transport, admitted: Admitted) -> Session:
        """Register an admitted connection as a session, greet it, and replay what it missed."""
        settings = self.settings
        now = self.monotonic()
        user = self.hub.add_user(admitted.claims.user)
        was_offline = not user.online
        bucket = TokenBucket(settings.rate_limit_per_s, settings.rate_limit_burst, now)
        session = Session(secrets.token_urlsafe(9), user, transport, now, admitted.claims.login_id, bucket)
        session.peer = self.heartbeat.add(session, now)
        self.metrics.connections_opened[transport.kind].inc()
        deliveries = self.hub.open_session(session)
        self.outbox.send(session, self._welcome(session))
        self.outbox.deliver(deliveries)
        since = admitted.since
        if since is None and was_offline:
            since = user.offline_since_seq
        if since is not None:
            self.replayer.start(session, since)
        return session

    def forget_session(self, session: Session) -> None:
        """Clean up after a session that ended, exactly once whatever ended it."""
        if session.forgotten:
            return
        session.forgotten = True
        peer, session.peer = session.peer, None
        if peer is not None:
            self.heartbeat.remove(peer)
            peer.owner = None
        self.metrics.connections_closed[(session.close_reason, session.transport.kind)].inc()
        self.typing.forget(session)
        user = session.user
        self.outbox.deliver(self.hub.close_session(session))
        if not user.online:
            self.store.set_offline_since(user.name, user.offline_since_seq)
        if self._all_gone is not None and not self.hub.sessions:
            self._all_gone.set()

    def end_session(self, session: Session, why: str, code: int, reason: str) -> None:
        """Close a session from the server's side (``why`` is the metric's reason) and forget it now."""
        session.close_reason = why
        session.transport.close(code, reason)
        self.forget_session(session)

    def session_count(self) -> int:
        return len(self.hub.sessions)

    def session_count_of(self, user: str) -> int:
        known = self.hub.users.get(user)
        return len(known.sessions) if known is not None else 0

    async def close_all(self, spread_s: float, wait_s: float) -> None:
        """Shutdown: close every session with 1012 and a ``retry_after_ms`` hint spread over ``spread_s``.

        Waits up to ``wait_s`` for clients to complete their close handshake, then drops the rest.
        """
        sessions = list(self.hub.sessions.values())
        self._all_gone = asyncio.Event()
        rng = secrets.SystemRandom()
        for session in sessions:
            session.close_reason = CLOSED_SHUTDOWN
            hint = server_frames.encode({"retry_after_ms": round(rng.uniform(0, spread_s * 1000))}).decode()
            session.transport.close(CLOSE_SERVICE_RESTART, hint)
        if self.hub.sessions:
            try:
                await asyncio.wait_for(self._all_gone.wait(), wait_s)
            except TimeoutError:
                log.info("%d clients did not finish closing in time", len(self.hub.sessions))
        for session in list(self.hub.sessions.values()):
            session.transport.abort()
            self.forget_session(session)

    def send_error(self, session: Session, code: ErrorCode, message: str, frame_id: FrameId = None) -> None:
        """An error frame to one session, for a transport that refuses a frame itself (a POST's oversize one)."""
        self.outbox.send_error(session, code, message, frame_id)

    # ------------------------------------------------------------ what the transport reports

    def _spend_token(self, session: Session, now: float) -> bool:
        """One frame's worth of the rate limit; a client that keeps sending while refused is cut off (1008)."""
        bucket = session.bucket
        if bucket is None or bucket.take(now):
            return True
        if bucket.exhausted:
            log.info("closing a connection that kept sending over its rate limit", extra={"user": session.user.name})
            self.end_session(session, CLOSED_POLICY, CLOSE_POLICY, "rate limit exceeded")
        return False

    def _seen(self, session: Session) -> float:
        now = self.monotonic()
        peer = session.peer
        if peer is not None:
            peer.last_seen = now
        return now

    def frame_received(self, session: Session) -> None:
        if not session.forgotten:
            self._spend_token(session, self._seen(session))

    def ping_received(self, session: Session) -> None:
        self.frame_received(session)

    def pong_received(self, session: Session, payload: bytes) -> None:
        if session.forgotten:
            return
        now = self.monotonic()
        peer = session.peer
        if peer is not None and (rtt := HeartbeatMonitor.pong(peer, payload, now)) is not None:
            tallies = self.metrics.tallies
            tallies.heartbeat_pongs += 1
            tallies.heartbeat_rtt_seconds.observe(rtt)
        self._spend_token(session, now)

    def protocol_violated(self, session: Session, code: int) -> None:
        session.close_reason = CLOSED_PROTOCOL_ERROR
        if code == CLOSE_TOO_LARGE:
            self.outbox.send_error(session, ErrorCode.TOO_LARGE, "message is larger than the server accepts")
        log.info("closing a connection that broke the WebSocket protocol (close code %d)", code)

    def transport_overflowed(self, session: Session) -> None:
        """A client stopped reading and what waits for it passed the cap: cut it off, the others go on."""
        if session.forgotten:
            return
        log.info(
            "closing a slow consumer",
            extra={"user": session.user.name, "buffered": session.transport.buffered_bytes + session.held_bytes},
        )
        self.end_session(session, CLOSED_SLOW_CONSUMER, CLOSE_TRY_AGAIN_LATER, "slow consumer: not reading fast enough")

    # ------------------------------------------------------------ frames

    def receive(self, session: Session, data: str | bytes) -> None:
        """Handle one client frame; a bad frame gets an error frame and the session stays open."""
        if session.forgotten:
            return  # frames still in flight after the server closed the session
        received_at = self._seen(session)  # monotonic seconds: also the start of the fan-out latency
        if not self._spend_token(session, received_at):
            if not session.forgotten:
                self.outbox.send_error(session, ErrorCode.RATE_LIMITED, "slow down: too many frames")
            return
        tallies = self.metrics.tallies
        tallies.received_bytes += len(data) if isinstance(data, bytes) or data.isascii() else len(data.encode())
        try:
            frame = protocol.parse_client_frame(data, self.settings.max_text_chars)
        except ProtocolError as exc:
            tallies.frames_received["invalid"] += 1
            self.outbox.send_error(session, exc.code, exc.message, exc.frame_id)
            return
        tallies.frames_received[frame.label] += 1
        try:
            self._dispatch(session, frame, received_at)
        except ProtocolError as exc:
            self.outbox.send_error(session, exc.code, exc.message, frame.frame_id)
        except Exception:  # a bug in handling one frame must not end the session
            log.exception("handling a %s frame failed", frame.label)
            failed = "the server failed to handle this frame"
            self.outbox.send_error(session, ErrorCode.INTERNAL, failed, frame.frame_id)

    def _dispatch(self, session: Session, frame: protocol.ClientFrame, received_at: float) -> None:
        user = session.user
        match frame:
            case protocol.Send():
                draft = addressing.draft_for(self.hub, user, frame, self.clock())
                self.store.append(draft, partial(self._stored, session, frame.client_id, received_at))
            case protocol.Join():
                self.room_limits.admit_join(self.hub.rooms, user, frame.room, self.monotonic())
                changed, deliveries = self.hub.join(session, frame.room)
                if changed:
                    self.store.set_membership(user.name, frame.room, True, self.hub.last_seq)
                    self.read_state.joined(user, frame.room)
                self.outbox.deliver(deliveries)
            case protocol.Leave():
                deliveries = self.hub.leave(session, frame.room)
                self.store.set_membership(user.name, frame.room, False, self.hub.last_seq)
                self.outbox.deliver(deliveries)
            case protocol.Ping():
                self.outbox.send(session, server_frames.pong_frame(frame.frame_id, self.clock()))
            case protocol.History():
                addressing.key_for(self.hub, user, Target(frame.room, frame.with_user, frame.with_group))
                if not self.history_running.try_enter(session.sid):
                    raise ProtocolError(ErrorCode.RATE_LIMITED, "one history request at a time: wait for its answer")
                self.tasks.spawn(self._answer_history(session, frame))
            case protocol.ListRooms():
                self.outbox.send(session, self.read_state.room_list(user, frame.after, frame.limit))
            case protocol.Resume():
                self.replayer.start(session, frame.since)
            case Read():
                self.read_state.read(session, frame)
            case Typing():
                self.typing.typing(session, frame)
            case Search():
                self.searches.search(session, frame)
            case _:  # rooms, roles and moderation; edits and deletes (room_frames)
                self.moderation.handle(session, frame)

    def _stored(self, session: Session, client_id: str, received_at: float, result: AppendResult) -> None:
        """The store has the message (or failed): ack the sender, then deliver to everyone else."""
        message = result.message
        if message is None:
            self.outbox.send_error(session, ErrorCode.INTERNAL, "the message was not stored; send it again", client_id)
            return
        self.outbox.send_in_order(session, server_frames.ack_frame(message))
        if result.duplicate:
            return
        deliveries, notices = self.hub.route(message)
        self.read_state.stored(message)
        if notices:
            self.outbox.deliver(notices)
        self.outbox.deliver_message(deliveries, message.seq, session)
        tallies = self.metrics.tallies
        tallies.messages[message.kind] += 1
        tallies.fanout_seconds.observe(self.monotonic() - received_at)

    async def history_page(self, viewer: str, request: protocol.History) -> bytes:
        """A page of history the viewer may read; raises ``ProtocolError`` (no access) or ``StoreError``."""
        user = self.hub.users.get(viewer) or self.hub.add_user(viewer)
        key = addressing.key_for(self.hub, user, Target(request.room, request.with_user, request.with_group))
        members = people_of(key) if is_group(key) else None
        # A room's history starts where the room was made (not at an earlier room of the same name).
        since = self.hub.rooms[request.room].first_seq if request.room is not None else 0
        messages, more = await self.store.history(
            viewer, request.room, request.with_user, request.before, request.limit, since, members
        )
        return server_frames.history_page(request, messages, more, viewer)

    async def _answer_history(self, session: Session, frame: protocol.History) -> None:
        try:
            page = await self.history_page(session.user.name, frame)
        except StoreError:
            self.outbox.send_error(session, ErrorCode.INTERNAL, "history is unavailable; try again", frame.frame_id)
        except ProtocolError as exc:
            self.outbox.send_error(session, exc.code, exc.message, frame.frame_id)
        else:
            self.outbox.send(session, page)
        finally:
            self.history_running.leave(session.sid)

    def _welcome(self, session: Session) -> bytes:
        user = session.user
        settings = self.settings
        return server_frames.encode(
            {
                "type": "welcome",
                "user": user.name,
                "session": session.sid,
                "rooms": sorted(user.rooms),
                "contacts": sorted(user.contacts),
                "online": self.hub.peers_online(user),
                "admin": user.name in self.hub.admins,
                "heartbeat": {"interval": settings.ping_interval_s, "timeout": settings.ping_timeout_s},
                "server": __version__,
                "protocol": protocol.PROTOCOL_VERSION,
                "seq": self.hub.last_seq,
                "limits": {"text_chars": settings.max_text_chars, "message_bytes": settings.max_message_bytes},
                **self.read_state.welcome_fields(user),
            }
        )

    # ------------------------------------------------------------ account changes (AccountListener)

    def user_added(self, name: str) -> None:
        self.hub.add_user(name)

    def admin_changed(self, name: str, admin: bool) -> None:
        self.moderation.admin_changed(name, admin)

    def user_removed(self, name: str) -> None:
        self.read_state.forget_user(name)
        for session in self.hub.remove_user(name):
            self.end_session(session, CLOSED_POLICY, CLOSE_POLICY, "account removed")

    def logins_ended(self, user: str, login_ids: set[str] | None, reason: str) -> None:
        """Close the user's sessions opened with these login sessions (all when None)."""
        known = self.hub.users.get(user)
        if known is None:
            return
        for session in list(known.sessions.values()):
            if login_ids is None or session.login_id in login_ids:
                self.end_session(session, CLOSED_POLICY, CLOSE_POLICY, reason)
