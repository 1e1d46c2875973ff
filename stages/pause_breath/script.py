"""What a transcript asks for at each word boundary: the punctuation there and the inline tags.

Boundaries are numbered by the spoken words: boundary ``k`` lies just before spoken word ``k``
(boundary 0 before the first word, boundary ``n`` after the last). Spoken words are the
whitespace-separated words of the clean text that contain a letter or digit; a word of
punctuation alone (a dash standing between spaces) adds its marks to the boundary it sits
in. TTS services time spoken words, so counting them this way keeps the numbering right
whether a service reports such a dash as a word or not.
"""

from __future__ import annotations

import attrs

from rtstream.markup import Mark, parse

PUNCTUATION_REASONS = ("comma", "period", "question", "exclamation", "semicolon", "colon", "sentence", "dash")
"""Pause reasons that come from punctuation; ``sentence`` is a sentence end other than . ? ! (… or ...)."""

SENTENCE_ENDS = frozenset({"period", "question", "exclamation", "sentence"})

_CLOSERS = "\"')]}»”’"
_OPENERS = "\"'([{«“‘"
_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "etc",
        "approx",
        "dept",
        "est",
        "fig",
        "inc",
        "ltd",
        "co",
        "corp",
        "vol",
        "mt",
        "ave",
        "rd",
        "blvd",
        "jan",
        "feb",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
    ]
)
_DASHES = ("—", "–", "--")


@attrs.frozen
class Script:
    """The spoken words of one utterance, and per boundary its punctuation reason and tags."""

    words: tuple[str, ...]
    punctuation: tuple[str | None, ...]
    """Per boundary (``len(words) + 1`` of them): the punctuation pause reason, or None."""
    marks: tuple[tuple[Mark, ...], ...]
    """Per boundary: the tags that bind to it, in transcript order."""


def is_spoken(word: str) -> bool:
    """Whether a word is spoken (has a letter or digit), not punctuation alone."""
    return any(ch.isalnum() for ch in word)


def read_script(transcript: str) -> Script:
    """The script of ``transcript`` (with tags); :class:`rtstream.markup.MarkupError` on a bad tag."""
    markup = parse(transcript)
    text_words = markup.text.split()
    spoken: list[str] = []
    trailing: list[str] = []  # punctuation after each spoken word, through any punctuation-only words
    boundary_of_word: list[int] = []  # text word index -> the boundary a tag before it binds to
    for word in text_words:
        boundary_of_word.append(len(spoken))
        if is_spoken(word):
            spoken.append(word)
            trailing.append(_trailing_punctuation(word))
        elif trailing:
            trailing[-1] += " " + word
    boundary_of_word.append(len(spoken))
    n = len(spoken)
    punctuation: list[str | None] = [None] * (n + 1)
    for k in range(1, n + 1):
        following = spoken[k] if k < n else None
        punctuation[k] = classify(spoken[k - 1], trailing[k - 1], following)
    marks: list[list[Mark]] = [[] for _ in range(n + 1)]
    for mark in markup.marks:
        marks[boundary_of_word[mark.word]].append(mark)
    return Script(tuple(spoken), tuple(punctuation), tuple(tuple(m) for m in marks))


def _trailing_punctuation(word: str) -> str:
    end = len(word)
    while end and not word[end - 1].isalnum():
        end -= 1
    return word[end:]


def classify(word: str, trailing: str, following: str | None) -> str | None:
    """The pause reason of the punctuation after ``word`` (``trailing``), given the next spoken word."""
    marks = trailing.strip(_CLOSERS + " ")
    if not marks:
        return None
    if "?" in marks or "？" in marks:
        return "question"
    if "!" in marks or "！" in marks:
        return "exclamation"
    if "…" in marks or "..." in marks or "。" in marks:
        return "sentence"
    if marks.endswith("."):
        return "period" if _ends_sentence(word, following) else None
    for ch, reason in ((";", "semicolon"), (":", "colon")):
        if ch in marks:
            return reason
    if any(dash in marks for dash in _DASHES) or marks.strip() == "-" or marks.endswith(" -"):
        return "dash"
    if "," in marks or "，" in marks:
        return "comma"
    return None


def _ends_sentence(word: str, following: str | None) -> bool:
    """Whether a period after ``word`` ends a sentence, not an abbreviation or an initial."""
    core = word.strip(_CLOSERS + _OPENERS).rstrip(".")
    if "." in core and any(ch.isalpha() for ch in core):  # U.S., a.m., e.g.
        return False
    if core.casefold() in _ABBREVIATIONS:
        return False
    if following is None:
        return True
    first = following.lstrip(_OPENERS)[:1]
    if first.islower():  # "etc. and so on"
        return False
    return not (len(core) == 1 and core.isupper() and core != "I")  # an initial: "J. Smith"
