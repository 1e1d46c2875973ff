"""The run report: per pipeline instance, how it ended, what every stage counted, and the issues seen.

:func:`format_text` prints a table per pipeline (one row per stage, the figures that matter
first, with units) and the issues after it; the JSON (:meth:`RunReport.to_json`) has
everything, under a ``schema_version`` (docs/report-schema.md describes it).

Every string of a report passes through :func:`rtstream.redact.redact` on its way out (text
and JSON alike), so a value read from the environment never appears in it; keys are put on
one line too, since some are chosen by peers.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from .issues import Issue
from .redact import clean, redact
from .text import clip

SCHEMA_VERSION = 3
"""Version of the JSON report's layout: 2 added ``schema_version``, ``issues`` and the stages' ``series``;
3 the receivers' ``in_utterance_underruns`` in place of the caller's ``in_utterance_underrun_ms``."""

MAX_KEY = 100
"""Characters of a report key: a name a peer chose is cut there (stages bound how many with BoundedCounter)."""


@attrs.frozen
class StageReport:
    index: int
    type: str
    label: str | None
    klass: str
    input: str | None
    output: str | None
    statistics: Mapping[str, Any]
    series: Mapping[str, Any] = attrs.field(factory=dict)
    """Bounded timing series for plots (:mod:`rtstream.series`), by name; empty for most stages."""


@attrs.frozen
class PipelineReport:
    pipeline: str
    instance: int
    status: str
    """completed (the source ended), stopped (stopped and drained), cancelled (stopped, grace
    period over) or failed (a stage raised)."""
    error: str | None
    duration: float
    stages: tuple[StageReport, ...]
    issues: tuple[Issue, ...] = ()
    """What :func:`rtstream.issues.pipeline_issues` found in the stages' statistics."""
    services: tuple[str, ...] = ()
    """The services its stages used (the simulators that saw its audio)."""

    def without_series(self) -> PipelineReport:
        """This report without the stages' timing series (for the many per-call reports a server keeps)."""
        return attrs.evolve(self, stages=tuple(attrs.evolve(s, series={}) for s in self.stages))


@attrs.frozen
class RunReport:
    pipelines: tuple[PipelineReport, ...]
    services: Mapping[str, Any] = attrs.field(factory=dict)
    """Per service that reports, its report (printed after the pipelines)."""
    server: Mapping[str, Any] | None = None
    """The server's report (:meth:`rtstream.server.Server.report`) when the run served the file's calls."""
    issues: Mapping[str, tuple[Issue, ...]] = attrs.field(factory=dict)
    """Per service, the issues its report shows (a receiver's jitter and gaps)."""

    @property
    def failed(self) -> bool:
        """A pipeline or a served call failed, or a caller simulator's call did (refused before it began, say)."""
        calls = self.server["calls"] if self.server else []
        dialled = any(i.code == "calls_failed" for seen in self.issues.values() for i in seen)
        return (
            any(p.status == "failed" for p in self.pipelines) or any(c["outcome"] == "failed" for c in calls) or dialled
        )

    def to_json(self) -> str:
        return json.dumps({"schema_version": SCHEMA_VERSION, **plain(self)}, indent=2, allow_nan=False)


def plain(value: Any) -> Any:
    """``value`` as JSON-ready dicts, lists and scalars (attrs records, enums, numpy scalars), secrets redacted."""
    if attrs.has(type(value)):
        return {f.name: plain(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, Mapping):
        return {clip(clean(str(k)), MAX_KEY): plain(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, str):
        return redact(str(value))
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _flatten(prefix: str, value: Any, out: list[str]) -> None:
    if isinstance(value, Mapping):
        if not value:
            out.append(f"{prefix}=none")
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, list) and any(isinstance(v, Mapping) for v in value):
        out.append(f"{prefix}=[{len(value)} records: see the JSON report]")  # one per call, say
    elif isinstance(value, float):
        out.append(f"{prefix}={value:.4g}")
    elif value is None:
        out.append(f"{prefix}=-")
    else:
        out.append(f"{prefix}={value}")


def format_fields(value: Any, *, indent: str = "      ", width: int = 100) -> list[str]:
    """``value`` (a record or mapping) as wrapped ``key=value`` lines, nested keys dotted."""
    fields: list[str] = []
    _flatten("", plain(value), fields)
    return _wrap(fields, indent=indent, width=width)


def format_text(report: RunReport) -> str:
    """A human-readable report: a table per pipeline instance and its issues, the server's calls, each service."""
    lines = []
    names = Counter(p.pipeline for p in report.pipelines)
    for p in report.pipelines:
        lines.extend(_pipeline_lines(plain(p), unique=names[p.pipeline] == 1))
    if report.server is not None:
        lines.extend(format_server(report.server))
    for name, service_report in report.services.items():
        lines.append(f"service '{name}'")
        lines.extend(format_fields(_without_series(service_report), indent="    "))
        lines.extend(_issue_lines(plain(report.issues.get(name, ()))))
    return "\n".join(clean(line) for line in lines)


def format_server(report: Mapping[str, Any]) -> list[str]:
    """The server's counters, then a block per call: its template, outcome, link and pipelines."""
    report = plain(report)
    lines = ["server"]
    lines.extend(format_fields({k: v for k, v in report.items() if k != "calls"}, indent="    "))
    for n, call in enumerate(report.get("calls", []), start=1):
        inner = call["report"]
        head = f"call {n} on '{call['route']}' from {call['peer']} {call['outcome']} after {call['duration']:.2f} s"
        lines.append(head + (f": {inner['error']}" if inner.get("error") else ""))
        lines.extend(format_fields({k: v for k, v in inner.items() if k not in ("pipelines", "error")}, indent="    "))
        for p in inner.get("pipelines", []):
            lines.extend("  " + line for line in _pipeline_lines(p, unique=True))
    return lines


def _pipeline_lines(p: Mapping[str, Any], *, unique: bool) -> list[str]:
    """One pipeline instance's table and issues, from its plain report."""
    name = p["pipeline"] if unique else f"{p['pipeline']}#{p['instance']}"
    head = f"pipeline '{name}' {p['status']} after {p['duration']:.2f} s"
    lines = [head + (f": {p['error']}" if p["error"] else "")]
    rows = [("#", "stage", "output", "frames", "audio", "drops", "figures")]
    for s in p["stages"]:
        stats = s["statistics"]
        label = f"{s['label']} ({s['type']})" if s["label"] and s["label"] != s["type"] else s["type"]
        rows.append(
            (
                str(s["index"]),
                label,
                s["output"] or "-",
                _count(_frames(stats)),
                _seconds(_audio(stats, s["output"])),
                str(_dropped(stats)),
                ", ".join(_figures(stats)),
            )
        )
    lines.extend(_table(rows, right=(3, 4, 5), indent="  "))
    lines.extend(_issue_lines(p.get("issues", ())))
    return lines


def _issue_lines(issues: Sequence[Mapping[str, Any]]) -> list[str]:
    """The issues of a plain report, one line each (as :meth:`rtstream.issues.Issue.line`)."""
    if not issues:
        return []
    return ["  issues:", *(f"    {Issue(**i).line()}" for i in issues)]


def _without_series(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_series(v) for k, v in value.items() if k != "series"}
    return value


def _table(rows: Sequence[Sequence[str]], *, right: Sequence[int], indent: str) -> list[str]:
    """``rows`` (the first the heading) in aligned columns; the columns ``right`` aligned right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append((indent + "  ".join(cells)).rstrip())
    return out


_FRAME_FIELDS = ("frames_sent", "frames_out", "chunks_out", "receiver.released", "chunks", "media", "frames_in")
_SECOND_FIELDS = ("seconds_sent", "seconds_out", "seconds")
_RATE = re.compile(r"\b(\d+) Hz\b")


def _get(stats: Mapping[str, Any], dotted: str) -> Any:
    value: Any = stats
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _throughputs(stats: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The :class:`~rtstream.stats.Throughput` records among the fields (what a plain stage counts)."""
    return [v for v in stats.values() if isinstance(v, Mapping) and set(v) == {"chunks", "samples", "seconds"}]


def _frames(stats: Mapping[str, Any]) -> int | None:
    for field in _FRAME_FIELDS:
        value = _get(stats, field)
        if isinstance(value, int) and not isinstance(value, bool):
            return value + (stats.get("fill_frames") or 0 if field == "frames_sent" else 0)
    counts = _throughputs(stats)
    return counts[-1]["chunks"] if counts else None


def _audio(stats: Mapping[str, Any], output: str | None) -> float | None:
    for field in _SECOND_FIELDS:
        value = stats.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    counts = _throughputs(stats)
    if counts:
        return float(counts[-1]["seconds"])
    rate = _RATE.search(output or "")
    samples = stats.get("samples_out")
    return samples / int(rate.group(1)) if rate and isinstance(samples, int) else None


def _dropped(stats: Mapping[str, Any]) -> int:
    drops = stats.get("drops")
    if not isinstance(drops, Mapping):
        return 0
    return sum(d.get("frames", 0) if isinstance(d, Mapping) else 0 for d in drops.values())


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _ms(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:.1f} ms" if abs(value) < 10 else f"{value:.0f} ms"


def _many(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _figures(stats: Mapping[str, Any]) -> list[str]:
    """The few figures that say how a stage did, by the fields its record has."""
    out = []
    if "lateness_ms" in stats and "underruns" in stats:  # a pacer
        out += [
            f"late p99 {_ms(_get(stats, 'lateness_ms.p99'))}",
            _many(stats["underruns"], "underrun"),
            *([f"{stats['in_utterance_underruns']} in-utterance"] if "in_utterance_underruns" in stats else []),
            f"{stats.get('late_frames', 0)} late",
        ]
    if "jitterBufferTargetDelay" in stats:  # a jitter buffer
        out += [
            f"delay p50 {_ms(_get(stats, 'delay_ms.p50'))}",
            f"target {_ms(stats.get('target_delay_ms'))}",
            f"concealed {stats.get('concealment_rate', 0):.1%}",
        ]
    receiver = stats.get("receiver")
    if isinstance(receiver, Mapping):  # a receiving sequencer
        out += [f"{receiver.get(k, 0)} {k}" for k in ("reordered", "duplicates", "lost")]
    if "first_chunk_ms" in stats:  # a TTS source
        out += [
            f"first chunk p99 {_ms(_get(stats, 'first_chunk_ms.p99'))}",
            _many(stats.get("utterances", 0), "utterance"),
        ]
    if _get(stats, "first_audio_ms.count"):  # a telephony sink that timed replies
        out.append(f"first audio p99 {_ms(_get(stats, 'first_audio_ms.p99'))}")
    if stats.get("marks_sent"):
        out.append(f"{stats.get('marks_echoed', 0)}/{stats['marks_sent']} marks echoed")
    if isinstance(stats.get("connects"), int) and stats["connects"] != 1:
        out.append(f"{stats['connects']} connects")
    if stats.get("held_ms_max"):  # a resampling converter
        out.append(f"holds up to {_ms(stats['held_ms_max'])}")
    return out


def _wrap(fields: list[str], *, indent: str, width: int) -> list[str]:
    lines, line = [], indent
    for field in fields:
        if line != indent and len(line) + 1 + len(field) > width:
            lines.append(line)
            line = indent
        line += ("" if line == indent else " ") + field
    if line != indent:
        lines.append(line)
    return lines
