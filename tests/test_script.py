"""The conversation script shared by the caller and voice-agent simulators: TOML, JSON, inline, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtstream.params import ParamError
from rtstream.simulators.caller import CallerSettings
from rtstream.simulators.script import ScriptError, Turn, load_script, parse_inline, parse_script

TOML = """
[[turns]]
interrupt_after_ms = 800

[[turns]]
caller = "I would like a table."
agent = "For how many?"

[[turns]]
caller = "Four."
audio = "four.wav"
dtmf = "1#"
wait = false

[[turns]]
caller = "Bye."
hangup = true
"""


def test_a_toml_script(tmp_path: Path) -> None:
    path = tmp_path / "talk.toml"
    path.write_text(TOML)
    listen, ask, four, bye = load_script(path)
    assert listen == Turn(wait=False, interrupt_after_ms=800.0) and listen.listens and not listen.speaks
    assert ask == Turn("I would like a table.", "For how many?") and ask.wait
    assert four.audio == str(tmp_path / "four.wav") and four.dtmf == "1#" and not four.wait
    assert bye.hangup and not bye.wait and bye.agent is None


def test_json_is_the_same_shape(tmp_path: Path) -> None:
    path = tmp_path / "talk.json"
    turns = [{"caller": "Hello.", "agent": "Hi."}, {"caller": "Bye.", "wait": False}]
    path.write_text(json.dumps({"turns": turns}))
    assert load_script(path) == (Turn("Hello.", "Hi."), Turn("Bye.", wait=False))


def test_inline_turns() -> None:
    turns = parse_inline(["Hello there|interrupt_after_ms=300", "Sure|dtmf=12", "|dtmf=3", "Bye|hangup"])
    assert turns == (
        Turn("Hello there", wait=False, interrupt_after_ms=300.0),
        Turn("Sure", dtmf="12"),
        Turn(dtmf="3"),
        Turn("Bye", wait=False, hangup=True),
    )


@pytest.mark.parametrize(
    "text,message",
    [
        ("turns = 3", r"^s: no \[\[turns\]\]$"),
        ("", r"^s: no \[\[turns\]\]$"),
        ("[[turns]]\ncaller = 'a'\n[other]", r"^s: unknown key 'other'; a script holds \[\[turns\]\] only$"),
        ("[[turns]]\ncaller = 'a'\nspeak = 'b'", r"^s: turn 1: unknown key 'speak'$"),
        ("[[turns]]\ncaller = ' '", r"^s: turn 1: caller must be a non-empty string$"),
        ("[[turns]]\nagent = 3", r"^s: turn 1: agent must be a non-empty string$"),
        (f"[[turns]]\ncaller = '{'a' * 4097}'", r"^s: turn 1: caller must be at most 4096 characters$"),
        ("[[turns]]\ncaller = 'a'\nwait = 1", r"^s: turn 1: wait must be true or false, got 1$"),
        ("[[turns]]\ninterrupt_after_ms = -5", r"^s: turn 1: interrupt_after_ms must be a number of ms from 0 to "),
        (
            "[[turns]]\ninterrupt_after_ms = 5\nwait = true\n[[turns]]\ncaller = 'a'",
            r"^s: turn 1: wait and interrupt_after_ms exclude each other$",
        ),
        ("[[turns]]\ndtmf = '12x'", r"^s: turn 1: dtmf must be up to 100 digits of 0-9, \*, #, A-D, got '12x'$"),
        (
            "[[turns]]\nhangup = true\n[[turns]]\ncaller = 'a'",
            r"^s: turn 1: hangup ends the call; 1 turn\(s\) after it$",
        ),
        ("[[turns]]\nhangup = true\nwait = true", r"^s: turn 1: hangup does not wait for the reply"),
        ("[[turns]]\ninterrupt_after_ms = 5", r"^s: turn 1: interrupt_after_ms needs a next turn that speaks"),
        (
            "[[turns]]\ninterrupt_after_ms = 5\n[[turns]]\ndtmf = '1'",
            r"^s: turn 1: interrupt_after_ms needs a next turn that speaks",
        ),
        ("[[turns]\n", r"^s: not valid TOML: "),
    ],
)
def test_bad_scripts_are_refused_naming_the_turn_and_key(text: str, message: str) -> None:
    with pytest.raises(ScriptError, match=message):
        parse_script(text, name="s")


def test_unreadable_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match=r"^cannot read .*missing.toml: No such file or directory$"):
        load_script(tmp_path / "missing.toml")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ScriptError, match=r"bad.json: must be a table of \[\[turns\]\]$"):
        load_script(tmp_path / "bad.json")
    with pytest.raises(ScriptError, match=r"^turns: turn 1: wait: not a TOML value: 'maybe'$"):
        parse_inline(["Hi|wait=maybe"])


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"turns": ["Hi"], "script": __file__}, r"^turns: give a script file or inline turns, not both$"),
        ({"turns": ["Hi"], "dtmf": "1"}, r"^dtmf: a turns has its own; give it in the turns$"),
        ({"turns": ["Hi|dtmf=1"], "protocol": "raw"}, r"^turns: raw streams carry no DTMF$"),
        ({"turns": ["|hangup|wait"]}, r"^turns: turns: turn 1: hangup does not wait for the reply"),
        ({"script": __file__}, r"^script: .*test_script.py: not valid TOML: "),
    ],
)
def test_the_callers_script_settings_are_checked(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ParamError, match=message):
        CallerSettings(**{"url": "ws://127.0.0.1:1/x", "protocol": "twilio", **kw})  # type: ignore[arg-type]
