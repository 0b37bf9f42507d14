"""Replays: what a session missed, sent before anything live, at the reader's pace.

A session resumes with ``since`` (the newest seq it has) on connect or with a
``resume`` frame; edits and deletes of older messages made since then are
replayed too, as ``edited``/``deleted`` frames at their own positions. While
its replay runs, live frames for it are held on the
session (``Session.held``) and counted against its buffer cap; the replay
writes each missed message once the transport's backlog has drained, then a
``resumed`` frame, then the held frames in order, skipping messages the replay
already carried. One replay at a time per session.
"""

from __future__ import annotations

from typing import Protocol

from . import server_frames
from .background import BackgroundTasks
from .metrics import Tallies
from .protocol import ErrorCode, FrameId, ProtocolError
from .session import Session
from .store import MessageStore, StoreError


class ReplayWriter(Protocol):
    """How a replay writes to its session (the chat service)."""

    tasks: BackgroundTasks

    def send(self, session: Session, payload: bytes) -> None: ...

    def send_error(self, session: Session, code: ErrorCode, message: str, frame_id: FrameId = None) -> None: ...


class Replayer:
    """Runs replays for one server's sessions."""

    def __init__(self, writer: ReplayWriter, store: MessageStore, tallies: Tallies, limit: int) -> None:
        self.writer = writer
        self.store = store
        self.tallies = tallies
        self.limit = limit

    def start(self, session: Session, since: int) -> None:
        """Send what the session missed after ``since``; raises ``bad_frame`` while a replay runs."""
        if session.held is not None:
            raise ProtocolError(ErrorCode.BAD_FRAME, "a resume is already running on this connection")
        session.held = []
        self.writer.tasks.spawn(self._run(session, since))

    async def _run(self, session: Session, since: int) -> None:
        user = session.user.name
        writer = self.writer
        below = session.live_floor or None
        replayed: set[int] = set()
        try:
            replay = await self.store.replay(user, since, below, self.limit)
        except StoreError:
            writer.send_error(session, ErrorCode.INTERNAL, "missed messages are unavailable; resume again")
        else:
            transport = session.transport
            for message in replay.messages:
                await transport.drain()
                if session.forgotten:
                    return
                if message.seq > since:
                    writer.send(session, server_frames.message_frame(message, own=message.sender == user))
                    replayed.add(message.seq)
                else:  # an older message changed since: its edit or delete, at the change's position
                    writer.send(session, server_frames.change_frame(message))
                    replayed.add(message.rev)
            self.tallies.deliveries += len(replay.messages)
            until = replay.last_seq if below is None else below - 1
            resumed = {
                "type": "resumed",
                "since": since,
                "until": max(since, until),
                "count": len(replay.messages),
                "truncated": replay.truncated,
            }
            writer.send(session, server_frames.encode(resumed))
        # Held frames were counted as sent when they were fanned out.
        for seq, frame in session.take_held():
            if seq:
                if seq in replayed:
                    continue
                if not session.live_floor:
                    session.live_floor = seq
            session.transport.write(frame)
