"""Read state on the server: ``read`` frames, read positions kept across devices, and unread counts.

A user's position in a conversation moves forward with a ``read`` frame (clamped to the newest seq that
exists), with every message they send, and to the present when they join a room (by ``join``, ``create``
or an invitation). Each change is stored
(``MessageStore.set_read_position``) and sent to every session of the user as a ``read`` frame, so that
all their tabs and devices agree. ``welcome`` and ``rooms`` carry the counts (``unread``, ``mentions``)
computed here by ``unread.UnreadCounter``, for the conversations the user may read now: the rooms they are
a member of (never a room they left or were removed from, never a private room they are not in), their
direct and group conversations.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from . import server_frames
from .addressing import key_for
from .conversation_frames import Read
from .conversations import direct_key, key_of, people_of, room_key, room_of, wire_target
from .hub import Delivery, Hub
from .server_frames import Message
from .session import Session, User
from .store import MessageStore, Snapshot
from .unread import UnreadCounter


class ReadWriter(Protocol):
    """How read state reaches sessions (the chat service)."""

    def send(self, session: Session, payload: bytes) -> None: ...

    def deliver(self, deliveries: Iterable[Delivery]) -> None: ...


class ReadState:
    """Read positions and unread counts of one server's users (see the module docstring)."""

    def __init__(self, hub: Hub, store: MessageStore, writer: ReadWriter, counter: UnreadCounter | None = None):
        self.hub = hub
        self.store = store
        self.writer = writer
        self.counter = counter if counter is not None else UnreadCounter()

    def restore(self, snapshot: Snapshot) -> None:
        """Load positions, recent seqs and unread mentions at start (positions before mentions), after the hub's
        rooms: a room's messages count from where the room was made (``Room.first_seq``), and those of a room
        that is gone count for nobody."""
        counter = self.counter
        for key, seqs in snapshot.recent_seqs.items():
            floor = self._floor(key)
            if floor is not None:
                counter.restore_thread(key, [seq for seq in seqs if seq > floor])
        for user, key, seq in snapshot.read_positions:
            room_name = room_of(key)
            room = self.hub.rooms.get(room_name) if room_name is not None else None
            if room_name is None or (room is not None and user in room.members):  # a room's: its members'
                counter.restore_position(user, key, seq)
        for name, key, seq in snapshot.mentions:
            floor = self._floor(key)
            if floor is not None and seq > floor:
                counter.add_mention(name, key, seq)

    def _floor(self, key: str) -> int | None:
        """Where a conversation's messages start: a room's ``first_seq``, 0 for the others; None for a room that
        is gone (nobody reads it)."""
        room_name = room_of(key)
        if room_name is None:
            return 0
        room = self.hub.rooms.get(room_name)
        return room.first_seq if room is not None else None

    # ------------------------------------------------------------ changes

    def stored(self, message: Message) -> None:
        """A message was stored: count it (and move its sender's position to it)."""
        self.counter.add(key_of(message), message.seq, message.sender, message.mentions)

    def changed(self, message: Message, previous: tuple[str, ...]) -> None:
        """A message was edited or deleted: its mentions went from ``previous`` to ``message.mentions``.
        Unread mention counts follow the text as it stands; nobody is told (or notified) anew."""
        self.counter.change_mentions(key_of(message), message.seq, previous, message.mentions)

    def joined(self, user: User, room: str) -> None:
        """A user joined a room: what was said before is not unread, and their sessions hear so."""
        key = room_key(room)
        self.advance(user.name, key, self.hub.last_seq)
        payload = server_frames.encode({"type": "read", **self.entry(user.name, key)})
        self.writer.deliver([Delivery(payload, tuple(user.sessions.values()))])

    def advance(self, user: str, key: str, seq: int) -> bool:
        if not self.counter.advance(user, key, seq):
            return False
        self.store.set_read_position(user, key, seq)
        return True

    def read(self, session: Session, frame: Read) -> None:
        """A ``read`` frame: move the position; every session of the user hears where it now stands (only
        the asking one when it did not move)."""
        user = session.user
        key = key_for(self.hub, user, frame.target)
        if self.advance(user.name, key, min(frame.seq, self.hub.last_seq)):
            payload = server_frames.encode({"type": "read", **self.entry(user.name, key)})
            self.writer.deliver([Delivery(payload, tuple(user.sessions.values()))])
        else:
            self.writer.send(session, server_frames.encode({"type": "read", **self.entry(user.name, key)}))

    def forget_user(self, user: str) -> None:
        self.counter.forget_user(user)

    def membership_ended(self, user: str, room: str, room_gone: bool) -> None:
        """A user is out of a room (``rooms.MembershipObserver``): their position there goes (a return starts
        read up to then, as a join does), and a room that went takes its counts with it, so that a room made
        again under its name counts nothing of it. The store forgets the same (``set_membership``)."""
        key = room_key(room)
        self.counter.forget_position(user, key)
        if room_gone:
            self.counter.forget_thread(key)

    # ------------------------------------------------------------ what clients are told

    def entry(self, user: str, key: str) -> dict[str, Any]:
        """A conversation as seen by ``user``: its target, read position, counts and newest seq."""
        unread, mentions = self.counter.counts(user, key)
        return {
            **wire_target(key, user),
            "seq": self.counter.position(user, key),
            "unread": unread,
            "mentions": mentions,
            "last": self.counter.last_seq(key),
        }

    def welcome_fields(self, user: User) -> dict[str, Any]:
        """``groups`` (each by its other members) and ``unread`` (every conversation of the user)."""
        keys = [room_key(room) for room in sorted(user.rooms)]
        keys.extend(direct_key(user.name, other) for other in sorted(user.contacts))
        if self.counter.last_seq(own := direct_key(user.name, user.name)):
            keys.append(own)
        keys.extend(sorted(user.groups))
        groups = [[name for name in people_of(key) if name != user.name] for key in sorted(user.groups)]
        return {"groups": groups, "unread": [self.entry(user.name, key) for key in keys]}

    def room_list(self, user: User, after: str | None, limit: int) -> bytes:
        """A ``rooms`` frame: a page of the room list (``Hub.room_page``), with the counts of the user's own
        rooms."""
        page = self.hub.room_page(user, after, limit)
        for entry in page.rooms:
            if entry["member"]:
                entry["unread"], entry["mentions"] = self.counter.counts(user.name, room_key(str(entry["room"])))
        return page.frame()
