"""Session registry and router: users, their sessions, rooms, presence.

Pure code: no sockets, no clock, no Tornado. Every operation returns the
deliveries it causes, as ``Delivery(frame, recipients)`` pairs in which each
frame is encoded once however many sessions receive it; the network layer
writes them. Membership of rooms, direct conversations ("contacts") and group
conversations belong to the user, so every session of a user sees the same rooms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from . import server_frames
from .conversations import direct_key, group_key, key_of, people_of, room_key, room_of
from .protocol import ErrorCode, ProtocolError
from .roles import MODERATOR_RANK, actor_rank
from .room_pages import RoomIndex, RoomPage, room_page
from .rooms import MembershipObserver, Room, member_frame, membership_frame, no_room, room_frame
from .server_frames import Message
from .session import Session, User


class Delivery(NamedTuple):
    """One encoded frame and the sessions it goes to."""

    frame: bytes
    recipients: Sequence[Session]


class Hub:
    """All users, sessions and rooms of one server. Owned by one application object."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.rooms: dict[str, Room] = {}
        # Every room's name, and the public ones' apart: a page of the room list reads only what it shows.
        self.room_index = RoomIndex()
        self.public_index = RoomIndex()
        self.sessions: dict[str, Session] = {}
        self.users_online = 0
        # Highest sequence number handed out so far (committed by the store).
        self.last_seq = 0
        # Server admins: they see every room and outrank everyone in it.
        self.admins: set[str] = set()
        # Told when a membership ends (and whether its room went): see rooms.MembershipObserver.
        self.membership_observers: list[MembershipObserver] = []

    # ------------------------------------------------------------ state

    def add_user(self, name: str) -> User:
        """The user called ``name``, made known if new (idempotent)."""
        user = self.users.get(name)
        if user is None:
            user = self.users[name] = User(name, self.last_seq)
        return user

    def remove_user(self, name: str) -> list[Session]:
        """Forget a user (account deleted); returns their open sessions for the caller to close."""
        self.admins.discard(name)
        user = self.users.pop(name, None)
        if user is None:
            return []
        open_sessions = list(user.sessions.values())
        for room_name in list(user.rooms):
            self._drop_member(user, self.rooms[room_name])
        for contact in user.contacts:
            other = self.users.get(contact)
            if other is not None:
                other.contacts.discard(name)
        for key in user.groups:
            for member in people_of(key):
                if (other := self.users.get(member)) is not None:
                    other.groups.discard(key)
        return open_sessions

    def restore_membership(self, user_name: str, room_name: str) -> None:
        """Load a membership from the store at start-up (no frames). Rooms exist through their members."""
        room = self.rooms.get(room_name) or self._create_room(room_name, 0)  # its first_seq comes with its state
        user = self.add_user(user_name)
        room.members.add(user_name)
        user.rooms.add(room_name)

    def restore_room_state(self, room_name: str, private: bool, topic: str, first_seq: int) -> None:
        """Load a room's kind and topic (after the memberships); ignored for a room without members."""
        room = self.rooms.get(room_name)
        if room is not None:
            self._set_private(room, private)
            room.topic = topic
            room.first_seq = first_seq

    def restore_role(self, room_name: str, user_name: str, role: str) -> None:
        """Load a member's role (owner, moderator); ignored for a room or a member no longer there."""
        room = self.rooms.get(room_name)
        if room is not None and user_name in room.members:
            room.roles[user_name] = role

    def restore_ban(self, room_name: str, user_name: str) -> None:
        """Load a ban (after the memberships); ignored for a room without members (deleted with its bans)."""
        room = self.rooms.get(room_name)
        if room is not None:
            room.banned.add(user_name)

    def restore_contact(self, a: str, b: str) -> None:
        self.add_user(a).contacts.add(b)
        self.add_user(b).contacts.add(a)

    def restore_group(self, members: tuple[str, ...]) -> None:
        key = group_key(members)
        for name in members:
            self.add_user(name).groups.add(key)

    def _create_room(self, name: str, first_seq: int) -> Room:
        room = self.rooms[name] = Room(name, first_seq)
        self.room_index.add(name)
        self.public_index.add(name)
        return room

    def create_room(self, name: str, private: bool) -> Room:
        """A new, empty room; raises ``room_exists`` when the name is taken (by any room)."""
        if name in self.rooms:
            raise ProtocolError(ErrorCode.ROOM_EXISTS, f"the room name {name!r} is taken")
        room = self._create_room(name, self.last_seq)
        self._set_private(room, private)
        return room

    def _set_private(self, room: Room, private: bool) -> None:
        room.private = private
        if private:
            self.public_index.remove(room.name)
        else:
            self.public_index.add(room.name)

    def may_see(self, room: Room, name: str) -> bool:
        """Whether user ``name`` may know that ``room`` exists: public rooms, their own, any for admins."""
        return not room.private or name in room.members or name in self.admins

    def rank(self, room: Room, name: str) -> int:
        """The rank of user ``name`` acting in ``room`` (``roles``)."""
        return actor_rank(room.roles.get(name), name in room.members, name in self.admins)

    def visible_room(self, name: str, user: User) -> Room:
        """The room called ``name`` if ``user`` may see it; raises ``unknown_room`` otherwise."""
        room = self.rooms.get(name)
        if room is None or not self.may_see(room, user.name):
            raise no_room(name)
        return room

    def online_sessions(self, room: Room) -> tuple[Session, ...]:
        """Every open session of every member of ``room`` (cached until membership or sessions change)."""
        cached = room._online
        if cached is None:
            users = self.users
            cached = room._online = tuple(
                session for member in room.members for session in users[member].sessions.values()
            )
        return cached

    # ------------------------------------------------------------ sessions

    def open_session(self, session: Session) -> list[Delivery]:
        """Register a new session of a known user (``add_user``); when it is the user's first, tell those
        who share a room or conversation."""
        user = session.user
        first = not user.sessions
        user.sessions[session.sid] = session
        self.sessions[session.sid] = session
        self._invalidate_rooms_of(user)
        deliveries: list[Delivery] = []
        if first:
            self.users_online += 1
            self._count_online(user, 1)
            watchers = self._watchers(user)
            if watchers:
                deliveries.append(Delivery(server_frames.presence_frame(user.name, True), watchers))
        return deliveries

    def close_session(self, session: Session) -> list[Delivery]:
        """Forget a session (idempotent); when it was the user's last, tell the others the user is offline."""
        if self.sessions.pop(session.sid, None) is None:
            return []
        user = session.user
        del user.sessions[session.sid]
        self._invalidate_rooms_of(user)
        if user.sessions:
            return []
        self.users_online -= 1
        self._count_online(user, -1)
        user.offline_since_seq = self.last_seq
        watchers = self._watchers(user)
        return [Delivery(server_frames.presence_frame(user.name, False), watchers)] if watchers else []

    def _count_online(self, user: User, change: int) -> None:
        rooms = self.rooms
        for room_name in user.rooms:
            rooms[room_name].online += change

    def _invalidate_rooms_of(self, user: User) -> None:
        rooms = self.rooms
        for room_name in user.rooms:
            rooms[room_name]._online = None

    def _peers(self, user: User) -> list[User]:
        """The other known users who share a room or a direct conversation with ``user``."""
        names: set[str] = set(user.contacts)
        for room_name in user.rooms:
            names.update(self.rooms[room_name].members)
        for key in user.groups:
            names.update(people_of(key))
        names.discard(user.name)
        users = self.users
        return [other for name in names if (other := users.get(name)) is not None]

    def _watchers(self, user: User) -> list[Session]:
        """Open sessions of the users who share a room or a direct conversation with ``user``."""
        return [session for other in self._peers(user) for session in other.sessions.values()]

    def peers_online(self, user: User) -> list[str]:
        """Names of the online users who share a room or a conversation with ``user``, sorted."""
        return sorted(other.name for other in self._peers(user) if other.online)

    # ------------------------------------------------------------ rooms

    def join(self, session: Session, room_name: str) -> tuple[bool, list[Delivery]]:
        """Make the session's user a member of ``room_name`` (created if new).

        Returns whether membership changed (the caller persists it) and the
        deliveries: ``joined`` with the member list to every session of the user,
        ``member`` to the other members' sessions when the user is new there.
        """
        user = session.user
        room = self.rooms.get(room_name) or self._create_room(room_name, self.last_seq)
        changed = user.name not in room.members
        if changed and user.name not in self.admins:
            if room.private:
                raise no_room(room_name)  # a name taken, and nothing else about the room
            if user.name in room.banned:
                raise ProtocolError(ErrorCode.BANNED, f"you are banned from room {room_name!r}")
        deliveries = self.add_member(user, room, "joined") if changed else []
        frame = self.room_frame("joined", room, self.rank(room, user.name) >= MODERATOR_RANK)
        deliveries.append(Delivery(frame, tuple(user.sessions.values())))
        return changed, deliveries

    def add_member(self, user: User, room: Room, event: str, by: str | None = None) -> list[Delivery]:
        """Make ``user`` a member of ``room`` (no checks); the ``member`` event for the other members."""
        others = self.online_sessions(room)
        if user.name not in room.members:
            room.online += user.online
        room.members.add(user.name)
        user.rooms.add(room.name)
        room._online = None
        return [Delivery(member_frame(room, user.name, event, by), others)] if others else []

    def remove_member(self, user: User, room: Room, event: str, by: str | None = None) -> list[Delivery]:
        """End ``user``'s membership of ``room`` (no checks); the ``member`` event for the other members."""
        self._drop_member(user, room)
        others = self.online_sessions(room)
        return [Delivery(member_frame(room, user.name, event, by), others)] if others else []

    def leave(self, session: Session, room_name: str) -> list[Delivery]:
        """End the user's membership of ``room_name``; raises ``not_member`` if there is none."""
        user = session.user
        room = self.visible_room(room_name, user)
        if user.name not in room.members:
            raise ProtocolError(ErrorCode.NOT_MEMBER, f"you are not a member of room {room_name!r}")
        deliveries = self.remove_member(user, room, "left")
        deliveries.insert(0, Delivery(membership_frame("left", room, self.is_online), tuple(user.sessions.values())))
        return deliveries

    def _drop_member(self, user: User, room: Room) -> None:
        """End a membership. A room left empty is gone, with its roles and bans, public or private: its name is
        free, and a later join or create makes a new room, which shows no history from before it."""
        if user.name in room.members:
            room.online -= user.online
        room.members.discard(user.name)
        room.roles.pop(user.name, None)
        user.rooms.discard(room.name)
        room._online = None
        gone = not room.members and self.rooms.get(room.name) is room
        if gone:
            del self.rooms[room.name]
            self.room_index.remove(room.name)
            self.public_index.remove(room.name)
        for observer in self.membership_observers:
            observer.membership_ended(user.name, room.name, gone)

    def room_frame(self, kind: str, room: Room, with_bans: bool, frame_id: object = None) -> bytes:
        """``joined`` or ``room`` (``rooms.room_frame``); ``with_bans`` for its moderators, owner and admins."""
        return room_frame(kind, room, self.is_online, with_bans, frame_id)

    def is_online(self, name: str) -> bool:
        user = self.users.get(name)
        return user is not None and user.online

    def room_page(self, user: User, after: str | None, limit: int) -> RoomPage:
        """A page of the rooms ``user`` may see after ``after`` in name order, with their counts, kind and topic,
        and whether ``user`` is a member: the public rooms and the user's private ones (every room, for an admin).
        """
        if user.name in self.admins:
            return room_page(self.room_index, (), self.rooms, user.rooms, after, limit)
        rooms = self.rooms
        private = [name for name in user.rooms if rooms[name].private]
        return room_page(self.public_index, private, rooms, user.rooms, after, limit)

    # ------------------------------------------------------------ messages

    def check_target(self, user: User, room: str | None, other_user: str | None) -> None:
        """Raise ``unknown_room``/``not_member``/``unknown_user`` unless ``user`` may send to or read this room
        or conversation. A private room is, to a non-member, a room that does not exist."""
        if room is not None:
            if room not in user.rooms:
                self.visible_room(room, user)
                raise ProtocolError(ErrorCode.NOT_MEMBER, f"you are not a member of room {room!r}")
        elif other_user not in self.users:
            raise ProtocolError(ErrorCode.UNKNOWN_USER, f"no user is called {other_user!r}")

    def check_people(self, names: tuple[str, ...]) -> None:
        """Raise ``unknown_user`` unless every one of ``names`` is a known user."""
        for name in names:
            if name not in self.users:
                raise ProtocolError(ErrorCode.UNKNOWN_USER, f"no user is called {name!r}")

    def readable_keys(self, user: User) -> list[str]:
        """The keys of every conversation ``user`` may read: rooms, direct (notes to self included), groups."""
        keys = [room_key(room) for room in sorted(user.rooms)]
        keys.extend(direct_key(user.name, other) for other in sorted({*user.contacts, user.name}))
        keys.extend(sorted(user.groups))
        return keys

    def sessions_in(self, key: str) -> list[Session]:
        """Every open session of the people in a conversation (for a room: its members)."""
        room_name = room_of(key)
        if room_name is not None:
            room = self.rooms.get(room_name)
            return list(self.online_sessions(room)) if room is not None else []
        users = self.users
        return [session for name in people_of(key) if name in users for session in users[name].sessions.values()]

    def route(self, message: Message) -> tuple[list[Delivery], list[Delivery]]:
        """Who gets a committed message: every online session of the room, or of both users of a conversation.

        Returns the message deliveries and, when a message starts a conversation,
        the presence notices that come with it. The sending session is among the
        recipients; the network layer skips it (it gets an ack instead).
        """
        self.last_seq = max(self.last_seq, message.seq)
        frame = server_frames.message_frame(message, own=False)
        if message.room is not None:
            room = self.rooms.get(message.room)
            if room is None:
                return [], []
            return [Delivery(frame, self.online_sessions(room))], []
        if message.members is not None:
            return self._route_group(message.members, frame)
        sender = self.users[message.sender]
        recipient = self.users.get(message.to or "")
        if recipient is None:
            return [], []
        notices: list[Delivery] = []
        if recipient is not sender and message.to not in sender.contacts:
            # A new conversation: each side now watches the other's presence, starting with where it stands.
            sender.contacts.add(recipient.name)
            recipient.contacts.add(sender.name)
            if sender.sessions:
                presence = server_frames.presence_frame(recipient.name, recipient.online)
                notices.append(Delivery(presence, tuple(sender.sessions.values())))
            if recipient.sessions:
                presence = server_frames.presence_frame(sender.name, sender.online)
                notices.append(Delivery(presence, tuple(recipient.sessions.values())))
        sessions = list(recipient.sessions.values())
        if recipient is not sender:
            sessions.extend(sender.sessions.values())
        return ([Delivery(frame, sessions)] if sessions else []), notices

    def audience(self, message: Message) -> list[Session]:
        """The open sessions that see ``message`` now: its room's members', or those of its conversation's people."""
        return self.sessions_in(key_of(message))

    def _route_group(self, members: tuple[str, ...], frame: bytes) -> tuple[list[Delivery], list[Delivery]]:
        """A group message goes to every session of every member. A new group first tells each member
        where the others stand, as a new direct conversation does."""
        key = group_key(members)
        people = [user for name in members if (user := self.users.get(name)) is not None]
        notices: list[Delivery] = []
        for user in people:
            if key in user.groups:
                continue
            user.groups.add(key)
            if user.sessions:
                notices.extend(
                    Delivery(server_frames.presence_frame(other.name, other.online), tuple(user.sessions.values()))
                    for other in people
                    if other is not user
                )
        sessions = [session for user in people for session in user.sessions.values()]
        return ([Delivery(frame, sessions)] if sessions else []), notices
