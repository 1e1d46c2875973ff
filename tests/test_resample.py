"""The streaming resampler: chunking never changes the output, lengths are exact, state is kept."""

import itertools
from fractions import Fraction

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from rtstream.audio.codec import quantize
from rtstream.audio.resample import StreamResampler
from rtstream.frames import SAMPLE_RATES

PAIRS = list(itertools.permutations(SAMPLE_RATES, 2))


def speechlike(rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Noise shaped by a slow envelope plus a few harmonics, well inside full scale."""
    rng = np.random.default_rng(seed)
    n = round(rate * seconds)
    t = np.arange(n) / rate
    voiced = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 720, 1440, 2900), 1))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.2 * envelope * voiced + 0.05 * rng.standard_normal(n)).astype(np.float32)


def stream(resampler: StreamResampler, x: np.ndarray, sizes) -> np.ndarray:
    out, i = [], 0
    for size in sizes:
        if i >= len(x):
            break
        out.append(resampler.process(x[i : i + size]))
        i += size
    out.append(resampler.process(x[i:]))
    out.append(resampler.flush())
    return np.concatenate(out)


def random_sizes(seed: int, high: int) -> list[int]:
    return np.random.default_rng(seed).integers(0, high, 10_000).tolist()


def exact_length(start: int, n: int, in_rate: int, out_rate: int) -> int:
    def rescale(p: int) -> int:
        return int(Fraction(p * out_rate, in_rate) + Fraction(1, 2))  # floor(x + 1/2)

    return rescale(start + n) - rescale(start)


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_random_chunks_equal_the_whole_signal_resampled_at_once(in_rate, out_rate):
    x = speechlike(in_rate, 0.4)
    whole = soxr.resample(x, in_rate, out_rate, "HQ")
    streamed = stream(StreamResampler(in_rate, out_rate), x, random_sizes(in_rate + out_rate, in_rate // 50))
    assert len(streamed) == exact_length(0, len(x), in_rate, out_rate)
    assert abs(len(streamed) - len(whole)) <= 1
    common = min(len(whole), len(streamed))
    a, _ = quantize(streamed[:common])
    b, _ = quantize(whole[:common])
    assert np.max(np.abs(a.astype(np.int32) - b)) <= 1


@settings(max_examples=60, deadline=None)
@given(
    pair=st.sampled_from(PAIRS),
    start=st.integers(0, 10**9),
    lengths=st.lists(st.integers(0, 3000), min_size=1, max_size=4),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_segment_has_the_exact_length_and_time_never_drifts(pair, start, lengths, seed):
    in_rate, out_rate = pair
    resampler = StreamResampler(in_rate, out_rate, pts=start)
    assert resampler.out_pts == exact_length(0, start, in_rate, out_rate)
    pts = start
    for n in lengths:
        out = stream(resampler, speechlike(in_rate, n / in_rate, seed), random_sizes(seed, 500))
        assert len(out) == exact_length(pts, n, in_rate, out_rate)
        pts += n
        assert resampler.in_pts == pts
        assert resampler.out_pts == exact_length(0, pts, in_rate, out_rate)
        assert resampler.pending == 0 and not resampler.active


@pytest.mark.parametrize(("in_rate", "out_rate"), [(24000, 8000), (8000, 16000), (44100, 16000), (16000, 48000)])
def test_no_step_at_chunk_joins(in_rate, out_rate):
    """A 440 Hz sine cut into tiny random chunks: no sample moves more than the sine itself can.

    soxr gives its output in blocks of its own, so the input's joins fall anywhere in the
    output: every step of the output is checked, and the output is the sine at the new rate.
    """
    n = in_rate // 2
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / in_rate)).astype(np.float32)
    sizes = random_sizes(7, 40)
    pcm, _ = quantize(stream(StreamResampler(in_rate, out_rate), x, sizes))
    assert np.searchsorted(np.cumsum(sizes), n) > 150  # joins
    steps = np.abs(np.diff(pcm.astype(np.int32)))
    max_slope = 0.5 * 32768 * 2 * np.pi * 440 / out_rate  # the sine's largest change per output sample
    settled = slice(out_rate // 100, len(pcm) - out_rate // 100)  # away from the ends of the segment
    assert steps[settled].max() <= max_slope + 1
    reference = 0.5 * 32768 * np.sin(2 * np.pi * 440 * np.arange(len(pcm)) / out_rate)
    assert np.max(np.abs(pcm[settled] - reference[settled])) <= 1


def test_flush_releases_the_tail_and_the_next_segment_starts_fresh():
    x = speechlike(24000, 0.05)  # 50 ms: shorter than what soxr holds back
    resampler = StreamResampler(24000, 8000)
    held = resampler.process(x)
    assert len(held) < 400 and resampler.pending == 400 - len(held)
    first = np.concatenate([held, resampler.flush()])
    assert len(first) == 400
    assert np.array_equal(first, soxr.resample(x, 24000, 8000, "HQ")[:400])
    second = np.concatenate([resampler.process(x), resampler.flush()])
    assert np.array_equal(second, first)
    assert resampler.out_pts == 800


def test_clear_drops_what_is_held_and_says_how_much():
    x = speechlike(16000, 0.5)
    resampler = StreamResampler(16000, 8000)
    given_out = len(resampler.process(x))
    held = resampler.pending
    assert held > 0 and given_out + held == 4000
    assert resampler.clear() == held
    assert resampler.out_pts == 4000 and not resampler.active
    assert resampler.clear() == 0
    fresh = StreamResampler(16000, 8000, pts=8000)
    again = np.concatenate([resampler.process(x), resampler.flush()])
    assert np.array_equal(again, np.concatenate([fresh.process(x), fresh.flush()]))


def test_a_pause_in_the_input_changes_nothing():
    """The state belongs to the stream: no timer, nothing to expire between chunks."""
    x = speechlike(16000, 0.3)
    one = StreamResampler(16000, 8000)
    two = StreamResampler(16000, 8000)
    joined = [one.process(x[:1000]), one.process(x[1000:])]
    apart = [two.process(x[:1000]), two.process(x[:0]), two.process(x[:0]), two.process(x[1000:])]
    assert np.array_equal(np.concatenate(joined), np.concatenate(apart))


def test_stereo_channels_are_resampled_independently():
    left, right = speechlike(48000, 0.2, seed=1), speechlike(48000, 0.2, seed=2)
    stereo = StreamResampler(48000, 16000, 2)
    out = stream(stereo, np.stack([left, right], axis=1), random_sizes(3, 1000))
    assert out.shape == (3200, 2)
    for channel, x in enumerate((left, right)):
        assert np.array_equal(out[:, channel], stream(StreamResampler(48000, 16000), x, [len(x)]))


def test_seek_only_between_segments_and_unknown_quality():
    resampler = StreamResampler(8000, 16000)
    resampler.seek(800)
    assert resampler.out_pts == 1600
    resampler.process(np.zeros(10, dtype=np.float32))
    with pytest.raises(RuntimeError, match=r"^seek\(\) in the middle of a segment; flush\(\) or clear\(\) first$"):
        resampler.seek(0)
    with pytest.raises(ValueError, match=r"^resampling quality 'best' is not supported; use one of LQ, MQ, HQ, VHQ$"):
        StreamResampler(8000, 16000, quality="best")
