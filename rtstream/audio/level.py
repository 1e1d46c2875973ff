"""The level of speech: a gated RMS over fixed blocks, so pauses do not pull it down."""

from __future__ import annotations

import math

import numpy as np

from ..frames import AudioFormat, Encoding

BLOCK_MS = 20
GATE_DBFS = -50.0
DEFAULT_DBFS = -20.0
"""The level assumed before any speech has been measured."""


class SpeechLevel:
    """Mean power of the 20 ms blocks louder than -50 dBFS, over everything added so far.

    Blocks lie on a fixed grid of the samples added, whatever the sizes of the pieces, so the
    level depends only on the audio. Levels are RMS values of samples scaled to [-1, 1).
    """

    __slots__ = ("_block", "_count", "_fill", "_gate", "_partial", "_scale", "_total")

    def __init__(self, fmt: AudioFormat) -> None:
        self._block = max(1, fmt.sample_rate * BLOCK_MS // 1000)
        self._scale = 1.0 if fmt.encoding is Encoding.PCM_F32LE else 1.0 / 32768**2
        self._gate = 10 ** (GATE_DBFS / 10)
        self._fill = 0
        self._partial = 0.0
        self._total = 0.0
        self._count = 0

    def add(self, data: np.ndarray) -> None:
        """Measure PCM samples (int16 or float32, shape (n,) or (n, ch))."""
        power = np.square(data, dtype=np.float64)
        if power.ndim == 2:
            power = power.mean(axis=1)
        take = min(self._block - self._fill, len(power))
        self._partial += float(power[:take].sum())
        self._fill += take
        if self._fill == self._block:
            self._finish(self._partial)
            rest = power[take:]
            whole = len(rest) - len(rest) % self._block
            if whole:
                blocks = rest[:whole].reshape(-1, self._block).sum(axis=1) * (self._scale / self._block)
                loud = blocks[blocks > self._gate]
                self._total += float(loud.sum())
                self._count += loud.size
            self._partial = float(rest[whole:].sum())
            self._fill = len(rest) - whole

    def _finish(self, power_sum: float) -> None:
        mean = power_sum * self._scale / self._block
        if mean > self._gate:
            self._total += mean
            self._count += 1

    @property
    def rms(self) -> float:
        """The speech RMS (the default level until a block above the gate was seen)."""
        if not self._count:
            return 10 ** (DEFAULT_DBFS / 20)
        return math.sqrt(self._total / self._count)
