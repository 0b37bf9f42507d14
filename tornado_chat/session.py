"""Who is connected: users, their sessions, and the transport each session is carried by.

Pure code: no sockets, no clock, no Tornado. A ``Session`` is one
authenticated connection of a user; its network side is a ``Transport``, a
small protocol that the Tornado layer implements (``websocket.WebSocketTransport``
for ``/ws``). The core writes prepared frames to it and closes it; it never
reaches into a handler or a stream.

Per-session delivery state lives here too, because it is the same whatever
carries the session: while a replay runs, live frames are held back
(``held``) so that the replay comes first, and ``live_floor`` remembers the
first message delivered live so that a later resume replays only below it.
"""

from __future__ import annotations

from typing import Protocol

from .admission import Admitted
from .heartbeat import Peer
from .limits import TokenBucket
from .outgoing import Outgoing

# Close codes a transport's ``close`` takes (RFC 6455 section 7.4.1; other transports map them).
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_LARGE = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013
# RFC 6455 section 5.5: a close frame's reason fits in 123 bytes after the two-byte code; every transport cuts
# its reasons so.
MAX_CLOSE_REASON_BYTES = 123
# Most of a session's bytes a streaming transport (WebSocket, event stream) keeps in its socket's stream at once;
# more frames wait whole in the transport's backlog. A slow consumer's close (1013) drops the backlog, so that
# the close follows the frame in progress and the memory goes at once; every other close sends it first.
STREAM_WINDOW_BYTES = 64 * 1024
# How long a transport the server closed may take to get its last bytes out before it is dropped.
CLOSE_DEADLINE_S = 5.0


def cut_close_reason(reason: str) -> str:
    """``reason`` cut to ``MAX_CLOSE_REASON_BYTES`` of UTF-8, never inside a character."""
    return reason.encode("utf-8")[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore")


# Why a session ended: the ``reason`` label of ``chat_connections_closed_total``.
CLOSED_BY_CLIENT = "client"
CLOSED_REAPED = "reaped"
CLOSED_SLOW_CONSUMER = "slow_consumer"
CLOSED_SHUTDOWN = "shutdown"
CLOSED_PROTOCOL_ERROR = "protocol_error"
CLOSED_POLICY = "policy"
CLOSE_REASONS = (
    CLOSED_BY_CLIENT,
    CLOSED_REAPED,
    CLOSED_SLOW_CONSUMER,
    CLOSED_SHUTDOWN,
    CLOSED_PROTOCOL_ERROR,
    CLOSED_POLICY,
)


class Transport(Protocol):
    """The network side of one session, as the chat core drives it.

    ``write`` and ``close`` never raise and never call back into the core
    synchronously: a transport that finds its peer gone reports the end later,
    from the event loop, so that a fan-out can write to a thousand sessions
    without one of them closing another under its feet.
    """

    @property
    def kind(self) -> str:
        """The transport's name, a metric label value (``websocket``)."""
        ...

    @property
    def remote_ip(self) -> str: ...

    @property
    def buffered_bytes(self) -> int:
        """Bytes written by the server that the peer has not taken yet."""
        ...

    @property
    def closing(self) -> bool:
        """True once a close has begun (from either side): nothing more is written."""
        ...

    def write(self, frame: Outgoing) -> None:
        """Send one prepared frame; dropped once closing."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Begin a clean close with a WebSocket close code and a reason of at most 123 bytes."""
        ...

    def abort(self) -> None:
        """Drop the connection now, without a close handshake (a dead peer)."""
        ...

    def has_unread_input(self) -> bool:
        """True when bytes from the peer are waiting that the event loop has not read yet."""
        ...

    async def drain(self) -> None:
        """Return once the backlog of written bytes is small again (or the connection is gone)."""
        ...


class User:
    """A known user: online while ``sessions`` is not empty."""

    __slots__ = ("contacts", "groups", "name", "offline_since_seq", "rooms", "sessions")

    def __init__(self, name: str, offline_since_seq: int = 0) -> None:
        self.name = name
        self.sessions: dict[str, Session] = {}
        self.rooms: set[str] = set()
        self.contacts: set[str] = set()
        # Keys of the group conversations the user is in (``conversations.group_key``).
        self.groups: set[str] = set()
        # The last message sequence number the user could have seen live: a
        # session opened without a resume point replays what came after it.
        self.offline_since_seq = offline_since_seq

    @property
    def online(self) -> bool:
        return bool(self.sessions)


class Session:
    """One authenticated connection of a user. Times are monotonic seconds."""

    __slots__ = (
        "bucket",
        "close_reason",
        "forgotten",
        "held",
        "held_bytes",
        "live_floor",
        "login_id",
        "opened_at",
        "peer",
        "sid",
        "transport",
        "user",
    )

    def __init__(
        self,
        sid: str,
        user: User,
        transport: Transport,
        opened_at: float,
        login_id: str = "",
        bucket: TokenBucket | None = None,
    ) -> None:
        self.sid = sid
        self.user = user
        self.transport = transport
        self.opened_at = opened_at
        self.login_id = login_id
        self.bucket = bucket
        self.peer: Peer[Session] | None = None
        # While a replay runs, live frames wait here as (seq or 0, frame); None when no replay runs.
        self.held: list[tuple[int, Outgoing]] | None = None
        # Their size: it counts against the buffer cap like bytes written but not yet sent.
        self.held_bytes = 0
        # Sequence number of the first message delivered live; a later resume replays only below it.
        self.live_floor = 0
        self.close_reason = CLOSED_BY_CLIENT
        # Set once the server has cleaned up after it (exactly once, whatever ended it).
        self.forgotten = False

    @property
    def replaying(self) -> bool:
        return self.held is not None

    def hold(self, seq: int, frame: Outgoing) -> int:
        """Keep a live frame until the replay is done; returns the bytes now waiting for this session."""
        held = self.held
        if held is not None:
            held.append((seq, frame))
            self.held_bytes += len(frame.websocket)
        return self.held_bytes + self.transport.buffered_bytes

    def take_held(self) -> list[tuple[int, Outgoing]]:
        """End holding: the frames kept during the replay, in order."""
        held, self.held, self.held_bytes = self.held or [], None, 0
        return held

    def __repr__(self) -> str:
        return f"<Session {self.sid} of {self.user.name}>"


class SessionSink(Protocol):
    """Where a transport's handler reports what happens to its session (the chat service implements it)."""

    def open_session(self, transport: Transport, admitted: Admitted) -> Session: ...

    def receive(self, session: Session, data: str | bytes) -> None: ...

    def frame_received(self, session: Session) -> None:
        """A frame that carried no message of its own (a continuation, a close) arrived: count it."""
        ...

    def ping_received(self, session: Session) -> None: ...

    def pong_received(self, session: Session, payload: bytes) -> None: ...

    def protocol_violated(self, session: Session, code: int) -> None:
        """The client broke the protocol; ``code`` is the close code it will get (1009: too large)."""
        ...

    def transport_overflowed(self, session: Session) -> None:
        """The transport has more queued than ``--max-buffered-bytes`` (called from the loop, never inline)."""
        ...

    def forget_session(self, session: Session) -> None: ...
