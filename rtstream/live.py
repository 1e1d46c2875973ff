"""The live view: per pipeline, calls active, audio sent, p99 lateness, in-utterance underruns, drops, issues.

On a terminal it is a rich table redrawn about twice a second; elsewhere (CI, a log file) a
plain status line every few seconds. Either way it is a trio task that takes a cheap
snapshot (:meth:`rtstream.metrics.Monitor.refresh`, which yields to the loop between
pipelines) and renders it in the loop — no thread contending with the pacers for the GIL,
nothing on the audio path. ``rtstream top URL`` draws the same table from a server's
``/metrics`` (:func:`rows_from_exposition`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import attrs
import trio
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .issues import CRITICAL, INTENDED_DROPS, SEVERITIES, WARNING
from .metrics import Figures, Monitor, merge_expositions, read_shared
from .runner import WATCHER

REFRESH = 0.5
"""Seconds between two redraws of the terminal view."""
MAX_SHARE = 0.02
"""The most of the loop's time the terminal view may take: with many calls it redraws less often."""
PLAIN_EVERY = 5.0
"""Seconds between two status lines when not on a terminal."""


@attrs.frozen
class Row:
    """One pipeline's line of the view."""

    pipeline: str
    active: int
    seconds: float
    p99_ms: float | None
    underruns: int
    """In-utterance underruns: pacer slots between two frames of a reply with no audio (its speech split)."""
    drops: int
    issues: Mapping[str, int]
    """Issues by severity."""


@attrs.frozen
class Status:
    """What the view shows: pipeline rows, then the process's figures."""

    rows: tuple[Row, ...]
    loop_lag_ms: float
    cpu: float
    calls: Mapping[str, int] = attrs.field(factory=dict)
    """Active calls by route (a server only)."""


def status_of(monitor: Monitor) -> Status:
    """The view of the monitor's last refresh."""
    fig: Figures = monitor.current
    names = sorted(
        {labels[0] for _, labels in fig.counters}
        | set(fig.active)
        | {name for name, _ in monitor.finished}
        | {name for name, _, _ in monitor.issues}
    )
    issues: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (name, severity, _), n in monitor.issues.items():
        issues[name][severity] += n
    for (name, severity), n in monitor.live_issues.items():
        issues[name][severity] += n
    rows = []
    for name in names:
        lateness = fig.histograms.get(("rtstream_pacer_lateness_seconds", (name,)))
        p99 = lateness.percentile(99) if lateness is not None else None
        drops = sum(
            v
            for (family, labels), v in fig.counters.items()
            if family == "rtstream_dropped_frames" and labels[0] == name and labels[2] not in INTENDED_DROPS
        )
        rows.append(
            Row(
                name,
                fig.active.get(name, 0),
                fig.counters.get(("rtstream_audio_sent_seconds", (name,)), 0.0),
                None if p99 is None else p99 * 1000,
                int(fig.counters.get(("rtstream_in_utterance_underruns", (name,)), 0)),
                int(drops),
                dict(issues[name]),
            )
        )
    server = monitor.server
    calls = dict(server.active_routes) if server is not None else {}
    return Status(tuple(rows), monitor.load.lag * 1000, monitor.load.cpu, calls)


def rows_from_exposition(text: str) -> Status:
    """The view of a ``/metrics`` text (every worker's samples summed)."""
    sums: defaultdict[tuple[str, str], float] = defaultdict(float)
    buckets: defaultdict[str, defaultdict[float, float]] = defaultdict(lambda: defaultdict(float))
    issues: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
    calls: defaultdict[str, int] = defaultdict(int)
    lag, cpu, workers = 0.0, 0.0, 0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name = s.labels.get("pipeline")
            if s.name == "rtstream_pacer_lateness_seconds_bucket" and name is not None:
                buckets[name][float(s.labels["le"])] += s.value
            elif s.name == "rtstream_dropped_frames_total" and name is not None:
                if s.labels.get("reason") not in INTENDED_DROPS:
                    sums[name, "drops"] += s.value
            elif s.name == "rtstream_issues_total" and name is not None:
                issues[name][s.labels["severity"]] += int(s.value)
            elif s.name == "rtstream_calls_active":
                calls[s.labels["route"]] += int(s.value)
            elif s.name == "rtstream_loop_lag_average_seconds":
                lag, workers = max(lag, s.value), workers + 1
            elif s.name == "rtstream_cpu_share":
                cpu += s.value
            elif name is not None and s.name in _SUMMED:
                sums[name, _SUMMED[s.name]] += s.value
    names = sorted({n for n, _ in sums} | set(buckets) | set(issues))
    rows = tuple(
        Row(
            n,
            int(sums[n, "active"]),
            sums[n, "seconds"],
            _p99(buckets.get(n)),
            int(sums[n, "underruns"]),
            int(sums[n, "drops"]),
            dict(issues[n]),
        )
        for n in names
    )
    return Status(rows, lag * 1000, cpu / max(workers, 1), dict(calls))


_SUMMED = {
    "rtstream_pipelines_active": "active",
    "rtstream_audio_sent_seconds_total": "seconds",
    "rtstream_in_utterance_underruns_total": "underruns",
}


def _p99(cumulative: Mapping[float, float] | None) -> float | None:
    """The upper bound (ms) of the bucket holding the 99th percentile, as Prometheus's histogram_quantile bounds it."""
    if not cumulative:
        return None
    total = cumulative.get(float("inf"), 0.0)
    if not total:
        return None
    for bound in sorted(cumulative):
        if cumulative[bound] >= 0.99 * total:
            return bound * 1000
    return None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _issues(counts: Mapping[str, int]) -> str:
    shown = [f"{counts[s]} {s}" for s in reversed(SEVERITIES) if counts.get(s)]
    return ", ".join(shown) or "-"


def table(status: Status, *, title: str = "rtstream") -> Group:
    """The rich renderable of ``status``."""
    grid = Table(title=None, expand=False, box=None, header_style="bold", pad_edge=False)
    for name, justify in (
        ("pipeline", "left"),
        ("active", "right"),
        ("sent", "right"),
        ("p99 late", "right"),
        ("in-utt underruns", "right"),
        ("drops", "right"),
        ("issues", "left"),
    ):
        grid.add_column(name, justify=justify)  # type: ignore[arg-type]  # rich types justify as a Literal; these are its values
    for row in status.rows:
        style = "red" if row.issues.get(CRITICAL) else "yellow" if row.issues.get(WARNING) else ""
        grid.add_row(
            row.pipeline,
            str(row.active),
            f"{row.seconds:.1f} s",
            _ms(row.p99_ms),
            str(row.underruns),
            str(row.drops),
            Text(_issues(row.issues), style=style),
        )
    head = f"{title} · loop lag {status.loop_lag_ms:.1f} ms · cpu {status.cpu:.0%}"
    if status.calls:
        head += " · calls " + ", ".join(f"{route} {n}" for route, n in sorted(status.calls.items()))
    return Group(Text(head, style="bold"), grid)


def line(status: Status) -> str:
    """``status`` as one plain line (for logs)."""
    parts = [
        f"{r.pipeline}: {r.active} active, {r.seconds:.1f} s sent, p99 late {_ms(r.p99_ms)}, "
        f"{r.underruns} in-utterance underruns, {r.drops} drops, issues {_issues(r.issues)}"
        for r in status.rows
    ]
    if status.calls:
        parts.append("calls " + ", ".join(f"{route} {n}" for route, n in sorted(status.calls.items())))
    parts.append(f"loop lag {status.loop_lag_ms:.1f} ms, cpu {status.cpu:.0%}")
    return "status: " + "; ".join(parts)


def is_terminal(stream: IO[Any]) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


async def show(
    monitor: Monitor,
    *,
    stream: IO[Any] | None = None,
    console: Console | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Show the monitor's live status until cancelled: a table on a terminal, else a line every few seconds.

    ``stream`` defaults to stderr (stdout keeps the report); ``console`` overrides the terminal test.
    """

    async def snapshot() -> Status:
        await monitor.refresh(issues=True)
        return status_of(monitor)

    await _show(snapshot, "rtstream", stream=stream, console=console, task_status=task_status)


async def show_workers(
    shared_dir: str | os.PathLike[str],
    *,
    stream: IO[Any] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The live status of every worker, for the parent of ``--workers``: read from their shared files."""

    async def snapshot() -> Status:
        texts = await trio.to_thread.run_sync(read_shared, Path(shared_dir), "")
        return rows_from_exposition(merge_expositions(texts).decode())

    await _show(snapshot, "rtstream workers", stream=stream, task_status=task_status)


async def _show(
    snapshot: Callable[[], Awaitable[Status]],
    title: str,
    *,
    stream: IO[Any] | None,
    console: Console | None = None,
    task_status: trio.TaskStatus[None],
) -> None:
    stream = stream or sys.stderr
    if console is None and not is_terminal(stream):
        task_status.started()
        while True:
            await trio.sleep(PLAIN_EVERY)
            print(f"{time.strftime('%H:%M:%S')} {line(await snapshot())}", file=stream, flush=True)
    console = console or Console(file=stream)
    with Live(console=console, auto_refresh=False, transient=False) as live, _logging_above(live):
        task_status.started()
        try:
            while True:
                began = time.perf_counter()
                live.update(table(await snapshot(), title=title), refresh=True)
                await trio.sleep(max(REFRESH, (time.perf_counter() - began) / MAX_SHARE))
        finally:
            with trio.CancelScope(shield=True):  # it ends by cancellation: draw the final state once more
                live.update(table(await snapshot(), title=title), refresh=True)


@contextlib.asynccontextmanager
async def open_monitoring(
    server: Any = None,
    *,
    services: Mapping[str, Any] | None = None,
    worker: int | None = None,
    shared_dir: str | os.PathLike[str] | None = None,
    live: bool = True,
) -> AsyncIterator[Monitor]:
    """Everything a process needs to be watched, around the code that runs its pipelines or serves.

    A :class:`~rtstream.metrics.Monitor` watching the pipelines run inside (and ``server``'s
    calls, ``/metrics`` and the load in ``/health``), its loop-lag task, and with ``live`` the
    live view on stderr. ``worker`` and ``shared_dir`` make it one of several workers.
    """
    monitor = Monitor(server=server, services=services, worker=worker, shared_dir=shared_dir)
    if server is not None:
        monitor.attach(server)
    token = monitor.install()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            if live:
                await nursery.start(show, monitor)
            yield monitor
            nursery.cancel_scope.cancel()
    finally:
        WATCHER.reset(token)


@contextlib.contextmanager
def _logging_above(live: Live) -> Iterator[None]:
    """Log records written above the live table rather than through it (rich redirects sys.stderr, not handlers)."""
    moved = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.__stderr__ and live.is_started:
            moved.append((handler, handler.setStream(sys.stderr)))
    try:
        yield
    finally:
        for handler, stream in moved:
            handler.setStream(stream)


def render_text(status: Status, *, width: int = 100) -> str:
    """``status`` as the terminal would show it, without colour (for tests and ``top --once``)."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(table(status))
    return console.export_text()


def watch(url: str, *, interval: float, once: bool, fetch: Any) -> Iterable[Status]:
    """Statuses of the server at ``url`` (its ``/metrics``), every ``interval`` seconds (once with ``once``)."""
    while True:
        yield rows_from_exposition(fetch(url))
        if once:
            return
        time.sleep(interval)
