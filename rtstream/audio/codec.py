"""Sample encodings to and from PCM16 and float32, for stages that compute on samples."""

from __future__ import annotations

import numpy as np

from ..frames import Encoding
from . import g711

_INT16_SCALE = 32768.0


def to_int16(data: np.ndarray, encoding: Encoding) -> np.ndarray:
    """Samples of ``encoding`` as int16 (float input is clipped to [-1, 1) and rounded)."""
    if encoding is Encoding.PCM_S16LE:
        return data
    if encoding is Encoding.PCM_MULAW:
        return g711.ulaw_decode(data)
    if encoding is Encoding.PCM_ALAW:
        return g711.alaw_decode(data)
    return float_to_int16(data)


def from_int16(pcm: np.ndarray, encoding: Encoding) -> np.ndarray:
    """int16 samples in ``encoding``."""
    if encoding is Encoding.PCM_S16LE:
        return pcm
    if encoding is Encoding.PCM_MULAW:
        return g711.ulaw_encode(pcm)
    if encoding is Encoding.PCM_ALAW:
        return g711.alaw_encode(pcm)
    return pcm.astype(np.float32) / np.float32(_INT16_SCALE)


def to_float32(data: np.ndarray, encoding: Encoding) -> np.ndarray:
    """Samples of ``encoding`` as float32 in [-1, 1)."""
    if encoding is Encoding.PCM_F32LE:
        return data
    return to_int16(data, encoding).astype(np.float32) / np.float32(_INT16_SCALE)


def from_float32(samples: np.ndarray, encoding: Encoding) -> np.ndarray:
    """float32 samples (nominally in [-1, 1)) in ``encoding``; out-of-range values clip."""
    if encoding is Encoding.PCM_F32LE:
        return samples.astype(np.float32, copy=False)
    return from_int16(float_to_int16(samples), encoding)


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    """Round float samples scaled by 32768 to int16, clipping at the rails."""
    scaled = np.rint(samples * _INT16_SCALE)
    return np.clip(scaled, -32768, 32767).astype(np.int16)
