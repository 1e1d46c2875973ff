"""The target delay: a high quantile of a forgetting histogram of relative arrival delays.

This is WebRTC NetEq's delay manager. Each chunk's arrival is compared with its media time: ``x
= arrival - pts / rate``. Its *relative delay* is how much later than a reference it came:
inbound, the reference is the earliest chunk of the last two seconds (so clock offsets and a
slow drift cancel out; when an earlier one comes, the delays of this half second are measured
again from it, so the first chunk's own lateness does not hide the jitter); outbound, it is the
first chunk of the utterance (a TTS bursts ahead, so what matters is how far a stall pushed a
chunk behind the moment playing could have begun). Every half second the largest relative delay
seen is added to a histogram of 5 ms buckets (finer than NetEq's 20 ms: the target then
overshoots the jitter by 5 ms at most) whose old counts fade by a factor of 0.983 per addition
(about 30 s of memory; early on, every sample weighs alike). The target is the upper edge of the
bucket at the 0.95 quantile; before the first half second is complete, the upper edge of the
largest relative delay seen so far.

Delay peaks (NetEq's delay-peak detector): once the histogram has its first half second, a
relative delay above twice the target and at least 60 ms above it is a *peak*, kept out of the
histogram with the rise and fall around it (delays above the target within a second of a peak
value). Delays above the line within a second of each other are one peak. Peaks *recur*
when one starts within 10 s of the one before; while they do (and for 20 s after the last),
the target is raised to the highest of them. So a lone spike (a stall, then a burst) leaves
the target where it was, and a network that keeps spiking gets a target that covers it.
"""

from __future__ import annotations

import math
from collections import deque
from itertools import pairwise

import numpy as np

_WINDOW = 2.0
_INTERVAL = 0.5
_MAX_WINDOW_ENTRIES = 1024
MATURE_UPDATES = 4
"""Half seconds in the histogram before it is :attr:`DelayEstimator.mature`."""
PEAK_FACTOR = 2.0
PEAK_MIN_EXCESS = 0.060
PEAK_JOIN = 1.0
"""Delays above the peak line within this many seconds of each other are one peak."""
PEAK_PERIOD = 10.0
"""A peak starting within this many seconds of the one before is a recurrence."""
PEAK_MEMORY = 20.0
"""Recurring peaks hold the target up for this long after the last one."""
_MAX_PEAKS = 8


class DelayEstimator:
    """Relative arrival delays in, a target delay (seconds) out; time is passed in."""

    def __init__(
        self,
        *,
        max_delay: float,
        reference: str = "window",
        bucket: float = 0.005,
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
        self._base_target: float | None = None
        """The histogram's target, without peaks."""
        self._peaks: deque[list[float]] = deque(maxlen=_MAX_PEAKS)
        """[start, end, height] of the latest peaks, seconds."""
        self.peaks = 0
        """Peaks seen so far."""
        self.target: float | None = None
        """The target delay in seconds: until the first half second is in, the largest delay so far;
        then the histogram's quantile, raised to the recent peaks' height while they recur."""
        self.last = 0.0
        """The relative delay of the latest arrival, seconds."""

    @property
    def mature(self) -> bool:
        """The histogram has two seconds in: its quantile now reaches the tail of the delays (a
        younger one has not yet seen the rare late packets, and its target runs low)."""
        return self._updates >= MATURE_UPDATES

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
        before = self.base
        while window and window[-1][1] >= x:
            window.pop()
        window.append((now, x))
        while window[0][0] < now - _WINDOW or len(window) > _MAX_WINDOW_ENTRIES:
            window.popleft()
        if self._first is None:
            self._first = x
        base = self.base
        assert base is not None  # a chunk was just recorded: there is a reference
        if before is not None and self.reference == "window" and base < before:
            self._interval_max += before - base
        rel = max(0.0, x - base)
        self.last = rel
        if self._interval_start is None:
            self._interval_start = now
        elif now >= self._interval_start + _INTERVAL:
            self._add(self._interval_max)
            self._interval_start = now
            self._interval_max = 0.0
        if not self._peak(now, rel):
            self._interval_max = max(self._interval_max, rel)
        if not self._updates:
            self._base_target = self._upper_edge(self._interval_max)
        self._update_target(now)
        return rel

    def _peak(self, now: float, rel: float) -> bool:
        """Whether ``rel`` belongs to a peak (recorded, kept out of the histogram).

        Above the peak line a delay is a peak; within a second of one, anything above the
        target is the same peak's rise or fall.
        """
        base = self._base_target
        if not self._updates or base is None:
            return False
        peaks = self._peaks
        ongoing = bool(peaks) and now - peaks[-1][1] <= PEAK_JOIN
        if rel > max(PEAK_FACTOR * base, base + PEAK_MIN_EXCESS):
            if ongoing:
                peaks[-1][1] = now
                peaks[-1][2] = max(peaks[-1][2], rel)
            else:
                peaks.append([now, now, rel])
                self.peaks += 1
            return True
        return ongoing and rel > base

    def _update_target(self, now: float) -> None:
        target = self._base_target
        recent = [p for p in self._peaks if now - p[1] <= PEAK_MEMORY]
        if target is not None and any(b[0] - a[1] <= PEAK_PERIOD for a, b in pairwise(recent)):
            target = max(target, self._upper_edge(max(p[2] for p in recent)))
        self.target = target

    def _upper_edge(self, delay: float) -> float:
        return (min(int(delay / self.bucket), len(self._histogram) - 1) + 1) * self.bucket

    def _add(self, delay: float) -> None:
        forget = min(self.forget, self._updates / (self._updates + 1))
        self._updates += 1
        hist = self._histogram
        hist *= forget
        hist[min(int(delay / self.bucket), len(hist) - 1)] += 1 - forget
        index = int(np.searchsorted(np.cumsum(hist), self.quantile * hist.sum()))
        self._base_target = self._upper_edge(index * self.bucket)
