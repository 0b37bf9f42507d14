"""Session registry and router: users, their sessions, rooms, presence.

Pure code: no sockets, no clock, no Tornado. Every operation returns the
deliveries it causes, as ``Delivery(frame, recipients)`` pairs in which each
frame is encoded once however many sessions receive it; the network layer
writes them. Membership of rooms and direct conversations ("contacts") belong
to the user, so every session of a user sees the same rooms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from . import server_frames
from .protocol import ErrorCode, ProtocolError
from .roles import MODERATOR_RANK, actor_rank
from .room_pages import RoomIndex, room_page_frame
from .server_frames import Message
from .session import Session, User


class Room:
    """A room and its members (user names). The tuple of online member sessions is cached for fan-out.

    A ``private`` room is seen only by its members (and server admins); ``roles`` holds the members who are
    more than plain members (owner, moderators); ``banned`` users cannot join. ``online`` counts the members
    with an open session, kept as sessions come and go, so that a page of the room list costs nothing per
    member. ``first_seq`` is the position at which this room was made: a room made again under the name of one
    that emptied and was deleted is a new room, and the messages below it are not its own.
    """

    __slots__ = ("_online", "banned", "first_seq", "members", "name", "online", "private", "roles", "topic")

    def __init__(self, name: str, first_seq: int = 0) -> None:
        self.name = name
        self.first_seq = first_seq
        self.members: set[str] = set()
        self.online = 0
        self._online: tuple[Session, ...] | None = None
        self.private = False
        self.topic = ""
        self.roles: dict[str, str] = {}
        self.banned: set[str] = set()


def no_room(room_name: str) -> ProtocolError:
    """The refusal for a room that does not exist, and for a private room to a non-member: the same words."""
    return ProtocolError(ErrorCode.UNKNOWN_ROOM, f"there is no room called {room_name!r}")


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
        return [Delivery(self._member_frame(room, user.name, event, by), others)] if others else []

    def remove_member(self, user: User, room: Room, event: str, by: str | None = None) -> list[Delivery]:
        """End ``user``'s membership of ``room`` (no checks); the ``member`` event for the other members."""
        self._drop_member(user, room)
        others = self.online_sessions(room)
        return [Delivery(self._member_frame(room, user.name, event, by), others)] if others else []

    def leave(self, session: Session, room_name: str) -> list[Delivery]:
        """End the user's membership of ``room_name``; raises ``not_member`` if there is none."""
        user = session.user
        room = self.visible_room(room_name, user)
        if user.name not in room.members:
            raise ProtocolError(ErrorCode.NOT_MEMBER, f"you are not a member of room {room_name!r}")
        deliveries = self.remove_member(user, room, "left")
        deliveries.insert(0, Delivery(self._membership_frame("left", room), tuple(user.sessions.values())))
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
        if not room.members and self.rooms.get(room.name) is room:
            del self.rooms[room.name]
            self.room_index.remove(room.name)
            self.public_index.remove(room.name)

    def _membership_frame(self, kind: str, room: Room) -> bytes:
        members = sorted(room.members)
        online = [name for name in members if self.users[name].online]
        return server_frames.encode({"type": kind, "room": room.name, "members": members, "online": online})

    def room_frame(self, kind: str, room: Room, with_bans: bool, frame_id: object = None) -> bytes:
        """``joined`` or ``room``: the room's members, who is online, its kind, topic and roles.

        ``with_bans`` (for its moderators, owner and admins) adds who is banned.
        """
        members = sorted(room.members)
        frame: dict[str, object] = {
            "type": kind,
            "room": room.name,
            "members": members,
            "online": [name for name in members if self.users[name].online],
            "private": room.private,
            "topic": room.topic,
            "roles": dict(sorted(room.roles.items())),
        }
        if with_bans:
            frame["banned"] = sorted(room.banned)
        if frame_id is not None:
            frame["id"] = frame_id
        return server_frames.encode(frame)

    @staticmethod
    def _member_frame(room: Room, user_name: str, event: str, by: str | None = None) -> bytes:
        frame = {"type": "member", "room": room.name, "user": user_name, "event": event, "count": len(room.members)}
        if by is not None:
            frame["by"] = by
        return server_frames.encode(frame)

    def room_list(self, user: User, after: str | None, limit: int) -> bytes:
        """A page of the rooms ``user`` may see after ``after`` in name order, with their counts, kind and topic,
        and whether ``user`` is a member: the public rooms and the user's private ones (every room, for an admin).
        """
        if user.name in self.admins:
            return room_page_frame(self.room_index, (), self.rooms, user.rooms, after, limit)
        rooms = self.rooms
        private = [name for name in user.rooms if rooms[name].private]
        return room_page_frame(self.public_index, private, rooms, user.rooms, after, limit)

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
        """The open sessions that see ``message`` now: its room's members', or both sides' of a conversation."""
        if message.room is not None:
            room = self.rooms.get(message.room)
            return list(self.online_sessions(room)) if room is not None else []
        names = {message.sender, message.to or ""}
        return [session for name in names if (user := self.users.get(name)) for session in user.sessions.values()]
