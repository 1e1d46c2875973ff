"""The voice-agent simulator's pure core: its VAD, its turns, its replies and barge-ins, its script."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rtstream.audio.codec import from_float32
from rtstream.params import ParamError
from rtstream.simulators.agent import AgentSession, AgentSettings, Vad
from rtstream.simulators.agent.protocol import Offset, Onset
from rtstream.simulators.speech import synthesize
from rtstream.wire.agent import (
    FORMAT,
    AgentClient,
    BargeIn,
    Dtmf,
    LlmToken,
    Playback,
    ReplyAudio,
    Start,
    Transcript,
    TurnEnd,
    TurnStart,
)

RATE = 16000
STEP = 320  # 20 ms packets, as telephony delivers them

SCRIPT = """
[[turns]]
caller = "Hello there, I need a table."
agent = "Sure, for how many people?"

[[turns]]
caller = "Four."
agent = "Four it is."
"""


def speech(text: str) -> np.ndarray:
    return from_float32(synthesize(text, RATE)[0], FORMAT.encoding)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


def packets(audio: np.ndarray, start: float = 0.0) -> list[tuple[float, np.ndarray]]:
    """``audio`` cut into 20 ms packets, each with its real-time arrival."""
    return [(start + (i + STEP) / RATE, audio[i : i + STEP]) for i in range(0, len(audio), STEP)]


def test_vad_finds_one_utterance_in_silence_speech_silence() -> None:
    vad = Vad(-45, 60, 600)
    said = speech("Hello there, I need a table for four tonight.")
    audio = np.concatenate((silence(0.5), said, silence(1.0)))
    events = [e for at, p in packets(audio) for e in vad.feed(p, at)]
    assert [type(e) for e in events] == [Onset, Offset]
    onset, offset = events
    assert isinstance(onset, Onset) and isinstance(offset, Offset)
    assert abs(onset.sample - 0.5 * RATE) <= 320  # the first voiced frame
    end = 0.5 + len(said) / RATE - 0.4  # the synthesizer ends with a 400 ms sentence pause
    assert abs(offset.sample / RATE - end) < 0.05
    assert offset.at - offset.speech_end == pytest.approx(0.6, abs=0.021)  # confirmed after silence_ms


def test_vad_rides_over_pauses_shorter_than_its_silence_and_ignores_blips() -> None:
    vad = Vad(-45, 60, 600)
    blip = np.full(320, 8000, dtype=np.int16)  # 20 ms: shorter than the onset
    audio = np.concatenate((blip, silence(0.5), speech("One,"), silence(0.3), speech("two."), silence(0.8)))
    events = [e for at, p in packets(audio) for e in vad.feed(p, at)]
    assert [type(e) for e in events] == [Onset, Offset]


def test_vad_counts_frames_across_packets_of_any_size() -> None:
    audio = np.concatenate((silence(0.3), speech("Hello there."), silence(1.0)))
    whole = Vad(-45, 60, 600).feed(audio, 0.0)
    vad = Vad(-45, 60, 600)
    pieces = [e for i in range(0, len(audio), 333) for e in vad.feed(audio[i : i + 333], 0.0)]
    assert [(type(e), e.sample) for e in pieces] == [(type(e), e.sample) for e in whole]


class Bridge:
    """Feeds a session the caller's audio on virtual time and reads what it says, as the bridge would."""

    def __init__(self, **settings: Any) -> None:
        self.session = AgentSession(AgentSettings(**settings))
        self.client = AgentClient()
        self.now = 0.0
        self.heard: list[tuple[float, object]] = []
        self.session.receive(self.client.send(Start(call_id="CA1")), 0.0)

    def play(self, audio: np.ndarray) -> None:
        for at, packet in packets(audio, self.now):
            self.advance(at)
            self.session.receive(packet.tobytes(), at)
        self.now += len(audio) / RATE

    def advance(self, until: float) -> None:
        while (due := self.session.next_due()) is not None and due <= until:
            for message in self.session.pop_due(due):
                self.heard.append((due, self.client.receive(message)))

    def of(self, kind: type) -> list:
        return [e for _, e in self.heard if isinstance(e, kind)]


def script_settings(tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "script.toml"
    path.write_text(SCRIPT)
    return {"script": str(path)}


def test_a_turn_is_heard_from_the_script_and_answered_with_tokens_and_audio(tmp_path: Path) -> None:
    bridge = Bridge(**script_settings(tmp_path), rtf=4.0, first_token_latency=0.2, first_byte_latency=0.1)
    bridge.play(np.concatenate((silence(0.2), speech("Hello there, I need a table."), silence(4.0))))
    assert bridge.of(Transcript) == [Transcript(0, "Hello there, I need a table.")]
    assert bridge.of(TurnStart) == [TurnStart(0, "Sure, for how many people?")]
    kinds = [type(e).__name__ for _, e in bridge.heard]
    assert kinds[:3] == ["Transcript", "TurnStart", "LlmToken"]
    assert kinds[-1] == "TurnEnd"
    text = "".join(e.text for e in bridge.of(LlmToken))
    assert text == "Sure, for how many people?"
    audio = b"".join(e.pcm for e in bridge.of(ReplyAudio))
    assert audio == speech("Sure, for how many people?").tobytes()
    (stats,) = [bridge.session.statistics()]
    (turn,) = stats.turn_log
    assert turn.latency_ms == pytest.approx(600 + 200 + 100 + 3200 / 32000 / 4 * 1000, abs=21)
    assert (stats.turns, stats.barge_ins, stats.call_id) == (1, 0, "CA1")


def test_turns_past_the_script_get_the_default_reply() -> None:
    bridge = Bridge(reply="Go on.")
    bridge.play(np.concatenate((speech("Hi."), silence(3.0), speech("Again."), silence(3.0))))
    assert bridge.of(Transcript) == [Transcript(0, ""), Transcript(1, "")]
    assert [e.text for e in bridge.of(TurnStart)] == ["Go on.", "Go on."]
    assert [e.turn for e in bridge.of(TurnEnd)] == [0, 1]


def test_speech_over_a_reply_is_a_barge_in_that_drops_the_rest_of_it(tmp_path: Path) -> None:
    bridge = Bridge(**script_settings(tmp_path), rtf=1.0)  # the reply streams as it plays
    bridge.play(np.concatenate((speech("Hello there, I need a table."), silence(0.9))))
    bridge.play(np.concatenate((speech("Four."), silence(3.0))))
    assert bridge.of(BargeIn) == [BargeIn(0)]
    assert bridge.of(TurnEnd)[0] == TurnEnd(0, interrupted=True)
    stats = bridge.session.statistics()
    assert (stats.barge_ins, stats.barge_ins_heard) == (1, 1)
    assert stats.reply_bytes_dropped > 0
    replies = len(speech("Sure, for how many people?")) + len(speech("Four it is."))
    assert stats.reply_bytes_sent + stats.reply_bytes_dropped == 2 * replies
    # the barging utterance is the next turn, answered in full
    assert bridge.of(Transcript)[1] == Transcript(1, "Four.")
    assert bridge.of(TurnEnd)[1] == TurnEnd(1)
    assert [t.barged_in for t in stats.turn_log] == [True, False]


def test_speech_after_the_reply_played_out_is_no_barge_in(tmp_path: Path) -> None:
    bridge = Bridge(**script_settings(tmp_path))
    bridge.play(np.concatenate((speech("Hello there, I need a table."), silence(4.0))))
    bridge.play(np.concatenate((speech("Four."), silence(2.0))))
    assert bridge.of(BargeIn) == []
    assert [e.turn for e in bridge.of(TurnEnd)] == [0, 1]


def test_a_barge_in_from_the_bridge_cuts_the_reply_without_an_echo(tmp_path: Path) -> None:
    bridge = Bridge(**script_settings(tmp_path), rtf=1.0)
    bridge.play(np.concatenate((speech("Hello there, I need a table."), silence(0.9))))
    bridge.session.receive(bridge.client.send(BargeIn(0, 120.0)), bridge.now)
    bridge.advance(bridge.now + 5)
    assert bridge.of(BargeIn) == []
    assert bridge.of(TurnEnd) == [TurnEnd(0, interrupted=True)]
    (turn,) = bridge.session.statistics().turn_log
    assert (turn.barged_in, turn.heard_ms) == (True, 120.0)


def test_a_playback_report_ends_the_reply_at_the_caller_and_dtmf_is_kept(tmp_path: Path) -> None:
    bridge = Bridge(**script_settings(tmp_path), rtf=0.0)  # the whole reply at once
    bridge.play(np.concatenate((speech("Hello there, I need a table."), silence(0.9))))
    bridge.session.receive(bridge.client.send(Playback(0, 900.0)), bridge.now)
    bridge.session.receive(bridge.client.send(Dtmf("7")), bridge.now)
    bridge.play(np.concatenate((speech("Four."), silence(3.0))))  # within the reply's length, but it was heard out
    assert bridge.of(BargeIn) == []
    stats = bridge.session.statistics()
    assert [(t.barged_in, t.heard_ms) for t in stats.turn_log] == [(False, 900.0), (False, None)]
    assert stats.dtmf == "7"


def test_a_listening_first_turn_is_a_greeting_and_a_turn_of_digits_is_heard_by_its_digits(tmp_path: Path) -> None:
    path = tmp_path / "script.toml"
    path.write_text(
        '[[turns]]\nagent = "Welcome."\n'
        '[[turns]]\ncaller = "Hello."\nagent = "Press one."\n'
        '[[turns]]\ndtmf = "1#"\nagent = "Thank you."\n'
    )
    bridge = Bridge(script=str(path))
    bridge.advance(3.0)
    bridge.now = 3.0
    bridge.play(np.concatenate((speech("Hello."), silence(3.0))))
    for digit in "71#":
        bridge.session.receive(bridge.client.send(Dtmf(digit)), bridge.now)
    bridge.advance(bridge.now + 5)
    assert [e.text for e in bridge.of(TurnStart)] == ["Welcome.", "Press one.", "Thank you."]
    assert bridge.of(Transcript) == [Transcript(1, "Hello."), Transcript(2, "1#")]
    stats = bridge.session.statistics()
    assert [t.transcript for t in stats.turn_log] == [None, "Hello.", "1#"]
    assert (stats.dtmf, stats.barge_ins) == ("71#", 0)


def test_bad_bridge_messages_are_counted_by_reason() -> None:
    session = AgentSession(AgentSettings())
    session.receive(b"\0\0", 0.0)
    session.receive("{", 0.0)
    session.receive(json.dumps({"type": "start", "call_id": "c"}), 0.0)
    session.receive(b"\0", 0.0)
    assert session.statistics().malformed == {"bad_json": 1, "before_start": 1, "odd_length": 1}


def test_a_bad_script_file_is_a_param_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[[turns]]\ncaller = 3\n")
    with pytest.raises(ParamError, match=r"^script: .*bad.toml: turn 1: caller must be a non-empty string$"):
        AgentSettings(script=str(path))


def test_reply_message_sizes_must_be_whole_samples() -> None:
    with pytest.raises(ParamError, match=r"^pattern: sizes must be whole PCM16 samples \(even\), got 321$"):
        AgentSettings(pattern=(320, 321))
