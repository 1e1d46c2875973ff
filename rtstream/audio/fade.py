"""Fades: ending audio without a click when a reply is cut short."""

from __future__ import annotations

import numpy as np

from ..frames import Encoding
from .codec import from_float32, to_float32


def fade_out(data: np.ndarray, encoding: Encoding) -> np.ndarray:
    """``data`` (samples in ``encoding``) faded linearly from full level to silence over its length."""
    samples = to_float32(data, encoding)
    ramp = np.linspace(1.0, 0.0, len(samples), dtype=np.float32)
    return from_float32(samples * (ramp if samples.ndim == 1 else ramp[:, None]), encoding)
