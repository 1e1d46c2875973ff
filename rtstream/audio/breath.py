"""Synthesized breaths: band-limited turbulence noise under an inhale (or, for a sigh, exhale) envelope.

A breath is air rushing past the lips and the glottis: noise with no pitch, its energy in a
broad band a few hundred hertz to a few kilohertz wide, that swells as the flow builds and
brightens towards the peak of the flow. An inhale builds slowly and stops quickly; a sigh is
an exhale that starts strong and fades long. The level is given as an RMS, so a caller sets
it relative to the speech around it. Everything is computed on whole arrays (an FFT for the
band, one envelope), and the noise comes from the generator passed in, so a seed fixes the sound.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from ..markup import BREATH_TYPES

_NYQUIST_MARGIN = 0.45
"""The band stops at this fraction of the sample rate: well below Nyquist, even at 8 kHz."""


@attrs.frozen
class BreathShape:
    """How one type of breath sounds."""

    low_hz: float
    high_hz: float
    """The band of the noise (log-Gaussian around their geometric mean, an octave of skirt each side)."""
    peak: float
    """Where the flow peaks, as a fraction of the duration: late for an inhale, early for an exhale."""
    gain_db: float
    """Level relative to a normal breath."""
    brighten: float
    """How far the spectrum moves up (in octaves) at the peak of the flow."""


SHAPES: dict[str, BreathShape] = {
    "normal": BreathShape(low_hz=450.0, high_hz=2800.0, peak=0.62, gain_db=0.0, brighten=0.5),
    "deep": BreathShape(low_hz=300.0, high_hz=2400.0, peak=0.68, gain_db=3.0, brighten=0.7),
    "quick": BreathShape(low_hz=600.0, high_hz=3400.0, peak=0.5, gain_db=-2.0, brighten=0.3),
    "sigh": BreathShape(low_hz=220.0, high_hz=1800.0, peak=0.18, gain_db=2.0, brighten=-0.4),
}
assert tuple(SHAPES) == BREATH_TYPES


def envelope(samples: int, peak: float) -> np.ndarray:
    """A smooth swell from 0 to 1 at ``peak`` (a fraction of the length) and back to 0 (float32)."""
    t = (np.arange(samples, dtype=np.float64) + 0.5) / samples
    rise = np.sin(0.5 * math.pi * np.minimum(t / peak, 1.0)) ** 2
    fall = np.cos(0.5 * math.pi * np.maximum((t - peak) / (1.0 - peak), 0.0)) ** 2
    return (rise * fall).astype(np.float32)


def _band(freqs: np.ndarray, low: float, high: float, limit: float) -> np.ndarray:
    centre = math.sqrt(low * high)
    width = max(math.log2(high / low) / 2, 0.25)
    with np.errstate(divide="ignore"):
        octaves = np.log2(freqs / centre)
    gain = np.exp(-0.5 * (octaves / width) ** 4)  # flat-topped: a plateau over the band, steep skirts
    gain[freqs >= limit] = 0.0
    gain[0] = 0.0
    return gain


def breath(kind: str, samples: int, sample_rate: int, rms: float, rng: np.random.Generator) -> np.ndarray:
    """``samples`` samples (float32, mono) of a breath of type ``kind`` whose RMS is ``rms``.

    ``rms`` is the level of a normal breath; other types sit at their shape's gain relative to it.
    """
    shape = SHAPES.get(kind)
    if shape is None:
        raise ValueError(f"unknown breath type {kind!r}; use one of {', '.join(BREATH_TYPES)}")
    if samples <= 0:
        return np.zeros(0, dtype=np.float32)
    limit = _NYQUIST_MARGIN * sample_rate
    freqs = np.fft.rfftfreq(samples, 1.0 / sample_rate)
    # Two noises: the band at rest and the band shifted by `brighten` octaves; the flow moves between them.
    shift = 2.0**shape.brighten
    spectra = rng.standard_normal((2, freqs.size)) + 1j * rng.standard_normal((2, freqs.size))
    spectra[0] *= _band(freqs, shape.low_hz, min(shape.high_hz, limit), limit)
    spectra[1] *= _band(freqs, shape.low_hz * shift, min(shape.high_hz * shift, limit), limit)
    noises = np.fft.irfft(spectra, n=samples, axis=1)
    noises /= np.sqrt(np.mean(noises**2, axis=1, keepdims=True)) + 1e-30
    flow = envelope(samples, shape.peak)
    turn = 0.5 * math.pi * flow  # power-preserving cross-fade from the band at rest to the moved one
    wave = flow * (np.cos(turn) * noises[0] + np.sin(turn) * noises[1])
    power = float(np.mean(wave.astype(np.float64) ** 2))
    if power <= 0.0:
        return np.zeros(samples, dtype=np.float32)
    gain = rms * 10 ** (shape.gain_db / 20) / math.sqrt(power)
    return (wave * gain).astype(np.float32)
