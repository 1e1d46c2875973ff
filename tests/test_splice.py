"""Where to cut between words, the fades at the joints, and the speech level."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtstream.audio.level import DEFAULT_DBFS, SpeechLevel
from rtstream.audio.splice import apply_gain, fade_in, quietest_point
from rtstream.frames import AudioFormat, Encoding


def test_a_silent_gap_is_cut_in_its_centre():
    x = np.full(1000, 3000, dtype=np.int16)
    x[400:600] = 0
    assert quietest_point(x, 350, 650, 40) == 500
    assert quietest_point(x, 420, 500, 40) == 460  # the middle of the allowed range, all of it silent


def test_the_quietest_stretch_wins_over_the_middle():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((1000, 2)) * 1000).astype(np.int16)
    x[700:760] //= 100
    assert 700 + 10 <= quietest_point(x, 0, 1000, 20) <= 760 - 10


def test_a_range_outside_the_samples_is_refused():
    with pytest.raises(ValueError, match=r"^cut range \[5, 20\] is outside the 10 samples given$"):
        quietest_point(np.zeros(10, dtype=np.int16), 5, 20, 4)
    assert quietest_point(np.zeros(10, dtype=np.int16), 4, 4, 4) == 4


@given(
    st.lists(st.integers(-30000, 30000), min_size=1, max_size=200),
    st.data(),
    st.integers(2, 30),
)
def test_the_cut_is_in_range_and_no_other_is_quieter(values, data, window):
    x = np.array(values, dtype=np.int16)
    lo = data.draw(st.integers(0, len(x)))
    hi = data.draw(st.integers(lo, len(x)))
    cut = quietest_point(x, lo, hi, window)
    assert lo <= cut <= hi
    half = max(window // 2, 1)

    def energy(c):
        a, b = max(c - half, 0), min(c + half, len(x))
        return float(np.sum(x[a:b].astype(np.float64) ** 2)) / max(b - a, 1)

    assert all(energy(cut) <= energy(c) * (1 + 1e-9) for c in range(lo, hi + 1))


def test_fades_and_gains():
    curve = fade_in(40)
    assert curve.dtype == np.float32 and 0 < curve[0] < 0.01 and 0.99 < curve[-1] < 1
    assert np.all(np.diff(curve) > 0)
    assert np.allclose(curve + curve[::-1], 1.0, atol=1e-6)  # fade-out + fade-in overlap to unity
    pcm = np.full((40, 2), -20000, dtype=np.int16)
    faded = apply_gain(pcm, curve, Encoding.PCM_S16LE)
    assert faded.dtype == np.int16 and faded.shape == (40, 2)
    assert np.array_equal(faded[:, 0], np.rint(-20000 * curve).astype(np.int16))
    floats = apply_gain(np.ones(40, dtype=np.float32), curve, Encoding.PCM_F32LE)
    assert floats.dtype == np.float32 and np.array_equal(floats, curve)
    with pytest.raises(ValueError, match=r"^cannot apply a gain to pcm_mulaw samples; convert to PCM first$"):
        apply_gain(np.zeros(40, dtype=np.uint8), curve, Encoding.PCM_MULAW)


@given(st.lists(st.integers(1, 700), min_size=1, max_size=30))
def test_speech_level_does_not_depend_on_how_the_audio_is_cut(sizes):
    fmt = AudioFormat("pcm_s16le", 8000)
    rng = np.random.default_rng(5)
    audio = (rng.standard_normal(sum(sizes)) * 3000).astype(np.int16)
    audio[: len(audio) // 3] = 0  # silence is gated out
    whole, pieces = SpeechLevel(fmt), SpeechLevel(fmt)
    whole.add(audio)
    for a, b in zip(np.cumsum([0, *sizes[:-1]]), np.cumsum(sizes), strict=True):
        pieces.add(audio[a:b])
    assert pieces.rms == pytest.approx(whole.rms, rel=1e-9)


def test_speech_level_gates_silence_and_has_a_default():
    level = SpeechLevel(AudioFormat("pcm_f32le", 16000, 2))
    assert level.rms == pytest.approx(10 ** (DEFAULT_DBFS / 20))
    tone = 0.5 * np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000).astype(np.float32)
    level.add(np.stack([tone, tone], axis=1))
    level.add(np.zeros((16000, 2), dtype=np.float32))
    assert level.rms == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)
