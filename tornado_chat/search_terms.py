"""How a search query is read: its terms, and which kind of match each one needs.

Pure code. Text in scripts that put spaces between words (Latin, Cyrillic, Greek, Arabic, ...) is searched
by word: a term matches the start of a word, ignoring case and accents ("cafe" finds "Café"). Text in
scripts written without spaces (Chinese, Japanese, Thai, ...; Korean too, whose words carry particles) is
searched by substring, since a word tokenizer would see "你好世界" as one word: a term of three or more
characters through a trigram index, a shorter one by scanning recent messages.

Every term must match (AND). A term mixing both kinds of script counts as written without spaces.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Scripts written without spaces between words, as code point ranges (also in schema version 6's GLOB).
NO_SPACE_RANGES = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf"  # CJK Extension A
    "\u4e00-\u9fff"  # CJK Unified Ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK Compatibility Ideographs
    "\uff66-\uff9f"  # half-width Katakana
    "\U00020000-\U0002ffff"  # CJK Extensions B-F
)
_NO_SPACE = re.compile(f"[{NO_SPACE_RANGES}]")
_WORD = re.compile(r"\w", re.UNICODE)
# The trigram index matches substrings of at least this many characters.
TRIGRAM_MIN_CHARS = 3


@dataclass(frozen=True, slots=True)
class Terms:
    """A query's terms by how they are matched (see the module docstring)."""

    words: tuple[str, ...] = ()
    substrings: tuple[str, ...] = ()
    short: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.words or self.substrings or self.short)


def written_without_spaces(text: str) -> bool:
    """Whether ``text`` holds a character of a script written without spaces between words."""
    return _NO_SPACE.search(text) is not None


def split_terms(query: str) -> Terms:
    """The terms of ``query``: split at white space; a term with no letter or digit is left out."""
    words: list[str] = []
    substrings: list[str] = []
    short: list[str] = []
    for term in dict.fromkeys(query.split()):
        if not _WORD.search(term):
            continue
        if not written_without_spaces(term):
            words.append(term)
        elif len(term) >= TRIGRAM_MIN_CHARS:
            substrings.append(term)
        else:
            short.append(term)
    return Terms(tuple(words), tuple(substrings), tuple(short))


def fold(text: str) -> str:
    """``text`` without case or accents, for comparing as the word index does ("Café" -> "cafe")."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))
