"""The run report: per pipeline instance, how it ended and what every stage counted.

Every string of a report passes through :func:`rtstream.redact.redact` on its way out (text
and JSON alike), so a value read from the environment never appears in it; keys are put on
one line too, since some are chosen by peers.
"""

from __future__ import annotations

import enum
import json
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from .redact import clean, redact
from .text import clip

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


@attrs.frozen
class RunReport:
    pipelines: tuple[PipelineReport, ...]
    services: Mapping[str, Any] = attrs.field(factory=dict)
    """Per service that reports, its report (printed after the pipelines)."""
    server: Mapping[str, Any] | None = None
    """The server's report (:meth:`rtstream.server.Server.report`) when the run served the file's calls."""

    @property
    def failed(self) -> bool:
        calls = self.server["calls"] if self.server else []
        return any(p.status == "failed" for p in self.pipelines) or any(c["outcome"] == "failed" for c in calls)

    def to_json(self) -> str:
        return json.dumps(plain(self), indent=2, allow_nan=False)


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
    """A human-readable report: a block per pipeline instance, the server's calls, then a block per service."""
    lines = []
    names = Counter(p.pipeline for p in report.pipelines)
    for p in report.pipelines:
        lines.extend(_pipeline_lines(plain(p), unique=names[p.pipeline] == 1))
    if report.server is not None:
        lines.extend(format_server(report.server))
    for name, service_report in report.services.items():
        lines.append(f"service '{name}'")
        lines.extend(format_fields(service_report, indent="    "))
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
    """One pipeline instance's block, from its plain report."""
    name = p["pipeline"] if unique else f"{p['pipeline']}#{p['instance']}"
    head = f"pipeline '{name}' {p['status']} after {p['duration']:.2f} s"
    lines = [head + (f": {p['error']}" if p["error"] else "")]
    for s in p["stages"]:
        label = f"{s['label']} ({s['type']})" if s["label"] and s["label"] != s["type"] else s["type"]
        fmt = f" -> {s['output']}" if s["output"] else ""
        lines.append(f"  {s['index']} {label} [{s['klass']}]{fmt}")
        lines.extend(format_fields(s["statistics"]))
    return lines


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
