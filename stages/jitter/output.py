"""The produced signal: recent history (for concealment and slowing down) and what is not yet played.

Positions are absolute sample counts of output, so events can be pinned to them. A preallocated
buffer is compacted in place when it fills; nothing is allocated per tick.
"""

from __future__ import annotations

import numpy as np


class OutputQueue:
    """Samples produced (``produced``) and handed out (``emitted``), with the last ``keep`` retained."""

    def __init__(self, keep: int, room: int, channels: int) -> None:
        self.keep = keep
        self._buf = np.zeros((keep + 2 * room, channels), dtype=np.float32)
        self._base = 0
        """Absolute position of ``_buf[0]``."""
        self._room = room
        self.produced = 0
        self.emitted = 0

    @property
    def pending(self) -> int:
        """Produced but not yet handed out."""
        return self.produced - self.emitted

    def history(self, n: int) -> np.ndarray:
        """The last ``n`` samples produced (fewer at the start), as a writable view."""
        end = self.produced - self._base
        return self._buf[max(0, end - n) : end]

    def reserve(self, n: int) -> np.ndarray:
        """A view to write the next ``n`` samples into; :meth:`commit` them after."""
        assert n <= self._room, "an operation produced more than the queue's room"
        end = self.produced - self._base
        if end + n > len(self._buf):
            start = max(0, min(end - self.keep, self.emitted - self._base))
            self._buf[: end - start] = self._buf[start:end]
            self._base += start
            end -= start
        return self._buf[end : end + n]

    def commit(self, n: int) -> None:
        self.produced += n

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` unplayed samples (a view valid until the next :meth:`reserve`)."""
        start = self.emitted - self._base
        self.emitted += n
        return self._buf[start : start + n]

    def drop_pending(self) -> int:
        """Forget what was produced but not handed out; return how many samples that was."""
        dropped = self.pending
        self.produced = self.emitted
        return dropped
