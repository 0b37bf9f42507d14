"""Rooms, roles and moderation, edits and deletes, accounts disabled: the service side of ``room_frames``.

The chat service hands every frame of ``room_frames`` to ``Moderation.handle``.
Room actions are checked and applied by the pure core (``room_admin``) and
answered at once; what they changed is queued for the store, in order with
messages. Edits and deletes are stored first and only then answered and
delivered, like messages: the acting session gets the ``edited``/``deleted``
frame (with the frame's ``id``) in order behind any replay, every other open
session that sees the conversation gets it live (in a room, a direct or a
group conversation alike). An edit's mentions are parsed anew and carried on
its ``edited`` frame; it notifies nobody again, but the unread mention counts
follow the text as it now stands (a delete takes its mentions away).
Moderation actions are counted (``chat_moderation_actions_total``) and kept
in the audit log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Protocol

from . import server_frames
from .addressing import mentions_in
from .background import BackgroundTasks
from .hub import Delivery, Hub
from .metrics import ChatMetrics
from .protocol import ErrorCode, FrameId, ProtocolError
from .read_state import ReadState
from .roles import MODERATOR_RANK, OWNER_RANK
from .room_admin import Outcome, RoomAdmin, forbidden
from .room_frames import Audit, CreateRoom, Delete, Disable, Edit, MemberAction, RoomFrame, SetTopic
from .room_limits import RoomLimits
from .server_frames import Message
from .session import Session, User
from .store import AuditEntry, ChangeResult, MembershipChange, MessageChange, MessageStore, StoreError

DISABLE = "disable"
DELETE = "delete"


class ModerationWriter(Protocol):
    """How moderation writes to sessions (the chat service)."""

    tasks: BackgroundTasks

    def send(self, session: Session, payload: bytes) -> None: ...

    def send_in_order(self, session: Session, payload: bytes) -> None: ...

    def send_error(self, session: Session, code: ErrorCode, message: str, frame_id: FrameId = None) -> None: ...

    def deliver(self, deliveries: Iterable[Delivery]) -> None: ...

    def deliver_message(self, deliveries: Iterable[Delivery], seq: int, skip: Session | None) -> int: ...


class AccountControl(Protocol):
    """What moderation may do to accounts (the account service, through the server)."""

    def account_name(self, name: str) -> str | None:
        """The spelling of the account ``name`` names in any case (as a login finds it), or None."""
        ...

    async def disable_account(self, name: str, actor: str) -> bool:
        """Disable an account now: its sockets close, its tokens die. False when it was disabled already."""
        ...


class Moderation:
    """Handles the frames of ``room_frames`` for one server (see the module docstring)."""

    def __init__(
        self,
        writer: ModerationWriter,
        hub: Hub,
        store: MessageStore,
        metrics: ChatMetrics,
        accounts: AccountControl,
        limits: RoomLimits,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        read_state: ReadState,
    ) -> None:
        self.writer = writer
        self.hub = hub
        self.store = store
        self.metrics = metrics
        self.accounts = accounts
        self.limits = limits
        self.clock = clock
        self.monotonic = monotonic
        self.read_state = read_state
        self.rooms = RoomAdmin(hub, limits)

    def handle(self, session: Session, frame: RoomFrame) -> None:
        """Carry out one frame; raises ``ProtocolError`` for a refusal known at once.

        A user named in a frame (``invite``, ``kick``, ..., ``disable``) is found as a login finds it, in any
        case (``Bob`` acts on ``bob``); frames and the audit log then carry the account's own spelling.
        """
        match frame:
            case CreateRoom():
                self.limits.admit_join(self.hub.rooms, session.user, frame.room, self.monotonic())
                self._apply(session, self.rooms.create(session, frame))
            case MemberAction() | SetTopic():
                if isinstance(frame, MemberAction):
                    frame.user = self.accounts.account_name(frame.user) or frame.user
                self._apply(session, self.rooms.act(session, frame, self.clock()))
            case Edit() | Delete():
                self.writer.tasks.spawn(self._change(session, frame))
            case Disable():
                frame.user = self.accounts.account_name(frame.user) or frame.user
                self._check_disable(session.user, frame.user)
                self.writer.tasks.spawn(self._disable(session, frame))
            case Audit():
                self._check_audit(session.user, frame.room)
                self.writer.tasks.spawn(self._audit(session, frame))

    def _unavailable(self, session: Session, message: str, frame_id: FrameId) -> None:
        self.writer.send_error(session, ErrorCode.INTERNAL, message, frame_id)

    def _apply(self, session: Session, outcome: Outcome) -> None:
        if outcome.writes:
            self.store.record(outcome.writes)
        for entry in outcome.audited:
            self.metrics.moderation_actions[entry.action].inc()
        for write in outcome.writes:  # a new member (the creator, an invitee) has read what came before: as a join
            if isinstance(write, MembershipChange) and write.member and (user := self.hub.users.get(write.user)):
                self.read_state.joined(user, write.room)
        self.writer.send(session, outcome.answer)
        self.writer.deliver(outcome.deliveries)

    # ------------------------------------------------------------ edits and deletes

    async def _change(self, session: Session, frame: Edit | Delete) -> None:
        user = session.user
        try:
            message = await self.store.message(frame.seq)
            if message is None or not self._sees(user, message):
                raise ProtocolError(ErrorCode.UNKNOWN_MESSAGE, f"there is no message {frame.seq} for you")
            moderated = self._may_change(user, message, frame)
        except StoreError:
            self._unavailable(session, "the message is unavailable; try again", frame.frame_id)
            return
        except ProtocolError as exc:
            self.writer.send_error(session, exc.code, exc.message, frame.frame_id)
            return
        text = frame.text if isinstance(frame, Edit) else None
        # An edit's mentions are parsed anew, as a new message's (they ride on the ``edited`` frame).
        mentions = mentions_in(self.hub, user, message, text) if text is not None else ()
        change = MessageChange(frame.seq, user.name, text, self.clock(), moderated, mentions)
        self.store.change(change, partial(self._changed, session, frame))

    def _may_change(self, user: User, message: Message, frame: Edit | Delete) -> bool:
        """Whether ``user`` may make this change: the author may, room moderators and admins may delete.

        Returns whether it is a moderator's delete of someone else's message; raises ``ProtocolError``.
        """
        if message.sender == user.name:
            return False
        if isinstance(frame, Edit):
            raise forbidden("only its author may edit a message")
        room = self.hub.rooms.get(message.room) if message.room is not None else None
        if room is None or self.hub.rank(room, user.name) < MODERATOR_RANK:
            raise forbidden("only its author, the room's moderators and admins may delete a message")
        return True

    def _sees(self, user: User, message: Message) -> bool:
        if message.room is not None:
            # A member (or an admin) sees the messages of the room since it was made, not those of a room of the
            # same name that emptied and was deleted before: those reach nobody.
            room = self.hub.rooms.get(message.room)
            if room is None or message.seq <= room.first_seq:
                return False
            return message.room in user.rooms or user.name in self.hub.admins
        if message.members is not None:
            return user.name in message.members
        return user.name in (message.sender, message.to)

    def _changed(self, session: Session, frame: Edit | Delete, result: ChangeResult) -> None:
        """The store has the change (or refused or failed it): answer, then deliver it to everyone else."""
        message = result.message
        if message is None or result.error is not None or result.refused is not None:
            self.writer.send_error(session, *_refusal(result, frame.seq), frame.frame_id)
            return
        self.hub.last_seq = max(self.hub.last_seq, message.rev)
        self.writer.send_in_order(session, server_frames.change_frame(message, frame.frame_id))
        if not result.changed:
            return  # a resend, or a change that changes nothing: answered, delivered to nobody again
        if message.deleted and message.sender != session.user.name:
            self.metrics.moderation_actions[DELETE].inc()
        self.read_state.changed(message, result.previous_mentions)
        delivery = Delivery(server_frames.change_frame(message), self.hub.audience(message))
        self.writer.deliver_message([delivery], message.rev, session)

    # ------------------------------------------------------------ accounts and the audit log

    def admin_changed(self, name: str, admin: bool) -> None:
        """A user became a server admin or stopped being one: the hub knows at once, and so do their sessions."""
        if admin:
            self.hub.admins.add(name)
        else:
            self.hub.admins.discard(name)
        known = self.hub.users.get(name)
        if known is not None and known.sessions:
            frame = server_frames.encode({"type": "admin", "admin": admin})
            self.writer.deliver([Delivery(frame, tuple(known.sessions.values()))])

    def _check_disable(self, actor: User, name: str) -> None:
        if actor.name not in self.hub.admins:
            raise forbidden("only server admins may disable accounts")
        if name == actor.name:
            raise forbidden("you may not disable your own account")
        if name not in self.hub.users:
            raise ProtocolError(ErrorCode.UNKNOWN_USER, f"no user is called {name!r}")

    async def _disable(self, session: Session, frame: Disable) -> None:
        try:
            disabled = await self.accounts.disable_account(frame.user, session.user.name)
        except StoreError:
            self._unavailable(session, "the account was not disabled; try again", frame.frame_id)
            return
        if disabled:
            self.metrics.moderation_actions[DISABLE].inc()
        answer: dict[str, object] = {"type": "disabled", "user": frame.user}
        if frame.frame_id is not None:
            answer["id"] = frame.frame_id
        self.writer.send(session, server_frames.encode(answer))

    def _check_audit(self, user: User, room_name: str | None) -> None:
        if room_name is None:
            if user.name not in self.hub.admins:
                raise forbidden("only server admins may read the whole audit log")
            return
        room = self.hub.visible_room(room_name, user)
        if self.hub.rank(room, user.name) < OWNER_RANK:
            raise forbidden(f"only the owner of room {room_name!r} and admins may read its audit log")

    async def _audit(self, session: Session, frame: Audit) -> None:
        try:
            entries, more = await self.store.audit_log(frame.room, frame.before, frame.limit)
        except StoreError:
            self._unavailable(session, "the audit log is unavailable; try again", frame.frame_id)
            return
        answer: dict[str, object] = {"type": "audit"}
        if frame.room is not None:
            answer["room"] = frame.room
        answer["entries"] = [audit_fields(entry) for entry in entries]
        answer["more"] = more
        if frame.frame_id is not None:
            answer["id"] = frame.frame_id
        self.writer.send(session, server_frames.encode(answer))


def _refusal(result: ChangeResult, seq: int) -> tuple[ErrorCode, str]:
    """The error for a change the store failed or refused."""
    if result.error is not None:
        return ErrorCode.INTERNAL, "the change was not stored; send it again"
    if result.message is None:
        return ErrorCode.UNKNOWN_MESSAGE, f"there is no message {seq} for you"
    return ErrorCode.FORBIDDEN, f"message {seq} was deleted"


def audit_fields(entry: AuditEntry) -> dict[str, object]:
    """An audit entry as the ``audit`` frame lists it (fields without a value left out)."""
    fields: dict[str, object] = {"id": entry.entry_id, "at": server_frames.iso_time(entry.at), "actor": entry.actor}
    fields["action"] = entry.action
    for name, value in (("room", entry.room), ("user", entry.target), ("seq", entry.seq)):
        if value is not None:
            fields[name] = value
    return fields
