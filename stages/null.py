"""``null_sink``: takes everything and counts it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import attrs

from rtstream.frames import AudioChunk, AudioFormat, Frame
from rtstream.registry import register
from rtstream.stage import NOTHING, Core, CoreElement, Sink
from rtstream.stats import AudioCounter, Throughput, stat


class Tally(Core):
    """A sink's core: counts the audio and, by type, the events it takes."""

    untimed = True

    def __init__(self) -> None:
        self.audio = AudioCounter()
        self.events: Counter[str] = Counter()

    def push(self, frame: Frame, now: float) -> Sequence[Frame]:
        if type(frame) is AudioChunk:
            self.audio.add(frame)
        else:
            self.events[type(frame).__name__] += 1
        return NOTHING

    def statistics(self) -> NullStatistics:
        return NullStatistics(self.audio.snapshot(), dict(sorted(self.events.items())))


@attrs.frozen
class NullStatistics:
    received: Throughput = stat(help="Audio received.")
    events: dict[str, int] = stat(help="Events received, by type.")


@register("null_sink", klass="Sink/Debug")
@attrs.frozen(kw_only=True)
class NullSink(Sink):
    """Discards what it receives, counting audio and events."""

    statistics_type = NullStatistics

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> CoreElement:
        return CoreElement(Tally())
