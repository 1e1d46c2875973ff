"""The target delay: a high quantile of a forgetting histogram of relative arrival delays.

This is WebRTC NetEq's delay manager. Each chunk's arrival is compared with its media time:
``x = arrival - pts / rate``. Its *relative delay* is how much later than a reference it came:
inbound, the reference is the earliest chunk of the last two seconds (so clock offsets and a
slow drift cancel out); outbound, it is the first chunk of the utterance (a TTS bursts ahead,
so what matters is how far a stall pushed a chunk behind the moment playing could have begun).
Every half second the largest relative delay seen is added to a histogram of 20 ms buckets
whose old counts fade by a factor of 0.983 per addition (about 30 s of memory; early on, every
sample weighs alike). The target is the upper edge of the bucket at the 0.95 quantile; before
the first half second is complete, the upper edge of the largest relative delay seen so far.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

_WINDOW = 2.0
_INTERVAL = 0.5
_MAX_WINDOW_ENTRIES = 1024


class DelayEstimator:
    """Relative arrival delays in, a target delay (seconds) out; time is passed in."""

    def __init__(
        self,
        *,
        max_delay: float,
        reference: str = "window",
        bucket: float = 0.020,
        forget: float = 0.983,
        quantile: float = 0.95,
    ) -> None:
        if reference not in ("window", "first"):
            raise ValueError(f"reference must be 'window' or 'first', got {reference!r}")
        self.reference = reference
        self.bucket = bucket
        self.forget = forget
        self.quantile = quantile
        self._histogram = np.zeros(math.ceil(max_delay / bucket) + 1)
        self._updates = 0
        self._window: deque[tuple[float, float]] = deque()
        self._first: float | None = None
        self._interval_start: float | None = None
        self._interval_max = 0.0
        self.target: float | None = None
        """The target delay in seconds: until the first half second is in, the largest delay so far."""
        self.last = 0.0
        """The relative delay of the latest arrival, seconds."""

    @property
    def settled(self) -> bool:
        """The histogram has at least one half second in (before that, the target only rises)."""
        return self._updates > 0

    @property
    def base(self) -> float | None:
        """``arrival - media time`` of the reference chunk: a chunk arriving then is 0 s late."""
        if self.reference == "first":
            return self._first
        return self._window[0][1] if self._window else None

    def restart(self) -> None:
        """Forget the reference (a new utterance or a resynchronized stream); keep the histogram."""
        self._window.clear()
        self._first = None

    def arrival(self, now: float, media_time: float) -> float:
        """Record a chunk whose media time (seconds) arrived at ``now``; return its relative delay."""
        x = now - media_time
        window = self._window
        while window and window[-1][1] >= x:
            window.pop()
        window.append((now, x))
        while window[0][0] < now - _WINDOW or len(window) > _MAX_WINDOW_ENTRIES:
            window.popleft()
        if self._first is None:
            self._first = x
        rel = max(0.0, x - self.base)  # type: ignore[operator]
        self.last = rel
        if self._interval_start is None:
            self._interval_start = now
        elif now >= self._interval_start + _INTERVAL:
            self._add(self._interval_max)
            self._interval_start = now
            self._interval_max = 0.0
        self._interval_max = max(self._interval_max, rel)
        if not self._updates:
            self.target = self._upper_edge(self._interval_max)
        return rel

    def _upper_edge(self, delay: float) -> float:
        return (min(int(delay / self.bucket), len(self._histogram) - 1) + 1) * self.bucket

    def _add(self, delay: float) -> None:
        forget = min(self.forget, self._updates / (self._updates + 1))
        self._updates += 1
        hist = self._histogram
        hist *= forget
        hist[min(int(delay / self.bucket), len(hist) - 1)] += 1 - forget
        index = int(np.searchsorted(np.cumsum(hist), self.quantile * hist.sum()))
        self.target = self._upper_edge(index * self.bucket)
