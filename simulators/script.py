"""A conversation script, shared by the caller simulator and the voice-agent simulator.

A TOML file (or JSON of the same shape) of turns, in order::

    [[turns]]
    caller = "Hi, I would like to book a table for tonight."
    agent = "Of course. For how many people?"

    [[turns]]
    caller = "Four, please."
    agent = "Four it is. Anything else I can do for you?"
    interrupt_after_ms = 800       # talk over this reply 800 ms after its first audio...

    [[turns]]
    caller = "Sorry, make it five."
    audio = "five.wav"             # ...with a recording of these words (relative to the script)
    agent = "Five, then."
    dtmf = "1#"                    # pressed after the speech

    [[turns]]
    caller = "Thanks, bye."
    hangup = true                  # hang up at once, without waiting for the reply

Turn N is what the caller says N-th and what the agent answers to it. The caller simulator
says ``caller`` (synthesized, or ``audio`` played), presses ``dtmf``, then waits for the bot's
reply to end (``wait``, the default), or starts the next turn's speech ``interrupt_after_ms``
after the reply's first audio, or goes straight on (``wait = false``), or hangs up. A turn
with neither words nor digits only listens (to a greeting, say). The agent simulator cannot
recognise speech, so it "hears" the caller by counting utterances: the N-th utterance its VAD
finds is the N-th turn that speaks, its transcript is ``caller``, and it answers ``agent``.
Both sides being deterministic, a run is reproducible to the sample.

For the command line, a turn fits in one string (:func:`parse_inline`): the caller's words,
then the same keys after ``|``: ``"Hello|interrupt_after_ms=300"``, ``"|dtmf=12"``, ``"Bye|hangup"``.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

MAX_TURNS = 1000
MAX_TEXT = 4096
DTMF_DIGITS = "0123456789*#ABCD"
KEYS = frozenset({"caller", "agent", "audio", "wait", "interrupt_after_ms", "dtmf", "hangup"})
TEXT_KEYS = frozenset({"caller", "agent", "audio", "dtmf"})
"""Keys whose inline values are taken as written (digits such as 12 stay text)."""


class ScriptError(ValueError):
    """The script cannot be used; the message names the script, the turn and the key."""


@attrs.frozen
class Turn:
    """One turn: what the caller does, and what the agent replies."""

    caller: str | None = None
    """The caller's words: synthesized when there is no ``audio``, and what the agent "hears"."""
    agent: str | None = None
    """What the agent answers (the agent simulator's side; the caller does not read it)."""
    audio: str | None = attrs.field(default=None, kw_only=True)
    """A 16-bit WAV file the caller plays instead of synthesizing ``caller`` (absolute once parsed from a file)."""
    wait: bool = attrs.field(default=True, kw_only=True)
    """Wait for the reply to end before the next turn (false when the turn interrupts or hangs up)."""
    interrupt_after_ms: float | None = attrs.field(default=None, kw_only=True)
    """Start the next turn's speech this long after the reply's first audio, over the reply."""
    dtmf: str = attrs.field(default="", kw_only=True)
    """Digits pressed after the speech."""
    hangup: bool = attrs.field(default=False, kw_only=True)
    """Hang up after the speech and digits, without waiting for the reply (the last turn only)."""

    @property
    def speaks(self) -> bool:
        return self.caller is not None or self.audio is not None

    @property
    def listens(self) -> bool:
        """A turn that says and presses nothing: it only waits for (or talks over) the bot."""
        return not self.speaks and not self.dtmf


def parse_turns(tables: Any, *, name: str = "script", base: Path | None = None) -> tuple[Turn, ...]:
    """Turns from a list of tables (the parsed ``turns``); ``audio`` paths resolved against ``base``."""
    if not isinstance(tables, list) or not tables:
        raise ScriptError(f"{name}: no [[turns]]")
    if len(tables) > MAX_TURNS:
        raise ScriptError(f"{name}: {len(tables)} turns, more than {MAX_TURNS}")
    turns = tuple(_turn(table, f"{name}: turn {n}", base) for n, table in enumerate(tables, 1))
    for n, turn in enumerate(turns, 1):
        if turn.hangup and n != len(turns):
            raise ScriptError(f"{name}: turn {n}: hangup ends the call; {len(turns) - n} turn(s) after it")
        if turn.interrupt_after_ms is not None and (n == len(turns) or not turns[n].speaks):
            raise ScriptError(f"{name}: turn {n}: interrupt_after_ms needs a next turn that speaks (caller or audio)")
    return turns


def _turn(table: Any, where: str, base: Path | None) -> Turn:
    if not isinstance(table, Mapping):
        raise ScriptError(f"{where}: must be a table, got {type(table).__name__}")
    unknown = sorted(set(table) - KEYS)
    if unknown:
        raise ScriptError(f"{where}: unknown key {unknown[0]!r}")
    for key in ("caller", "agent", "audio"):
        value = table.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.split():
            raise ScriptError(f"{where}: {key} must be a non-empty string")
        if len(value) > MAX_TEXT:
            raise ScriptError(f"{where}: {key} must be at most {MAX_TEXT} characters")
    for key in ("wait", "hangup"):
        if not isinstance(table.get(key, False), bool):
            raise ScriptError(f"{where}: {key} must be true or false, got {table[key]!r}")
    interrupt = table.get("interrupt_after_ms")
    if interrupt is not None:
        if isinstance(interrupt, bool) or not isinstance(interrupt, int | float) or not 0 <= interrupt <= 600_000:
            raise ScriptError(f"{where}: interrupt_after_ms must be a number of ms from 0 to 600000, got {interrupt!r}")
        if table.get("wait") is True:
            raise ScriptError(f"{where}: wait and interrupt_after_ms exclude each other")
    dtmf = table.get("dtmf", "")
    if not isinstance(dtmf, str) or len(dtmf) > 100 or any(d not in DTMF_DIGITS for d in dtmf):
        raise ScriptError(f"{where}: dtmf must be up to 100 digits of 0-9, *, #, A-D, got {dtmf!r}")
    hangup = table.get("hangup", False)
    if hangup and (interrupt is not None or table.get("wait") is True):
        raise ScriptError(f"{where}: hangup does not wait for the reply (no wait, no interrupt_after_ms)")
    audio = table.get("audio")
    if audio is not None and base is not None:
        audio = str((base / audio).resolve())
    return Turn(
        table.get("caller"),
        table.get("agent"),
        audio=audio,
        wait=table.get("wait", interrupt is None and not hangup),
        interrupt_after_ms=None if interrupt is None else float(interrupt),
        dtmf=dtmf,
        hangup=hangup,
    )


def parse_script(
    text: str, *, name: str = "script", json_text: bool = False, base: Path | None = None
) -> tuple[Turn, ...]:
    """The turns of a script's TOML (or JSON) text; ScriptError naming ``name`` when it is not one."""
    try:
        document = json.loads(text) if json_text else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScriptError(f"{name}: not valid {'JSON' if json_text else 'TOML'}: {exc}") from None
    if not isinstance(document, dict):
        raise ScriptError(f"{name}: must be a table of [[turns]]")
    extra = sorted(set(document) - {"turns"})
    if extra:
        raise ScriptError(f"{name}: unknown key {extra[0]!r}; a script holds [[turns]] only")
    return parse_turns(document.get("turns"), name=name, base=base)


def load_script(path: str | Path) -> tuple[Turn, ...]:
    """The turns of the script file at ``path``: JSON if it ends in ``.json``, else TOML (UTF-8)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_script(text, name=str(path), json_text=path.suffix.lower() == ".json", base=path.parent)


def parse_inline(items: Sequence[str], *, name: str = "turns") -> tuple[Turn, ...]:
    """Turns written one per string: ``WORDS|key|key=value...`` (a bare key is true; numbers and booleans in TOML)."""
    tables = []
    for n, item in enumerate(items, 1):
        words, *options = item.split("|")
        table: dict[str, Any] = {"caller": words} if words.strip() else {}
        for option in options:
            key, sep, value = (part.strip() for part in option.partition("="))
            if not sep:
                table[key] = True
            elif key in TEXT_KEYS:
                table[key] = value
            else:
                try:
                    table[key] = tomllib.loads(f"v = {value}")["v"]
                except tomllib.TOMLDecodeError:
                    raise ScriptError(f"{name}: turn {n}: {key}: not a TOML value: {value!r}") from None
        tables.append(table)
    return parse_turns(tables, name=name)
