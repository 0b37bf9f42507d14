"""A room as the hub keeps it, and the frames that tell clients what a room is and who is in it.

Pure code. ``Hub`` owns the rooms and changes them; this module holds the room's state and builds its
frames (``joined``/``room``, ``left``, ``member``), given who is online.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from . import server_frames
from .protocol import ErrorCode, ProtocolError
from .session import Session


class Room:
    """A room and its members (user names). The tuple of online member sessions is cached for fan-out.

    A ``private`` room is seen only by its members (and server admins); ``roles`` holds the members who are
    more than plain members (owner, moderators); ``banned`` users cannot join. ``online`` counts the members
    with an open session, kept as sessions come and go, so that a page of the room list costs nothing per
    member. ``first_seq`` is the position at which this room was made: a room made again under the name of one
    that emptied and was deleted is a new room, and the messages below it (its history, its search results, its
    unread counts) are not its own.
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


class MembershipObserver(Protocol):
    """Told of every membership that ends (left, kicked, banned, account removed), and whether the room went
    with it: the read state forgets what it kept for them."""

    def membership_ended(self, user: str, room: str, room_gone: bool) -> None: ...


def no_room(room_name: str) -> ProtocolError:
    """The refusal for a room that does not exist, and for a private room to a non-member: the same words."""
    return ProtocolError(ErrorCode.UNKNOWN_ROOM, f"there is no room called {room_name!r}")


def membership_frame(kind: str, room: Room, online: Callable[[str], bool]) -> bytes:
    """``left`` (to the user who left): the room's members and who of them is online."""
    members = sorted(room.members)
    return server_frames.encode(
        {"type": kind, "room": room.name, "members": members, "online": [name for name in members if online(name)]}
    )


def room_frame(kind: str, room: Room, online: Callable[[str], bool], with_bans: bool, frame_id: object) -> bytes:
    """``joined`` or ``room``: the room's members, who is online, its kind, topic and roles.

    ``with_bans`` (for its moderators, owner and admins) adds who is banned.
    """
    members = sorted(room.members)
    frame: dict[str, object] = {
        "type": kind,
        "room": room.name,
        "members": members,
        "online": [name for name in members if online(name)],
        "private": room.private,
        "topic": room.topic,
        "roles": dict(sorted(room.roles.items())),
    }
    if with_bans:
        frame["banned"] = sorted(room.banned)
    if frame_id is not None:
        frame["id"] = frame_id
    return server_frames.encode(frame)


def member_frame(room: Room, user_name: str, event: str, by: str | None = None) -> bytes:
    """``member``: to the other members, who joined, left, was invited, kicked or banned (``by`` whom)."""
    frame = {"type": "member", "room": room.name, "user": user_name, "event": event, "count": len(room.members)}
    if by is not None:
        frame["by"] = by
    return server_frames.encode(frame)
