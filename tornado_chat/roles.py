"""Room roles and ranks: who outranks whom. Pure rules, no I/O.

A room member is a plain ``member``, a ``moderator`` or the room's ``owner``
(one at most; a room made by a plain ``join`` has none until an admin gives it
one). Server admins outrank everyone in every room. An action on a user
needs a rank above theirs, so moderators cannot kick each other and nobody
but an admin can ban a room's owner.
"""

from __future__ import annotations

OWNER = "owner"
MODERATOR = "moderator"
MEMBER = "member"

NOT_MEMBER_RANK = 0
MEMBER_RANK = 1
MODERATOR_RANK = 2
OWNER_RANK = 3
ADMIN_RANK = 4

ROLE_RANKS = {MEMBER: MEMBER_RANK, MODERATOR: MODERATOR_RANK, OWNER: OWNER_RANK}


def role_rank(role: str | None, member: bool) -> int:
    """The rank a room role gives (None is a plain member's); ``NOT_MEMBER_RANK`` for a non-member."""
    if not member:
        return NOT_MEMBER_RANK
    return ROLE_RANKS.get(role or MEMBER, MEMBER_RANK)


def actor_rank(role: str | None, member: bool, admin: bool) -> int:
    """The rank of someone acting in a room: an admin's is above every room role."""
    return ADMIN_RANK if admin else role_rank(role, member)
