"""The call's control path and the barge-in detector, as pure cores."""

from __future__ import annotations

import numpy as np
import pytest

from rtstream.control import CallControl, Cut
from rtstream.frames import AudioChunk, AudioFormat, Encoding, UtteranceStart
from rtstream.stages.barge_in import BargeInCore

PCM8K = AudioFormat(Encoding.PCM_S16LE, 8000)
QUIET = np.zeros(160, np.int16)
LOUD = (np.sin(np.arange(160) * 0.3) * 16000).astype(np.int16)  # about -9 dBFS


def chunk(data: np.ndarray, utterance: str | None = None) -> AudioChunk:
    return AudioChunk(data, PCM8K, utterance=utterance)


def test_a_clear_makes_every_known_reply_stale_and_keeps_the_cut() -> None:
    control = CallControl()
    heard: list[str] = []
    with control.listening(heard.append):
        assert not control.stale(UtteranceStart("u1"))
        assert not control.stale(chunk(LOUD, "u1"))
        control.sent(chunk(LOUD, "u1"), now=1.0)
        control.clear("barge-in", now=1.01)
    assert heard == ["barge-in"]
    assert control.stale(chunk(LOUD, "u1")) and not control.stale(chunk(LOUD, "u2"))
    assert not control.stale(chunk(LOUD))  # audio of no reply (the line's fill) is never stale
    assert list(control.cuts) == [Cut("u1", 20.0, 1.01, "barge-in")]
    assert (control.clears, control.dropped_frames, control.dropped_samples) == (1, 1, 160)


def test_the_bot_speaks_while_a_reply_is_open_even_when_its_frames_are_late() -> None:
    control = CallControl()
    assert not control.bot_speaking(0.0)
    control.sent(chunk(LOUD, "u1"), now=1.0)
    assert control.bot_speaking(1.01) and not control.bot_speaking(1.03)
    control.reply("u2", started=True)
    assert control.bot_speaking(5.0)
    control.reply("u2", started=False)
    assert not control.bot_speaking(5.0)


def feed(core: BargeInCore, frames: list[np.ndarray], start: float) -> float:
    now = start
    for data in frames:
        core.push(chunk(data), now)
        now += 0.02
    return now


def test_speech_over_the_bot_clears_once_after_min_speech() -> None:
    control = CallControl()
    control.reply("r", started=True)
    core = BargeInCore(PCM8K, control, threshold=10 ** (-35 / 10), speech=0.06, release=0.3)
    now = feed(core, [QUIET] * 5 + [LOUD] * 2, 0.0)
    assert control.clears == 0  # 40 ms of speech is not yet an onset
    now = feed(core, [LOUD] * 5, now)
    assert (control.clears, core.onsets, core.barge_ins) == (1, 1, 1)
    assert core.onset_delay.summary(scale=1000).max == pytest.approx(
        40.0
    )  # the third loud frame, 40 ms after the first


def test_speech_before_the_bot_talks_clears_when_the_bot_starts_and_silence_rearms() -> None:
    control = CallControl()
    core = BargeInCore(PCM8K, control, threshold=10 ** (-35 / 10), speech=0.06, release=0.3)
    now = feed(core, [LOUD] * 5, 0.0)
    assert (core.onsets, control.clears) == (1, 0)  # nobody to interrupt
    control.reply("r1", started=True)
    now = feed(core, [LOUD], now)
    assert control.clears == 1  # the caller was still talking when the bot began
    now = feed(core, [QUIET] * 10, now)  # 200 ms of silence: not yet re-armed
    control.reply("r2", started=True)
    now = feed(core, [LOUD] * 3, now)
    assert control.clears == 1
    now = feed(core, [QUIET] * 15 + [LOUD] * 3, now)
    assert (core.onsets, control.clears) == (2, 2)


def test_outside_a_call_it_only_counts() -> None:
    core = BargeInCore(PCM8K, None, threshold=10 ** (-35 / 10), speech=0.06, release=0.3)
    feed(core, [LOUD] * 5, 0.0)
    assert (core.onsets, core.barge_ins) == (1, 0)


def test_a_barge_in_before_the_first_frame_clears_the_reply_that_is_starting() -> None:
    control = CallControl()
    control.stale(UtteranceStart("u1"))  # the reply began; none of its audio has been sent
    control.clear("barge-in", now=0.5)
    assert control.stale(chunk(LOUD, "u1"))
    assert list(control.cuts) == [Cut(None, 0.0, 0.5, "barge-in")]


def test_two_barge_ins_50_ms_apart_clear_once_and_the_second_finds_nothing_new() -> None:
    control = CallControl()
    heard: list[str] = []
    with control.listening(heard.append):
        control.sent(chunk(LOUD, "u1"), now=1.0)
        control.clear("barge-in", now=1.0)
        control.clear("barge-in", now=1.05)
    assert heard == ["barge-in", "barge-in"]
    assert control.cleared == {"u1"}
    assert [c.utterance for c in control.cuts] == ["u1", "u1"]  # the second cut names the same reply
    assert not control.stale(chunk(LOUD, "u2"))  # the next reply plays


def test_a_clear_after_the_reply_finished_drops_nothing_of_the_next() -> None:
    control = CallControl()
    control.reply("u1", started=True)
    control.sent(chunk(LOUD, "u1"), now=1.0)
    control.reply("u1", started=False)
    control.clear("barge-in", now=3.0)
    assert not control.stale(chunk(LOUD, "u2"))
    assert control.dropped_frames == 0
