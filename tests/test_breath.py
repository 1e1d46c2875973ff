"""The breath kernel: level, band, envelope, determinism."""

import numpy as np
import pytest

from rtstream.audio.breath import SHAPES, breath, envelope
from rtstream.markup import BREATH_TYPES


def _band_energy(wave, rate, low, high):
    spectrum = np.abs(np.fft.rfft(wave.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1 / rate)
    return spectrum[(freqs >= low) & (freqs < high)].sum() / spectrum.sum()


@pytest.mark.parametrize("kind", BREATH_TYPES)
@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_level_band_and_silent_edges(kind, rate):
    wave = breath(kind, round(0.25 * rate), rate, 0.01, np.random.default_rng(3))
    assert wave.dtype == np.float32 and wave.shape == (round(0.25 * rate),)
    gain = 10 ** (SHAPES[kind].gain_db / 20)
    assert np.sqrt(np.mean(wave.astype(np.float64) ** 2)) == pytest.approx(0.01 * gain, rel=1e-4)
    # band-limited: nothing at the very bottom, nothing near Nyquist
    assert _band_energy(wave, rate, 0, 100) < 0.01
    assert _band_energy(wave, rate, 0.45 * rate, rate) < 1e-3  # only the envelope's own smear
    # it starts and ends at rest: no click against silence
    peak = np.max(np.abs(wave))
    assert np.max(np.abs(wave[:3])) < 0.02 * peak and np.max(np.abs(wave[-3:])) < 0.02 * peak


def test_an_inhale_peaks_late_and_a_sigh_early():
    def centre_of_energy(kind):
        wave = breath(kind, 4000, 16000, 0.01, np.random.default_rng(0)).astype(np.float64)
        weight = wave**2
        return float((np.arange(len(wave)) * weight).sum() / weight.sum() / len(wave))

    assert centre_of_energy("normal") > 0.5
    assert centre_of_energy("deep") > 0.5
    assert centre_of_energy("sigh") < 0.4


def test_a_sigh_is_darker_than_a_quick_breath():
    def centroid(kind):
        wave = breath(kind, 8000, 16000, 0.01, np.random.default_rng(1)).astype(np.float64)
        spectrum = np.abs(np.fft.rfft(wave)) ** 2
        freqs = np.fft.rfftfreq(len(wave), 1 / 16000)
        return (spectrum * freqs).sum() / spectrum.sum()

    assert centroid("sigh") < centroid("normal") < centroid("quick")


def test_the_seed_fixes_the_sound():
    one = breath("normal", 3000, 16000, 0.02, np.random.default_rng(7))
    two = breath("normal", 3000, 16000, 0.02, np.random.default_rng(7))
    other = breath("normal", 3000, 16000, 0.02, np.random.default_rng(8))
    assert np.array_equal(one, two)
    assert not np.array_equal(one, other)


def test_envelope_rises_to_one_at_its_peak():
    env = envelope(1000, 0.6)
    assert np.argmax(env) in range(595, 605)
    assert env.max() == pytest.approx(1.0, abs=1e-4)
    assert np.all(np.diff(env[:590]) >= 0) and np.all(np.diff(env[610:]) <= 0)


def test_unknown_type_and_empty_breath():
    with pytest.raises(ValueError, match=r"^unknown breath type 'yawn'; use one of normal, deep, quick, sigh$"):
        breath("yawn", 100, 8000, 0.01, np.random.default_rng(0))
    assert breath("quick", 0, 8000, 0.01, np.random.default_rng(0)).shape == (0,)
