"""Who a frame is about: the conversation a frame names, checked against what the user may read, and the
draft of a message with its conversation and mentions resolved.

Pure code: it reads the hub (rooms, users, group member sets) and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from . import mentions
from .conversation_frames import Target
from .conversations import direct_key, group_key, group_members, room_key
from .hub import Hub
from .protocol import Send
from .session import User
from .store import Draft

# Whether a user may call everyone in a room with @room. Until rooms have roles, every member may.
RoomCallPolicy = Callable[[User, str], bool]


def any_member_may_call(user: User, room: str) -> bool:
    return room in user.rooms


def key_for(hub: Hub, user: User, target: Target) -> str:
    """The key of the conversation ``target`` names, seen from ``user``; raises ``not_member`` (a room the
    user is not in), ``unknown_user`` (someone who never logged in) or ``bad_frame`` (a group too small or
    too large)."""
    if target.with_group is not None:
        members = group_members(user.name, target.with_group)
        hub.check_people(members)
        return group_key(members)
    hub.check_target(user, target.room, target.with_user)
    if target.room is not None:
        return room_key(target.room)
    return direct_key(user.name, target.with_user or user.name)


def draft_for(hub: Hub, user: User, frame: Send, ts: float, may_call_room: RoomCallPolicy) -> Draft:
    """A ``send`` frame as a draft: its conversation checked, its mentions resolved against who can read it."""
    members = None
    if frame.group is not None:
        members = group_members(user.name, frame.group)
        hub.check_people(members)
    else:
        hub.check_target(user, frame.room, frame.to)
    found: tuple[str, ...] = ()
    if "@" in frame.text:
        if frame.room is not None:
            readers: set[str] | tuple[str, ...] = hub.rooms[frame.room].members
        else:
            readers = members if members is not None else (user.name, frame.to or user.name)
        room_wide = frame.room is not None and may_call_room(user, frame.room)
        found = mentions.resolve(frame.text, readers, user.name, room_wide=room_wide)
    return Draft(user.name, frame.text, ts, frame.client_id, frame.to, frame.room, members, found)
