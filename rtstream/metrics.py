"""Prometheus metrics, read from the live statistics at scrape time; loop lag and load.

Nothing here runs per frame. A :class:`Monitor` is told of every pipeline as it starts and ends
(it is the runner's :data:`~rtstream.runner.WATCHER`); a scrape (or the live view) calls
:meth:`Monitor.refresh`, which reads each running pipeline's ``statistics()`` — yielding to
the trio loop between pipelines, so a scrape never holds the audio up for long — and adds the
totals folded in when pipelines ended, so counters stay monotonic across calls. Histograms are
built from the :class:`~rtstream.stats.Quantiles` the stages already keep (pacer lateness,
first audio, the TTS's first chunk, the receiver's deviation): their buckets are counted at
scrape time, so the hot path pays nothing it did not pay before.

Labels are bounded: ``pipeline`` and ``route`` come from the config, ``stage`` is a stage
type, reasons and kinds are the code's closed sets; every label value is cut to one line and
64 characters, and past 32 values of one label the rest count under ``other``. Never a call
id or anything a peer chose.

With ``--workers``, each worker writes its exposition, labelled ``worker``, to a shared
directory every second; whichever worker a scrape reaches answers with its own fresh figures
and the others' files (see :meth:`Monitor.exposition`), so one scrape sees all workers.
"""

from __future__ import annotations

import contextvars
import functools
import json
import math
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families

from .httpserver import Request, Response, bound_port, open_listener, serve
from .issues import pipeline_issues
from .load import SAMPLE_INTERVAL, Load, sample_load
from .pipeline import Pipeline
from .report import PipelineReport, plain
from .runner import WATCHER, Watcher
from .stats import Quantiles
from .text import clip, one_line

BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500)
BUCKETS = tuple(b / 1000 for b in BUCKETS_MS)
"""Histogram bounds in seconds: 0.5 ms to 500 ms."""
MAX_LABEL = 64
MAX_LABEL_VALUES = 32
OTHER = "other"
REFRESH_BATCH = 8
"""Pipelines read between two yields to the loop during a refresh."""
SHARE_INTERVAL = 1.0
"""Seconds between two writes of a worker's exposition to the shared directory."""
STALE_AFTER = 10.0
"""A worker's file older than this is a dead worker's, left out of scrapes."""


class _Labels:
    """Bounded label values: one line, ``MAX_LABEL`` characters, ``MAX_LABEL_VALUES`` per label."""

    def __init__(self) -> None:
        self._seen: defaultdict[str, set[str]] = defaultdict(set)

    def __call__(self, label: str, value: object) -> str:
        text = clip(one_line(str(value)), MAX_LABEL)
        seen = self._seen[label]
        if text not in seen:
            if len(seen) >= MAX_LABEL_VALUES:
                return OTHER
            seen.add(text)
        return text


@attrs.define
class Figures:
    """What a set of pipelines counted: samples by (family, labels), histograms by (family, labels), gauges."""

    counters: defaultdict[tuple[str, tuple[str, ...]], float] = attrs.Factory(lambda: defaultdict(float))
    histograms: dict[tuple[str, tuple[str, ...]], Quantiles] = attrs.Factory(dict)
    gauges: dict[tuple[str, tuple[str, ...]], float] = attrs.Factory(dict)
    active: Counter[str] = attrs.Factory(Counter)
    """Running instances per pipeline."""
    _own: set[tuple[str, tuple[str, ...]]] = attrs.Factory(set)
    """Histograms that are this record's copies (the others are elements' own, not to be changed)."""

    def add(self, other: Figures) -> None:
        """Add ``other``'s figures; histograms are merged into this record's own copies."""
        for key, value in other.counters.items():
            self.counters[key] += value
        for key, q in other.histograms.items():
            self.quantiles(key).merge(q)
        for key, v in other.gauges.items():
            self.gauges[key] = max(self.gauges.get(key, -math.inf), v)
        self.active.update(other.active)

    def quantiles(self, key: tuple[str, tuple[str, ...]]) -> Quantiles:
        """The histogram under ``key``, a new one if there is none, a copy if it is an element's own."""
        q = self.histograms.get(key)
        if q is None or key not in self._own:
            copy = Quantiles()
            if q is not None:
                copy.merge(q)
            q = self.histograms[key] = copy
            self._own.add(key)
        return q


# Counters read from the stages' statistics records, by field: (family, help).
_PACER = {
    "frames": ("rtstream_frames_sent", "Frames the pacers sent on their clock, fills included."),
    "late_frames": ("rtstream_late_frames", "Frames sent more than late_ms after their deadline."),
    "underruns": ("rtstream_underruns", "Pacer slots inside an utterance with no audio ready."),
    "in_utterance_underruns": (
        "rtstream_in_utterance_underruns",
        "Of those, the slots between two frames of one utterance: its speech split by silence.",
    ),
    "stalls": ("rtstream_pacer_stalls", "Times a pacer woke whole periods behind its grid."),
}
_JITTER = {
    "jitterBufferDelay": (
        "rtstream_jitter_buffer_delay_seconds",
        "W3C jitterBufferDelay: seconds each sample spent in the buffer, summed.",
    ),
    "jitterBufferTargetDelay": (
        "rtstream_jitter_buffer_target_delay_seconds",
        "W3C jitterBufferTargetDelay: the target at each sample's playout, summed.",
    ),
    "jitterBufferEmittedCount": (
        "rtstream_jitter_buffer_emitted_count",
        "W3C jitterBufferEmittedCount: received samples taken out of the buffer.",
    ),
    "totalSamplesReceived": ("rtstream_jitter_buffer_samples_received", "W3C totalSamplesReceived."),
    "concealedSamples": (
        "rtstream_jitter_buffer_concealed_samples",
        "W3C concealedSamples: samples of concealment played.",
    ),
    "silentConcealedSamples": ("rtstream_jitter_buffer_silent_concealed_samples", "W3C silentConcealedSamples."),
    "concealmentEvents": ("rtstream_jitter_buffer_concealment_events", "W3C concealmentEvents."),
    "insertedSamplesForDeceleration": (
        "rtstream_jitter_buffer_inserted_samples_for_deceleration",
        "W3C insertedSamplesForDeceleration.",
    ),
    "removedSamplesForAcceleration": (
        "rtstream_jitter_buffer_removed_samples_for_acceleration",
        "W3C removedSamplesForAcceleration.",
    ),
}
_BY_STAGE = {
    "rtstream_dropped_frames": "Frames (or chunks) dropped, by stage type and reason.",
    "rtstream_dropped_samples": "Samples dropped, by stage type and reason.",
    "rtstream_reconnects": "Connections made again after the first, by stage type.",
    "rtstream_malformed_messages": "Malformed messages from peers, by stage type and kind.",
}
_PIPELINE = {
    "rtstream_audio_sent_seconds": "Seconds of audio the pipelines' last stages sent.",
    "rtstream_barge_ins": "Clears (barge-ins) the telephony sinks sent.",
}
_HISTOGRAMS = {
    "rtstream_pacer_lateness_seconds": "Send time minus deadline of each paced frame.",
    "rtstream_first_audio_seconds": "Per reply: from the arrival at the bridge of its first audio to its send.",
    "rtstream_turn_latency_seconds": "Per reply: from asking the TTS to its first audio (its part of a turn).",
    "rtstream_receiver_deviation_seconds": "The receiving simulator's inter-arrival deviation from the cadence.",
    "rtstream_barge_in_seconds": "Per barge-in: from the caller's speech onset to the clear on the control path.",
}
_GAUGES = {
    "rtstream_jitter_buffer_current_delay_seconds": "Jitter buffers' current delay (the largest running).",
    "rtstream_jitter_buffer_target_seconds": "Jitter buffers' target delay (the largest running).",
}


def _quantiles(element: Any) -> Iterator[tuple[str, Quantiles]]:
    """The histograms an element's Quantiles feed, by the attributes the stages expose."""
    for family, owner, name in (
        ("rtstream_pacer_lateness_seconds", element, "lateness"),
        ("rtstream_first_audio_seconds", element, "first_audio"),
        ("rtstream_turn_latency_seconds", getattr(element, "counts", None), "first_chunk"),
        ("rtstream_barge_in_seconds", getattr(element, "core", None), "onset_delay"),
    ):
        q = getattr(owner, name, None)
        if isinstance(q, Quantiles):
            yield family, q


def _fields(stats: Any) -> Mapping[str, Any]:
    if attrs.has(type(stats)):
        return attrs.asdict(stats, recurse=False)
    return stats if isinstance(stats, Mapping) else {}


def _dropped(drop: Any) -> tuple[int, int]:
    if attrs.has(type(drop)):
        return getattr(drop, "frames", 0), getattr(drop, "samples", 0)
    if isinstance(drop, Mapping):
        return drop.get("frames", 0), drop.get("samples", 0)
    return (drop, 0) if isinstance(drop, int) else (0, 0)


def _seconds_sent(fields: Mapping[str, Any]) -> float:
    for name in ("seconds_sent", "seconds_out", "seconds"):
        value = fields.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return sum(v.seconds for v in fields.values() if type(v).__name__ == "Throughput")


def read_pipeline(pipeline: Pipeline, label: _Labels, statistics: Sequence[Any]) -> Figures:
    """One running (or just ended) pipeline's figures, from its elements' ``statistics``."""
    fig = Figures()
    name = label("pipeline", pipeline.name)
    counters = fig.counters
    last = len(pipeline.elements) - 1
    for i, (ref, element, stats) in enumerate(zip(pipeline.refs, pipeline.elements, statistics, strict=True)):
        stage = label("stage", ref.type)
        fields = _fields(stats)
        if "underruns" in fields and "late_frames" in fields and "frames_sent" in fields:
            values = dict(fields, frames=fields["frames_sent"] + fields.get("fill_frames", 0))
            for field, (family, _) in _PACER.items():
                counters[family, (name,)] += values.get(field, 0)
        if "jitterBufferTargetDelay" in fields:
            for field, (family, _) in _JITTER.items():
                counters[family, (name,)] += fields[field]
            fig.gauges["rtstream_jitter_buffer_current_delay_seconds", (name,)] = fields["current_delay_ms"] / 1000
            fig.gauges["rtstream_jitter_buffer_target_seconds", (name,)] = fields["target_delay_ms"] / 1000
        drops = fields.get("drops")
        if isinstance(drops, Mapping):
            for reason, drop in drops.items():
                frames, samples = _dropped(drop)
                key = (name, stage, label("reason", reason))
                counters["rtstream_dropped_frames", key] += frames
                counters["rtstream_dropped_samples", key] += samples
        connects = fields.get("connects")
        if isinstance(connects, int) and connects > 1:
            counters["rtstream_reconnects", (name, stage)] += connects - 1
        malformed = fields.get("malformed")
        if isinstance(malformed, Mapping):
            for kind, n in malformed.items():
                counters["rtstream_malformed_messages", (name, stage, label("kind", kind))] += n
        clears = fields.get("clears_sent")
        if isinstance(clears, int):
            counters["rtstream_barge_ins", (name,)] += clears
        if i == last:
            counters["rtstream_audio_sent_seconds", (name,)] += _seconds_sent(fields)
        for family, q in _quantiles(element):
            slot = (family, (name,))
            if slot in fig.histograms:  # a second such stage: merge into a copy
                fig.quantiles(slot).merge(q)
            else:
                fig.histograms[slot] = q  # the element's own, read only (add() merges it into copies)
    return fig


_LABELS = {
    **dict.fromkeys((f for f, _ in _PACER.values()), ("pipeline",)),
    **dict.fromkeys((f for f, _ in _JITTER.values()), ("pipeline",)),
    **dict.fromkeys(_BY_STAGE, ("pipeline", "stage", "reason")),
    "rtstream_reconnects": ("pipeline", "stage"),
    "rtstream_malformed_messages": ("pipeline", "stage", "kind"),
    **dict.fromkeys(_PIPELINE, ("pipeline",)),
    **dict.fromkeys(_HISTOGRAMS, ("pipeline",)),
    "rtstream_receiver_deviation_seconds": ("service",),
    **dict.fromkeys(_GAUGES, ("pipeline",)),
}
_COUNTERS = (*(f for f, _ in _PACER.values()), *(f for f, _ in _JITTER.values()), *_BY_STAGE, *_PIPELINE)
_HELP = {
    **{f: h for f, h in _PACER.values()},
    **{f: h for f, h in _JITTER.values()},
    **_BY_STAGE,
    **_PIPELINE,
    **_HISTOGRAMS,
    **_GAUGES,
}


class Monitor:
    """The process's metrics: the runner's watcher, a Prometheus collector, loop lag; see the module docstring.

    ``server`` (a :class:`rtstream.server.Server`) adds calls by route and outcome and refusals;
    ``services`` (name to service) adds the receiver-side deviation of those that measure it.
    ``worker`` and ``shared_dir`` join one scrape of several workers.
    """

    def __init__(
        self,
        *,
        server: Any = None,
        services: Mapping[str, Any] | None = None,
        worker: int | None = None,
        shared_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.server = server
        self.services = dict(services or {})
        self.worker = worker
        self.shared_dir = None if shared_dir is None else Path(shared_dir)
        self.load: Load = server.load if server is not None else Load()
        """The server's (sampled by it), else the monitor's own (sampled by :meth:`run`)."""
        self.live: dict[int, Pipeline] = {}
        self.totals = Figures()
        """Everything the pipelines that ended counted."""
        self.finished: Counter[tuple[str, str]] = Counter()
        """Pipelines ended, by (pipeline, status)."""
        self.link_counts: defaultdict[tuple[str, tuple[str, ...]], float] = defaultdict(float)
        """What ended calls' links counted, by (family, labels)."""
        self.issues: Counter[tuple[str, str, str]] = Counter()
        """Issues of the pipelines that ended, by (pipeline, severity, code)."""
        self.current = Figures()
        """Totals plus the running pipelines, as of the last :meth:`refresh`."""
        self.live_issues: Counter[tuple[str, str]] = Counter()
        """Issues the running pipelines show, by (pipeline, severity), as of the last ``refresh(issues=True)``."""
        self.refreshed_at = -math.inf
        self._label = _Labels()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self.registry.register(ProcessCollector(registry=None))

    # -- the runner's watcher --------------------------------------------------------------------

    def started(self, pipeline: Pipeline) -> None:
        self.live[id(pipeline)] = pipeline

    def ended(self, pipeline: Pipeline, report: PipelineReport | None) -> None:
        """Fold the pipeline's final figures and its issues into the totals (so counters never go back)."""
        if self.live.pop(id(pipeline), None) is None:
            return
        name = self._label("pipeline", pipeline.name)
        self.totals.add(read_pipeline(pipeline, self._label, [e.statistics() for e in pipeline.elements]))
        self.finished[name, self._label("status", "cancelled" if report is None else report.status)] += 1
        for issue in report.issues if report is not None else ():
            self.issues[name, issue.severity, self._label("code", issue.code)] += 1

    def call_ended(self, record: Any) -> None:
        """Fold what a call's link counted (a :class:`rtstream.server.CallRecord`): the provider's bad messages."""
        link = record.report.get("link")
        route = self._label("route", record.route)
        if isinstance(link, Mapping):
            for kind, n in (link.get("malformed") or {}).items():
                self.link_counts["rtstream_call_malformed_messages", (route, self._label("kind", kind))] += n
            self.link_counts["rtstream_call_inbound_dropped", (route,)] += link.get("inbound_dropped", 0)

    # -- reading -----------------------------------------------------------------------------------

    async def refresh(self, *, issues: bool = False) -> Figures:
        """Read every running pipeline, yielding to the loop every few; the totals with them.

        With ``issues``, the issue rules run on each running pipeline's statistics too (for
        the live view; about as costly again as reading them).
        """
        current = Figures()
        current.add(self.totals)
        live_issues: Counter[tuple[str, str]] = Counter()
        for n, pipeline in enumerate(list(self.live.values()), 1):
            if id(pipeline) in self.live:  # not ended (and folded) while this refresh yielded
                name = self._label("pipeline", pipeline.name)
                statistics = [e.statistics() for e in pipeline.elements]
                fig = read_pipeline(pipeline, self._label, statistics)
                fig.active[name] += 1
                current.add(fig)
                if issues:
                    found = pipeline_issues(
                        [(str(r), plain(s)) for r, s in zip(pipeline.refs, statistics, strict=True)]
                    )
                    live_issues.update((name, i.severity) for i in found)
            if n % REFRESH_BATCH == 0:
                await trio.lowlevel.checkpoint()
        self.current = current
        if issues:
            self.live_issues = live_issues
        self.refreshed_at = trio.current_time()
        return current

    def health(self) -> dict[str, Any]:
        """The load fields of a run's ``/health``: load, loop lag (moving average and latest) and CPU share."""
        load = self.load.statistics()
        return {
            "load": round(load.load, 3),
            "loop_lag_ms": round(load.loop_lag_ms, 3),
            "loop_lag_max_ms": round(load.loop_lag_max_ms, 3),
            "cpu": round(load.cpu, 3),
        }

    def collect(self) -> Iterator[Metric]:
        """The Prometheus families, from the last :meth:`refresh` (a collector's method)."""
        fig = self.current
        yield from self._server_families()
        run_active = GaugeMetricFamily("rtstream_pipelines_active", "Pipelines running.", labels=["pipeline"])
        for name, n in sorted(fig.active.items()):
            run_active.add_metric([name], n)
        yield run_active
        ended = CounterMetricFamily("rtstream_pipelines", "Pipelines ended, by status.", labels=["pipeline", "status"])
        for (name, status), n in sorted(self.finished.items()):
            ended.add_metric([name, status], n)
        yield ended
        found = CounterMetricFamily(
            "rtstream_issues", "Issues found in ended pipelines.", labels=["pipeline", "severity", "code"]
        )
        for key, n in sorted(self.issues.items()):
            found.add_metric(list(key), n)
        yield found
        counters = {f: CounterMetricFamily(f, _HELP[f], labels=list(_LABELS[f])) for f in _COUNTERS}
        for (family, labels), value in sorted(fig.counters.items()):
            counters[family].add_metric(list(labels), value)
        yield from counters.values()
        gauges = {f: GaugeMetricFamily(f, _HELP[f], labels=list(_LABELS[f])) for f in _GAUGES}
        for (family, labels), value in sorted(fig.gauges.items()):
            gauges[family].add_metric(list(labels), value)
        yield from gauges.values()
        histograms = dict(fig.histograms)
        for name, service in self.services.items():
            deviations = getattr(service, "deviations", None)
            q = deviations() if callable(deviations) else None
            if isinstance(q, Quantiles):
                histograms["rtstream_receiver_deviation_seconds", (self._label("service", name),)] = q
        families = {f: HistogramMetricFamily(f, _HELP[f], labels=list(_LABELS[f])) for f in _HISTOGRAMS}
        for (family, labels), q in sorted(histograms.items()):
            families[family].add_metric(list(labels), _buckets(q), q.sum)
        yield from families.values()
        yield from self._process_families()

    def _server_families(self) -> Iterator[Metric]:
        server = self.server
        if server is None:
            return
        active = GaugeMetricFamily("rtstream_calls_active", "Calls running, by route.", labels=["route"])
        for route, n in sorted(server.active_routes.items()):
            active.add_metric([self._label("route", route)], n)
        yield active
        total = CounterMetricFamily("rtstream_calls", "Calls ended, by route and outcome.", labels=["route", "outcome"])
        for (route, outcome), n in sorted(server.route_outcomes.items()):
            total.add_metric([self._label("route", route), self._label("outcome", outcome)], n)
        yield total
        refused = CounterMetricFamily(
            "rtstream_calls_refused", "Calls refused before the upgrade, by reason.", labels=["reason"]
        )
        for reason, n in sorted(server.admission.refused.items()):
            refused.add_metric([self._label("reason", reason)], n)
        yield refused
        links = {
            "rtstream_call_malformed_messages": CounterMetricFamily(
                "rtstream_call_malformed_messages",
                "Malformed provider messages, by route and kind.",
                labels=["route", "kind"],
            ),
            "rtstream_call_inbound_dropped": CounterMetricFamily(
                "rtstream_call_inbound_dropped",
                "Caller messages dropped (telephony_in behind), by route.",
                labels=["route"],
            ),
        }
        for (family, labels), n in sorted(self.link_counts.items()):
            links[family].add_metric(list(labels), n)
        yield from links.values()
        yield GaugeMetricFamily(
            "rtstream_calls_max", "Calls this process admits at once.", value=server.admission.max_calls
        )
        yield GaugeMetricFamily(
            "rtstream_draining", "1 while draining (refusing new calls).", value=int(server.admission.draining)
        )

    def _process_families(self) -> Iterator[Metric]:
        load = self.load
        histogram = HistogramMetricFamily(
            "rtstream_loop_lag_seconds", f"How late the trio loop woke a task that slept {SAMPLE_INTERVAL * 1000:g} ms."
        )
        histogram.add_metric([], _buckets(load.lags), load.lags.sum)
        yield histogram
        yield GaugeMetricFamily(
            "rtstream_loop_lag_average_seconds", "Loop lag, moving average (part of the load).", value=load.lag
        )
        yield GaugeMetricFamily(
            "rtstream_cpu_share",
            "Share of one core the process used, moving average (part of the load).",
            value=load.cpu,
        )
        yield GaugeMetricFamily(
            "rtstream_worker_load",
            "Load: the larger of the CPU share and the loop lag over its budget (moving averages); "
            "calls are refused above rtstream_worker_max_load, as LiveKit's workers above their load threshold.",
            value=load.load,
        )
        yield GaugeMetricFamily(
            "rtstream_worker_max_load",
            "The load above which calls are refused (0: never by load).",
            value=load.max_load,
        )

    # -- exposition --------------------------------------------------------------------------------

    def text(self) -> bytes:
        """This process's exposition, from the last refresh; labelled ``worker`` when it is one of several."""
        if self.worker is None:
            return generate_latest(self.registry)
        return generate_latest(_Families(_labelled(self.registry.collect(), self.worker)))

    async def exposition(self) -> bytes:
        """What ``/metrics`` answers: refreshed now, with the other workers' shared files when there are any."""
        await self.refresh()
        own = self.text()
        if self.shared_dir is None:
            return own
        others = await trio.to_thread.run_sync(read_shared, self.shared_dir, self._share_name())
        return merge_expositions([own.decode(), *others])

    def _share_name(self) -> str:
        return f"worker-{self.worker}.prom"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Measure the load (unless a server does) and, as one of several workers, share the exposition every second."""
        async with trio.open_nursery() as nursery:
            if self.server is None:
                await nursery.start(sample_load, self.load)
            task_status.started()
            if self.shared_dir is not None:
                path = self.shared_dir / self._share_name()
                try:
                    while True:
                        await self.refresh()
                        await trio.to_thread.run_sync(_write_atomically, path, self.text())
                        await trio.sleep(SHARE_INTERVAL)
                finally:
                    path.unlink(missing_ok=True)

    def install(self) -> contextvars.Token[Watcher | None]:
        """Make this the watcher of the pipelines run from here on (in this context); returns the reset token."""
        return WATCHER.set(self)

    def attach(self, server: Any) -> None:
        """Serve ``/metrics`` from ``server`` (a :class:`rtstream.server.Server`), and report its load."""
        self.server = server
        self.load = server.load
        server.monitor = self


async def serve_metrics(
    monitor: Monitor, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """A tiny HTTP server for a run: ``/metrics`` and ``/health`` (the load) on ``host:port``; started(port)."""

    async def route(request: Request) -> Response:
        if request.path == "/metrics":
            return Response(200, await monitor.exposition(), content_type=CONTENT_TYPE_LATEST)
        if request.path == "/health":
            body = json.dumps({"status": "running", "pipelines": len(monitor.live), **monitor.health()})
            return Response(200, (body + "\n").encode(), content_type="application/json")
        return Response.text(404, f"no route for {request.path[:200]!r}")

    listener = await open_listener(host, port)
    async with trio.open_nursery() as handlers:
        await handlers.start(functools.partial(serve, [listener], route, handler_nursery=handlers))
        task_status.started(bound_port(listener))


def _buckets(q: Quantiles) -> list[tuple[str, float]]:
    counts = q.cumulative(BUCKETS)
    return [*((repr(b), float(n)) for b, n in zip(BUCKETS, counts, strict=True)), ("+Inf", float(q.count))]


class _Families:
    """Families already collected, as a collector ``generate_latest`` takes."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def _labelled(families: Iterable[Metric], worker: int) -> Iterator[Metric]:
    for family in families:
        out = Metric(family.name, family.documentation, family.type, family.unit)
        for s in family.samples:
            out.add_sample(s.name, {**s.labels, "worker": str(worker)}, s.value, s.timestamp)
        yield out


def merge_expositions(texts: Iterable[str]) -> bytes:
    """Several processes' expositions as one: each family's samples together (``worker`` tells them apart)."""
    merged: dict[str, Metric] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            into.samples.extend(family.samples)
    return generate_latest(_Families(merged.values()))


def read_shared(directory: Path, own: str) -> list[str]:
    """The live workers' expositions in ``directory`` but the file ``own`` (a dead worker's stale file left out)."""
    texts, now = [], time.time()
    for path in sorted(directory.glob("worker-*.prom")):
        if path.name == own:
            continue
        try:
            if now - path.stat().st_mtime <= STALE_AFTER:
                texts.append(path.read_text(encoding="utf-8"))
        except OSError:
            continue  # a worker replacing or removing its file
    return texts


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
