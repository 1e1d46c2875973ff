"""Sample encodings to and from PCM16 and float32, for stages that compute on samples.

Float samples are nominally in [-1, 1): PCM16 value ``v`` is ``v / 32768``. Converting float
to an integer encoding rounds to the nearest PCM16 step and clips at the rails; the
``*_counted`` variants say how many samples clipped, for the drop and clip counters.

Between two integer encodings a linear computation (resampling, gain) can skip both scalings:
:func:`to_pcm_units` gives float32 samples in PCM16 steps (``v`` itself), and
:func:`quantize_pcm_units` rounds them back. That saves two passes over every chunk.
"""

from __future__ import annotations

import numpy as np

from ..frames import Encoding
from . import g711

_INT16_SCALE = np.float32(32768.0)
_INT16_STEP = np.float32(1 / 32768)
_FULL_SCALE = np.float32(32767 / 32768)
"""The largest float sample every encoding holds without clipping."""

_ULAW_FLOAT = g711.ULAW_DECODE * _INT16_STEP
_ALAW_FLOAT = g711.ALAW_DECODE * _INT16_STEP
_ULAW_UNITS = g711.ULAW_DECODE.astype(np.float32)
_ALAW_UNITS = g711.ALAW_DECODE.astype(np.float32)

_G711 = (Encoding.PCM_MULAW, Encoding.PCM_ALAW)
_INTEGER = (Encoding.PCM_S16LE, *_G711)

_TRANSCODE = {
    (Encoding.PCM_MULAW, Encoding.PCM_ALAW): g711.ALAW_ENCODE[g711.ULAW_DECODE.view(np.uint16)],
    (Encoding.PCM_ALAW, Encoding.PCM_MULAW): g711.ULAW_ENCODE[g711.ALAW_DECODE.view(np.uint16)],
}
"""G.711 to G.711 in one 256-entry lookup: the same codes as decoding then encoding."""


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
    return pcm * _INT16_STEP


def transcode(data: np.ndarray, src: Encoding, dst: Encoding) -> np.ndarray:
    """Samples of one integer encoding (PCM16, μ-law, A-law) in another, exactly.

    The result equals decoding to PCM16 and encoding again, with one lookup where both
    are G.711. Returns ``data`` itself when the encodings are the same.
    """
    if src is dst:
        return data
    if src is Encoding.PCM_S16LE:
        return from_int16(data, dst)
    if dst is Encoding.PCM_S16LE:
        return to_int16(data, src)
    return _TRANSCODE[src, dst].take(data)


def is_integer(encoding: Encoding) -> bool:
    """PCM16, μ-law or A-law: encodings that :func:`transcode` converts exactly."""
    return encoding in _INTEGER


def to_float32(data: np.ndarray, encoding: Encoding) -> np.ndarray:
    """Samples of ``encoding`` as float32 in [-1, 1) (float input is returned as it is)."""
    if encoding is Encoding.PCM_F32LE:
        return data
    if encoding is Encoding.PCM_S16LE:
        return data * _INT16_STEP
    return (_ULAW_FLOAT if encoding is Encoding.PCM_MULAW else _ALAW_FLOAT).take(data)


def from_float32(samples: np.ndarray, encoding: Encoding) -> np.ndarray:
    """float32 samples (nominally in [-1, 1)) in ``encoding``; out-of-range values clip."""
    return from_float32_counted(samples, encoding)[0]


def from_float32_counted(samples: np.ndarray, encoding: Encoding) -> tuple[np.ndarray, int]:
    """float32 samples in ``encoding``, and how many of them clipped.

    PCM16 and G.711 clip at the PCM16 rails after rounding; float32 output clips at ±1.0.
    The input must be finite (see :func:`clamp_nonfinite`).
    """
    if encoding is Encoding.PCM_F32LE:
        samples = samples.astype(np.float32, copy=False)
        if samples.size and (samples.max() > 1 or samples.min() < -1):
            clipped = np.clip(samples, -1, 1)
            return clipped, int(np.count_nonzero(clipped != samples))
        return samples, 0
    pcm, clipped = quantize(samples)
    return from_int16(pcm, encoding), clipped


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    """Round float samples scaled by 32768 to int16, clipping at the rails."""
    return quantize(samples)[0]


def quantize(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """Float samples as int16 (scaled by 32768, rounded half to even), and how many clipped."""
    scaled = np.rint(samples * _INT16_SCALE)
    clipped = 0
    if scaled.size and (scaled.max() > 32767 or scaled.min() < -32768):
        clipped = int(np.count_nonzero((scaled > 32767) | (scaled < -32768)))
        np.clip(scaled, -32768, 32767, out=scaled)
    return scaled.astype(np.int16), clipped


def to_pcm_units(data: np.ndarray, encoding: Encoding) -> np.ndarray:
    """Samples of an integer encoding as float32 in PCM16 steps (``v``, not ``v / 32768``)."""
    if encoding is Encoding.PCM_S16LE:
        return data.astype(np.float32)
    return (_ULAW_UNITS if encoding is Encoding.PCM_MULAW else _ALAW_UNITS).take(data)


def quantize_pcm_units(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """float32 samples in PCM16 steps as int16 (rounded half to even), and how many clipped.

    Rounds ``samples`` in place: pass an array the caller owns (a resampler's output, say).
    """
    scaled = np.rint(samples, out=samples) if samples.dtype == np.float32 else np.rint(samples)
    clipped = 0
    if scaled.size and (scaled.max() > 32767 or scaled.min() < -32768):
        clipped = int(np.count_nonzero((scaled > 32767) | (scaled < -32768)))
        np.clip(scaled, -32768, 32767, out=scaled)
    return scaled.astype(np.int16), clipped


def clamp_nonfinite(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """Float samples with NaN as silence and ±inf at full scale, and how many there were.

    Returns ``samples`` itself when all are finite (the common case costs one pass).
    """
    finite = np.isfinite(samples)
    if finite.all():
        return samples, 0
    clean = np.nan_to_num(samples, nan=0.0, posinf=float(_FULL_SCALE), neginf=-1.0)
    return clean, int(finite.size - np.count_nonzero(finite))
