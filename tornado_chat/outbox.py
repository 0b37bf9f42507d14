"""How frames reach sessions: every reply and fan-out of one server, framed once and counted.

The chat service and its parts (replays, moderation, read state, typing notices, search) write through one
``Outbox``. A payload becomes one ``Outgoing`` however many sessions receive it. A session whose replay
is running holds live frames back (``Session.held``, ``replay.py``) so that the replay comes first; when
what it holds passes ``max_buffered_bytes`` it is cut off from the event loop (``overflowed``), never from
inside the fan-out that pushed it over. Bytes and deliveries are counted in the metrics' tallies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from . import server_frames
from .background import BackgroundTasks
from .hub import Delivery
from .metrics import ChatMetrics
from .outgoing import Outgoing
from .protocol import ErrorCode, FrameId
from .session import Session


class Outbox:
    """Writes frames to sessions (see the module docstring); ``tasks`` runs what answers later."""

    def __init__(
        self,
        metrics: ChatMetrics,
        tasks: BackgroundTasks,
        max_buffered_bytes: int,
        overflowed: Callable[[Session], None],
    ) -> None:
        self.metrics = metrics
        self.tasks = tasks
        self.max_buffered_bytes = max_buffered_bytes
        self.overflowed = overflowed

    def send(self, session: Session, payload: bytes) -> None:
        """A reply to this session alone, written at once (errors, pongs, history pages)."""
        frame = Outgoing(payload)
        self.metrics.tallies.sent_bytes += len(frame.websocket)
        session.transport.write(frame)

    def send_in_order(self, session: Session, payload: bytes) -> None:
        """A reply that must not overtake a running replay (an ack carries a seq a client resumes from)."""
        frame = Outgoing(payload)
        self.metrics.tallies.sent_bytes += len(frame.websocket)
        self._write_live(session, 0, frame)

    def send_error(self, session: Session, code: ErrorCode, message: str, frame_id: FrameId = None) -> None:
        self.metrics.errors[code].inc()
        self.send(session, server_frames.error_frame(code, message, frame_id))

    def _write_live(self, session: Session, seq: int, frame: Outgoing) -> None:
        if session.held is None:
            if seq and not session.live_floor:
                session.live_floor = seq
            session.transport.write(frame)
        elif session.hold(seq, frame) > self.max_buffered_bytes:
            # Cut off from the loop, not from inside this fan-out.
            asyncio.get_running_loop().call_soon(self.overflowed, session)

    def deliver(self, deliveries: Iterable[Delivery]) -> None:
        """Write each frame that is not a message (presence, membership), framed once, to every recipient."""
        sent = 0
        for payload, recipients in deliveries:
            frame = Outgoing(payload)
            for session in recipients:
                self._write_live(session, 0, frame)
            sent += len(frame.websocket) * len(recipients)
        if sent:
            self.metrics.tallies.sent_bytes += sent

    def deliver_message(self, deliveries: Iterable[Delivery], seq: int, skip: Session | None) -> int:
        """Write a message frame, framed once, to every recipient but ``skip`` (the sender, who gets an ack).

        Returns the number of sessions it went to.
        """
        count = 0
        sent = 0
        for payload, recipients in deliveries:
            frame = Outgoing(payload)
            written = 0
            for session in recipients:
                if session is skip:
                    continue
                written += 1
                if session.held is None:
                    if not session.live_floor:
                        session.live_floor = seq
                    session.transport.write(frame)
                else:
                    self._write_live(session, seq, frame)
            count += written
            sent += len(frame.websocket) * written
        if count:
            tallies = self.metrics.tallies
            tallies.deliveries += count
            tallies.sent_bytes += sent
        return count
