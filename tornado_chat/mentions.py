"""Mentions: which users a message names with ``@name``, and whether it calls a whole room with ``@room``.

Pure code. The server parses mentions once, when a message is sent, keeps only the names of people who
can read the conversation (never the sender), and stores the result with the message; clients highlight
it and notify the people named.
"""

from __future__ import annotations

import re
from collections.abc import Collection

ROOM_MENTION = "@room"
# "@" at the start or after something that cannot be part of a name or an address (so "a@b.org" names nobody).
_MENTION = re.compile(r"(?<![\w@.+-])@([A-Za-z0-9_.-]{1,32})")
# Code is quoted, not addressed: "`@bob`" and fenced blocks mention nobody. Blocks are found as the page's
# renderer finds them (static/markdown.js): a fence line opens one; the next fence line, or the end of the
# quote it is in, closes it.
_QUOTE = re.compile(r" {0,3}> ?")
_FENCE = re.compile(r" {0,3}```")
_INLINE_CODE = re.compile(r"`[^`\n]+`")
MAX_QUOTE_DEPTH = 6


def mentioned(text: str) -> list[str]:
    """The names written as ``@name`` in ``text`` outside code, in order, each once (``room`` included)."""
    found: dict[str, None] = {}
    for match in _MENTION.finditer(outside_code(text)):
        found.setdefault(match.group(1), None)
    return list(found)


def _unquote(line: str, levels: int = MAX_QUOTE_DEPTH) -> tuple[int, str]:
    """How many quote markers start ``line`` (at most ``levels``), and the line without them."""
    depth = 0
    while depth < levels and (marker := _QUOTE.match(line)) is not None:
        line = line[marker.end() :]
        depth += 1
    return depth, line


def outside_code(text: str) -> str:
    """``text`` without its fenced code blocks and inline code spans (quote markers left out too)."""
    kept: list[str] = []
    fence_depth: int | None = None
    for line in text.split("\n"):
        depth, body = _unquote(line)
        if fence_depth is not None:
            if depth >= fence_depth:
                if _FENCE.match(_unquote(line, fence_depth)[1]):
                    fence_depth = None
                continue
            fence_depth = None  # the quote holding the block ended, and the block with it
        if _FENCE.match(body):
            fence_depth = depth
            continue
        kept.append(body)
    return _INLINE_CODE.sub(" ", "\n".join(kept))


def resolve(text: str, readers: Collection[str], sender: str, *, room_wide: bool) -> tuple[str, ...]:
    """The mentions of a message: names of ``readers`` other than ``sender`` that ``text`` mentions, sorted,
    and ``ROOM_MENTION`` when ``room_wide`` (the sender may call the room) and ``text`` says ``@room``.

    A name followed by sentence punctuation ("thanks @bob.") is tried without it too.
    """
    names: set[str] = set()
    for name in mentioned(text):
        if room_wide and name == "room":
            names.add(ROOM_MENTION)
            continue
        for candidate in (name, name.rstrip(".-")):
            if candidate in readers and candidate != sender:
                names.add(candidate)
                break
    return tuple(sorted(names))


def mentions_user(mentions: Collection[str], user: str) -> bool:
    return user in mentions or ROOM_MENTION in mentions
