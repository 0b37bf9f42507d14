"""Room moderation as pure operations on the hub: create, invite, kick, ban, unban, topic, roles, transfer.

Each operation checks who may do it (``roles``), changes the hub, and returns
an ``Outcome``: the frames it causes, each encoded once, the answer for the
acting session, and what the store must record. No I/O; ``now`` (seconds
since the epoch) is passed in. A refusal raises ``ProtocolError``: a private
room a user may not see is ``unknown_room`` before anything else is checked,
so a refusal never tells a non-member more than that the room does not exist.

Who may do what: a room's moderators and owner invite, kick, ban, unban and set
the topic; its owner also promotes, demotes and transfers ownership; server
admins do all of it in every room. Kicks and bans need a rank above the
target's. An action that would change nothing is answered all the same, and
records nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from . import server_frames
from .hub import Delivery, Hub
from .protocol import ErrorCode, ProtocolError
from .roles import MODERATOR, MODERATOR_RANK, OWNER, OWNER_RANK, role_rank
from .room_frames import Ban, CreateRoom, Demote, Invite, Kick, MemberAction, Promote, SetTopic, Transfer, Unban
from .room_limits import RoomLimits
from .rooms import Room
from .session import Session, User
from .store import AuditEntry, BanChange, MembershipChange, RoleChange, RoomSettings, RoomWrite

# Why a user's membership ended, in the ``removed`` frame they get.
REMOVED_KICKED = "kicked"
REMOVED_BANNED = "banned"


@dataclass(slots=True)
class Outcome:
    """What one moderation action did: ``answer`` for the acting session, ``deliveries`` for everyone else,
    and the ``writes`` the store must make, together (memberships, settings, roles, bans, the audit entry)."""

    answer: bytes
    deliveries: list[Delivery] = field(default_factory=list)
    writes: list[RoomWrite] = field(default_factory=list)

    @property
    def audited(self) -> list[AuditEntry]:
        return [write for write in self.writes if isinstance(write, AuditEntry)]


def forbidden(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.FORBIDDEN, message)


class RoomAdmin:
    """The moderation operations of one hub (see the module docstring)."""

    def __init__(self, hub: Hub, limits: RoomLimits) -> None:
        self.hub = hub
        self.limits = limits

    def create(self, session: Session, frame: CreateRoom) -> Outcome:
        """A new room, public or private, with the creator as its only member and owner."""
        hub = self.hub
        user = session.user
        room = hub.create_room(frame.room, frame.private)
        room.topic = frame.topic
        hub.add_member(user, room, "joined")
        room.roles[user.name] = OWNER
        others = [other for other in user.sessions.values() if other is not session]
        outcome = Outcome(hub.room_frame("joined", room, True, frame.frame_id))
        if others:
            outcome.deliveries.append(Delivery(hub.room_frame("joined", room, True), others))
        # The room's settings first: never a moment when a private room is stored as public with a member.
        outcome.writes += [
            RoomSettings(room.name, room.private, room.topic),
            MembershipChange(room.name, user.name, True, hub.last_seq),
            RoleChange(room.name, user.name, OWNER),
        ]
        return outcome

    def act(self, session: Session, frame: MemberAction | SetTopic, now: float) -> Outcome:
        """Carry out an owner's or moderator's action; raises ``ProtocolError`` when it is refused."""
        hub = self.hub
        actor = session.user
        room = hub.visible_room(frame.room, actor)
        rank = hub.rank(room, actor.name)
        owner_only = isinstance(frame, (Promote, Demote, Transfer))
        if rank < (OWNER_RANK if owner_only else MODERATOR_RANK):
            who = "owner" if owner_only else "owner and moderators"
            raise forbidden(f"only the room's {who} may {frame.label} in room {room.name!r}")
        outcome = Outcome(b"")
        if isinstance(frame, SetTopic):
            changed = self._set_topic(room, frame.topic, outcome)
            target = None
        else:
            target = frame.user
            user = hub.users.get(target)
            if user is None:
                raise ProtocolError(ErrorCode.UNKNOWN_USER, f"no user is called {target!r}")
            changed = self._member_action(frame, room, rank, user, actor.name, now, outcome)
        if changed:
            outcome.writes.append(AuditEntry(now, actor.name, frame.label, room.name, target))
            # An invitee has the room's state in its own ``joined`` frame.
            invitee = self._sessions_of(target) if isinstance(frame, Invite) else ()
            outcome.deliveries += self._room_state(room, skip={session, *invitee})
        outcome.answer = hub.room_frame("room", room, rank >= MODERATOR_RANK, frame.frame_id)
        return outcome

    # ------------------------------------------------------------ the actions

    def _set_topic(self, room: Room, topic: str, outcome: Outcome) -> bool:
        if room.topic == topic:
            return False
        room.topic = topic
        outcome.writes.append(RoomSettings(room.name, room.private, topic))
        return True

    def _member_action(
        self, frame: MemberAction, room: Room, rank: int, user: User, by: str, now: float, outcome: Outcome
    ) -> bool:
        """Apply one action on ``user``; whether it changed anything."""
        name = user.name
        member = name in room.members
        if isinstance(frame, (Kick, Ban)) and role_rank(room.roles.get(name), member) >= rank:
            raise forbidden(f"you may not {frame.label} {name} from room {room.name!r}")
        match frame:
            case Invite():
                if member:
                    return False
                if name in room.banned:
                    raise ProtocolError(ErrorCode.BANNED, f"{name} is banned from room {room.name!r}; unban first")
                self.limits.admit_invitee(user)
                outcome.deliveries += self.hub.add_member(user, room, "invited", by)
                outcome.deliveries.append(Delivery(self._joined(room, name), tuple(user.sessions.values())))
                outcome.writes.append(MembershipChange(room.name, name, True, self.hub.last_seq))
                return True
            case Kick():
                if not member:
                    raise ProtocolError(ErrorCode.NOT_MEMBER, f"{name} is not a member of room {room.name!r}")
                self._remove(room, user, REMOVED_KICKED, by, outcome)
                return True
            case Ban():
                if name in room.banned:
                    return False
                room.banned.add(name)
                if member:
                    self._remove(room, user, REMOVED_BANNED, by, outcome)
                outcome.writes.append(BanChange(room.name, name, True, by, now))
                return True
            case Unban():
                if name not in room.banned:
                    return False
                room.banned.discard(name)
                outcome.writes.append(BanChange(room.name, name, False, by, now))
                return True
        if not member:
            raise ProtocolError(ErrorCode.NOT_MEMBER, f"{name} is not a member of room {room.name!r}")
        role = room.roles.get(name)
        if isinstance(frame, Transfer):
            return self._transfer(room, name, outcome)
        if role == OWNER:
            raise forbidden(f"{name} owns room {room.name!r}: ownership moves only by transfer")
        new_role = MODERATOR if isinstance(frame, Promote) else None
        if role == new_role:
            return False
        self._set_role(room, name, new_role, outcome)
        return True

    def _transfer(self, room: Room, name: str, outcome: Outcome) -> bool:
        if room.roles.get(name) == OWNER:
            return False
        for previous in [member for member, role in room.roles.items() if role == OWNER]:
            self._set_role(room, previous, MODERATOR, outcome)
        self._set_role(room, name, OWNER, outcome)
        return True

    @staticmethod
    def _set_role(room: Room, name: str, role: str | None, outcome: Outcome) -> None:
        if role is None:
            room.roles.pop(name, None)
        else:
            room.roles[name] = role
        outcome.writes.append(RoleChange(room.name, name, role))

    def _remove(self, room: Room, user: User, reason: str, by: str, outcome: Outcome) -> None:
        """End ``user``'s membership: their sessions stop receiving the room at once and are told why."""
        outcome.deliveries += self.hub.remove_member(user, room, reason, by)
        if user.sessions:
            removed = server_frames.encode({"type": "removed", "room": room.name, "reason": reason, "by": by})
            outcome.deliveries.append(Delivery(removed, tuple(user.sessions.values())))
        outcome.writes.append(MembershipChange(room.name, user.name, False, self.hub.last_seq))

    # ------------------------------------------------------------ frames

    def _joined(self, room: Room, name: str) -> bytes:
        return self.hub.room_frame("joined", room, self.hub.rank(room, name) >= MODERATOR_RANK)

    def _sessions_of(self, name: str | None) -> Iterable[Session]:
        user = self.hub.users.get(name) if name is not None else None
        return user.sessions.values() if user is not None else ()

    def _room_state(self, room: Room, skip: set[Session]) -> list[Delivery]:
        """The room's new state for every member's open session but ``skip``; who is banned for those who
        may see it."""
        hub = self.hub
        with_bans: list[Session] = []
        without: list[Session] = []
        for session in hub.online_sessions(room):
            if session not in skip:
                sees = hub.rank(room, session.user.name) >= MODERATOR_RANK
                (with_bans if sees else without).append(session)
        groups = ((True, with_bans), (False, without))
        return [Delivery(hub.room_frame("room", room, sees, None), group) for sees, group in groups if group]
