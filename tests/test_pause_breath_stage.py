"""The pause_breath stage on virtual time: the hold and its bound, barge-in, errors, formats, config."""

import textwrap

import attrs
import numpy as np
import pytest
import trio
from pause_helpers import EXACT, LENGTH, SPANS, TEXT, chunks, shape, speech, utterance

from rtstream.config import parse_config
from rtstream.errors import ConfigError, FormatMismatch, StageFailed
from rtstream.frames import AudioChunk, AudioFormat, Clear, UtteranceEnd, UtteranceStart, Word, WordTimings
from rtstream.pipeline import assemble, build_pipeline
from rtstream.stage import Sink
from rtstream.stages.pause_breath import PauseBreath
from rtstream.stages.tone import Tone
from rtstream.testing import CollectingSink, ScriptedSource, run_stage, run_stages


def _real_time(frames, period=0.02, samples=160):
    """Each chunk at its real-time moment (``period`` per ``samples``); events with the chunk before them."""
    timed, at = [], 0.0
    for frame in frames:
        timed.append((at, frame))
        if isinstance(frame, AudioChunk):
            at += period * frame.samples / samples
    return timed


async def test_in_real_time_the_stage_inserts_exactly_what_the_core_does(autojump_clock):
    audio = speech(SPANS, LENGTH, floor=200)
    frames = utterance(TEXT, SPANS, audio, place="split")
    # In real time, each word's timing comes at its end, so a word waits as long as it lasts: max_wait covers that.
    params = {**EXACT, "breath_probability": 1.0, "breath_min_interval": 0, "max_wait": 1.0}
    out = await run_stage(PauseBreath(**params), _real_time(frames))
    expected = shape(frames, **params)
    assert out.frames == expected.frames
    stats = out.report.stages[1].statistics
    assert stats["pauses"] == {"comma": 1, "period": 1, "question": 1}
    assert stats["breaths"] == {"normal": 2}
    assert stats["seconds_inserted"] == pytest.approx(0.15 + 0.5 + 0.6 + stats["breath_seconds"] + 2 * 0.04)
    assert stats["sent"].samples == len(audio) + round(stats["seconds_inserted"] * 8000)
    # the longest hold: from the end of "you?" until "Fine", whose start is the end of the question's gap, is timed
    assert stats["held_max_seconds"] == pytest.approx(2.6 - (2.0 - 0.005)) and not stats["released_unshaped"]


async def test_without_timings_audio_waits_no_longer_than_max_wait(autojump_clock):
    audio = speech(SPANS, LENGTH)
    timed = [*_real_time(utterance(TEXT, SPANS, audio, place="none")), (5.0, UtteranceStart("later", ""))]
    out = await run_stage(PauseBreath(max_wait=0.25), timed)
    assert np.array_equal(out.audio(), audio)
    sent = {id(f): t for t, f in timed}
    waits = [at - sent[id(f)] for at, f in out.received if isinstance(f, AudioChunk) and id(f) in sent]
    assert len(waits) == len(out.chunks) and max(waits) == pytest.approx(0.25)
    stats = out.report.stages[1].statistics
    assert stats["skipped"] == {"missing_timings": 3}
    assert stats["released_unshaped"]["timings_late"].samples == len(audio)
    assert stats["held_max_seconds"] == pytest.approx(0.26)


async def test_audio_goes_out_the_moment_its_timings_arrive(autojump_clock):
    audio = speech(SPANS, LENGTH)
    body = chunks(audio, 160)
    words = WordTimings(
        "u",
        tuple(Word(w, a, b) for w, (a, b) in zip(["Hello", "world", "How", "are", "you", "Fine"], SPANS, strict=True)),
    )
    script = [(0.0, UtteranceStart("u", TEXT)), *((0.0, c) for c in body), (1.0, words), (9.0, UtteranceEnd("u"))]
    out = await run_stage(PauseBreath(**EXACT, max_wait=5.0), script)
    assert out.times[1] == 1.0 and out.times[-2] == 1.0  # held until the timings, released on them
    assert out.report.stages[1].statistics["pauses"] == {"comma": 1, "period": 1, "question": 1}


async def test_timings_that_run_past_the_audio_do_not_stall_the_utterance_end(autojump_clock):
    audio = speech([(0.1, 0.5), (0.6, 0.7)], 0.75)  # "world" is cut short: its timing says it ends at 1.0 s
    words = WordTimings("u", (Word("Hello", *SPANS[0]), Word("world", *SPANS[1])))
    script = [UtteranceStart("u", "Hello, world, again"), words, *chunks(audio, 160), UtteranceEnd("u")]
    out = await run_stage(PauseBreath(max_wait=0.25), [*((0.0, f) for f in script), (3.0, UtteranceStart("v", ""))])
    ended = next(t for t, f in out.received if isinstance(f, UtteranceEnd))
    assert ended == pytest.approx(0.25)
    assert out.report.stages[1].statistics["skipped"] == {"missing_timings": 1}


async def test_timings_later_than_max_wait_skip_only_the_boundaries_they_missed(autojump_clock):
    audio = speech(SPANS, LENGTH)
    body = chunks(audio, 160)
    words = [Word(w, a, b) for w, (a, b) in zip(["Hello", "world", "How", "are", "you", "Fine"], SPANS, strict=True)]
    # the first words' timings come 1.1 s after the start: the comma's gap (0.5-0.6 s) has gone by then
    script = [(0.0, UtteranceStart("u", TEXT))] + [(0.02 * i, c) for i, c in enumerate(body)]
    script.insert(56, (1.1, WordTimings("u", tuple(words))))
    script.append((0.02 * len(body), UtteranceEnd("u")))
    out = await run_stage(PauseBreath(**EXACT, max_wait=0.3), sorted(script, key=lambda p: p[0]))
    stats = out.report.stages[1].statistics
    assert stats["skipped"] == {"late_timings": 1}
    assert stats["pauses"] == {"period": 1, "question": 1}
    assert len(out.audio()) == len(audio) + round(1.1 * 8000)


@attrs.frozen(kw_only=True)
class _SlowSink(Sink):
    """Takes a frame every 20 ms, as a pacer downstream would (its own element: the test reads ``received``)."""

    received: list = attrs.field(factory=list, eq=False)

    def open(self, fmt_in, fmt_out):
        return self

    def statistics(self):
        return {"frames": len(self.received)}

    async def run(self, rx, *, task_status=trio.TASK_STATUS_IGNORED):
        async with rx:
            task_status.started()
            async for frame in rx:
                self.received.append((trio.current_time(), frame))
                await trio.sleep(0.02)


async def test_waiting_on_downstream_does_not_count_against_max_wait(autojump_clock):
    # A's timings come after B's first chunks: releasing A takes 3 s of a slow downstream while
    # B's first chunks are held; B's timings are next in line and must still be in time.
    audio = speech(SPANS, LENGTH)
    first, second = (
        utterance(TEXT, SPANS, audio, uid="A", place="after"),
        utterance(TEXT, SPANS, audio, uid="B", place="after"),
    )
    frames = [*first[:-1], *second[:12], first[-1], *second[12:]]
    sink = _SlowSink()
    out = await run_stages([PauseBreath(**EXACT, max_wait=0.1), sink], frames)
    stats = out.report.stages[1].statistics
    assert stats["pauses"] == {"comma": 2, "period": 2, "question": 2}
    assert not stats["released_unshaped"] and not stats["skipped"]
    assert sink.received[-1][0] > 5.0  # downstream really was slow


async def test_barge_in_drops_what_is_held_and_later_audio_flows(autojump_clock):
    audio = speech(SPANS, LENGTH)
    frames = utterance(TEXT, SPANS, audio, place="none")[:40]
    fresh = chunks(np.full(160, 7, dtype=np.int16), 160, uid="next")
    script = [*_real_time(frames), (0.7, Clear("barge-in")), (0.8, UtteranceStart("next", "")), (0.8, fresh[0])]
    out = await run_stage(PauseBreath(max_wait=0.25), script)
    stats = out.report.stages[1].statistics
    assert stats["drops"]["clear"].samples == len(audio[: 39 * 160]) - stats["sent"].samples + 160
    assert out.frames[-3:] == [Clear("barge-in"), UtteranceStart("next", ""), fresh[0]]
    assert stats["skipped"] == {"cleared": 3}


async def test_a_malformed_tag_fails_the_stage_naming_tag_and_position(autojump_clock):
    frames = utterance(
        "Hello, [breath type=deep] world", [(0.1, 0.4), (0.5, 0.8)], speech([(0.1, 0.4), (0.5, 0.8)], 1.0)
    )
    with pytest.raises(
        StageFailed,
        match=(
            r"^pipeline 'test', stage 2 \(pause_breath\) failed: MarkupError: utterance 'u': malformed breath tag "
            r"\(write \[breath\] or \[breath type=\"deep\"\]\): '\[breath type=deep\]' at character 7$"
        ),
    ):
        await run_stage(PauseBreath(on_bad_markup="fail"), frames)
    out = await run_stage(PauseBreath(), frames)
    assert out.report.stages[1].statistics["markup_errors"] == 1


def test_caps_take_pcm_in_any_rate_and_layout_and_ask_for_a_converter_before_g711():
    stereo = AudioFormat("pcm_f32le", 48000, 2)
    pipeline = assemble("p", [ScriptedSource(script=(), format=stereo), PauseBreath(), CollectingSink()])
    assert pipeline.formats == (stereo, stereo) and pipeline.elements[1].core.format == stereo
    with pytest.raises(
        FormatMismatch,
        match=r"^stage 1 \(ScriptedSource\) produces pcm_mulaw 8000 Hz mono, but stage 2 "
        r"\(pause_breath\) accepts only pcm_s16le\|pcm_f32le, any rate, mono or stereo; add a converter",
    ):
        assemble(
            "p", [ScriptedSource(script=(), format=AudioFormat("pcm_mulaw", 8000)), PauseBreath(), CollectingSink()]
        )


def _build(table: str):
    text = textwrap.dedent(f"""
        [pipelines.p]
        [[pipelines.p.stages]]
        type = "tone"
        [[pipelines.p.stages]]
        type = "pause_breath"
        {table}
        [[pipelines.p.stages]]
        type = "null_sink"
        """)
    config = parse_config(text, file="p.toml", environ={})
    return [build_pipeline(spec, file=config.file) for spec in config.select()]


def test_config_from_toml_and_its_errors():
    [pipeline] = _build("comma = [0.05, 0.1]\nseed = 7\nreference_rate = 12.5")
    stage = pipeline.stages[1]
    assert stage.comma == (0.05, 0.1) and stage.seed == 7 and stage.reference_rate == 12.5
    with pytest.raises(
        ConfigError,
        match=(
            r"^p.toml: pipeline 'p', stage 2 \(pause_breath\), key 'period': "
            r"must be two numbers \[low, high\] with low <= high, got \[0.6, 0.4\]$"
        ),
    ):
        _build("period = [0.6, 0.4]")
    with pytest.raises(
        ConfigError, match=r"key 'question': must be two numbers \[low, high\] with low <= high, got \[0.5\]$"
    ):
        _build("question = [0.5]")
    with pytest.raises(ConfigError, match=r"key 'comma': must be between 0 and 10, got 20.0$"):
        _build("comma = [0.1, 20]")
    with pytest.raises(ConfigError, match=r"key 'on_bad_markup': must be one of 'warn', 'fail', got 'ignore'"):
        _build('on_bad_markup = "ignore"')


async def test_a_tone_without_a_transcript_passes_through_unchanged(autojump_clock):
    direct = await run_stage(Tone(duration=0.5, sample_rate=8000, chunk_ms=20))
    through = await run_stages([Tone(duration=0.5, sample_rate=8000, chunk_ms=20), PauseBreath()])
    assert through.frames == direct.frames
    assert np.diff(through.times) == pytest.approx(np.diff(direct.times))  # and at the same moments
    assert through.report.stages[1].statistics["held_max_seconds"] == 0
