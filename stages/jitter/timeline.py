"""Audio placed on a media timeline in a bounded ring: what has arrived, and the holes between.

Positions are samples on the jitter buffer's own timeline. Everything before ``start`` (the
play position) is gone; the ring holds ``capacity`` samples from there on. Writes fill only
what is not already there, so duplicates are measured, never stored twice. Each sample keeps
a stamp beside it (its arrival time), so the time every sample spent in the buffer is known.
"""

from __future__ import annotations

import numpy as np


class Timeline:
    """A ring of float32 samples (capacity, channels) and the sorted ranges present in it."""

    def __init__(self, capacity: int, channels: int) -> None:
        self.capacity = capacity
        self._ring = np.zeros((capacity, channels), dtype=np.float32)
        self._stamps = np.zeros(capacity)
        self._ranges: list[list[int]] = []
        self.start = 0

    @property
    def end(self) -> int:
        """Just past the last sample present (``start`` when empty)."""
        return self._ranges[-1][1] if self._ranges else self.start

    @property
    def present(self) -> int:
        """Samples present in the ring."""
        return sum(e - s for s, e in self._ranges)

    def available(self) -> int:
        """Samples present without a break from ``start``."""
        if self._ranges and self._ranges[0][0] == self.start:
            return self._ranges[0][1] - self.start
        return 0

    def next_present(self) -> int | None:
        """Where audio resumes after a hole at ``start``; None when nothing lies ahead."""
        if not self._ranges or self._ranges[0][0] == self.start:
            return None
        return self._ranges[0][0]

    def write(self, pos: int, data: np.ndarray, stamp: float = 0.0) -> int:
        """Store ``data`` (stamped ``stamp``) at ``pos`` where nothing is yet; return how many samples were there.

        The caller keeps writes within ``[start, start + capacity)``.
        """
        end = pos + len(data)
        assert self.start <= pos and end <= self.start + self.capacity, "write outside the ring"
        free, cursor = [], pos
        for s, e in self._ranges:
            if e <= cursor:
                continue
            if s >= end:
                break
            if s > cursor:
                free.append((cursor, s))
            cursor = max(cursor, e)
        if cursor < end:
            free.append((cursor, end))
        for s, e in free:
            self._store(s, data[s - pos : e - pos])
            self._stamp(s, e - s, stamp)
            self._insert(s, e)
        return len(data) - sum(e - s for s, e in free)

    def _store(self, pos: int, data: np.ndarray) -> None:
        i = pos % self.capacity
        first = min(len(data), self.capacity - i)
        self._ring[i : i + first] = data[:first]
        self._ring[: len(data) - first] = data[first:]

    def _stamp(self, pos: int, n: int, stamp: float) -> None:
        i = pos % self.capacity
        first = min(n, self.capacity - i)
        self._stamps[i : i + first] = stamp
        self._stamps[: n - first] = stamp

    def stamp_sum(self, pos: int, n: int) -> float:
        """The sum of the stamps of the ``n`` samples from ``pos`` (present or not: holes hold stale stamps)."""
        i = pos % self.capacity
        first = min(n, self.capacity - i)
        return float(self._stamps[i : i + first].sum() + self._stamps[: n - first].sum())

    def _insert(self, s: int, e: int) -> None:
        ranges = self._ranges
        i = 0
        while i < len(ranges) and ranges[i][1] < s:
            i += 1
        if i < len(ranges) and ranges[i][0] <= e:
            ranges[i][0] = min(ranges[i][0], s)
            ranges[i][1] = max(ranges[i][1], e)
            while i + 1 < len(ranges) and ranges[i + 1][0] <= ranges[i][1]:
                ranges[i][1] = max(ranges[i][1], ranges.pop(i + 1)[1])
        else:
            ranges.insert(i, [s, e])

    def covered(self, pos: int, end: int) -> int:
        """Samples present in ``[pos, end)``."""
        return sum(max(0, min(e, end) - max(s, pos)) for s, e in self._ranges)

    def available_at(self, pos: int) -> int:
        """Samples present without a break from ``pos``."""
        for s, e in self._ranges:
            if s <= pos < e:
                return e - pos
        return 0

    def read_at(self, pos: int, n: int, out: np.ndarray) -> np.ndarray:
        """Copy up to ``n`` samples present from ``pos`` into ``out``; return the filled view."""
        n = min(n, self.available_at(pos), len(out))
        i = pos % self.capacity
        first = min(n, self.capacity - i)
        out[:first] = self._ring[i : i + first]
        out[first:n] = self._ring[: n - first]
        return out[:n]

    def patch(self, pos: int, data: np.ndarray) -> None:
        """Rewrite samples that are present (a blend into concealment, say)."""
        assert self.available_at(pos) >= len(data), "patch outside present audio"
        self._store(pos, data)

    def read(self, n: int, out: np.ndarray) -> np.ndarray:
        """Copy up to ``n`` samples present from ``start`` into ``out``; return the filled view."""
        return self.read_at(self.start, n, out)

    def advance(self, n: int) -> int:
        """Move ``start`` on by ``n``; return how many present samples were passed over."""
        self.start += n
        passed = 0
        while self._ranges and self._ranges[0][0] < self.start:
            s, e = self._ranges[0]
            if e <= self.start:
                passed += e - s
                self._ranges.pop(0)
            else:
                passed += self.start - s
                self._ranges[0][0] = self.start
                break
        return passed

    def rewind(self, start: int) -> bool:
        """Move ``start`` back to an earlier position, if what is buffered still fits; whether it did."""
        if start > self.start or self.end - start > self.capacity:
            return False
        self.start = start
        return True

    def reset(self, start: int) -> int:
        """Drop everything and restart at ``start``; return how many samples were dropped."""
        dropped = self.present
        self._ranges.clear()
        self.start = start
        return dropped
