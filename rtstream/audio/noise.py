"""Comfort noise: seeded white noise at a set level, the same frames for every stream that asks.

The pacer fills underruns and idle slots with it; a receiver that knows the level and seed can
tell these frames from speech byte for byte (the telephony simulator counts them as fill).
"""

from __future__ import annotations

import functools

import numpy as np

from rtstream.audio.codec import from_float32
from rtstream.frames import AudioFormat

FRAMES = 50
"""Frames of noise in a cycle (a stream takes them in turn)."""


@functools.lru_cache(maxsize=32)
def comfort_noise(fmt: AudioFormat, samples: int, level: float, seed: int) -> tuple[np.ndarray, ...]:
    """Read-only frames of seeded white noise at ``level`` dBFS RMS, shared by every stream."""
    shape = (FRAMES * samples,) if fmt.channels == 1 else (FRAMES * samples, fmt.channels)
    noise = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * np.float32(10 ** (level / 20))
    encoded = from_float32(noise, fmt.encoding)
    encoded.flags.writeable = False
    return tuple(encoded[i * samples : (i + 1) * samples] for i in range(FRAMES))
