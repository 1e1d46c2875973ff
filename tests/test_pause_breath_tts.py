"""TTS simulator -> ``cartesia_tts`` -> ``pause_breath`` over loopback: the whole path, exact to the sample.

The simulator's audio is known (``audio_of``), and so are its words' spans (``synthesize``):
what comes out must be that audio, untouched, with exactly the planned segments inserted in
the silences between words, and pts and word timings moved by what went in before them.
"""

import json
import os
from bisect import bisect_right
from pathlib import Path

import numpy as np
import pytest
import trio
from click.testing import CliRunner
from pause_helpers import EXACT, Shaped
from sims import tts_server

from rtstream.cli import main
from rtstream.config import load_config
from rtstream.frames import AudioFormat, UtteranceEnd, UtteranceStart, WordTimings
from rtstream.markup import strip_tags
from rtstream.simulators.speech import ROOM_TONE, synthesize
from rtstream.simulators.tts import audio_of
from rtstream.stages.cartesia import CartesiaTTS
from rtstream.stages.pause_breath import PauseBreath
from rtstream.stages.pause_breath.script import is_spoken
from rtstream.testing import run_stages
from rtstream.wavfile import read_wav

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines.toml"
PCM8 = AudioFormat("pcm_s16le", 8000)
FADE = 40  # the default 5 ms at 8 kHz
TEXT = 'Hi, there. [breath] How are [emphasis] you? [pause 300ms] Great! [breath type="deep"] Wait — [sigh] what now.'
CLEAN = strip_tags(TEXT)
FIXED = {
    **EXACT,
    "breath_normal": (0.2, 0.2),
    "breath_deep": (0.3, 0.3),
    "breath_sigh": (0.5, 0.5),
    "max_wait": 5.0,  # the simulator runs 100 times faster than real time: only a stalled machine could wait this long
}
"""Every length fixed, nothing random: what each boundary gets is known."""
LAYOUT = {
    "there.": (150, None, 0),  # comma
    "How": (500, "normal", 200),  # period, [breath]
    "you?": (250, None, 0),  # [emphasis]
    "Great!": (300, None, 0),  # [pause 300ms] in place of the question's 600
    "Wait": (400, "deep", 300),  # exclamation, [breath type="deep"]
    "what": (200, "sigh", 500),  # the dash (a word of its own to the simulator), [sigh]
}
"""Under FIXED, before each of these spoken words: (pause ms, breath type, breath ms); a breath is followed by 40 ms."""


async def speak_and_shape(fmt=PCM8, *, tts=None, stage=FIXED, **source):
    """Run the simulator (100x real time), cartesia_tts and pause_breath into a collecting sink."""
    if "transcript_file" not in source:
        source.setdefault("transcript", TEXT)
    with trio.fail_after(20):
        async with tts_server(rtf=100, first_byte_latency=0, **(tts or {})) as (url, _):
            tts_source = CartesiaTTS(url=url, sample_rate=fmt.sample_rate, encoding=fmt.encoding, **source)
            return await run_stages([tts_source, PauseBreath(**stage)])


def _timings(frames):
    return [w for f in frames if isinstance(f, WordTimings) for w in f.words]


async def test_the_simulators_audio_comes_out_whole_with_the_planned_segments_between_words():
    out = await speak_and_shape()
    shaped = Shaped(out.frames, None)
    original = audio_of(CLEAN, PCM8)
    _, words = synthesize(CLEAN, PCM8.sample_rate)
    starts = [w.start for w in words]

    # Outside the inserted segments the output is the simulator's audio; the fades at the cuts touch only
    # the room tone of its pauses (the words are compared sample for sample below).
    tone = round(ROOM_TONE[1] * 32768)
    assert np.abs(shaped.without_insertions().astype(np.int32) - original).max() <= tone
    got = {}
    inserted = [c for c in shaped.chunks if c.seq is None]
    for (position, _), segment in zip(shaped.cuts(), inserted, strict=True):
        after = bisect_right(starts, position)  # the simulator's word after the cut
        assert words[after - 1].end + FADE <= position <= words[after].start - FADE  # in a silence, clear of both
        assert np.abs(original[position - FADE : position + FADE]).max() <= tone
        got[next(w.text for w in words[after:] if is_spoken(w.text))] = segment
    assert list(got) == list(LAYOUT)
    speech_rms = np.sqrt(np.mean(original[np.abs(original) > tone].astype(float) ** 2))
    for word, (pause_ms, kind, breath_ms) in LAYOUT.items():
        data = got[word].data
        pause, breath = pause_ms * 8, breath_ms * 8
        assert len(data) == pause + breath + (320 if kind else 0), word
        assert not data[:pause].any() and not data[pause + breath :].any()
        if kind:  # a breath: well below the speech, but there
            assert 0 < np.sqrt(np.mean(data[pause : pause + breath].astype(float) ** 2)) < speech_rms / 4

    # pts run on without a hole; every chunk is the utterance's, in the format asked for
    chunks = out.chunks
    assert [c.pts for c in chunks] == list(np.cumsum([0] + [c.samples for c in chunks[:-1]]))
    assert {(c.utterance, c.format) for c in chunks} == {("utt-1", PCM8)}

    # Word timings: every word the simulator timed, moved by what went in before it, pointing at its sound.
    result = out.audio()
    cuts = shaped.cuts()
    timed = _timings(out.frames)
    assert [w.text for w in timed] == CLEAN.split()
    for word, spoken in zip(timed, words, strict=True):
        moved = sum(n for p, n in cuts if p <= spoken.start)
        assert (round(word.start * 8000), round(word.end * 8000)) == (spoken.start + moved, spoken.end + moved)
        assert np.array_equal(result[spoken.start + moved : spoken.end + moved], original[spoken.start : spoken.end])

    events = out.events
    assert events[0] == UtteranceStart("utt-1", TEXT) and events[-1] == UtteranceEnd("utt-1")
    stats = out.report.stages[1].statistics
    assert stats["pauses"] == {"comma": 1, "dash": 1, "emphasis": 1, "exclamation": 1, "period": 1, "tag": 1}
    assert stats["breaths"] == {"deep": 1, "normal": 1, "sigh": 1}
    assert stats["sent"].samples == len(result) == len(original) + sum(n for _, n in cuts)
    assert (stats["skipped"], stats["released_unshaped"], stats["timing_issues"]) == ({}, {}, {})


SECOND = "And one more line, [emphasis] please. [breath] Thanks!"


@pytest.mark.parametrize(
    "tts,source",
    [
        ({"chunking": "random", "min_bytes": 101, "max_bytes": 777, "seed": 5}, {"chunk_words": 2}),
        ({"chunking": "fixed", "chunk_bytes": 4000}, {}),
        ({}, {"chunk_words": 1}),
    ],
    ids=["random-odd-chunks", "big-chunks", "word-by-word"],
)
async def test_a_seed_gives_the_same_speech_whatever_the_chunking(tmp_path, tts, source):
    lines = tmp_path / "lines.txt"
    lines.write_text(f"{TEXT}\n{SECOND}\n")
    random = {"seed": 11, "breath_probability": 1.0, "breath_min_interval": 0.0, "max_wait": 5.0}
    fmt = AudioFormat("pcm_f32le", 16000)
    reference = await speak_and_shape(fmt, stage=random, transcript_file=str(lines))
    out = await speak_and_shape(fmt, tts=tts, stage=random, transcript_file=str(lines), **source)
    assert np.array_equal(out.audio(), reference.audio())
    assert _timings(out.frames) == _timings(reference.frames)
    assert Shaped(out.frames, None).cuts() == Shaped(reference.frames, None).cuts()
    stats = out.report.stages[1].statistics
    assert stats["breaths"] == reference.report.stages[1].statistics["breaths"] and stats["breath_seconds"] > 0
    spoken = len(audio_of(CLEAN, fmt)) + len(audio_of(strip_tags(SECOND), fmt))
    assert stats["received"].samples == spoken < stats["sent"].samples
    # two utterances: pts run on across them, each one's timings count from its own start
    assert [c.pts for c in out.chunks] == list(np.cumsum([0] + [c.samples for c in out.chunks[:-1]]))
    first = next(w for f in out.frames if isinstance(f, WordTimings) and f.utterance == "utt-2" for w in f.words)
    assert first.text == "And" and first.start == 0.0


async def test_another_seed_gives_other_pauses():
    random = {"breath_probability": 1.0, "breath_min_interval": 0.0, "max_wait": 5.0}
    one = await speak_and_shape(stage={**random, "seed": 1})
    two = await speak_and_shape(stage={**random, "seed": 2})
    assert not np.array_equal(one.audio(), two.audio())


# -- the listening pipeline in pipelines.toml --------------------------------------------------------


def test_the_pauses_pipelines_run_out_of_the_box_and_show_every_feature(tmp_path, monkeypatch):
    config = load_config(PIPELINES)
    transcript = config.pipelines["pauses"].stages[0].params["transcript"]
    assert config.pipelines["pauses_original"].stages[0].params["transcript"] == transcript
    for feature in (",", ".", "?", "!", "[breath]", '[breath type="deep"]', "[sigh]", "[pause 300ms]", "[emphasis]"):
        assert feature in transcript
    monkeypatch.chdir(tmp_path)  # the WAVs land in out/ under the working directory
    report = tmp_path / "report.json"
    command = ["run", str(PIPELINES), "-p", "pauses", "-p", "pauses_original", "--report", str(report)]
    # --duration bounds the run: a hang would stop the sources, cut the WAVs short and fail below
    result = CliRunner().invoke(main, [*command, "--duration", "20"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    shaped, fmt = read_wav("out/pauses.wav")
    original, original_fmt = read_wav("out/pauses-original.wav")
    assert fmt == original_fmt == AudioFormat("pcm_s16le", 16000)
    assert np.array_equal(original, audio_of(strip_tags(transcript), fmt))
    stats = json.loads(report.read_text())["pipelines"][0]["stages"][1]["statistics"]
    assert len(shaped) == len(original) + round(stats["seconds_inserted"] * 16000)
    assert set(stats["pauses"]) >= {"comma", "period", "question", "exclamation", "emphasis", "tag"}
    assert set(stats["breaths"]) >= {"normal", "deep", "sigh"}
    assert (stats["skipped"], stats["released_unshaped"]) == ({}, {})
    assert sorted(os.listdir("out")) == ["pauses-original.wav", "pauses.wav"]
