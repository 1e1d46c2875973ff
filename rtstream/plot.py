"""``rtstream plot``: a run's JSON report as a PNG — what a person would rather look at than read.

One row per pipeline instance that recorded timing series: on the left, the pacer's lateness
and the receiver's inter-arrival deviation over time (a call of a telephony simulator the
pipeline used whose first frame came closest to the pacer's first, within a second; a call
no pipeline matches gets a row of its own); on the
right, the jitter buffer's delay against its target. Underruns are red ticks along the bottom,
clears (barge-ins) dashed lines, the receiver's gaps orange spans. Times are seconds from the
first frame of the run. Needs matplotlib (``pip install 'rtstream[plot]'``); draws headless.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after the backend is chosen

Series = Mapping[str, Any]
PAUSE_STEPS = 5
"""A step between points this many times the usual one is a pause of the series (a buffer not playing)."""


def _stage_series(pipeline: Mapping[str, Any], name: str) -> Series | None:
    for stage in pipeline.get("stages", ()):
        series = (stage.get("series") or {}).get(name)
        if series and series.get("t"):
            return series
    return None


def _marks(pipeline: Mapping[str, Any], name: str) -> list[float]:
    return [
        t for stage in pipeline.get("stages", ()) for t in ((stage.get("series") or {}).get(name) or {}).get("t", ())
    ]


MATCH_WITHIN = 1.0
"""Seconds between a pacer's first frame and a receiver's first arrival for the two to be one call."""


def _start(series: Series | None) -> float | None:
    return min(series["t"]) if series else None


def _match(
    pipelines: Sequence[Mapping[str, Any]], calls: Sequence[tuple[str, str, Mapping[str, Any]]]
) -> dict[int, int]:
    """Pipeline row to call index: a call of a service the pipeline used, the closest first frames first."""
    pairs = []
    for row, pipeline in enumerate(pipelines):
        start = _start(_stage_series(pipeline, "lateness"))
        for k, (service, _, call) in enumerate(calls):
            first = _start(call["series"]["deviation"])
            if service not in pipeline.get("services", (service,)) or start is None or first is None:
                continue
            if abs(first - start) <= MATCH_WITHIN:
                pairs.append((abs(first - start), row, k))
    matched: dict[int, int] = {}
    for _, row, k in sorted(pairs):
        if row not in matched and k not in matched.values():
            matched[row] = k
    return matched


def _calls(report: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """Every receiving call with a deviation series: (service, title, call report)."""
    out = []
    for name, service in (report.get("services") or {}).items():
        for call in service.get("per_call", ()) if isinstance(service, Mapping) else ():
            if ((call.get("series") or {}).get("deviation") or {}).get("t"):
                out.append((name, f"service '{name}' call {call.get('call')}", call))
    return out


def _label(series: Series, what: str) -> str:
    every = series.get("every", 1)
    return what if every == 1 else f"{what} (largest of each {every})"


def plot_report(report: Mapping[str, Any], output: str) -> str:
    """Draw ``report`` (the parsed JSON) into the PNG ``output``; says what it drew.

    ValueError when the report has no timing series to draw (a report of schema 1, or no pacer
    or jitter buffer ran).
    """
    pipelines = [p for p in report.get("pipelines", ()) if _stage_series(p, "lateness") or _stage_series(p, "delay")]
    calls = _calls(report)
    if not pipelines and not calls:
        raise ValueError("the report has no timing series to plot (no pacer, jitter buffer or telephony simulator ran)")
    pairs = _match(pipelines, calls)
    matched = {row: calls[k][1:] for row, k in pairs.items()}
    unmatched = [call[1:] for k, call in enumerate(calls) if k not in pairs.values()]
    firsts = [_start(_stage_series(p, "lateness") or _stage_series(p, "delay")) for p in pipelines]
    t0 = min(t for t in [*firsts, *(_start(c["series"]["deviation"]) for _, _, c in calls)] if t is not None)
    rows = len(pipelines) + len(unmatched)
    fig, axes = plt.subplots(rows, 2, figsize=(14, 3.2 * rows), squeeze=False, sharex=True)
    for row, pipeline in enumerate(pipelines):
        name = pipeline["pipeline"] + (f"#{pipeline['instance']}" if pipeline.get("instance", 1) != 1 else "")
        timing, buffer = axes[row]
        _timing(timing, pipeline, matched.get(row), t0, name)
        _buffer(buffer, pipeline, t0, name)
    for k, (title, call) in enumerate(unmatched):
        timing, buffer = axes[len(pipelines) + k]
        _timing(timing, None, (title, call), t0, title)
        buffer.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("seconds from the run's first frame")
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return f"{len(pipelines)} pipelines, {len(calls)} receiver calls ({len(matched)} matched to a pipeline)"


def _ms(series: Series, t0: float) -> tuple[np.ndarray, np.ndarray]:
    """Times from ``t0`` and values in ms, broken (NaN) where the series paused, so no line bridges a pause."""
    t, v = np.asarray(series["t"], dtype=float) - t0, np.asarray(series["v"], dtype=float) * 1000
    if len(t) > 2:
        steps = np.diff(t)
        pauses = np.flatnonzero(steps > PAUSE_STEPS * np.median(steps)) + 1
        t, v = np.insert(t, pauses, np.nan), np.insert(v, pauses, np.nan)
    return t, v


def _events(ax: Any, underruns: Sequence[float], clears: Sequence[float], t0: float) -> None:
    if underruns:
        ax.plot([t - t0 for t in underruns], [0] * len(underruns), "|", color="red", ms=14, mew=1.5, label="underrun")
    for i, t in enumerate(clears):
        ax.axvline(t - t0, color="purple", ls="--", lw=1, label="clear" if i == 0 else None)


def _timing(
    ax: Any, pipeline: Mapping[str, Any] | None, call: tuple[str, Mapping[str, Any]] | None, t0: float, name: str
) -> None:
    lateness = _stage_series(pipeline, "lateness") if pipeline else None
    if lateness:
        ax.plot(*_ms(lateness, t0), lw=0.8, color="tab:blue", label=_label(lateness, "pacer lateness"))
    if call is not None:
        title, report = call
        deviation = report["series"]["deviation"]
        ax.plot(*_ms(deviation, t0), lw=0.8, color="tab:green", label=_label(deviation, f"{title}: deviation"))
        for i, t in enumerate((report["series"].get("gaps") or {}).get("t", ())):
            ax.axvspan(t - t0, t - t0 + 0.02, color="orange", alpha=0.6, label="receiver gap" if i == 0 else None)
    if pipeline:
        _events(ax, _marks(pipeline, "underruns"), _marks(pipeline, "clears"), t0)
    ax.set_title(f"{name}: frame timing")
    ax.set_ylabel("ms")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")


def _buffer(ax: Any, pipeline: Mapping[str, Any], t0: float, name: str) -> None:
    delay, target = _stage_series(pipeline, "delay"), _stage_series(pipeline, "target")
    if not delay or not target:
        ax.text(0.5, 0.5, "no jitter buffer", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_title(f"{name}: jitter buffer")
        ax.set_yticks([])
        return
    ax.plot(*_ms(delay, t0), lw=0.9, color="tab:blue", label=_label(delay, "delay"))
    ax.plot(*_ms(target, t0), lw=1.2, color="black", ls="-.", label="target")
    _events(ax, _marks(pipeline, "underruns"), _marks(pipeline, "clears"), t0)
    ax.set_title(f"{name}: jitter buffer delay against its target")
    ax.set_ylabel("ms")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
