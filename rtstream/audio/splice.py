"""Opening audio between two words: where to cut, and the fades that keep the joints silent.

A cut is a position between samples. Inserting at the quietest point of the gap between two
words disturbs the least, and a short raised-cosine fade on each side of the joint turns the
step from the speech's noise floor to inserted silence into a slope no larger than the
signal's own.
"""

from __future__ import annotations

import math

import numpy as np

from ..frames import Encoding


def fade_in(samples: int) -> np.ndarray:
    """A raised-cosine gain rising from near 0 to near 1 over ``samples`` samples (float32)."""
    t = (np.arange(samples, dtype=np.float64) + 0.5) / samples
    return (np.sin(0.5 * math.pi * t) ** 2).astype(np.float32)


def apply_gain(data: np.ndarray, gain: np.ndarray, encoding: Encoding) -> np.ndarray:
    """A new array: ``data`` (PCM, shape (n,) or (n, ch)) times ``gain`` (shape (n,))."""
    if data.ndim == 2:
        gain = gain[:, None]
    if encoding is Encoding.PCM_S16LE:
        return np.rint(data * gain).astype(np.int16)  # a gain of at most 1 never clips
    if encoding is Encoding.PCM_F32LE:
        return (data * gain).astype(np.float32)
    raise ValueError(f"cannot apply a gain to {encoding} samples; convert to PCM first")


def quietest_point(samples: np.ndarray, lo: int, hi: int, window: int) -> int:
    """The cut in ``[lo, hi]`` whose surrounding ``window`` samples carry the least energy.

    ``samples`` is PCM of shape (n,) or (n, ch); a cut ``c`` falls just before ``samples[c]``,
    so ``0 <= lo <= hi <= n``. Near the ends the window is what there is. Among equally quiet
    cuts the one nearest the middle of ``[lo, hi]`` wins, so a silent gap is cut in its centre.
    """
    if not 0 <= lo <= hi <= len(samples):
        raise ValueError(f"cut range [{lo}, {hi}] is outside the {len(samples)} samples given")
    if lo == hi:
        return lo
    # Energies in integer 16-bit units, so running totals are exact: a silent stretch sums to exactly 0
    # and equally quiet cuts tie exactly, however loud the audio before them.
    units = samples.astype(np.int64) if samples.dtype.kind in "iu" else np.rint(samples * 32768.0).astype(np.int64)
    power = units * units
    if power.ndim == 2:
        power = power.sum(axis=1)
    total = np.concatenate(([0], np.cumsum(power)))
    half = max(window // 2, 1)
    cuts = np.arange(lo, hi + 1)
    start = np.maximum(cuts - half, 0)
    stop = np.minimum(cuts + half, len(samples))
    energy = (total[stop] - total[start]) / np.maximum(stop - start, 1)
    quiet = cuts[energy == energy.min()]
    return int(quiet[np.argmin(np.abs(2 * quiet - (lo + hi)))])
