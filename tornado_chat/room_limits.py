"""Caps on rooms per user: how many one may belong to, and how many one may create in an hour.

Both hold for every way in: a ``join`` (which creates a missing room), a
``create``, and, for the membership cap, an ``invite``.

Pure code; ``now`` is monotonic seconds. The defaults are far above what a
team needs; they stop one account (or ten) from filling the server with rooms
that every room list would then carry. A room whose last member leaves is
gone (``Hub``), so what a user creates and leaves does not stay either.
"""

from __future__ import annotations

from collections.abc import Container

from .protocol import ErrorCode, ProtocolError
from .session import User
from .throttle import RecentEvents

CREATION_WINDOW_S = 3600.0


class RoomLimits:
    """``--max-rooms-per-user`` and ``--room-creations-per-hour``."""

    def __init__(self, max_rooms_per_user: int, creations_per_hour: int) -> None:
        self.max_rooms_per_user = max_rooms_per_user
        self.creations_per_hour = creations_per_hour
        self.creations = RecentEvents(CREATION_WINDOW_S, creations_per_hour)

    def admit_join(self, rooms: Container[str], user: User, room: str, now: float) -> None:
        """Let ``user`` join ``room`` (creating it if it is not in ``rooms``) or raise ``too_many_rooms``."""
        if room in user.rooms:
            return
        if len(user.rooms) >= self.max_rooms_per_user:
            raise ProtocolError(
                ErrorCode.TOO_MANY_ROOMS, f"you are in {self.max_rooms_per_user} rooms already: leave one first"
            )
        if room not in rooms:
            if self.creations.count(user.name, now) >= self.creations_per_hour:
                raise ProtocolError(
                    ErrorCode.TOO_MANY_ROOMS,
                    f"you may create {self.creations_per_hour} rooms an hour: join an existing one or wait",
                )
            self.creations.add(user.name, now)

    def admit_invitee(self, user: User) -> None:
        """Let ``user`` be invited into one more room, or raise ``too_many_rooms``: the cap on rooms a user
        belongs to holds however they got in."""
        if len(user.rooms) >= self.max_rooms_per_user:
            raise ProtocolError(ErrorCode.TOO_MANY_ROOMS, f"{user.name} is in {self.max_rooms_per_user} rooms already")
