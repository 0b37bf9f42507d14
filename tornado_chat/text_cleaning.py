"""What message text may hold: control characters and invisible format characters are removed.

Pure code. Control characters other than tab and newline can rewrite
terminals and logs, and no chat needs them. Invisible format characters
(Unicode category Cf: bidi overrides such as U+202E, zero-width spaces, word
joiners, soft hyphens, BOMs) can disguise a text or fill it with nothing; they
go too, except a joiner between two characters it joins: ZWJ inside an emoji
sequence (a family, a rainbow flag), and ZWJ or ZWNJ between letters, which
Persian and Indic scripts need to be spelled right.
"""

from __future__ import annotations

import unicodedata

_CONTROL_CHARS = dict.fromkeys([c for c in range(0x20) if c not in (0x09, 0x0A)] + list(range(0x7F, 0xA0)))
_ZWJ, _ZWNJ, _EMOJI_PRESENTATION = "\u200d", "\u200c", "\ufe0f"


def encodable(text: str) -> bool:
    """Whether ``text`` has a UTF-8 form (a lone surrogate has none: it cannot be stored, hashed or sent)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def has_control_chars(value: str) -> bool:
    """Whether ``value`` holds a control character other than tab and newline."""
    return value.translate(_CONTROL_CHARS) != value


def without_invisible_chars(text: str) -> str:
    """``text`` less its control characters (but tab and newline) and its format characters (but joiners that
    join)."""
    return _without_format_chars(text.translate(_CONTROL_CHARS))


def _without_format_chars(text: str) -> str:
    """``text`` less its category Cf characters, but for joiners that join (see ``_ZWJ``)."""
    if text.isascii():
        return text
    category = unicodedata.category
    formats = {c for c in set(text) if category(c) == "Cf"}
    if not formats:
        return text
    last = len(text) - 1
    kept = []
    for index, char in enumerate(text):
        if char not in formats:
            kept.append(char)
        elif char in (_ZWJ, _ZWNJ) and 0 < index < last:
            previous = text[index - 1]
            before, after = category(previous), category(text[index + 1])
            emoji = char == _ZWJ and (before in ("So", "Sk") or previous == _EMOJI_PRESENTATION) and after == "So"
            letters = before[0] in "LM" and after[0] in "LM"
            if emoji or letters:
                kept.append(char)
    return "".join(kept)
