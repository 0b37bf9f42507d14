"""Search: ``search`` frames answered from the store, over the conversations the asker may read.

The store does the matching (``MessageStore.search``: FTS5 indexes in SQLite, see ``sqlite_search``);
this module decides where to look (one conversation the user may read, or all of them), bounds the answer
(``limit`` messages, ``HISTORY_MAX_BYTES``), and answers:
``{"type": "search", "q": Q, "results": [...], "more": B, "next": SEQ}`` (``next``: the ``before`` of
the next page, null when there is none), with the frame's ``id`` when it had one. A room's results start
where the room was made (``Room.first_seq``), as its history does. A session has one search running at a
time (like one history request): searches read on the store's few reader threads, with history and replays,
and one client must not queue many; another while one runs is refused with ``rate_limited``.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from . import server_frames
from .addressing import key_for
from .background import BackgroundTasks
from .conversation_frames import Search
from .conversations import room_of, wire_target
from .hub import Hub
from .inflight import InFlight
from .protocol import ErrorCode, FrameId, ProtocolError
from .search_terms import split_terms
from .server_frames import Message
from .session import Session
from .store import MessageStore, StoreError


class Timing(Protocol):
    """Where answer times go (a histogram), in seconds."""

    def observe(self, amount: float) -> None: ...


class SearchWriter(Protocol):
    tasks: BackgroundTasks

    def send(self, session: Session, payload: bytes) -> None: ...

    def send_error(self, session: Session, code: ErrorCode, message: str, frame_id: FrameId = None) -> None: ...


class SearchService:
    """Answers ``search`` frames (see the module docstring)."""

    def __init__(self, hub: Hub, store: MessageStore, writer: SearchWriter, seconds: Timing) -> None:
        self.hub = hub
        self.store = store
        self.writer = writer
        self.seconds = seconds
        # Sessions with a search running: one at a time each, as for history (both read on the store's few
        # reader threads).
        self.running = InFlight(waiting=0)

    def search(self, session: Session, frame: Search) -> None:
        """Check the frame and where it may look now; the answer follows when the store has it."""
        if not split_terms(frame.query):
            raise ProtocolError(ErrorCode.BAD_FRAME, "field 'q' has nothing to search for: give a word")
        user = session.user
        keys = [key_for(self.hub, user, frame.target)] if frame.target.named else self.hub.readable_keys(user)
        if not self.running.try_enter(session.sid):
            raise ProtocolError(ErrorCode.RATE_LIMITED, "one search at a time: wait for its answer")
        self.writer.tasks.spawn(self._answer(session, frame, keys))

    def _floors(self, keys: list[str]) -> dict[str, int]:
        """Where each room among ``keys`` starts (``Room.first_seq``): not at an earlier room of the same name."""
        floors: dict[str, int] = {}
        for key in keys:
            name = room_of(key)
            if name is not None and (room := self.hub.rooms.get(name)) is not None:
                floors[key] = room.first_seq
        return floors

    async def _answer(self, session: Session, frame: Search, keys: list[str]) -> None:
        started = time.perf_counter()
        try:
            page = await self.store.search(keys, frame.query, frame.before, frame.limit, self._floors(keys))
        except StoreError:
            self.writer.send_error(session, ErrorCode.INTERNAL, "search is unavailable; try again", frame.frame_id)
            return
        finally:
            self.running.leave(session.sid)
        self.seconds.observe(time.perf_counter() - started)
        viewer = session.user.name
        head: dict[str, Any] = {"type": "search", "q": frame.query}
        if frame.target.named:
            head.update(wire_target(keys[0], viewer))
        if frame.frame_id is not None:
            head["id"] = frame.frame_id

        def build(results: list[Message], more: bool) -> bytes:
            following = page.next if len(results) == len(page.messages) else results[-1].seq
            fields = [server_frames.message_fields(m, m.sender == viewer) for m in results]
            return server_frames.encode({**head, "results": fields, "more": more, "next": following})

        self.writer.send(session, server_frames.fit_page(build, page.messages, page.next is not None))
