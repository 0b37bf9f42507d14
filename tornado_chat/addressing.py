"""Who a frame is about: the conversation a frame names, checked against what the user may read, and the
mentions of a text in its conversation (of a new message, and of an edit).

Pure code: it reads the hub (rooms, roles, users, group member sets) and changes nothing.
"""

from __future__ import annotations

from collections.abc import Collection

from . import mentions
from .conversation_frames import Target
from .conversations import Addressed, direct_key, group_key, group_members, room_key
from .hub import Hub
from .protocol import Send
from .roles import MODERATOR_RANK
from .session import User
from .store import Draft


def may_call_room(hub: Hub, user: User, room: str) -> bool:
    """Whether ``user`` may call everyone in ``room`` with ``@room``: its moderators and owner, and admins."""
    found = hub.rooms.get(room)
    return found is not None and hub.rank(found, user.name) >= MODERATOR_RANK


def key_for(hub: Hub, user: User, target: Target) -> str:
    """The key of the conversation ``target`` names, seen from ``user``; raises ``not_member`` (a room the
    user is not in), ``unknown_room`` (a private room they may not see), ``unknown_user`` (someone who never
    logged in) or ``bad_frame`` (a group too small or too large)."""
    if target.with_group is not None:
        members = group_members(user.name, target.with_group)
        hub.check_people(members)
        return group_key(members)
    hub.check_target(user, target.room, target.with_user)
    if target.room is not None:
        return room_key(target.room)
    return direct_key(user.name, target.with_user or user.name)


def mentions_in(hub: Hub, user: User, where: Addressed, text: str) -> tuple[str, ...]:
    """The mentions of ``text`` written by ``user`` in the conversation of ``where`` (a message or a draft):
    only people who can read it now (a room's members, a conversation's people) are named, and ``@room``
    counts only from someone who may call the room (``may_call_room``)."""
    if "@" not in text:
        return ()
    readers: Collection[str]
    if where.room is not None:
        room = hub.rooms.get(where.room)
        readers = room.members if room is not None else ()
    else:
        readers = where.members if where.members is not None else (where.sender, where.to or where.sender)
    room_wide = where.room is not None and may_call_room(hub, user, where.room)
    return mentions.resolve(text, readers, user.name, room_wide=room_wide)


def draft_for(hub: Hub, user: User, frame: Send, ts: float) -> Draft:
    """A ``send`` frame as a draft: its conversation checked, its mentions resolved against who can read it."""
    members = None
    if frame.group is not None:
        members = group_members(user.name, frame.group)
        hub.check_people(members)
    else:
        hub.check_target(user, frame.room, frame.to)
    draft = Draft(user.name, frame.text, ts, frame.client_id, frame.to, frame.room, members)
    draft.mentions = mentions_in(hub, user, draft, frame.text)
    return draft
