"""Text for messages: one line whatever the input, bounded in length, with "did you mean".

Every message rtstream prints may quote what a user or a peer wrote (a key, a name, a value).
These helpers keep the "one clear line" promise whatever that text holds: control characters,
line and paragraph separators and bidirectional overrides are escaped, and long quotes are cut.
The module imports nothing of rtstream, so every layer can use it.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Sequence

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    if char in _BIDI or unicodedata.category(char) in ("Cc", "Zl", "Zp"):
        code = ord(char)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return char


def one_line(text: str) -> str:
    """``text`` with every character that could break or rewrite a terminal line escaped (``\\n``, ``\\x1b``)."""
    if text.isprintable():
        return text
    return "".join(_escape(c) for c in text)


def clip(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with its original length."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}…({len(text)} characters)"


def suggest(word: str, options: Sequence[str]) -> str:
    """' (did you mean 'x'?)' when one of ``options`` is close to ``word``, else ''."""
    if len(word) > 100:  # difflib is quadratic; a long word is no typo of a short name
        return ""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{one_line(close[0])}'?)" if close else ""
