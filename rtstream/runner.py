"""Running pipelines: one nursery per pipeline, stages joined by bounded memory channels.

Stages whose cores only transform what they are pushed run in the task of the stage before
them, and a sink with ``accept`` takes its frames in its upstream's task (:mod:`rtstream.fusion`;
a pipeline's ``fuse = false`` keeps a task per stage).

Stages start sink-first with ``nursery.start``, so each finds its downstream ready. The end
of the stream travels as the closing of channels; backpressure and cancellation come from the
channels and the nursery. A stage that raises cancels its own pipeline only, and the report
names the pipeline and the stage; other pipelines (other calls) go on.

Stopping is two-step: :meth:`RunControl.stop` cancels the sources, so the rest drain what is
in flight, and cancels everything if draining outlasts the grace period;
:meth:`RunControl.abort` cancels at once. Ctrl-C and SIGTERM map to these when signals are handled.

A pipeline that ran to its own end but delivered no audio has failed, though no stage raised:
a stage's element tells by an optional ``delivered() -> bool | None`` method (True: it passed on audio;
False: it passed on none; None: it cannot tell). Without the method, a stage whose statistics
hold :class:`~rtstream.stats.Throughput` records delivered when any of them counted a chunk.
The pipeline fails when any stage says False, and the error names the first such stage.

A stage's element may also offer ``series() -> dict`` (or its core may): bounded timing
series for plots (:mod:`rtstream.series`), put in the stage's report. At its end each
pipeline's report gets the issues :func:`rtstream.issues.pipeline_issues` finds, each logged
once. A :class:`Watcher` set in :data:`WATCHER` (the metrics' monitor) is told when each
pipeline starts and ends, so live figures can be read from running elements.

Services (servers the pipelines talk to, such as the simulators) run around the pipelines:
:func:`open_services` starts them on free loopback ports and stops them afterwards.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import signal
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Protocol

import attrs
import trio

from .control import CURRENT_CONTROL
from .errors import StageFailed
from .fusion import Accepting, ChainSend, FusedCoreFailed, accepting, fusible
from .issues import Issue, pipeline_issues
from .pipeline import Pipeline
from .report import PipelineReport, RunReport, StageReport, plain
from .service import Service
from .stage import Core, Element, Source
from .stats import Throughput

log = logging.getLogger(__name__)


class Watcher(Protocol):
    """Told of every pipeline of the process as it starts and ends (see :data:`WATCHER`)."""

    def started(self, pipeline: Pipeline) -> None: ...

    def ended(self, pipeline: Pipeline, report: PipelineReport | None) -> None:
        """``report`` is None when the pipeline was cancelled from outside (or raised)."""


WATCHER: contextvars.ContextVar[Watcher | None] = contextvars.ContextVar("rtstream_watcher", default=None)
"""The watcher of the pipelines run in this context (trio tasks inherit it from their parent)."""


class RunControl:
    """Stops the pipelines of one run: gracefully (sources first), then for good."""

    def __init__(self, grace: float = 2.0) -> None:
        self.grace = grace
        self.stopping = False
        self._sources: set[trio.CancelScope] = set()
        self._pipelines: set[trio.CancelScope] = set()

    def stop(self) -> None:
        """Stop the sources; cancel whatever has not drained ``grace`` seconds from now."""
        if self.stopping:
            return
        self.stopping = True
        deadline = trio.current_time() + self.grace
        for scope in self._sources:
            scope.cancel()
        for scope in self._pipelines:
            scope.deadline = min(scope.deadline, deadline)

    def abort(self) -> None:
        """Cancel every pipeline now."""
        self.stopping = True
        for scope in self._pipelines:
            scope.cancel()

    @contextlib.contextmanager
    def _watching(self, scope: trio.CancelScope, *, source: bool) -> Iterator[trio.CancelScope]:
        scopes = self._sources if source else self._pipelines
        scopes.add(scope)
        if self.stopping:
            if source:
                scope.cancel()
            else:
                scope.deadline = trio.current_time() + self.grace
        try:
            yield scope
        finally:
            scopes.discard(scope)

    def source_scope(self) -> contextlib.AbstractContextManager[trio.CancelScope]:
        """Enter around a source's run: :meth:`stop` cancels it."""
        return self._watching(trio.CancelScope(), source=True)

    def pipeline_scope(self) -> contextlib.AbstractContextManager[trio.CancelScope]:
        """Hold while a pipeline runs: :meth:`stop` gives it the grace period, :meth:`abort` cancels it."""
        return self._watching(trio.CancelScope(), source=False)


class _TrackedStatus:
    """A task_status that remembers whether ``started()`` was called."""

    def __init__(self, inner: trio.TaskStatus[None]) -> None:
        self._inner = inner
        self.done = False

    def started(self, value: None = None) -> None:
        self.done = True
        self._inner.started(value)


class _Source:
    """Whether a pipeline's source was cut short by a stop (rather than ending by itself)."""

    stopped = False


async def _run_stage(
    pipeline: Pipeline,
    index: int,
    channels: tuple[Any, ...],
    control: RunControl,
    source: _Source,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    stage, element, ref = pipeline.stages[index], pipeline.elements[index], pipeline.refs[index]
    status = _TrackedStatus(task_status)
    chain = channels[-1] if channels and type(channels[-1]) is ChainSend else None
    try:
        with chain.listening() if chain is not None else contextlib.nullcontext():
            if isinstance(stage, Source) and stage.stoppable:
                with control.source_scope() as scope, scope:
                    await element.run(*channels, task_status=status)
                source.stopped = scope.cancelled_caught
                if not status.done:  # stopped before it could start
                    status.started()
            else:
                await element.run(*channels, task_status=status)
            if chain is not None:
                await chain.finish()
    except trio.BrokenResourceError as exc:
        downstream = channels[-1].statistics() if stage.role != "sink" else None
        if downstream is not None and downstream.open_receive_channels == 0:
            return  # the stage downstream ended; this one ends with it
        raise StageFailed(pipeline.name, ref, exc) from exc
    except FusedCoreFailed as exc:
        raise StageFailed(pipeline.name, pipeline.refs[index + 1 + exc.position], exc.error) from exc.error
    except Exception as exc:
        raise StageFailed(pipeline.name, ref, exc) from exc
    finally:
        for channel in channels:
            channel.close()
        if chain is not None and chain.tx is not None:
            chain.tx.close()


async def run_pipeline(
    pipeline: Pipeline,
    control: RunControl | None = None,
    *,
    raise_on_failure: bool = False,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> PipelineReport:
    """Run one pipeline to its end and report on it; ``task_status.started()`` once every stage has.

    A failing stage is logged and reported; with ``raise_on_failure`` its StageFailed is raised.
    """
    watcher = WATCHER.get()
    if watcher is None:
        return await _run_pipeline(pipeline, control, raise_on_failure, task_status)
    watcher.started(pipeline)
    report = None
    try:
        report = await _run_pipeline(pipeline, control, raise_on_failure, task_status)
    finally:
        watcher.ended(pipeline, report)
    return report


async def _run_pipeline(
    pipeline: Pipeline, control: RunControl | None, raise_on_failure: bool, task_status: trio.TaskStatus[None]
) -> PipelineReport:
    control = control or RunControl()
    started = trio.current_time()
    error = None
    starting = _TrackedStatus(task_status)
    source = _Source()
    with control.pipeline_scope() as scope, scope:
        try:
            async with trio.open_nursery() as nursery:
                await _start_stages(pipeline, nursery, control, source)
                starting.started()
        except* StageFailed as group:
            error = _first_failure(group)
            log.error("%s", error)
    if not starting.done:  # failed or cancelled while starting
        starting.started()
    if error is not None and raise_on_failure:
        raise error
    problem = str(error) if error is not None else None
    if error is not None:
        status = "failed"
    elif scope.cancelled_caught:
        status = "cancelled"
    elif source.stopped:
        status = "stopped"  # asked to stop: having delivered nothing yet is no failure of its own
    else:
        status = "completed"
        problem = _nothing_delivered(pipeline)
        if problem is not None:
            log.error("%s", problem)
            status = "failed"
    stages = tuple(_stage_report(pipeline, i) for i in range(len(pipeline.stages)))
    return PipelineReport(
        pipeline=pipeline.name,
        instance=pipeline.instance,
        status=status,
        error=problem,
        duration=trio.current_time() - started,
        stages=stages,
        issues=_issues(pipeline, stages),
        services=pipeline.services,
    )


async def _start_stages(pipeline: Pipeline, nursery: trio.Nursery, control: RunControl, source: _Source) -> None:
    """One task per stage, sink first, joined by channels; a fused stage's core runs in the task before it."""
    last = len(pipeline.stages) - 1
    cores = [fusible(element) if i > 0 and pipeline.fuse else None for i, element in enumerate(pipeline.elements)]
    ends = [
        trio.open_memory_channel[Any](capacity) if cores[i + 1] is None else None
        for i, capacity in enumerate(pipeline.capacities)
    ]  # no channel into a fused stage
    call = CURRENT_CONTROL.get()
    accept = accepting(pipeline.elements[last]) if pipeline.fuse and last > 0 else None
    for i in range(last, -1, -1):
        if cores[i] is not None:
            continue
        inbound = (_end(ends, i - 1)[1],) if i > 0 else ()
        fused: list[Core] = []
        while i + len(fused) < last and (core := cores[i + len(fused) + 1]) is not None:
            fused.append(core)
        outbound: tuple[Any, ...] = ()
        if i + len(fused) == last and fused:  # the chain ends in the sink's core
            outbound = (ChainSend(fused, None, call),)
        elif i < last:
            tx = _end(ends, i + len(fused))[0]
            if accept is not None and i + len(fused) + 1 == last:
                tx = Accepting(accept, tx, len(fused))
            outbound = (ChainSend(fused, tx, call) if fused else tx,)
        await nursery.start(_run_stage, pipeline, i, inbound + outbound, control, source)


def _end(ends: Sequence[Any], i: int) -> Any:
    channel = ends[i]
    assert channel is not None, "a channel into a fused stage was asked for"
    return channel


def _issues(pipeline: Pipeline, stages: Sequence[StageReport]) -> tuple[Issue, ...]:
    """The issues in the stages' statistics, each logged once."""
    issues = pipeline_issues([(str(ref), plain(s.statistics)) for ref, s in zip(pipeline.refs, stages, strict=True)])
    for issue in issues:
        (log.warning if issue.severity != "info" else log.info)("pipeline '%s': %s", pipeline.name, issue.line())
    return tuple(issues)


def series_of(element: Element) -> dict[str, Any]:
    """The timing series an element (or its core) offers; empty when it offers none."""
    for owner in (element, getattr(element, "core", None)):
        hook = getattr(owner, "series", None)
        if callable(hook):
            return hook()
    return {}


def _first_failure(group: BaseExceptionGroup[StageFailed]) -> StageFailed:
    failures: list[StageFailed] = []

    def collect(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                collect(inner)
        elif isinstance(exc, StageFailed):  # ``except*`` gave only StageFailed leaves
            failures.append(exc)

    collect(group)
    return min(failures, key=lambda f: f.stage.index)


def delivered(element: Element) -> bool | None:
    """Whether a stage's running ``element`` passed on any audio (None: it cannot tell); see the module docstring."""
    hook = getattr(element, "delivered", None)
    if callable(hook):
        return hook()
    stats = element.statistics()
    fields = attrs.asdict(stats, recurse=False) if attrs.has(type(stats)) else stats
    counts = [v for v in fields.values() if isinstance(v, Throughput)] if isinstance(fields, Mapping) else []
    return any(c.chunks for c in counts) if counts else None


def _nothing_delivered(pipeline: Pipeline) -> str | None:
    """Why a pipeline that ran to its end still failed: a stage delivered no audio."""
    for element, ref in zip(pipeline.elements, pipeline.refs, strict=True):
        if delivered(element) is False:
            sink = pipeline.refs[-1]
            if ref == sink:
                return f"pipeline '{pipeline.name}', nothing delivered: {sink} delivered no audio"
            return f"pipeline '{pipeline.name}', nothing delivered: {ref} passed on no audio, so {sink} got none"
    return None


def _stage_report(pipeline: Pipeline, index: int) -> StageReport:
    stage, ref = pipeline.stages[index], pipeline.refs[index]
    stats = pipeline.elements[index].statistics()
    return StageReport(
        index=ref.index,
        type=ref.type,
        label=ref.label,
        klass=stage.info.klass if hasattr(stage, "info") else stage.role.title(),
        input=str(pipeline.formats[index - 1]) if index > 0 else None,
        output=str(pipeline.formats[index]) if index < len(pipeline.formats) else None,
        statistics=attrs.asdict(stats, recurse=False) if attrs.has(type(stats)) else dict(stats),
        series=series_of(pipeline.elements[index]),
    )


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""Ctrl-C, and what orchestrators (systemd, Kubernetes, docker stop) send."""


async def watch_signals(control: RunControl, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Map Ctrl-C and SIGTERM onto ``control``: the first stops the sources and drains, a second aborts."""
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        task_status.started()
        log.info("running; Ctrl-C or SIGTERM stops the sources and drains for up to %.1f s", control.grace)
        async for signum in signals:
            name = signal.Signals(signum).name
            if control.stopping:
                log.warning("%s again: cancelling now", name)
                control.abort()
            else:
                log.warning(
                    "interrupted: stopping the sources, draining for up to %.1f s (%s; again to cancel now)",
                    control.grace,
                    name,
                )
                control.stop()


async def _stop_after(control: RunControl, seconds: float) -> None:
    await trio.sleep(seconds)
    log.info("stopping after %.1f s", seconds)
    control.stop()


async def run_pipelines(
    pipelines: Sequence[Pipeline],
    *,
    grace: float = 2.0,
    stop_after: float | None = None,
    handle_signals: bool = False,
    control: RunControl | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> RunReport:
    """Run pipelines concurrently (each a call) until all have ended; report on every one.

    ``task_status.started()`` once every pipeline has started all its stages.
    """
    control = control or RunControl(grace)
    reports: list[PipelineReport | None] = [None] * len(pipelines)

    async def run_one(i: int, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        reports[i] = await run_pipeline(pipelines[i], control, task_status=task_status)

    async with trio.open_nursery() as helpers:
        if handle_signals:
            await helpers.start(watch_signals, control)
        if stop_after is not None:
            helpers.start_soon(_stop_after, control, stop_after)
        async with trio.open_nursery() as calls:
            for i in range(len(pipelines)):
                await calls.start(run_one, i)
            task_status.started()
        helpers.cancel_scope.cancel()
    return RunReport(tuple(r for r in reports if r is not None))


LOOPBACK = "127.0.0.1"


@contextlib.asynccontextmanager
async def open_services(
    services: Mapping[str, Service], *, host: str = LOOPBACK, grace: float = 2.0
) -> AsyncIterator[dict[str, dict[str, str]]]:
    """Start ``services`` on free ports of ``host``; yield each one's endpoints by name.

    On the way out each service gets up to ``grace`` seconds to see its clients leave (so it
    has seen all they sent), then all are cancelled.
    """
    async with trio.open_nursery() as nursery:
        endpoints = {}
        for name, service in services.items():
            port = await nursery.start(service.serve, host, 0)
            endpoints[name] = service.endpoints(host, port)
            log.info("service '%s' (%s) listening on %s", name, service.info.name, endpoints[name].get("url", port))
        try:
            yield endpoints
        finally:
            with trio.move_on_after(grace):
                for service in services.values():
                    await service.wait_idle()
            nursery.cancel_scope.cancel()
