"""G.711 μ-law and A-law, bit-exact with the ITU/Sun reference (and CPython's ``audioop``).

Both directions are table lookups: 65,536 codes for encoding (indexed by the PCM16 bit
pattern) and 256 samples for decoding, built once at import from the reference algorithms.

On a telephony frame (a few hundred samples) numpy's fixed cost per call outweighs the work,
so small inputs take the path with the fewest numpy calls: ``table.take(pcm)`` with the int16
samples as indices (a negative sample wraps to the top half of the table, which is exactly
where its bit pattern points). On long buffers the per-sample cost wins instead: encoding
indexes by the uint16 view (negative indices are slow in bulk), and decoding looks up two
codes at a time in a 65,536-entry table of sample pairs, halving the indices numpy must cast.
``benchmarks/codecs.py`` measures both paths against ``audioop``; ``_BULK`` is the crossover.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_SEG_ULAW_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_SEG_ALAW_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)

_BULK = 1536
"""Samples from which the bulk paths win (measured on benchmarks/codecs.py)."""


def _build_ulaw_encode() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2  # 14-bit, as the reference takes it
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), 8159) + (0x84 >> 2)
    seg = np.searchsorted(_SEG_ULAW_END, magnitude, side="left")
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((magnitude >> (np.minimum(seg, 7) + 1)) & 0xF))
    table = (code ^ mask).astype(np.uint8)
    return np.roll(table, -32768)  # index by the uint16 bit pattern


def _build_alaw_encode() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    magnitude = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_SEG_ALAW_END, magnitude, side="left")
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((magnitude >> shift) & 0xF))
    table = (code ^ mask).astype(np.uint8)
    return np.roll(table, -32768)


def _build_ulaw_decode() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _build_alaw_decode() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, np.where(seg == 1, t + 0x108, (t + 0x108) << np.maximum(seg - 1, 0)))
    return np.where(a & 0x80, t, -t).astype(np.int16)


def _pairs(decode: np.ndarray) -> np.ndarray:
    """Entry ``i``: the two samples of the code pair whose bytes, read as a native uint16, are ``i``."""
    return decode[np.arange(65536, dtype=np.uint16).view(np.uint8)].view(np.uint32)


ULAW_ENCODE = _build_ulaw_encode()
ALAW_ENCODE = _build_alaw_encode()
ULAW_DECODE = _build_ulaw_decode()
ALAW_DECODE = _build_alaw_decode()


def _encoder(table: np.ndarray, law: str) -> Callable[[np.ndarray], np.ndarray]:
    take = table.take  # bound once: on a 60 ms frame every attribute lookup shows

    def encode(pcm: np.ndarray) -> np.ndarray:
        if pcm.size < _BULK:
            return take(pcm)
        return take(pcm.view(np.uint16))

    encode.__doc__ = f"PCM16 samples (int16, any shape) to {law} codes (uint8, same shape)."
    return encode


def _decoder(table: np.ndarray, law: str) -> Callable[[np.ndarray], np.ndarray]:
    take = table.take
    take_pairs = _pairs(table).take

    def decode(codes: np.ndarray) -> np.ndarray:
        if codes.size < _BULK or codes.shape[-1] % 2 or not codes.flags.c_contiguous:
            return take(codes)
        return take_pairs(codes.view(np.uint16)).view(np.int16)

    decode.__doc__ = f"{law} codes (uint8, any shape) to PCM16 samples (int16, same shape)."
    return decode


ulaw_encode = _encoder(ULAW_ENCODE, "μ-law")
alaw_encode = _encoder(ALAW_ENCODE, "A-law")
ulaw_decode = _decoder(ULAW_DECODE, "μ-law")
alaw_decode = _decoder(ALAW_DECODE, "A-law")
