"""Waveform similarity at many lags at once: the search under pitch detection and time-stretch."""

from __future__ import annotations

import numpy as np


def similarity(template: np.ndarray, region: np.ndarray, *, floor: float = 1e-9) -> np.ndarray:
    """Normalized cross-correlation of ``template`` with every window of ``region`` of its length.

    ``result[k]`` compares ``template`` with ``region[k : k + len(template)]``: 1 for the same
    shape at any level, 0 for unrelated, -1 for inverted. A window (or template) whose energy is
    below ``floor`` is scored as if it had that energy, so near-silence scores near 0.
    """
    m = len(template)
    t = template.astype(np.float64)
    r = region.astype(np.float64)
    cross = np.correlate(r, t, mode="valid")
    power = np.concatenate(([0.0], np.cumsum(r * r)))
    energy = power[m:] - power[: len(power) - m]
    scale = np.sqrt(np.maximum(energy, floor) * max(float(t @ t), floor))
    return cross / scale
