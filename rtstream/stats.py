"""Counters for ``statistics()``: drops by reason, counts by name, percentiles in bounded memory, documented fields.

Every field of a statistics record says what it counts: declare it with :func:`stat`, and
:func:`fields_of` lists the fields with their help (``rtstream inspect`` prints them).
"""

from __future__ import annotations

import bisect
import itertools
import math
import types
import typing
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from .frames import AudioChunk
from .text import clip, one_line

_HELP = "rtstream.help"


def stat(*, help: str, default: Any = attrs.NOTHING) -> Any:
    """A field of a frozen statistics record, with the help ``rtstream inspect`` prints."""
    return attrs.field(default=default, metadata={_HELP: help})


@attrs.frozen
class StatInfo:
    """One documented statistics field: dotted name, type as written, help (None if undocumented)."""

    name: str
    type: str
    help: str | None


def fields_of(record: type) -> list[StatInfo]:
    """Every field of the statistics record type ``record``, nested records' fields dotted after theirs."""
    hints = typing.get_type_hints(record)
    out = []
    for field in attrs.fields(record):
        kind = hints[field.name]
        out.append(StatInfo(field.name, _type_name(kind), field.metadata.get(_HELP)))
        nested = [k for k in (kind, *typing.get_args(kind)) if isinstance(k, type) and attrs.has(k)]
        for inner in nested[:1] if typing.get_origin(kind) is not dict else ():
            out.extend(attrs.evolve(f, name=f"{field.name}.{f.name}") for f in fields_of(inner))
    return out


def _type_name(kind: Any) -> str:
    """``kind`` as written in the record: ``int``, ``dict[str, DropCount]``, ``Summary | None``."""
    args = typing.get_args(kind)
    if not args:
        return "None" if kind is type(None) else getattr(kind, "__name__", str(kind))
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    return f"{typing.get_origin(kind).__name__}[{', '.join(_type_name(a) for a in args)}]"


@attrs.frozen
class Throughput:
    """How much audio passed a point: chunks, samples per channel, and seconds."""

    chunks: int = stat(help="Audio chunks.")
    samples: int = stat(help="Samples per channel.")
    seconds: float = stat(help="Seconds of audio.")


class AudioCounter:
    """Counts the audio chunks that pass a point; ``snapshot()`` gives a :class:`Throughput`."""

    __slots__ = ("chunks", "samples", "seconds")

    def __init__(self) -> None:
        self.chunks = 0
        self.samples = 0
        self.seconds = 0.0

    def add(self, chunk: AudioChunk) -> None:
        self.chunks += 1
        self.samples += len(chunk.data)
        self.seconds += len(chunk.data) / chunk.format.sample_rate

    def snapshot(self) -> Throughput:
        return Throughput(self.chunks, self.samples, self.seconds)


@attrs.frozen
class DropCount:
    """What was dropped for one reason."""

    frames: int = stat(help="Frames (or chunks) dropped.")
    samples: int = stat(help="Samples per channel dropped.")


class Drops:
    """Every dropped frame and sample, counted under its reason."""

    __slots__ = ("_frames", "_samples")

    def __init__(self) -> None:
        self._frames: Counter[str] = Counter()
        self._samples: Counter[str] = Counter()

    def add(self, reason: str, *, samples: int = 0, frames: int = 1) -> None:
        self._frames[reason] += frames
        self._samples[reason] += samples

    @property
    def frames(self) -> int:
        return sum(self._frames.values())

    @property
    def samples(self) -> int:
        return sum(self._samples.values())

    def snapshot(self) -> dict[str, DropCount]:
        return {reason: DropCount(self._frames[reason], self._samples[reason]) for reason in sorted(self._frames)}


class BoundedCounter:
    """Counts by name where a peer chooses the names (message types, event names, error codes).

    At most ``limit`` names are kept, each put on one line and cut to ``max_key`` characters;
    counts of further names go to ``other``. A peer sending ten thousand distinct or huge names
    costs a bounded dict and a bounded report.
    """

    __slots__ = ("_counts", "limit", "max_key")

    OTHER = "other"

    def __init__(self, limit: int = 32, max_key: int = 64) -> None:
        self.limit = limit
        self.max_key = max_key
        self._counts: Counter[str] = Counter()

    def add(self, name: object, n: int = 1) -> None:
        counts = self._counts
        if type(name) is str and name in counts and len(name) <= self.max_key:
            counts[name] += n  # a name already kept is on one line and short: it is its own key
            return
        key = clip(one_line(str(name)), self.max_key)
        if key not in self._counts and len(self._counts) >= self.limit:
            key = self.OTHER
        self._counts[key] += n

    def __getitem__(self, name: str) -> int:
        return self._counts[name]

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def snapshot(self) -> dict[str, int]:
        """The counts by name, sorted (``other`` among them when names were folded)."""
        return dict(sorted(self._counts.items()))


@attrs.frozen
class Summary:
    """Percentiles of a series (in its own unit); None when it is empty."""

    count: int = stat(help="Values in the series.")
    p50: float | None = stat(help="Median (None when empty).")
    p99: float | None = stat(help="99th percentile (None when empty).")
    max: float | None = stat(help="Largest value (None when empty).")
    mean: float | None = stat(help="Mean (None when empty).")


class Quantiles:
    """A log-bucketed histogram: percentiles within ~1.1 % in constant memory, O(1) per value.

    Magnitudes below ``resolution`` count as zero; the sign is kept, so early (negative) and
    late (positive) values of a lateness series fall on the right side of the median. Each
    sign's counts are one flat array over the steps its values have reached (8 bytes a step):
    a call's lateness spans a few hundred steps, which a dict of counts held in ~10 KB.
    """

    __slots__ = ("_count", "_max", "_min", "_neg", "_neg_low", "_pos", "_pos_low", "_resolution", "_sum", "_zero")

    _STEPS_PER_OCTAVE = 32

    def __init__(self, resolution: float = 1e-7) -> None:
        self._count = 0
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf
        self._resolution = resolution
        self._zero = 0
        self._pos = array("Q")
        """Counts of positive values, of steps ``_pos_low`` on."""
        self._pos_low = 0
        self._neg = array("Q")
        """Counts of negative values by magnitude, of steps ``_neg_low`` on."""
        self._neg_low = 0

    def add(self, value: float) -> None:
        self._count += 1
        self._sum += value
        if value < self._min:
            self._min = value
        if value > self._max:
            self._max = value
        magnitude = abs(value)
        if magnitude < self._resolution:
            self._zero += 1
            return
        step = 1 + int(math.log2(magnitude / self._resolution) * self._STEPS_PER_OCTAVE)
        if value > 0:
            i = step - self._pos_low
            if 0 <= i < len(self._pos):
                self._pos[i] += 1
            else:
                self._add_step(step, 1)
        else:
            i = step - self._neg_low
            if 0 <= i < len(self._neg):
                self._neg[i] += 1
            else:
                self._add_step(-step, 1)

    def _add_step(self, signed_step: int, n: int) -> None:
        """Count ``n`` values at ``signed_step``, widening that sign's array to reach it."""
        if signed_step == 0:
            self._zero += n
            return
        step = abs(signed_step)
        counts, low = (self._pos, self._pos_low) if signed_step > 0 else (self._neg, self._neg_low)
        if not counts:
            counts, low = array("Q", [0]), step
        elif step < low:
            counts, low = array("Q", bytes(8 * (low - step))) + counts, step
        elif step >= low + len(counts):
            counts.frombytes(bytes(8 * (step - low - len(counts) + 1)))
        counts[step - low] += n
        if signed_step > 0:
            self._pos, self._pos_low = counts, low
        else:
            self._neg, self._neg_low = counts, low

    def _steps(self) -> Iterator[tuple[int, int]]:
        """(signed step, count) of every bucket holding values, in ascending order of value."""
        low = self._neg_low
        for i in range(len(self._neg) - 1, -1, -1):
            if self._neg[i]:
                yield -(low + i), self._neg[i]
        if self._zero:
            yield 0, self._zero
        low = self._pos_low
        for i, n in enumerate(self._pos):
            if n:
                yield low + i, n

    @property
    def buckets(self) -> int:
        """Buckets holding values."""
        return sum(1 for _ in self._steps())

    @property
    def count(self) -> int:
        return self._count

    @property
    def sum(self) -> float:
        return self._sum

    def cumulative(self, bounds: Sequence[float]) -> list[int]:
        """Values at or below each of ``bounds`` (ascending): a Prometheus histogram's buckets, read at scrape time.

        A bucket straddling a bound counts below it when its centre is (within the ~1.1 % of a step).
        """
        within = [0] * (len(bounds) + 1)
        for step, n in self._steps():
            within[bisect.bisect_left(bounds, self._value_of(step))] += n
        return list(itertools.accumulate(within[:-1]))

    def merge(self, other: Quantiles) -> None:
        """Add every value of ``other`` (of the same resolution): percentiles over both series."""
        if other._resolution != self._resolution:
            raise ValueError(f"cannot merge quantiles of resolution {other._resolution} into {self._resolution}")
        for step, n in other._steps():
            self._add_step(step, n)
        self._count += other._count
        self._sum += other._sum
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)

    def percentile(self, p: float) -> float | None:
        """The value below which ``p`` percent of the series lies (None when empty)."""
        if not self._count:
            return None
        return self._percentile(p)

    def _percentile(self, p: float) -> float:
        """:meth:`percentile` of a series that is not empty."""
        rank = p / 100 * (self._count - 1)
        seen = 0
        for step, n in self._steps():
            seen += n
            if seen > rank:
                return min(max(self._value_of(step), self._min), self._max)
        return self._max

    def _value_of(self, step: int) -> float:
        if step == 0:
            return 0.0
        magnitude = self._resolution * 2 ** ((abs(step) - 0.5) / self._STEPS_PER_OCTAVE)
        return magnitude if step > 0 else -magnitude

    def summary(self, scale: float = 1.0) -> Summary:
        """p50, p99, max and mean, each multiplied by ``scale`` (e.g. 1000 for seconds to ms)."""
        if not self._count:
            return Summary(0, None, None, None, None)
        return Summary(
            count=self._count,
            p50=self._percentile(50) * scale,
            p99=self._percentile(99) * scale,
            max=self._max * scale,
            mean=self._sum / self._count * scale,
        )
