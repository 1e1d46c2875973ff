"""Bounded per-frame timing series for plots: a few floats per event, never a Python object per frame.

A :class:`Series` keeps (time, value) pairs in two numpy arrays. Until ``limit``
points it keeps every one; when full it halves itself, each pair of neighbours keeping the
point of larger magnitude, and from then on takes one point per 2, 4, 8… events (again the
largest of each run). A spike of lateness or deviation therefore survives any decimation —
the point a person looks at a plot for — and an hour-long call costs the same memory as a
minute. The arrays start small and double up to the limit, so a short call (or an idle
stage) holds a kilobyte, not the limit's 32 KB. :class:`Marks` keeps the times of rare
events (underruns, clears) up to a bound, the same way, and counts the rest. Times are on
the trio clock, values in seconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SERIES_LIMIT = 2000
"""Points kept per series (the JSON report's bound)."""
MARKS_LIMIT = 500
"""Event times kept per kind of mark."""
START = 64
"""Points (or marks) room is made for at first; the arrays double from there up to the limit."""
_EMPTY = np.empty(0)
"""The arrays of a series or marks with no point yet (never written to: growing replaces them)."""


def _grown(array: np.ndarray, limit: int) -> np.ndarray:
    """``array`` copied into one twice its length (at least START, at most ``limit``)."""
    grown = np.empty(min(limit, max(START, 2 * len(array))))
    grown[: len(array)] = array
    return grown


class Series:
    """A (time, value) series of at most ``limit`` points; see the module docstring."""

    __slots__ = ("_k", "_limit", "_n", "_stride", "_t", "_v", "_wt", "_wv", "count")

    def __init__(self, limit: int = SERIES_LIMIT) -> None:
        if limit < 2 or limit % 2:
            raise ValueError(f"limit must be even and at least 2, got {limit}")
        self._limit = limit
        self._t = self._v = _EMPTY
        self._n = 0
        self._stride = 1
        self._k = 0
        self._wt = 0.0
        self._wv = 0.0
        self.count = 0
        """Events added (kept or folded)."""

    def add(self, t: float, v: float) -> None:
        self.count += 1
        if not self._k or abs(v) > abs(self._wv):
            self._wt, self._wv = t, v
        self._k += 1
        if self._k < self._stride:
            return
        self._k = 0
        if self._n == len(self._t):
            if self._n < self._limit:
                self._t, self._v = _grown(self._t, self._limit), _grown(self._v, self._limit)
            else:
                self._halve()
        self._t[self._n] = self._wt
        self._v[self._n] = self._wv
        self._n += 1

    def _halve(self) -> None:
        pairs_v = self._v.reshape(-1, 2)
        second = np.abs(pairs_v[:, 1]) > np.abs(pairs_v[:, 0])
        rows = np.arange(len(pairs_v))
        half = len(pairs_v)
        self._t[:half] = self._t.reshape(-1, 2)[rows, second.astype(np.intp)]
        self._v[:half] = pairs_v[rows, second.astype(np.intp)]
        self._n = half
        self._stride *= 2

    def snapshot(self) -> dict[str, Any]:
        """``t`` and ``v`` as lists (the run still in progress included), ``every``: events per point."""
        t, v = self._t[: self._n].tolist(), self._v[: self._n].tolist()
        if self._k:
            t.append(self._wt)
            v.append(self._wv)
        return {
            "every": self._stride,
            "count": self.count,
            "t": [round(x, 4) for x in t],
            "v": [round(x, 6) for x in v],
        }


class Marks:
    """Times of a rare event, the first ``limit`` kept, every one counted."""

    __slots__ = ("_limit", "_n", "_t", "count")

    def __init__(self, limit: int = MARKS_LIMIT) -> None:
        self._limit = limit
        self._t = _EMPTY
        self._n = 0
        self.count = 0

    def add(self, t: float) -> None:
        if self._n == len(self._t) < self._limit:
            self._t = _grown(self._t, self._limit)
        if self._n < len(self._t):
            self._t[self._n] = t
            self._n += 1
        self.count += 1

    def snapshot(self) -> dict[str, Any]:
        return {"count": self.count, "t": [round(x, 4) for x in self._t[: self._n].tolist()]}
