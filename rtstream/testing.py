"""Helpers for testing stages: scripted input, collected output, virtual time.

Run a stage the way the runner runs it, with frames in and frames out::

    async def test_chunker(autojump_clock):            # pytest-trio's MockClock fixture
        out = await run_stage(Chunker(frame_ms=60), [chunk1, chunk2, UtteranceEnd("u")])
        assert [c.samples for c in out.chunks] == [480, 480]

Input frames may carry a time: ``(0.25, chunk)`` sends the chunk 0.25 s after the start.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import attrs
import numpy as np
import trio
import trio.testing

from .caps import Caps, StreamFormat
from .frames import AudioChunk, AudioFormat, Frame
from .pipeline import Pipeline, assemble
from .report import PipelineReport
from .runner import run_pipeline
from .stage import NOTHING, Core, CoreElement, SendChannel, Sink, Source, Stage
from .stats import stat

T = TypeVar("T")


def _timed(script: Iterable[Frame | tuple[float, Frame]]) -> tuple[tuple[float | None, Frame], ...]:
    return tuple(item if isinstance(item, tuple) else (None, item) for item in script)


@attrs.frozen
class ScriptStatistics:
    frames: int = stat(help="Frames in the script.")


@attrs.frozen(kw_only=True)
class ScriptedSource(Source):
    """Sends scripted frames: at once, or each at its time (seconds after start) when given one."""

    statistics_type = ScriptStatistics

    script: tuple[tuple[float | None, Frame], ...] = attrs.field(converter=_timed)
    format: AudioFormat | None = None
    """The format to announce; by default that of the first audio chunk in the script."""

    def output_caps(self, fmt_in: StreamFormat | None) -> Caps:
        fmt = self.format or next((f.format for _, f in self.script if isinstance(f, AudioChunk)), None)
        return Caps.ANY if fmt is None else Caps.of(fmt)

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> _Player:
        return _Player(self.script)


class _Player:
    def __init__(self, script: tuple[tuple[float | None, Frame], ...]) -> None:
        self.script = script

    async def run(self, tx: SendChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with tx:
            task_status.started()
            start = trio.current_time()
            for at, frame in self.script:
                if at is not None:
                    await trio.sleep_until(start + at)
                await tx.send(frame)

    def statistics(self) -> ScriptStatistics:
        return ScriptStatistics(len(self.script))


@attrs.frozen
class CollectedStatistics:
    frames: int = stat(help="Frames received.")


class Collector(Core):
    """Keeps every frame it receives with the time it arrived (the core of :class:`CollectingSink`)."""

    def __init__(self) -> None:
        self.received: list[tuple[float, Frame]] = []

    @property
    def frames(self) -> list[Frame]:
        return [frame for _, frame in self.received]

    def push(self, frame: Frame, now: float) -> Sequence[Frame]:
        self.received.append((now, frame))
        return NOTHING

    def statistics(self) -> CollectedStatistics:
        return CollectedStatistics(len(self.received))


@attrs.frozen(kw_only=True)
class CollectingSink(Sink):
    """Keeps every frame it receives with the time it arrived; its element's core is a :class:`Collector`."""

    statistics_type = CollectedStatistics

    caps: Caps = Caps.ANY

    def input_caps(self) -> Caps:
        return self.caps

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> CoreElement:
        return CoreElement(Collector())


@attrs.frozen
class Collected:
    """What came out of a stage under test, and the run's report."""

    received: list[tuple[float, Frame]]
    report: PipelineReport

    @property
    def frames(self) -> list[Frame]:
        return [frame for _, frame in self.received]

    @property
    def times(self) -> list[float]:
        return [at for at, _ in self.received]

    @property
    def chunks(self) -> list[AudioChunk]:
        return [f for f in self.frames if isinstance(f, AudioChunk)]

    @property
    def events(self) -> list[Frame]:
        return [f for f in self.frames if not isinstance(f, AudioChunk)]

    def audio(self) -> np.ndarray:
        """All audio chunks' samples, concatenated."""
        chunks = self.chunks
        return np.concatenate([c.data for c in chunks]) if chunks else np.zeros(0)


async def run_stages(
    stages: Sequence[Stage],
    script: Iterable[Frame | tuple[float, Frame]] = (),
    *,
    format: AudioFormat | None = None,
    accept: Caps = Caps.ANY,
    capacity: int = 2,
) -> Collected:
    """Run ``stages`` between a scripted source and a collecting sink, as the runner would.

    A leading Source or trailing Sink in ``stages`` replaces the scripted or collecting end.
    A stage failure is raised as :class:`rtstream.errors.StageFailed`.
    """
    chain = list(stages)
    if not chain or not isinstance(chain[0], Source):
        chain.insert(0, ScriptedSource(script=script, format=format))
    if not isinstance(chain[-1], Sink):
        chain.append(CollectingSink(caps=accept))
    pipeline = assemble("test", chain, capacities=[capacity] * (len(chain) - 1))
    report = await run_pipeline(pipeline, raise_on_failure=True)
    return Collected(collected(pipeline), report)


async def run_stage(stage: Stage, script: Iterable[Frame | tuple[float, Frame]] = (), **kwargs: Any) -> Collected:
    """Run one stage (source, filter or sink); see :func:`run_stages`."""
    return await run_stages([stage], script, **kwargs)


def collected(pipeline: Pipeline) -> list[tuple[float, Frame]]:
    """What the pipeline's collecting sink received (time, frame); [] if its sink is another."""
    element = pipeline.elements[-1]
    core = getattr(element, "core", None)
    return core.received if isinstance(core, Collector) else []


def run_virtual(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``fn(*args)`` under trio on virtual time (``MockClock(autojump_threshold=0)``)."""
    return trio.run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))
