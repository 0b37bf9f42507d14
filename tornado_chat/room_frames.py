"""Client frames for room kinds, roles, moderation, edits and deletes: their types and parsers.

Pure code that imports nothing from the package: ``protocol.py`` registers
these parsers in its table and hands them a ``Fields`` reader, whose methods
check one field each and raise the protocol's error (``bad_frame``,
``bad_room``, ``unknown_user``, ``bad_text``) for a field that breaks its
rule. The frames are documented, with examples, in ``docs/protocol.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn, Protocol

FrameId = str | int | None
# Longest room topic, in characters (after cleaning); an empty topic clears it.
TOPIC_MAX_CHARS = 250
AUDIT_DEFAULT_LIMIT = 50
AUDIT_MAX_LIMIT = 200
# Audit entries are numbered from 1 in the order they were recorded.
MAX_AUDIT_ID = 2**63 - 1


class Fields(Protocol):
    """Reads one checked field of a frame object; each method raises the protocol's error on a bad field."""

    def room(self, obj: dict[str, Any], field: str) -> str: ...

    def user(self, obj: dict[str, Any], field: str) -> str: ...

    def seq(self, obj: dict[str, Any], field: str) -> int:
        """A required message sequence number."""
        ...

    def optional_int(self, obj: dict[str, Any], field: str, lowest: int, highest: int) -> int | None: ...

    def text(self, obj: dict[str, Any], field: str, max_chars: int) -> str:
        """Message text, cleaned (``protocol.clean_text``); refused when empty."""
        ...

    def line(self, obj: dict[str, Any], field: str, max_chars: int) -> str:
        """One line of text, cleaned, possibly empty; absent means empty."""
        ...

    def flag(self, obj: dict[str, Any], field: str) -> bool:
        """An optional boolean, false when absent."""
        ...

    def refuse(self, message: str) -> NoReturn:
        """Raise ``bad_frame`` with this message."""
        ...


@dataclass(slots=True)
class CreateRoom:
    """Create a room (public or private) and become its owner."""

    label: ClassVar[str] = "create"
    room: str
    private: bool = False
    topic: str = ""
    frame_id: FrameId = None


@dataclass(slots=True)
class MemberAction:
    """An action of a room's owner or moderator on one user; ``label`` names it."""

    label: ClassVar[str] = "member_action"
    room: str
    user: str
    frame_id: FrameId = None


@dataclass(slots=True)
class Invite(MemberAction):
    label: ClassVar[str] = "invite"


@dataclass(slots=True)
class Kick(MemberAction):
    label: ClassVar[str] = "kick"


@dataclass(slots=True)
class Ban(MemberAction):
    label: ClassVar[str] = "ban"


@dataclass(slots=True)
class Unban(MemberAction):
    label: ClassVar[str] = "unban"


@dataclass(slots=True)
class Promote(MemberAction):
    label: ClassVar[str] = "promote"


@dataclass(slots=True)
class Demote(MemberAction):
    label: ClassVar[str] = "demote"


@dataclass(slots=True)
class Transfer(MemberAction):
    label: ClassVar[str] = "transfer"


@dataclass(slots=True)
class SetTopic:
    label: ClassVar[str] = "topic"
    room: str
    topic: str
    frame_id: FrameId = None


@dataclass(slots=True)
class Edit:
    """Replace the text of one's own message."""

    label: ClassVar[str] = "edit"
    seq: int
    text: str
    frame_id: FrameId = None


@dataclass(slots=True)
class Delete:
    """Delete a message: one's own, or, for a room's moderators and server admins, anyone's in that room."""

    label: ClassVar[str] = "delete"
    seq: int
    frame_id: FrameId = None


@dataclass(slots=True)
class Disable:
    """A server admin disables an account."""

    label: ClassVar[str] = "disable"
    user: str
    frame_id: FrameId = None


@dataclass(slots=True)
class Audit:
    """The moderation log: of one room (its owners, admins) or of the whole server (admins), newest first."""

    label: ClassVar[str] = "audit"
    room: str | None = None
    before: int | None = None
    limit: int = AUDIT_DEFAULT_LIMIT
    frame_id: FrameId = None


MEMBER_ACTIONS: tuple[type[MemberAction], ...] = (Invite, Kick, Ban, Unban, Promote, Demote, Transfer)
RoomFrame = CreateRoom | MemberAction | SetTopic | Edit | Delete | Disable | Audit

Parser = Callable[[dict[str, Any], FrameId, int], RoomFrame]


def parsers(fields: Fields) -> dict[str, Parser]:
    """The parser of each frame type here, checking fields with ``fields``."""

    def create(obj: dict[str, Any], frame_id: FrameId, max_text_chars: int) -> RoomFrame:
        return CreateRoom(
            fields.room(obj, "room"), fields.flag(obj, "private"), fields.line(obj, "topic", TOPIC_MAX_CHARS), frame_id
        )

    def member_action(kind: type[MemberAction]) -> Parser:
        def parse(obj: dict[str, Any], frame_id: FrameId, max_text_chars: int) -> RoomFrame:
            return kind(fields.room(obj, "room"), fields.user(obj, "user"), frame_id)

        return parse

    def topic(obj: dict[str, Any], frame_id: FrameId, max_text_chars: int) -> RoomFrame:
        if not isinstance(obj.get("topic"), str):
            fields.refuse("field 'topic' must be a string (empty to clear the topic)")
        return SetTopic(fields.room(obj, "room"), fields.line(obj, "topic", TOPIC_MAX_CHARS), frame_id)

    def edit(obj: dict[str, Any], frame_id: FrameId, max_text_chars: int) -> RoomFrame:
        return Edit(fields.seq(obj, "seq"), fields.text(obj, "text", max_text_chars), frame_id)

    def delete(obj: dict[str, Any], frame_id: FrameId, max_text_chars: int) -> RoomFrame:
        return Delete(fields.seq(obj, "seq"), frame_id)

    def disable(obj: dict[str, Any], frame_id: FrameId, max_text_chars: int) -> RoomFrame:
        return Disable(fields.user(obj, "user"), frame_id)

    def audit(obj: dict[str, Any], frame_id: FrameId, max_text_chars: int) -> RoomFrame:
        room = fields.room(obj, "room") if "room" in obj else None
        before = fields.optional_int(obj, "before", 1, MAX_AUDIT_ID)
        limit = fields.optional_int(obj, "limit", 1, AUDIT_MAX_LIMIT)
        return Audit(room, before, AUDIT_DEFAULT_LIMIT if limit is None else limit, frame_id)

    table: dict[str, Parser] = {"create": create, "topic": topic, "edit": edit, "delete": delete}
    table.update({kind.label: member_action(kind) for kind in MEMBER_ACTIONS})
    table.update({"disable": disable, "audit": audit})
    return table
