"""Seeded network impairments: delivery jitter, stalls, duplicates, reordering, drops, a disconnect.

:class:`NetEm` is a pure scheduler a simulator puts its outgoing messages through: each goes in
with the time it is ready and comes out with the time it is delivered. Delivery keeps the order
of one TCP stream (jitter and stalls delay, they never overtake) except where a media message is
deliberately swapped with the next media message. Only media messages (audio chunks) are
dropped, duplicated or reordered, and the disconnect comes after the n-th media message, so a
protocol's control messages stay intact. The same impairments and seed give the same result.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any, Final

import attrs

from rtstream.params import param


class _Disconnect:
    def __repr__(self) -> str:
        return "DISCONNECT"


DISCONNECT: Final = _Disconnect()
"""Delivered in place of a message: the simulator should drop the connection here."""


@attrs.frozen(kw_only=True)
class Impairments:
    """What the network does to a simulator's messages (every value zero or none: nothing)."""

    jitter: float = param(0.0, min=0, max=10, unit="s", help="Extra delay per message, uniform between 0 and this.")
    stall_probability: float = param(0.0, min=0, max=1, help="Chance that a message stalls the stream.")
    stall: float = param(0.5, min=0, max=60, unit="s", help="How long a stall holds up the stream.")
    duplicate: float = param(0.0, min=0, max=1, help="Chance that an audio message is delivered twice.")
    reorder: float = param(0.0, min=0, max=1, help="Chance that an audio message is swapped with the next one.")
    drop: float = param(0.0, min=0, max=1, help="Chance that an audio message is lost.")
    disconnect_after: int | None = param(
        type=int,
        optional=True,
        min=1,
        max=1 << 31,
        help="Drop the connection after this many audio messages; none never does.",
    )

    def impairments(self) -> Impairments:
        """Just the impairment settings (for subclasses that add their own)."""
        return Impairments(**{f.name: getattr(self, f.name) for f in attrs.fields(Impairments)})


@attrs.frozen
class NetEmStatistics:
    delivered: int
    dropped: int
    duplicated: int
    reordered: int
    stalls: int
    disconnected: bool


class NetEm:
    """Schedules messages through :class:`Impairments`; push in time order, pop when due."""

    def __init__(self, impairments: Impairments, seed: int = 0) -> None:
        self._imp = impairments
        self._rng = random.Random(seed)
        self._queue: deque[tuple[float, Any]] = deque()
        self._last = -float("inf")
        self._held: tuple[Any, float] | None = None
        self._media = 0
        self._disconnected = False
        self._delivered = self._dropped = self._duplicated = self._reordered = self._stalls = 0

    @property
    def disconnected(self) -> bool:
        """The disconnect has been scheduled; later messages are discarded."""
        return self._disconnected

    def push(self, message: Any, ready: float, *, media: bool = False) -> None:
        """Send ``message``, ready at ``ready``; ``media`` marks an audio message."""
        if self._disconnected:
            return
        imp, rng = self._imp, self._rng
        if not media:
            self._release(ready)
            self._schedule(message, ready)
            return
        self._media += 1
        if imp.drop and rng.random() < imp.drop:
            self._dropped += 1
        elif self._held is None and imp.reorder and rng.random() < imp.reorder:
            self._held = (message, ready)
        else:
            self._schedule(message, ready)
            if imp.duplicate and rng.random() < imp.duplicate:
                self._duplicated += 1
                self._schedule(message, ready)
            if self._held is not None:
                self._reordered += 1
                self._release(ready)
        if imp.disconnect_after is not None and self._media >= imp.disconnect_after:
            self._release(ready)
            self._schedule(DISCONNECT, ready)
            self._disconnected = True

    def flush(self, now: float) -> None:
        """Release a message held back for reordering (nothing more will follow it)."""
        self._release(now)

    def _release(self, ready: float) -> None:
        if self._held is not None:
            message, held_ready = self._held
            self._held = None
            self._schedule(message, max(ready, held_ready))

    def _schedule(self, message: Any, ready: float) -> None:
        imp, rng = self._imp, self._rng
        at = ready + (rng.uniform(0, imp.jitter) if imp.jitter else 0.0)
        if imp.stall_probability and rng.random() < imp.stall_probability:
            self._stalls += 1
            at += imp.stall
        at = max(at, self._last)
        self._last = at
        self._queue.append((at, message))

    def next_due(self) -> float | None:
        """When the next message is due, or None when none is queued."""
        return self._queue[0][0] if self._queue else None

    def pop_due(self, now: float) -> list[Any]:
        """The messages due by ``now``, in delivery order (possibly :data:`DISCONNECT`)."""
        out = []
        queue = self._queue
        while queue and queue[0][0] <= now:
            out.append(queue.popleft()[1])
        self._delivered += len(out)
        return out

    def statistics(self) -> NetEmStatistics:
        return NetEmStatistics(
            self._delivered, self._dropped, self._duplicated, self._reordered, self._stalls, self._disconnected
        )
