"""``null_sink``: takes everything and counts it."""

from __future__ import annotations

from collections import Counter

import attrs
import trio

from rtstream.frames import AudioChunk
from rtstream.registry import register
from rtstream.stage import ReceiveChannel, Sink


@attrs.frozen
class NullStatistics:
    chunks_in: int
    samples_in: int
    seconds_in: float
    events_in: dict[str, int]


@attrs.define
class _Counts:
    chunks: int = 0
    samples: int = 0
    seconds: float = 0.0
    events: Counter[str] = attrs.Factory(Counter)


@register("null_sink", klass="Sink/Debug")
@attrs.frozen(kw_only=True)
class NullSink(Sink):
    """Discards what it receives, counting audio and events."""

    _counts: _Counts = attrs.field(init=False, factory=_Counts, eq=False, repr=False)

    async def run(self, rx: ReceiveChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        counts = self._counts
        async with rx:
            task_status.started()
            async for frame in rx:
                if type(frame) is AudioChunk:
                    counts.chunks += 1
                    counts.samples += frame.samples
                    counts.seconds += frame.duration
                else:
                    counts.events[type(frame).__name__] += 1

    def statistics(self) -> NullStatistics:
        c = self._counts
        return NullStatistics(c.chunks, c.samples, c.seconds, dict(sorted(c.events.items())))
