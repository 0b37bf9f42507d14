"""Sessions carried over plain HTTP: what an event stream and a long poll share, and the long poll itself.

When a network will not carry a WebSocket, a client opens its session with
``GET /events`` (Server-Sent Events, ``sse.py``) or ``GET /poll`` (long polling,
``PollTransport`` below) and sends its frames with ``POST /api/frames``
(``http_sessions.py``). Either way the session is a ``session.Session`` like any
other, and its transport implements ``session.Transport``: the chat service
writes prepared frames to it, closes it and paces replays on it exactly as it
does a WebSocket.

Replies to a POST (``ReplyCapture``): while the frames of a POST are received,
every ``ack`` and ``error`` the service writes to the session goes into the
POST's answer instead of down the stream; so do the ``ack`` or ``error`` of each
of its ``send`` frames that come later (after the store has committed),
matched by client id, while the POST waits for them. The answer lists them in
the order of the frames they answer. Everything else (messages, presence,
membership, pongs) goes down the stream, in order.

Slow consumers are cut off as on a WebSocket: past ``--max-buffered-bytes``
the session closes with 1013, and what still waits for the client and is not
on its way already is dropped at once (an event stream's backlog behind
``session.STREAM_WINDOW_BYTES``, a long poll's unacknowledged frames): the
client learns why right away and resumes from the last message it has.

Like the WebSocket transport, an HTTP transport never calls back into the
core on the caller's stack: a backlog past ``--max-buffered-bytes``, the end of
the session and (for an event stream) a sign of life are reported to its
``TransportOwner`` from the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from . import server_frames
from .outgoing import Outgoing
from .session import CLOSE_TRY_AGAIN_LATER, Session, cut_close_reason

# The frames a POST answers with; every other frame goes down the stream.
_ACK_PREFIX = b'{"type":"ack",'
_ERROR_PREFIX = b'{"type":"error",'


class TransportOwner(Protocol):
    """What an HTTP transport reports, always from the event loop (``http_sessions.HttpSessions``)."""

    def overflowed(self, transport: HttpTransport) -> None:
        """More is waiting for the client than ``--max-buffered-bytes``."""
        ...

    def ended(self, transport: HttpTransport) -> None:
        """The transport is closed or gone: its session is over."""
        ...

    def alive(self, transport: HttpTransport) -> None:
        """The client is there (an event stream whose bytes its peer keeps acknowledging)."""
        ...


@dataclass(frozen=True, slots=True)
class CloseNotice:
    """How the server ended a session: a WebSocket close code and reason, told to an HTTP client as data."""

    code: int
    reason: str

    def encode(self) -> bytes:
        return server_frames.encode({"code": self.code, "reason": self.reason})


def frame_id_of(payload: bytes) -> object:
    """The ``id`` field of an encoded server frame (None when it has none)."""
    try:
        frame = json.loads(payload)
    except ValueError:
        return None
    return frame.get("id") if isinstance(frame, dict) else None


class ReplyCapture:
    """The answer to one POST of frames: the acks and errors of its frames, in the order of the frames.

    Each frame has a slot. What the service writes while a frame is received
    goes to that frame's slot (``begin_frame``); a send handed to the store
    waits in its slot for its ack or error, matched by client id.
    """

    __slots__ = ("_settled", "slots", "waiting")

    def __init__(self) -> None:
        self.slots: list[list[bytes]] = []
        # Client id -> slots of its sends that went to the store and have no ack or error yet (oldest first).
        self.waiting: dict[str, deque[int]] = {}
        self._settled: asyncio.Event | None = None

    def begin_frame(self) -> None:
        self.slots.append([])

    def take(self, payload: bytes) -> None:
        """A reply written while the newest frame is received."""
        self.slots[-1].append(payload)

    @property
    def answered(self) -> bool:
        """Whether the newest frame got a reply while it was received."""
        return bool(self.slots and self.slots[-1])

    def wait_for(self, frame_id: str) -> None:
        """The newest frame is a send handed to the store: its ack or error comes later."""
        self.waiting.setdefault(frame_id, deque()).append(len(self.slots) - 1)

    def take_if_waited_for(self, frame_id: object, payload: bytes) -> bool:
        """Keep the ack or error of a send this POST waits for; False when it is not one."""
        if not isinstance(frame_id, str):
            return False
        slots = self.waiting.get(frame_id)
        if not slots:
            return False
        self.slots[slots.popleft()].append(payload)
        if not slots:
            del self.waiting[frame_id]
            if not self.waiting:
                self.settle()
        return True

    @property
    def replies(self) -> list[bytes]:
        return [reply for slot in self.slots for reply in slot]

    def settle(self) -> None:
        """Stop waiting (everything came, or the session ended)."""
        self.waiting.clear()
        if self._settled is not None:
            self._settled.set()

    async def wait(self, timeout_s: float) -> None:
        """Until every send is answered or ``timeout_s`` seconds pass; later answers go down the stream."""
        if not self.waiting:
            return
        self._settled = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout_s)


class HttpTransport:
    """What an event stream and a long poll share (``session.Transport``); subclasses say how frames go out."""

    kind: ClassVar[str] = ""

    __slots__ = (
        "_closing",
        "_ended",
        "_overflow_reported",
        "_progress",
        "aborted",
        "captures",
        "max_buffered",
        "notice",
        "owner",
        "queued_bytes",
        "receiving",
        "remote_ip",
        "session",
        "token_digest",
    )

    def __init__(self, owner: TransportOwner, remote_ip: str, max_buffered: int, token_digest: bytes) -> None:
        self.owner = owner
        self.remote_ip = remote_ip
        self.max_buffered = max_buffered
        # The digest of the token that opened the session: only that token may address it.
        self.token_digest = token_digest
        self.session: Session | None = None
        # Bytes written for the client that it has not taken yet (see each subclass).
        self.queued_bytes = 0
        # The POSTs in progress on this session; ``receiving`` is the one whose frames are being handled now.
        self.captures: list[ReplyCapture] = []
        self.receiving: ReplyCapture | None = None
        # Set when the server closed the session: what the client is told.
        self.notice: CloseNotice | None = None
        self._closing = False
        self.aborted = False
        self._ended = False
        self._overflow_reported = False
        self._progress: asyncio.Event | None = None

    # ------------------------------------------------------------ session.Transport

    @property
    def buffered_bytes(self) -> int:
        return self.queued_bytes

    @property
    def closing(self) -> bool:
        return self._closing

    def write(self, frame: Outgoing) -> None:
        """Send one prepared frame (or keep it for a POST's answer); never raises, never calls into the core."""
        if self._closing:
            return
        if self.captures and self._captured(frame.payload):
            return
        self._send(frame)
        if self.queued_bytes > self.max_buffered and not self._overflow_reported:
            self._overflow_reported = True
            self._report(self.owner.overflowed)

    def close(self, code: int, reason: str) -> None:
        """The server ends the session: the client is told ``code`` and ``reason`` (then the stream ends)."""
        if self._closing:
            return
        self._closing = True
        self.notice = CloseNotice(code, cut_close_reason(reason))
        if code == CLOSE_TRY_AGAIN_LATER:
            self._drop_backlog()  # a slow consumer: told at once, not after what it was not taking
        self._closed()
        self._end()

    def abort(self) -> None:
        """Drop the client now (a dead peer): nothing more is sent, not even why."""
        self._closing = True
        self.aborted = True
        self._drop()
        self._end()

    def has_unread_input(self) -> bool:
        return False  # every request is read whole before it is handled

    async def drain(self) -> None:
        """Wait until what waits for the client is down to a quarter of the cap: replays go at its pace."""
        while self.queued_bytes > self.max_buffered // 4 and not self._closing:
            progress = self._progress = asyncio.Event()
            await progress.wait()

    # ------------------------------------------------------------ for the owner and the subclasses

    def lost(self) -> None:
        """The client went away (its connection closed): the session is over."""
        self._closing = True
        self._end()

    def begin_capture(self) -> ReplyCapture:
        capture = ReplyCapture()
        self.captures.append(capture)
        return capture

    def end_capture(self, capture: ReplyCapture) -> None:
        with contextlib.suppress(ValueError):
            self.captures.remove(capture)

    def made_progress(self) -> None:
        """The client took some of what waited for it: a replay waiting in ``drain`` may go on."""
        progress, self._progress = self._progress, None
        if progress is not None:
            progress.set()

    def _captured(self, payload: bytes) -> bool:
        if not (payload.startswith(_ACK_PREFIX) or payload.startswith(_ERROR_PREFIX)):
            return False
        receiving = self.receiving
        if receiving is not None:
            receiving.take(payload)
            return True
        frame_id = frame_id_of(payload)
        return any(capture.take_if_waited_for(frame_id, payload) for capture in self.captures)

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        for capture in self.captures:
            capture.settle()
        self.made_progress()
        self._report(self.owner.ended)

    def _report(self, callback: Callable[[HttpTransport], None]) -> None:
        asyncio.get_running_loop().call_soon(callback, self)

    def _send(self, frame: Outgoing) -> None:
        raise NotImplementedError

    def _closed(self) -> None:
        """After ``close``: tell the client (``self.notice``)."""

    def _drop_backlog(self) -> None:
        """Forget what waits for the client and is not on its way yet (a slow consumer's close)."""

    def _drop(self) -> None:
        """After ``abort``: drop the client's connection, if one is open (idempotent)."""


class PollTransport(HttpTransport):
    """A long-polled session: frames wait, numbered, until a poll has taken them and the next one says so.

    Each frame gets the next number (1, 2, ...). A poll names the number of the
    last frame it has (its ``cursor``): the frames up to it are dropped, the rest
    are answered, so a poll answer lost on the way is simply answered again.
    Frames kept count against ``--max-buffered-bytes`` until a later poll
    acknowledges them. Heartbeat pings are not kept: a long poller shows it is
    alive by coming back.
    """

    kind = "poll"

    __slots__ = ("frames", "last_number", "_waiter")

    def __init__(self, owner: TransportOwner, remote_ip: str, max_buffered: int, token_digest: bytes) -> None:
        super().__init__(owner, remote_ip, max_buffered, token_digest)
        self.frames: deque[tuple[int, bytes]] = deque()
        # The number given to the newest frame kept (0: none yet).
        self.last_number = 0
        self._waiter: asyncio.Future[None] | None = None

    def _send(self, frame: Outgoing) -> None:
        if frame.is_ping:
            return
        self.last_number += 1
        self.frames.append((self.last_number, frame.payload))
        self.queued_bytes += len(frame.payload)
        self._wake()

    def acknowledge(self, cursor: int) -> bool:
        """Drop the frames up to ``cursor``; False when ``cursor`` is past the newest frame (a bad cursor)."""
        if not 0 <= cursor <= self.last_number:
            return False
        frames = self.frames
        dropped = False
        while frames and frames[0][0] <= cursor:
            self.queued_bytes -= len(frames.popleft()[1])
            dropped = True
        if dropped:
            self.made_progress()
        return True

    @property
    def parked(self) -> bool:
        """Whether a poll is waiting for frames now."""
        return self._waiter is not None

    def pending(self) -> list[bytes]:
        """Every frame not acknowledged yet, oldest first (all newer than the last cursor)."""
        return [payload for _, payload in self.frames]

    async def wait(self, timeout_s: float) -> None:
        """Park a poll until a frame comes, the session ends, a newer poll arrives, or ``timeout_s`` passes."""
        if self.frames or self._closing or timeout_s <= 0:
            return
        self._wake()  # a newer poll answers the one before it
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, timeout_s)
        if self._waiter is waiter:
            self._waiter = None

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _closed(self) -> None:
        self._wake()

    def _drop_backlog(self) -> None:
        self.frames.clear()
        self.queued_bytes = 0

    def _drop(self) -> None:
        self._drop_backlog()
        self._wake()


def poll_answer(sid: str, cursor: int, frames: list[bytes], notice: CloseNotice | None) -> bytes:
    """``{"session", "cursor", "frames": [...], "close"?}``, the frames' JSON as written (no re-encoding)."""
    head = server_frames.encode({"session": sid, "cursor": cursor})[:-1]
    tail = b',"close":' + notice.encode() + b"}" if notice is not None else b"}"
    return head + b',"frames":[' + b",".join(frames) + b"]" + tail
