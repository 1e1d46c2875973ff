"""The DSP kernels: pitch-based concealment and pitch-synchronous time-stretch."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtstream.audio.plc import Concealer, crossfade
from rtstream.audio.similarity import similarity
from rtstream.audio.stretch import KEEP_PAUSE, TimeStretch


def voiced(f0: float, rate: int, seconds: float, level: float = 0.3, channels: int = 1) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    x = level * (
        np.sin(2 * np.pi * f0 * t) + 0.4 * np.sin(2 * np.pi * 2 * f0 * t + 1) + 0.2 * np.sin(2 * np.pi * 3 * f0 * t)
    )
    return np.repeat(x.astype(np.float32)[:, None], channels, axis=1)


def test_similarity_finds_a_shifted_copy():
    rng = np.random.default_rng(0)
    region = rng.standard_normal(500)
    template = region[123:223].copy()
    score = similarity(template, region)
    assert int(np.argmax(score)) == 123 and score[123] == pytest.approx(1.0)
    assert similarity(np.zeros(10), np.zeros(50)).max() == 0


def test_crossfade_runs_from_one_signal_to_the_other():
    out = np.zeros((4, 1), np.float32)
    crossfade(np.ones((4, 1), np.float32), np.zeros((4, 1), np.float32), out)
    assert out[:, 0].tolist() == pytest.approx([0.75, 0.5, 0.25, 0.0])


@settings(max_examples=25, deadline=None)
@given(f0=st.floats(70, 190), rate=st.sampled_from([8000, 16000]))
def test_pitch_is_found_and_the_replay_continues_the_wave(f0, rate):
    x = voiced(f0, rate, 0.3)
    plc = Concealer(rate)
    cut = round(0.2 * rate)
    history = x[:cut].copy()
    plc.start(history)
    period = rate / f0
    assert min(abs(plc.pitch - k * period) for k in (1, 2)) <= 1.5
    out = np.zeros((plc.frame, 1), np.float32)
    plc.fill(out)
    # the first 10 ms of concealment follow the real signal closely, and the seam is smooth
    assert np.max(np.abs(out - x[cut : cut + plc.frame])) < 0.35 * 0.3  # integer periods drift a little
    step = np.max(np.abs(np.diff(x[:, 0])))
    assert abs(out[0, 0] - history[-1, 0]) <= 1.5 * step


def test_gain_holds_10ms_then_falls_to_silence_at_60ms():
    rate = 8000
    x = voiced(100, rate, 0.3)
    plc = Concealer(rate)
    plc.start(x[:1600].copy())
    out = np.zeros((800, 1), np.float32)
    plc.fill(out[:37])  # any split gives the same result
    plc.fill(out[37:])
    frame = 80
    peak = [np.abs(out[i * frame : (i + 1) * frame]).max() for i in range(10)]
    assert peak[0] > 0.3
    assert peak[2] < peak[1] < peak[0] * 1.05 and peak[4] < peak[3] < peak[2]
    assert np.all(out[480:] == 0)
    assert plc.elapsed == 800


def test_concealment_is_the_same_however_it_is_split():
    x = voiced(130, 16000, 0.3)
    a, b = Concealer(16000), Concealer(16000)
    a.start(x[:3200].copy())
    b.start(x[:3200].copy())
    whole = np.zeros((1100, 1), np.float32)
    a.fill(whole)
    parts = np.zeros((1100, 1), np.float32)
    for lo, hi in [(0, 3), (3, 160), (160, 161), (161, 700), (700, 1100)]:
        b.fill(parts[lo:hi])
    np.testing.assert_allclose(whole, parts, atol=1e-6)


def test_merge_crossfades_into_the_good_audio():
    rate = 8000
    x = voiced(110, rate, 0.4)
    plc = Concealer(rate)
    plc.start(x[:1600].copy())
    lost = np.zeros((160, 1), np.float32)
    plc.fill(lost)
    good = x[1760:1920].copy()
    n = plc.finish(good)
    assert n == plc.pitch // 4 + 32  # a quarter period plus 4 ms for the second 10 ms lost
    np.testing.assert_array_equal(good[n:], x[1760 + n : 1920])
    assert not plc.active and plc.finish(good) == 0
    # the blend starts near the concealment and ends on the real signal
    assert abs(good[n - 1, 0] - x[1760 + n - 1, 0]) < 0.05


def test_start_of_stream_conceals_silence_and_stereo_works():
    plc = Concealer(8000, channels=2)
    plc.start(np.zeros((0, 2), np.float32))
    out = np.ones((200, 2), np.float32)
    plc.fill(out)
    assert np.all(out == 0)
    x = voiced(120, 8000, 0.2, channels=2)
    plc.start(x[:1000].copy())
    out = np.zeros((80, 2), np.float32)
    plc.fill(out)
    np.testing.assert_array_equal(out[:, 0], out[:, 1])


def stretch_all(x: np.ndarray, speed: float, rate: int, *, quiet_only: bool = False, tick: int = 160):
    st_ = TimeStretch(rate, x.shape[1])
    out = np.zeros((len(x) * 2, x.shape[1]), np.float32)
    pos = produced = 0
    while pos + tick + st_.lookahead <= len(x):
        block = out[produced : produced + tick]
        pos += st_.render(
            out[max(0, produced - 500) : produced],
            x[pos : pos + tick + st_.lookahead + st_.horizon],  # the input ahead shows how long a pause is
            block,
            speed,
            quiet_only=quiet_only,
        )
        produced += tick
    return out[:produced], pos


@settings(max_examples=20, deadline=None)
@given(speed=st.floats(0.9, 1.1), f0=st.floats(80, 300))
def test_stretch_keeps_within_5_percent_and_makes_no_click(speed, f0):
    rate = 8000
    x = voiced(f0, rate, 2.0)
    y, used = stretch_all(x, speed, rate)
    ratio = used / len(y)
    expected = min(max(speed, 0.95), 1.05)
    assert abs(ratio - expected) <= 0.02 + 0.016  # the budget may lag by one longest period
    assert 0.95 - 0.016 <= ratio <= 1.05 + 0.016
    step = np.max(np.abs(np.diff(x[:, 0])))
    assert np.max(np.abs(np.diff(y[:, 0]))) <= 1.3 * step
    # pitch unchanged: the strongest frequency stays put
    spectrum = np.abs(np.fft.rfft(y[:8000, 0] * np.hanning(8000)))
    assert abs(np.argmax(spectrum) - f0) <= 2


def test_speed_one_passes_audio_untouched():
    x = voiced(150, 8000, 0.5)
    y, used = stretch_all(x, 1.0, 8000)
    np.testing.assert_array_equal(y, x[: len(y)])
    assert used == len(y)


def test_noise_is_not_spliced_but_silence_is():
    rng = np.random.default_rng(3)
    noise = (0.3 * rng.standard_normal((8000, 1))).astype(np.float32)
    y, used = stretch_all(noise, 1.05, 8000)
    assert used == len(y)  # nothing repeats in noise, so nothing is removed
    silence = np.zeros((8000, 1), np.float32)
    y, used = stretch_all(silence, 1.05, 8000)
    assert used > len(y)


def test_quiet_only_waits_for_a_pause():
    x = voiced(140, 8000, 1.0)
    y, used = stretch_all(x, 1.05, 8000, quiet_only=True)
    assert used == len(y)  # speech all along: no splice
    speech_then_pause = np.concatenate([x, np.zeros((4000, 1), np.float32), x])
    y, used = stretch_all(speech_then_pause, 1.05, 8000, quiet_only=True)
    assert used > len(y)
    i = len(x)
    np.testing.assert_array_equal(y[:i], x[:i])  # the speech before the pause is untouched


def quiet_runs(y: np.ndarray) -> list[int]:
    """Lengths (samples) of the runs of exact silence inside ``y``, in order."""
    edges = np.diff(np.concatenate(([0], (y[:, 0] == 0).astype(np.int8), [0])))
    return list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))


def test_a_calm_splice_waits_for_a_pause_known_to_be_long():
    rate = 8000
    x = voiced(140, rate, 0.5)

    def pause(seconds: float) -> np.ndarray:
        return np.zeros((round(seconds * rate), 1), np.float32)

    # 150 ms between words: quiet for 80 ms, but the input ahead shows it ends too soon
    y, used = stretch_all(np.concatenate([x, pause(0.15), x, pause(0.15), x]), 1.75, rate, quiet_only=True)
    assert used == len(y) and quiet_runs(y) == [1200, 1200]
    # between phrases: taken in large splices, yet never shorter than KEEP_PAUSE
    for seconds, removed in ((0.4, 0.1), (0.25, 0.03)):
        y, used = stretch_all(np.concatenate([x, pause(seconds), x]), 1.75, rate, quiet_only=True)
        (kept,) = quiet_runs(y)
        assert used - len(y) == round(seconds * rate) - kept >= removed * rate
        assert kept >= KEEP_PAUSE * rate
        np.testing.assert_array_equal(y[: len(x)], x)  # the speech on both sides is untouched
        after = y[len(x) + kept :]
        np.testing.assert_array_equal(after, x[: len(after)])


def test_stretch_rejects_a_change_above_5_percent():
    with pytest.raises(ValueError, match="max_change"):
        TimeStretch(8000, max_change=0.1)


def test_a_pause_takes_far_more_than_5_percent_at_once():
    st_ = TimeStretch(8000)
    n = 160
    quiet = np.zeros((n + st_.lookahead, 1), np.float32)
    out = np.zeros((n, 1), np.float32)
    for _ in range(5):  # 100 ms of silence: a pause once 80 ms have been seen
        st_.observe(quiet[:n])
    assert st_.in_pause
    assert st_.render(out, quiet, out, 1.75) == n + st_.lag_max  # one longest period in one block
    assert st_.render(out, quiet, out, 0.25) == n - st_.lag_max
