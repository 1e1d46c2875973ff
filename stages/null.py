"""``null_sink``: takes everything and counts it."""

from __future__ import annotations

from collections import Counter

import attrs
import trio

from rtstream.frames import AudioChunk
from rtstream.registry import register
from rtstream.stage import ReceiveChannel, Sink
from rtstream.stats import AudioCounter, Throughput


@attrs.frozen
class NullStatistics:
    received: Throughput
    events: dict[str, int]


@register("null_sink", klass="Sink/Debug")
@attrs.frozen(kw_only=True)
class NullSink(Sink):
    """Discards what it receives, counting audio and events."""

    _audio: AudioCounter = attrs.field(init=False, factory=AudioCounter, eq=False, repr=False)
    _events: Counter[str] = attrs.field(init=False, factory=Counter, eq=False, repr=False)

    async def run(self, rx: ReceiveChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with rx:
            task_status.started()
            async for frame in rx:
                if type(frame) is AudioChunk:
                    self._audio.add(frame)
                else:
                    self._events[type(frame).__name__] += 1

    def statistics(self) -> NullStatistics:
        return NullStatistics(self._audio.snapshot(), dict(sorted(self._events.items())))
