"""The converter: every format to every other, events in place, exact media time, bad input counted."""

import audioop
import itertools
import textwrap

import attrs
import numpy as np
import pytest
import soxr
from helpers import PCM8K, PCM16K, pcm_chunk

from rtstream.audio.payload import PayloadAligner
from rtstream.caps import Caps
from rtstream.config import parse_config
from rtstream.errors import ConfigError
from rtstream.frames import (
    SAMPLE_RATES,
    AudioChunk,
    AudioFormat,
    ChunkFlags,
    Clear,
    Encoding,
    Gap,
    UtteranceEnd,
    UtteranceStart,
    Word,
    WordTimings,
)
from rtstream.pipeline import build_pipeline
from rtstream.stages.converter import Converter, ConverterCore
from rtstream.stats import DropCount
from rtstream.testing import run_stage

S16, F32, MULAW, ALAW = Encoding.PCM_S16LE, Encoding.PCM_F32LE, Encoding.PCM_MULAW, Encoding.PCM_ALAW
MULAW8K = AudioFormat(MULAW, 8000)


def rescale(pts: int, in_rate: int, out_rate: int) -> int:
    return (2 * pts * out_rate + in_rate) // (2 * in_rate)


def signal(rate: int, seconds: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Float samples in [-0.5, 0.5]: a few tones and some noise."""
    n = round(rate * seconds)
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    mono = 0.3 * np.sin(2 * np.pi * 300 * t) + 0.1 * np.sin(2 * np.pi * 2100 * t) + 0.05 * rng.standard_normal(n)
    if channels == 1:
        return mono.astype(np.float32)
    return np.stack([mono, -0.5 * mono], axis=1).astype(np.float32)


# references built from audioop and soxr's one-shot resample, independently of rtstream.audio.codec
def ref_encode(x: np.ndarray, encoding: Encoding) -> np.ndarray:
    if encoding is F32:
        return x.astype(np.float32)
    pcm = np.clip(np.rint(x.astype(np.float64) * 32768), -32768, 32767).astype(np.int16)
    if encoding is S16:
        return pcm
    code = audioop.lin2ulaw if encoding is MULAW else audioop.lin2alaw
    return np.frombuffer(code(pcm.tobytes(), 2), dtype=np.uint8).reshape(pcm.shape)


def ref_decode(data: np.ndarray, encoding: Encoding) -> np.ndarray:
    if encoding is F32:
        return data
    if encoding is not S16:
        decode = audioop.ulaw2lin if encoding is MULAW else audioop.alaw2lin
        data = np.frombuffer(decode(data.tobytes(), 2), dtype=np.int16).reshape(data.shape)
    return data.astype(np.float32) / np.float32(32768)


def chunks_of(data: np.ndarray, fmt: AudioFormat, sizes, *, pts: int = 0, **kwargs) -> list[AudioChunk]:
    out, i = [], 0
    for size in itertools.cycle(sizes):
        if i >= len(data):
            return out
        out.append(AudioChunk(data[i : i + size], fmt, pts=pts + i, **kwargs))
        i += size
    raise AssertionError


def run_core(core: ConverterCore, chunks) -> np.ndarray:
    out = [c for chunk in chunks for c in core.push(chunk, 0.0)] + list(core.end())
    return np.concatenate([c.data for c in out])


@pytest.mark.parametrize(("in_rate", "out_rate"), list(itertools.product(SAMPLE_RATES, SAMPLE_RATES)))
def test_every_encoding_and_rate_to_every_other(in_rate, out_rate):
    x = signal(in_rate, 0.12)
    n_out = rescale(len(x), in_rate, out_rate)
    for src, dst in itertools.product(Encoding, Encoding):
        data = ref_encode(x, src)
        core = ConverterCore(AudioFormat(dst, out_rate), input_format=AudioFormat(src, in_rate))
        out = run_core(core, chunks_of(data, AudioFormat(src, in_rate), [97, 480, 1, 333]))
        assert out.dtype == dst.dtype and len(out) == n_out, (src, dst)
        decoded = ref_decode(data, src)
        if in_rate != out_rate:
            decoded = soxr.resample(decoded, in_rate, out_rate, "HQ")
        expected = ref_encode(decoded, dst)
        common = min(len(out), len(expected))
        assert common >= n_out - 1
        # streamed in float32, soxr gives exactly its one-shot output, so even G.711 codes agree
        assert np.array_equal(out[:common], expected[:common]), (src, dst)
        assert core.statistics().clipped == 0


def test_same_rate_integer_conversions_are_table_lookups_and_exact():
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    core = ConverterCore(MULAW8K, input_format=PCM8K)
    out = run_core(core, chunks_of(pcm, PCM8K, [480, 7]))
    assert out.tobytes() == audioop.lin2ulaw(pcm.tobytes(), 2)
    alaw = ConverterCore(AudioFormat(ALAW, 8000), input_format=MULAW8K)
    codes = np.arange(256, dtype=np.uint8)
    assert run_core(alaw, [AudioChunk(codes, MULAW8K)]).tobytes() == audioop.lin2alaw(
        audioop.ulaw2lin(codes.tobytes(), 2), 2
    )
    same = ConverterCore(PCM8K, input_format=PCM8K)
    chunk = pcm_chunk(160)
    [out_chunk] = same.push(chunk, 0.0)
    assert out_chunk.data is chunk.data  # nothing to do: the samples pass untouched


def test_stereo_to_mono_averages_and_mono_to_stereo_copies():
    stereo = AudioFormat(S16, 16000, 2)
    data = np.array([[1000, 3000], [-2000, 2000], [32767, 32767], [5, 6]], dtype=np.int16)
    core = ConverterCore(PCM16K, input_format=stereo)
    assert run_core(core, [AudioChunk(data, stereo)]).tolist() == [2000, 0, 32767, 6]  # 5.5 rounds to even
    up = ConverterCore(AudioFormat(MULAW, 8000, 2), input_format=PCM16K)
    mono = ref_encode(signal(16000, 0.1), S16)
    out = run_core(up, [AudioChunk(mono, PCM16K)])
    assert out.shape == (800, 2)
    alone = run_core(ConverterCore(MULAW8K, input_format=PCM16K), [AudioChunk(mono, PCM16K)])
    assert np.array_equal(out[:, 0], alone) and np.array_equal(out[:, 1], alone)


def test_gain_scales_and_clipped_samples_are_counted():
    x = np.array([0.25, -0.5, 0.75, -0.9, 0.1], dtype=np.float32)
    data = ref_encode(x, S16)
    louder = ConverterCore(PCM8K, gain_db=20 * np.log10(2), input_format=PCM8K)
    assert run_core(louder, [AudioChunk(data, PCM8K)]).tolist() == [16384, -32768, 32767, -32768, 6554]
    assert louder.statistics().clipped == 2  # 1.5 and -1.8 times full scale
    quieter = ConverterCore(AudioFormat(F32, 8000), gain_db=-20 * np.log10(2), input_format=PCM8K)
    assert run_core(quieter, [AudioChunk(data, PCM8K)]) == pytest.approx(x / 2, abs=1e-4)
    assert quieter.statistics().clipped == 0


def test_nonfinite_float_input_is_clamped_and_counted():
    fmt = AudioFormat(F32, 16000)
    data = np.array([0.5, np.nan, np.inf, -np.inf, 0.25], dtype=np.float32)
    core = ConverterCore(PCM16K, input_format=fmt)
    assert run_core(core, [AudioChunk(data, fmt)]).tolist() == [16384, 0, 32767, -32768, 8192]
    stats = core.statistics()
    assert stats.nonfinite == 3 and stats.clipped == 0
    # through the resampler too: the output stays finite
    resampling = ConverterCore(AudioFormat(F32, 8000), input_format=fmt)
    noisy = signal(16000, 0.2)
    noisy[::50] = np.nan
    out = run_core(resampling, chunks_of(noisy, fmt, [320]))
    assert np.isfinite(out).all() and resampling.statistics().nonfinite == 64


async def test_utterances_come_out_whole_with_their_events_after_their_audio(autojump_clock):
    fmt = AudioFormat(S16, 24000)
    one, two = signal(24000, 0.31), signal(24000, 0.2, seed=1)
    words = WordTimings("u1", [Word("hello", 0.0, 0.25)])
    script = [
        UtteranceStart("u1", "hello"),
        *chunks_of(ref_encode(one, S16), fmt, [500, 300, 700, 200], utterance="u1"),
        words,
        UtteranceEnd("u1"),
        UtteranceStart("u2"),
        *chunks_of(ref_encode(two, S16), fmt, [480], pts=len(one), utterance="u2"),
        UtteranceEnd("u2"),
    ]
    out = await run_stage(Converter(encoding="pcm_mulaw", sample_rate=8000), script)
    labels = [f.utterance if isinstance(f, AudioChunk) else type(f).__name__ for f in out.frames]
    end = labels.index("UtteranceEnd")
    assert labels[0] == "UtteranceStart" and labels[end + 1] == "UtteranceStart" and labels[-1] == "UtteranceEnd"
    assert set(labels[1:end]) == {"u1", "WordTimings"}  # word timings may pass the audio they time
    assert set(labels[end + 2 : -1]) == {"u2"}
    assert words in out.frames  # in seconds: unchanged
    assert all(c.format == MULAW8K for c in out.chunks)
    u1 = sum(c.samples for c in out.chunks if c.utterance == "u1")
    u2 = sum(c.samples for c in out.chunks if c.utterance == "u2")
    assert u1 == rescale(len(one), 24000, 8000)
    assert u1 + u2 == rescale(len(one) + len(two), 24000, 8000)
    pts = [c.pts for c in out.chunks]
    assert pts[0] == 0 and pts[1:] == [c.end_pts for c in out.chunks[:-1]]  # continuous
    sent = ref_decode(ref_encode(one, S16), S16)
    expected = ref_encode(soxr.resample(sent, 24000, 8000, "HQ")[:u1], MULAW)
    assert np.array_equal(np.concatenate([c.data for c in out.chunks if c.utterance == "u1"]), expected)
    stats = out.report.stages[1].statistics
    assert stats["flushes"] == 2 and stats["chunks_out"] == len(out.chunks)
    assert 10 < stats["held_ms_max"] < 200


async def test_an_event_never_overtakes_the_audio_before_it():
    fmt = AudioFormat(S16, 48000)
    x = ref_encode(signal(48000, 0.1), S16)
    script = [
        *chunks_of(x[:2400], fmt, [960]),
        Gap(seq=9, count=2, pts=2400, samples=960, reason="lost"),
        *chunks_of(x[3360:], fmt, [960], pts=3360),
    ]
    out = await run_stage(Converter(sample_rate=16000), script)
    [gap] = out.events
    before = sum(c.samples for c in out.frames[: out.frames.index(gap)])
    assert before == 800  # all the audio up to the gap, flushed out ahead of it
    assert gap == Gap(seq=9, count=2, pts=800, samples=320, reason="lost")
    after = [c for c in out.frames[out.frames.index(gap) + 1 :]]
    assert after[0].pts == 1120 and sum(c.samples for c in after) == rescale(4800, 48000, 16000) - 1120


async def test_clear_drops_the_held_audio_counts_it_and_starts_afresh():
    x = ref_encode(signal(16000, 0.5), S16)
    script = [
        UtteranceStart("u1"),
        *chunks_of(x, PCM16K, [320], utterance="u1"),
        Clear("barge-in"),
        UtteranceStart("u2"),
        *chunks_of(x, PCM16K, [320], pts=len(x), utterance="u2"),
        UtteranceEnd("u2"),
    ]
    out = await run_stage(Converter(sample_rate=8000), script)
    clear_at = out.frames.index(Clear("barge-in"))
    given_out = sum(c.samples for c in out.frames[:clear_at] if isinstance(c, AudioChunk))
    stats = out.report.stages[1].statistics
    assert stats["drops"] == {"cleared": DropCount(frames=1, samples=4000 - given_out)}
    second = [c for c in out.chunks if c.utterance == "u2"]
    assert second[0].pts == 4000 and sum(c.samples for c in second) == 4000
    fresh = ConverterCore(PCM8K, input_format=PCM16K)
    assert np.array_equal(np.concatenate([c.data for c in second]), run_core(fresh, chunks_of(x, PCM16K, [320])))


async def test_pauses_between_chunks_never_reset_the_resampler(autojump_clock):
    x = ref_encode(signal(24000, 0.4), S16)
    chunks = chunks_of(x, AudioFormat(S16, 24000), [480])
    steady = await run_stage(Converter(sample_rate=8000), chunks)
    stalled = await run_stage(Converter(sample_rate=8000), [(i * 0.7, c) for i, c in enumerate(chunks)])
    assert stalled.times[-1] > 10  # seconds of silence between chunks, on virtual time
    assert np.array_equal(steady.audio(), stalled.audio())


async def test_a_jump_in_media_time_ends_the_segment():
    x = ref_encode(signal(16000, 0.2), S16)
    script = [*chunks_of(x, PCM16K, [640]), *chunks_of(x, PCM16K, [640], pts=10_000)]
    out = await run_stage(Converter(sample_rate=8000), script)
    starts = [c.pts for c in out.chunks]
    assert 5000 in starts  # the second run starts at its own rescaled time
    assert sum(c.samples for c in out.chunks) == 2 * 1600
    assert out.report.stages[1].statistics["discontinuities"] == 1


async def test_a_format_change_restarts_the_chain_and_time_carries_on():
    first = ref_encode(signal(16000, 0.1), S16)
    second = signal(24000, 0.1, channels=2)
    fmt2 = AudioFormat(F32, 24000, 2)
    script = [*chunks_of(first, PCM16K, [320]), *chunks_of(second, fmt2, [480], pts=0)]
    out = await run_stage(Converter(encoding="pcm_s16le", sample_rate=8000, channels=1), script)
    assert sum(c.samples for c in out.chunks) == 800 + 800
    pts = [c.pts for c in out.chunks]
    assert pts[1:] == [c.end_pts for c in out.chunks[:-1]]
    stats = out.report.stages[1].statistics
    assert stats["format_changes"] == 1 and stats["flushes"] == 2


def test_chunk_flags_first_and_last_land_on_the_first_and_last_audio_out():
    fmt = AudioFormat(S16, 24000)
    chunks = chunks_of(ref_encode(signal(24000, 0.2), S16), fmt, [480])
    chunks = [attrs.evolve(c, seq=i) for i, c in enumerate(chunks)]
    chunks[0] = attrs.evolve(chunks[0], flags=ChunkFlags.FIRST)
    chunks[-1] = attrs.evolve(chunks[-1], flags=ChunkFlags.LAST)
    core = ConverterCore(MULAW8K, input_format=fmt)
    assert core.push(chunks[0], 0.0) == ()  # soxr holds the start back: FIRST waits for audio
    out = [c for chunk in chunks[1:] for c in core.push(chunk, 0.0)]
    assert out[0].flags == ChunkFlags.FIRST and out[-1].flags == ChunkFlags.LAST
    assert all(c.flags == ChunkFlags.NONE for c in out[1:-1])
    assert sum(c.samples for c in out) == 1600 and core.end() == ()  # LAST flushed at once
    assert out[-1].seq == 9


async def test_odd_byte_payloads_lose_no_sample_end_to_end():
    """Wire bytes in odd sizes: the aligner carries the split sample, the converter gets every one."""
    pcm = (signal(16000, 0.3) * 32768).astype(np.int16)
    wire = pcm.tobytes()
    aligner = PayloadAligner(PCM16K)
    sizes = np.random.default_rng(5).integers(1, 400, 1000) | 1  # odd sizes only
    chunks, at, pts = [], 0, 0
    for size in sizes:
        samples = aligner.feed(wire[at : at + size])
        at += size
        if len(samples):
            chunks.append(AudioChunk(samples, PCM16K, pts=pts))
            pts += len(samples)
        if at >= len(wire):
            break
    assert aligner.carried == 0 and pts == len(pcm)
    exact = await run_stage(Converter(encoding="pcm_mulaw"), chunks)
    assert exact.audio().tobytes() == audioop.lin2ulaw(wire, 2)
    resampled = await run_stage(Converter(sample_rate=8000), chunks)
    assert len(resampled.audio()) == len(pcm) // 2


async def test_negotiation_fills_in_what_is_not_set():
    fmt = AudioFormat(S16, 24000, 2)
    x = AudioChunk(np.zeros((480, 2), dtype=np.int16), fmt)
    out = await run_stage(Converter(), [x], accept=Caps((MULAW,), (8000,), (1,)))
    assert out.report.stages[1].output == "pcm_mulaw 8000 Hz mono"
    assert out.chunks[0].data.shape == (160,)
    kept = await run_stage(Converter(encoding="pcm_alaw"), [x])
    assert kept.report.stages[1].output == "pcm_alaw 24000 Hz stereo"
    assert kept.chunks[0].data.shape == (480, 2)


def build(stage_table: str):
    text = f"""
    [pipelines.a]
    [[pipelines.a.stages]]
    type = "tone"
    sample_rate = 24000
    [[pipelines.a.stages]]
    type = "converter"
    {stage_table}
    [[pipelines.a.stages]]
    type = "null_sink"
    """
    config = parse_config(textwrap.dedent(text), file="p.toml", environ={})
    return build_pipeline(config.pipelines["a"], file="p.toml")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            "sample_rate = 11025",
            r"key 'sample_rate': must be one of 8000, 16000, 22050, 24000, 44100, 48000, got 11025$",
        ),
        (
            "encoding = 'pcm_u8'",
            r"key 'encoding': must be one of 'pcm_s16le', 'pcm_f32le', 'pcm_mulaw', 'pcm_alaw', got 'pcm_u8' \(did you mean 'pcm_mulaw'\?\)$",
        ),
        (
            "encoding = 'pcm_s24le'",
            r"key 'encoding': must be one of 'pcm_s16le', .*, got 'pcm_s24le' \(did you mean 'pcm_s16le'\?\)$",
        ),
        ("channels = 6", r"key 'channels': must be one of 1, 2, got 6$"),
        ("gain_db = 60", r"key 'gain_db': must be between -60 and 40, got 60.0$"),
        ("quality = 'best'", r"key 'quality': must be one of 'LQ', 'MQ', 'HQ', 'VHQ', got 'best'$"),
    ],
)
def test_unsupported_settings_are_config_errors_that_list_what_is_supported(table, message):
    with pytest.raises(ConfigError, match=r"^p.toml: pipeline 'a', stage 2 \(converter\), " + message):
        build(table)


def test_a_pipeline_states_only_the_target_format():
    pipeline = build("encoding = 'pcm_mulaw'\nsample_rate = 8000")
    assert [str(f) for f in pipeline.formats] == ["pcm_s16le 24000 Hz mono", "pcm_mulaw 8000 Hz mono"]


@pytest.mark.parametrize("in_rate", [24000, 8000])
def test_each_output_chunk_carries_the_arrival_of_its_earliest_audio(in_rate):
    fmt = AudioFormat(S16, in_rate)
    core = ConverterCore(AudioFormat(S16, 16000 if in_rate == 8000 else 8000), input_format=fmt)
    sizes = [250, 150, 350, 100] * 8
    starts = np.cumsum([0, *sizes])
    out = []
    for i, size in enumerate(sizes):
        out += core.push(
            AudioChunk(np.zeros(size, np.int16), fmt, pts=int(starts[i]), arrival=float(i), utterance="u"), 0.0
        )
    out += core.end()
    assert sum(c.samples for c in out) == rescale(int(starts[-1]), in_rate, core.output.sample_rate)
    for chunk in out:  # the input chunk holding the output chunk's first sample
        first_input = chunk.pts * in_rate / core.output.sample_rate
        assert chunk.arrival == float(np.searchsorted(starts, first_input, side="right") - 1)
    assert out[0].arrival == 0.0
