"""Shared test helpers: formats and a little signal maker."""

from __future__ import annotations

import numpy as np

from rtstream.frames import AudioChunk, AudioFormat, Encoding

PCM8K = AudioFormat(Encoding.PCM_S16LE, 8000)
PCM16K = AudioFormat(Encoding.PCM_S16LE, 16000)


def pcm_chunk(samples: int, *, pts: int = 0, fmt: AudioFormat = PCM8K, seed: int = 0, **kwargs) -> AudioChunk:
    """A chunk of deterministic noise."""
    data = np.random.default_rng(seed).integers(-8000, 8000, samples, dtype=np.int16)
    return AudioChunk(data, fmt, pts=pts, **kwargs)
