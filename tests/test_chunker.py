"""chunker: the FrameCutter core exhaustively (hypothesis), the stage on virtual time."""

import numpy as np
import pytest
from helpers import PCM8K, PCM16K, pcm_chunk
from hypothesis import given, settings
from hypothesis import strategies as st

from rtstream.errors import ConfigError
from rtstream.frames import AudioChunk, AudioFormat, Clear, Encoding, UtteranceEnd, UtteranceStart, WordTimings
from rtstream.pipeline import assemble
from rtstream.stages.chunker import Chunker, FrameCutter
from rtstream.stages.null import NullSink
from rtstream.testing import ScriptedSource, run_stage

ULAW8K = AudioFormat(Encoding.PCM_MULAW, 8000)


def counting(fmt: AudioFormat, start: int, samples: int, utterance: str | None = None) -> AudioChunk:
    """A chunk whose samples count up from ``start`` (distinct values: the order is checkable)."""
    values = np.arange(start, start + samples) % 97 + 1
    if fmt.channels == 2:
        values = np.stack([values, values + 100], axis=1)
    return AudioChunk(values.astype(fmt.encoding.dtype), fmt, utterance=utterance)


def push_all(cutter: FrameCutter, frames) -> list:
    out = []
    for frame in frames:
        out.extend(cutter.push(frame, 0.0))
    out.extend(cutter.end())
    return out


@pytest.mark.parametrize(
    ("fmt", "frame_bytes"),
    [(PCM8K, 960), (PCM16K, 1920), (ULAW8K, 480), (AudioFormat("pcm_alaw", 8000, 2), 960),
     (AudioFormat("pcm_f32le", 24000), 5760), (AudioFormat("pcm_s16le", 48000, 2), 11520)],
)  # fmt: skip
async def test_frames_have_the_exact_byte_size(fmt, frame_bytes):
    script = [counting(fmt, 0, 1234), counting(fmt, 1234, 4321), counting(fmt, 5555, 1)]
    out = await run_stage(Chunker(), script)
    assert {len(c.tobytes()) for c in out.chunks} == {frame_bytes}
    assert [c.pts for c in out.chunks] == [i * fmt.samples_in(60) for i in range(len(out.chunks))]
    assert [c.seq for c in out.chunks] == list(range(len(out.chunks)))


_FORMATS = st.builds(
    AudioFormat, st.sampled_from(list(Encoding)), st.sampled_from([8000, 16000, 22050]), st.sampled_from([1, 2])
)
_UTTERANCES = st.lists(st.lists(st.integers(0, 3000), max_size=8), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(
    fmt=_FORMATS,
    utterances=_UTTERANCES,
    remainder=st.sampled_from(["pad", "hold", "drop"]),
    ms=st.sampled_from([20, 60, 100]),
)
def test_output_is_the_input_in_exact_frames(fmt, utterances, remainder, ms):
    """Any chunk sizes: every frame exact; the frames are the input plus padding (or less the drops)."""
    size = fmt.samples_in(ms)
    cutter = FrameCutter(fmt, size, remainder)
    script, pieces, pos = [], [], 0
    for i, sizes in enumerate(utterances):
        name = f"u{i}"
        script.append(UtteranceStart(name))
        chunks = [counting(fmt, pos + sum(sizes[:j]), n, name) for j, n in enumerate(sizes)]
        script.extend(chunks)
        script.append(UtteranceEnd(name))
        pos += sum(sizes)
        pieces.append(np.concatenate([c.data for c in chunks]) if chunks else counting(fmt, 0, 0).data)
    out = push_all(cutter, script)

    frames = [f for f in out if isinstance(f, AudioChunk)]
    assert all(f.data.shape[0] == size and f.data.shape[1:] == pieces[0].shape[1:] for f in frames)
    assert all(f.data.dtype == fmt.encoding.dtype and f.format == fmt for f in frames)
    assert [f.pts for f in frames] == [i * size for i in range(len(frames))]

    silence = fmt.silence(size)
    if remainder == "hold":
        whole = np.concatenate(pieces)
        expected = [whole, silence[: -len(whole) % size]]
    elif remainder == "pad":
        expected = [part for p in pieces for part in (p, silence[: -len(p) % size])]
    else:
        expected = [p[: len(p) - len(p) % size] for p in pieces]
    got = np.concatenate([f.data for f in frames]) if frames else silence[:0]
    assert np.array_equal(got, np.concatenate(expected))

    # events keep their order, and none overtakes audio that came before it
    assert [f for f in out if not isinstance(f, AudioChunk)] == [f for f in script if not isinstance(f, AudioChunk)]
    sent = 0
    needed = 0
    for frame in out:
        if isinstance(frame, AudioChunk):
            sent += frame.samples
        elif isinstance(frame, UtteranceEnd):
            done = pieces[int(frame.utterance[1:])]
            needed += len(done) - (len(done) % size if remainder == "drop" else 0)
            assert sent >= needed
    dropped = sum(len(p) % size for p in pieces) if remainder == "drop" else 0
    assert cutter.drops.samples == dropped
    assert cutter.pending == 0


def test_padding_uses_the_encodings_silence_code():
    for encoding, code in [(Encoding.PCM_MULAW, 0xFF), (Encoding.PCM_ALAW, 0xD5), (Encoding.PCM_S16LE, 0)]:
        fmt = AudioFormat(encoding, 8000)
        cutter = FrameCutter(fmt, 480, "pad")
        out = push_all(cutter, [counting(fmt, 0, 100, "a"), UtteranceEnd("a")])
        assert np.all(out[0].data[100:] == code) and np.array_equal(out[0].data[:100], counting(fmt, 0, 100).data)
        assert cutter.padded_samples == 380


def test_hold_joins_the_remainder_to_the_next_utterance_and_events_wait_behind_it():
    cutter = FrameCutter(PCM8K, 480, "hold")
    a, b = counting(PCM8K, 0, 600, "a"), counting(PCM8K, 600, 600, "b")
    timings = WordTimings("b", ())
    out = push_all(
        cutter, [UtteranceStart("a"), a, UtteranceEnd("a"), UtteranceStart("b"), timings, b, UtteranceEnd("b")]
    )
    kinds = [type(f).__name__ if not isinstance(f, AudioChunk) else f.utterance for f in out]
    # the joint frame (120 of a, 360 of b) is labelled a; a's end and b's start follow it
    assert kinds == ["UtteranceStart", "a", "a", "UtteranceEnd", "UtteranceStart", "WordTimings", "b", "UtteranceEnd"]
    assert np.array_equal(out[2].data, np.concatenate([a.data[480:], b.data[:360]]))
    assert np.array_equal(out[6].data[:240], b.data[360:]) and np.all(out[6].data[240:] == 0)


def test_drop_counts_the_remainder():
    cutter = FrameCutter(PCM8K, 480, "drop")
    out = push_all(cutter, [pcm_chunk(1000, utterance="a"), UtteranceEnd("a"), pcm_chunk(100, utterance="b")])
    assert [f.samples for f in out if isinstance(f, AudioChunk)] == [480, 480]
    assert cutter.drops.snapshot()["remainder"].samples == 140
    assert cutter.drops.snapshot()["remainder"].frames == 2


@pytest.mark.parametrize("remainder", ["pad", "hold", "drop"])
def test_clear_drops_the_partial_frame(remainder):
    cutter = FrameCutter(PCM8K, 480, remainder)
    timings = WordTimings("a", ())
    out = push_all(cutter, [pcm_chunk(700, utterance="a"), timings, Clear(), counting(PCM8K, 0, 480, "b")])
    assert [type(f) for f in out] == [AudioChunk, WordTimings, Clear, AudioChunk]
    assert out[-1].utterance == "b" and np.array_equal(out[-1].data, counting(PCM8K, 0, 480).data)
    assert cutter.drops.snapshot()["clear"].samples == 220


def test_clear_drops_a_held_remainder():
    cutter = FrameCutter(PCM8K, 480, "hold")
    out = push_all(cutter, [pcm_chunk(500, utterance="a"), UtteranceEnd("a"), Clear(), pcm_chunk(480, utterance="b")])
    assert [type(f) for f in out] == [AudioChunk, UtteranceEnd, Clear, AudioChunk]
    assert cutter.drops.snapshot()["clear"].samples == 20


def test_whole_frames_are_views_of_the_input_and_straddling_ones_are_copies():
    cutter = FrameCutter(PCM8K, 480, "pad")
    first, second = pcm_chunk(1000), pcm_chunk(1000, seed=1)
    out = cutter.push(first, 0.0) + cutter.push(second, 0.0)
    assert [np.shares_memory(f.data, first.data) for f in out] == [True, True, False, False]
    assert [np.shares_memory(f.data, second.data) for f in out] == [False, False, False, True]
    assert np.array_equal(out[2].data, np.concatenate([first.data[960:], second.data[:440]]))


def test_a_chunk_in_another_format_is_dropped_and_counted():
    cutter = FrameCutter(PCM8K, 480, "pad")
    assert cutter.push(pcm_chunk(480, fmt=PCM16K), 0.0) == []
    assert cutter.drops.snapshot()["format"].samples == 480


async def test_stage_statistics_and_end_of_stream(autojump_clock):
    chunker = Chunker(remainder="drop")
    out = await run_stage(chunker, [UtteranceStart("a"), pcm_chunk(1000, utterance="a")])
    assert [c.samples for c in out.chunks] == [480, 480]
    report = out.report.stages[1].statistics
    assert (report["chunks_in"], report["samples_in"], report["frames_out"], report["samples_out"]) == (1, 1000, 2, 960)
    assert report["drops"]["remainder"].samples == 40


def test_a_frame_that_is_not_whole_samples_is_a_config_error():
    fmt = AudioFormat("pcm_s16le", 22050)
    with pytest.raises(
        ConfigError,
        match=r"^stage 2 \(chunker\), key 'frame_ms': 10 ms at 22050 Hz is 220.5 samples, "
        r"not a whole number; the stage's input is pcm_s16le 22050 Hz mono$",
    ):
        assemble("p", [ScriptedSource(script=(), format=fmt), Chunker(frame_ms=10), NullSink()])
    assemble("p", [ScriptedSource(script=(), format=fmt), Chunker(frame_ms=20), NullSink()])


def test_the_cli_names_the_bad_frame_duration_in_one_line(tmp_path):
    from click.testing import CliRunner

    from rtstream.cli import main

    path = tmp_path / "p.toml"
    path.write_text(
        '[pipelines.p]\n[[pipelines.p.stages]]\ntype = "tone"\nsample_rate = 22050\n'
        '[[pipelines.p.stages]]\ntype = "chunker"\nframe_ms = 10\n[[pipelines.p.stages]]\ntype = "null_sink"\n'
    )
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert (
        result.output.strip()
        .splitlines()[-1]
        .endswith(
            "pipeline 'p', stage 2 (chunker), key 'frame_ms': 10 ms at 22050 Hz is 220.5 samples, not a whole number; "
            "the stage's input is pcm_s16le 22050 Hz mono"
        )
    )
