"""A conversation script, shared by the caller simulator and the voice-agent simulator.

A TOML file of turns, in order::

    [[turns]]
    caller = "Hi, I would like to book a table for tonight."
    agent = "Of course. For how many people?"

    [[turns]]
    caller = "Four, please."
    agent = "Four it is. Anything else I can do for you?"

Turn N is what the caller says N-th and what the agent answers to it. The caller simulator
speaks ``caller`` (synthesized, or a recording of it); the agent simulator cannot recognise
speech, so it "hears" the caller by counting turns: the N-th utterance its VAD finds is the
script's turn N, and its transcript is that turn's ``caller`` text. Both sides being
deterministic, a run is reproducible to the sample.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import attrs

MAX_TURNS = 1000
MAX_TEXT = 4096


class ScriptError(ValueError):
    """The script cannot be used; the message names the file, the turn and the key."""


@attrs.frozen
class Turn:
    caller: str
    """What the caller says."""
    agent: str
    """What the agent replies."""


def parse_script(text: str, *, name: str = "script") -> tuple[Turn, ...]:
    """The turns of a script's TOML text; ScriptError naming ``name`` when it is not one."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScriptError(f"{name}: not valid TOML: {exc}") from None
    extra = set(document) - {"turns"}
    if extra:
        raise ScriptError(f"{name}: unknown key {sorted(extra)[0]!r}; a script holds [[turns]] only")
    tables = document.get("turns")
    if not isinstance(tables, list) or not tables:
        raise ScriptError(f"{name}: no [[turns]]")
    if len(tables) > MAX_TURNS:
        raise ScriptError(f"{name}: {len(tables)} turns, more than {MAX_TURNS}")
    turns = []
    for number, table in enumerate(tables, 1):
        unknown = set(table) - {"caller", "agent"}
        if unknown:
            raise ScriptError(f"{name}: turn {number}: unknown key {sorted(unknown)[0]!r}")
        for key in ("caller", "agent"):
            value = table.get(key)
            if not isinstance(value, str) or not value.split():
                raise ScriptError(f"{name}: turn {number}: {key} must be a non-empty string")
            if len(value) > MAX_TEXT:
                raise ScriptError(f"{name}: turn {number}: {key} must be at most {MAX_TEXT} characters")
        turns.append(Turn(table["caller"], table["agent"]))
    return tuple(turns)


def load_script(path: str | Path) -> tuple[Turn, ...]:
    """The turns of the script file at ``path`` (UTF-8 TOML)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_script(text, name=str(path))
