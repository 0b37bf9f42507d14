"""User names: which new ones are acceptable, and the key that makes a name unique whatever its case.

Pure code. ``alice``, ``Alice`` and ``ALICE`` are one account: the store keeps
each name's ``name_key`` (NFKC, then case folded) under a unique index, and
the account keeps the spelling it was registered with for display. Names
registered before this rule may start with ``_``, ``.`` or ``-``; they still
log in and can be written to (``protocol.USERNAME_PATTERN``), but no new ones
are made.
"""

from __future__ import annotations

import re
import unicodedata

# What a new name looks like: a letter or a digit first, so that ".", ".." and "-" are not names.
NEW_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
NEW_NAME_RULE = "1-32 characters of A-Z, a-z, 0-9, _, . and -, starting with a letter or a digit"


def name_key(name: str) -> str:
    """What two names share when they are the same account: NFKC-normalised and case-folded."""
    return unicodedata.normalize("NFKC", name).casefold()


def name_collisions(names: list[str]) -> list[list[str]]:
    """Groups of two or more ``names`` that share a key, each sorted, in key order (for a start-up refusal)."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name_key(name), []).append(name)
    return [sorted(group) for _, group in sorted(groups.items()) if len(group) > 1]
