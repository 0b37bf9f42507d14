"""Typing notices: "alice is typing…", passed on to the others in a conversation and never stored.

A ``typing`` frame from a session reaches the open sessions of everyone else in the conversation (not the
sender's own other sessions) as ``{"type": "typing", "from": U, ...}`` with the conversation named as on a
message (``room``, ``to`` or ``members``). Clients show it for a few seconds. Each frame counts against the
rate limit like any other; on top of that, a session's notices for one conversation are passed on at most
once per ``TYPING_MIN_INTERVAL_S``, so that a client cannot turn its rate into fan-out to a large room.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from . import server_frames
from .addressing import key_for
from .conversation_frames import Typing
from .conversations import is_group, people_of, room_of
from .hub import Delivery, Hub
from .session import Session

# Pages send a notice at most every 3 s while someone types; anything faster is not passed on.
TYPING_MIN_INTERVAL_S = 2.0


class TypingWriter(Protocol):
    def deliver(self, deliveries: Iterable[Delivery]) -> None: ...


class TypingNotices:
    """Passes typing notices on (see the module docstring). Times are monotonic seconds."""

    def __init__(self, hub: Hub, writer: TypingWriter, monotonic: Callable[[], float]) -> None:
        self.hub = hub
        self.writer = writer
        self.monotonic = monotonic
        # Per session id: when its last notice for each conversation was passed on, for the last interval.
        self._last: dict[str, dict[str, float]] = {}

    def typing(self, session: Session, frame: Typing) -> int:
        """Pass a notice on; returns the number of sessions it went to (0 when it came too soon)."""
        user = session.user
        key = key_for(self.hub, user, frame.target)
        now = self.monotonic()
        recent = self._last.setdefault(session.sid, {})
        if now - recent.get(key, -TYPING_MIN_INTERVAL_S) < TYPING_MIN_INTERVAL_S:
            return 0
        for stale in [k for k, at in recent.items() if now - at >= TYPING_MIN_INTERVAL_S]:
            del recent[stale]  # only the last interval's matter: at most what the rate limit lets through
        recent[key] = now
        recipients = [other for other in self.hub.sessions_in(key) if other.user is not user]
        if recipients:
            self.writer.deliver([Delivery(typing_frame(user.name, key), recipients)])
        return len(recipients)

    def forget(self, session: Session) -> None:
        self._last.pop(session.sid, None)


def typing_frame(sender: str, key: str) -> bytes:
    """The notice, naming its conversation as a message frame does: ``room``, ``members`` or ``to``."""
    frame: dict[str, object] = {"type": "typing", "from": sender}
    room = room_of(key)
    if room is not None:
        frame["room"] = room
    elif is_group(key):
        frame["members"] = list(people_of(key))
    else:
        people = people_of(key)
        frame["to"] = next((name for name in people if name != sender), sender)
    return server_frames.encode(frame)
