"""Inline speech tags in a transcript: ``[breath]``, ``[sigh]``, ``[pause 300ms]``, ``[emphasis]``.

Tags are stripped from the text the TTS service receives and honoured by the stages that
shape the audio (pauses and breaths). Each tag binds to the word that follows it: its
``word`` is the index of that word among the whitespace-separated words of the clean text
(the same numbering TTS word timestamps use), or the number of words for a tag at the end.

Grammar (strict: anything else in square brackets is an error naming it and its position)::

    [breath]                        a normal breath
    [breath type="deep"]            type: normal, deep, quick or sigh
    [sigh]                          the same as [breath type="sigh"]
    [pause 300ms]  [pause 1.5s]     a pause of that length (up to 10 s)
    [emphasis]                      the next word is stressed (a short pause before it)
    [[  ]]                          a literal [ or ]
"""

from __future__ import annotations

import re

import attrs

BREATH_TYPES = ("normal", "deep", "quick", "sigh")
MAX_PAUSE = 10.0

_TOKEN = re.compile(r"\[\[|\]\]|\[([^\[\]]*)\]|\[|\]")
_BREATH_ARGS = re.compile(r'type\s*=\s*"([^"]*)"')
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s)")


class MarkupError(ValueError):
    """A malformed tag; ``position`` is its character offset in the transcript."""

    def __init__(self, message: str, tag: str, position: int) -> None:
        self.message = message
        self.tag = tag
        self.position = position
        super().__init__(f"{message}: {tag!r} at character {position}")


@attrs.frozen
class Mark:
    """One tag: what it asks for and the word it comes before."""

    kind: str
    """``breath``, ``pause`` or ``emphasis``."""
    word: int
    position: int
    """Character offset of the tag in the original transcript."""
    breath_type: str | None = None
    seconds: float | None = None
    """The pause length, for ``pause``."""


@attrs.frozen
class Markup:
    """A transcript split into the clean text to speak and the tags to honour."""

    text: str
    marks: tuple[Mark, ...]


def parse(transcript: str) -> Markup:
    """Split ``transcript`` into clean text and marks; MarkupError on a malformed tag."""
    pieces: list[str] = []
    marks: list[Mark] = []
    last = 0
    for match in _TOKEN.finditer(transcript):
        pieces.append(transcript[last : match.start()])
        last = match.end()
        token = match.group(0)
        if token in ("[[", "]]"):
            pieces.append(token[0])
            continue
        if match.group(1) is None:
            raise MarkupError("unbalanced bracket (write [[ or ]] for a literal one)", token, match.start())
        before = "".join(pieces)
        if before[-1:].strip() and transcript[match.end() : match.end() + 1].strip():
            raise MarkupError("a tag cannot stand inside a word", token, match.start())
        marks.append(_mark(match.group(1).strip(), token, match.start(), len(before.split())))
    pieces.append(transcript[last:])
    text = re.sub(r"\s+", " ", "".join(pieces)).strip()
    return Markup(text=text, marks=tuple(marks))


def strip_tags(transcript: str) -> str:
    """The text to send to a TTS service."""
    return parse(transcript).text


def _mark(body: str, token: str, position: int, word: int) -> Mark:
    name, _, args = body.partition(" ")
    args = args.strip()
    if name == "breath":
        breath_type = "normal"
        if args:
            found = _BREATH_ARGS.fullmatch(args)
            if not found:
                raise MarkupError('malformed breath tag (write [breath] or [breath type="deep"])', token, position)
            breath_type = found.group(1)
            if breath_type not in BREATH_TYPES:
                raise MarkupError(f"unknown breath type (use one of {', '.join(BREATH_TYPES)})", token, position)
        return Mark("breath", word, position, breath_type=breath_type)
    if name == "sigh" and not args:
        return Mark("breath", word, position, breath_type="sigh")
    if name == "emphasis" and not args:
        return Mark("emphasis", word, position)
    if name == "pause":
        found = _DURATION.fullmatch(args)
        if not found:
            raise MarkupError("malformed pause tag (write [pause 300ms] or [pause 1.5s])", token, position)
        seconds = float(found.group(1)) / (1000 if found.group(2) == "ms" else 1)
        if not 0 < seconds <= MAX_PAUSE:
            raise MarkupError(f"pause length must be more than 0 and at most {MAX_PAUSE:g} s", token, position)
        return Mark("pause", word, position, seconds=seconds)
    raise MarkupError("unknown tag (known: breath, sigh, pause, emphasis)", token, position)
