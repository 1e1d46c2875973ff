"""Issue detection: pure rules over a pipeline's (or a service's) statistics, each with a fix to try.

A rule reads the plain statistics of the report (the JSON's dicts), recognises a stage by the
fields its record has rather than by its type name (a third-party pacer with ``underruns`` and
``lateness_ms`` is judged as a pacer), and returns :class:`Issue` records: a severity, a short
code, where it was seen, what was seen with its figures, and what to change. The same rules run
on a pipeline's report at its end (the text and JSON reports, one log line per issue), on the
live view's snapshots, and on the telephony simulator's report. Thresholds are the usual ones
for voice: loss above 5 %, jitter above 30 ms, latency above 200 ms (critical above 500 ms).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

INFO, WARNING, CRITICAL = "info", "warning", "critical"
SEVERITIES = (INFO, WARNING, CRITICAL)

LOSS = 0.05
LOSS_CRITICAL = 0.15
JITTER_MS = 30.0
JITTER_CRITICAL_MS = 100.0
LATENCY_MS = 200.0
LATENCY_CRITICAL_MS = 500.0
UNDERRUNS_CRITICAL = 0.05
"""Share of a pacer's slots inside replies that went silent, above which underruns are critical."""
LATE = 0.01
"""Share of late frames above which (and at least LATE_MIN of them) lateness is a warning."""
LATE_MIN = 3
RECONNECTS = 3
RECONNECTS_CRITICAL = 10
MALFORMED = 10
MALFORMED_CRITICAL = 100
LOOP_LAG_MS = 20.0
LOOP_LAG_CRITICAL_MS = 50.0
CPU_BOUND = "the process is CPU-bound: lower max_calls or add workers"
INTENDED_DROPS = frozenset({"duplicate", "clear", "cleared"})
"""Drop reasons that are the stage doing its job (a duplicate removed, a barge-in), not lost audio."""


@attrs.frozen
class Issue:
    """One problem seen in a run, with what to do about it."""

    severity: str
    """info, warning or critical."""
    code: str
    """What kind of problem: loss, jitter, latency, underruns, late_frames, reconnects, jitter_buffer_max, malformed…"""
    where: str
    """The stage (``stage 6 (pacer)``), service or process it was seen in."""
    message: str
    recommendation: str

    def line(self) -> str:
        """One line: severity, code, where, what was seen; what to do."""
        return f"{self.severity} {self.code} at {self.where}: {self.message}; {self.recommendation}"


def _get(stats: Mapping[str, Any], dotted: str) -> Any:
    value: Any = stats
    for key in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _number(stats: Mapping[str, Any], dotted: str) -> float | None:
    value = _get(stats, dotted)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _severity(value: float, warning: float, critical: float) -> str | None:
    if value > critical:
        return CRITICAL
    return WARNING if value > warning else None


def _drop_frames(stats: Mapping[str, Any], *, intended: bool = False) -> int:
    drops = stats.get("drops")
    if not isinstance(drops, Mapping):
        return 0
    total = 0
    for reason, count in drops.items():
        if (reason in INTENDED_DROPS) != intended:
            continue
        frames = count.get("frames") if isinstance(count, Mapping) else count
        total += frames if isinstance(frames, int) else 0
    return total


def _taken_in(stats: Mapping[str, Any]) -> float | None:
    for name in ("frames_in", "chunks_in", "receiver.received", "chunks", "media"):
        value = _number(stats, name)
        if value:
            return value
    return None


Stage = tuple[str, Mapping[str, Any]]
"""Where (``stage 6 (pacer)``) and the stage's plain statistics."""


def pipeline_issues(stages: Sequence[Stage]) -> list[Issue]:
    """Every issue in one pipeline's stages, in stage order."""
    buffers = [stats for _, stats in stages if "jitterBufferTargetDelay" in stats]
    out: list[Issue] = []
    for where, stats in stages:
        for rule in _STAGE_RULES:
            out.extend(rule(where, stats, buffers))
    return out


def _loss(where: str, stats: Mapping[str, Any], _: Any) -> list[Issue]:
    lost, released = _number(stats, "receiver.lost"), _number(stats, "receiver.released")
    if lost is None or released is None or not lost:
        return []
    # a number reported missing that came later is not lost if the receiver passed it on (a
    # jitter buffer after it may still play it); a reordering receiver drops it, counted as late
    late = _number(stats, "receiver.late") or 0.0
    lost -= late - (_number(stats, "drops.late.frames") or 0.0)
    if lost <= 0:
        return []
    share = lost / (lost + released)
    severity = _severity(share, LOSS, LOSS_CRITICAL)
    if severity is None:
        return []
    return [
        Issue(
            severity,
            "loss",
            where,
            f"{share:.1%} of the packets lost ({lost:.0f} of {lost + released:.0f})",
            "the network path loses packets: check it; a jitter_buffer after the sequencer conceals what is lost",
        )
    ]


def _dropped(where: str, stats: Mapping[str, Any], _: Any) -> list[Issue]:
    dropped, taken = _drop_frames(stats), _taken_in(stats)
    if not dropped or not taken:
        return []
    share = dropped / taken
    severity = _severity(share, LOSS, LOSS_CRITICAL)
    if severity is None:
        return []
    reasons = ", ".join(
        sorted(r for r in stats["drops"] if r not in INTENDED_DROPS)  # _drop_frames saw a mapping
    )
    return [
        Issue(
            severity,
            "drops",
            where,
            f"{share:.1%} of the frames dropped ({dropped} of {taken:.0f}: {reasons})",
            "see the stage's drops in the JSON report: each reason names the bound that was hit",
        )
    ]


def _concealment(where: str, stats: Mapping[str, Any], _: Any) -> list[Issue]:
    rate = _number(stats, "concealment_rate")
    if rate is None:
        return []
    severity = _severity(rate, LOSS, LOSS_CRITICAL)
    if severity is None:
        return []
    return [
        Issue(
            severity,
            "loss",
            where,
            f"{rate:.1%} of the audio played was concealment",
            "audio came too late or not at all: raise jitter_buffer max_delay_ms, or fix the loss upstream",
        )
    ]


def _buffer_at_max(where: str, stats: Mapping[str, Any], _: Any) -> list[Issue]:
    target, ceiling = _number(stats, "target_delay_ms"), _number(stats, "max_delay_ms")
    overflow = _get(stats, "drops.overflow.frames") or 0
    if target is None or ceiling is None or (target < ceiling and not overflow):
        return []
    seen = f"the target is at the maximum ({ceiling:.0f} ms)" if target >= ceiling else "audio dropped on overflow"
    return [Issue(WARNING, "jitter_buffer_max", where, seen, "raise jitter_buffer max_delay_ms")]


def _buffer_latency(where: str, stats: Mapping[str, Any], _: Any) -> list[Issue]:
    if stats.get("direction") != "inbound":
        return []  # outbound, the delay is the TTS running ahead: nobody waits for it
    delay = _number(stats, "delay_ms.p50")
    severity = None if delay is None else _severity(delay, LATENCY_MS, LATENCY_CRITICAL_MS)
    if severity is None:
        return []
    return [
        Issue(
            severity,
            "latency",
            where,
            f"audio waits {delay:.0f} ms in the jitter buffer (median)",
            "the network's jitter sets this: lower jitter_buffer max_delay_ms to trade concealment for delay",
        )
    ]


def _first_audio(where: str, stats: Mapping[str, Any], buffers: Sequence[Mapping[str, Any]]) -> list[Issue]:
    for field, what, fix in (
        ("first_audio_ms.p99", "from its arrival to the first frame sent", None),
        ("first_chunk_ms.p99", "from the request to the service's first audio", "the voice service is slow to answer"),
    ):
        value = _number(stats, field)
        severity = None if value is None else _severity(value, LATENCY_MS, LATENCY_CRITICAL_MS)
        if severity is None:
            continue
        if fix is None:
            targets = [t for b in buffers if (t := _number(b, "target_delay_ms")) is not None]
            fix = (
                f"the jitter buffer plays once its target ({max(targets):.0f} ms) is buffered: "
                "lower jitter_buffer start_delay_ms and max_delay_ms if the network allows"
                if targets
                else "lower the pacer's lead and the chunker's frame_ms"
            )
        return [Issue(severity, "latency", where, f"{value:.0f} ms {what} (p99 over the replies)", fix)]
    return []


def _underruns(where: str, stats: Mapping[str, Any], buffers: Sequence[Mapping[str, Any]]) -> list[Issue]:
    """Damaged speech: the in-utterance underruns (a pacer without them: every underrun after a reply's start)."""
    underruns, sent = _number(stats, "underruns"), _number(stats, "frames_sent")
    if not underruns or sent is None or "lateness_ms" not in stats:
        return []
    starting = _number(stats, "starting_underruns") or 0.0
    out = []
    inside = _number(stats, "in_utterance_underruns")
    inside = underruns - starting if inside is None else inside
    if inside:
        share = inside / max(inside + sent, 1)
        severity = CRITICAL if share > UNDERRUNS_CRITICAL else WARNING
        fix = (
            "the jitter buffer ran dry inside replies: raise jitter_buffer start_delay_ms or min_delay_ms"
            if buffers
            else "audio came late inside replies: put a jitter_buffer before the pacer, or check the source's speed"
        )
        ms = _number(stats, "in_utterance_underrun_ms")
        heard = f"{inside:.0f} slots inside replies had no audio" + ("" if ms is None else f", {ms:.0f} ms")
        out.append(Issue(severity, "underruns", where, f"{heard} ({share:.1%})", fix))
    if starting:
        out.append(
            Issue(
                INFO,
                "reply_start",
                where,
                f"{starting:.0f} slots at the start of replies waited for their first audio",
                "that wait is the reply's latency: see the TTS's first chunk and the first audio",
            )
        )
    return out


def _late(where: str, stats: Mapping[str, Any], _: Any) -> list[Issue]:
    late, sent = _number(stats, "late_frames"), _number(stats, "frames_sent")
    if not late or sent is None:
        return []
    slots = sent + (_number(stats, "fill_frames") or 0)
    share = late / max(slots, 1)
    severity = WARNING if share > LATE and late >= LATE_MIN else INFO
    stalls = _number(stats, "stalls") or 0
    seen = f"{late:.0f} {'frame' if late == 1 else 'frames'} sent late ({share:.1%})" + (
        f", {stalls:.0f} stalls" if stalls else ""
    )
    return [Issue(severity, "late_frames", where, seen, CPU_BOUND)]


def _pacer_jitter(where: str, stats: Mapping[str, Any], _: Any) -> list[Issue]:
    jitter = _number(stats, "lateness_ms.p99")
    severity = None if jitter is None else _severity(jitter, JITTER_MS, JITTER_CRITICAL_MS)
    if severity is None:
        return []
    return [Issue(severity, "jitter", where, f"frames leave {jitter:.0f} ms off their slots (p99)", CPU_BOUND)]


def _reconnects(where: str, stats: Mapping[str, Any], _: Any) -> list[Issue]:
    connects = _number(stats, "connects")
    if connects is None:
        return []
    reconnects = connects - 1
    severity = _severity(reconnects, RECONNECTS - 1, RECONNECTS_CRITICAL - 1)
    if severity is None:
        return []
    return [
        Issue(
            severity,
            "reconnects",
            where,
            f"{reconnects:.0f} reconnects",
            "the far end keeps dropping the connection: check its logs and the network in between",
        )
    ]


def _malformed(where: str, stats: Mapping[str, Any], _: Any) -> list[Issue]:
    counts = stats.get("malformed")
    if not isinstance(counts, Mapping):
        return []
    total = sum(v for v in counts.values() if isinstance(v, int))
    severity = _severity(total, MALFORMED - 1, MALFORMED_CRITICAL - 1)
    if severity is None:
        return []
    kinds = ", ".join(sorted(counts))
    return [
        Issue(
            severity,
            "malformed",
            where,
            f"{total} malformed messages ({kinds})",
            "the peer speaks another protocol or version: check the stage's protocol setting",
        )
    ]


_STAGE_RULES = (
    _loss,
    _dropped,
    _concealment,
    _buffer_at_max,
    _buffer_latency,
    _first_audio,
    _underruns,
    _late,
    _pacer_jitter,
    _reconnects,
    _malformed,
)


def receiver_issues(where: str, report: Mapping[str, Any]) -> list[Issue]:
    """Issues a peer saw (the telephony or caller simulator's report): failed calls, jitter, gaps, bad frames."""
    out: list[Issue] = []
    failed = report.get("failed")
    unserved = (
        {k: v for k, v in failed.items() if k.startswith("http_") or k == "unreachable"}
        if isinstance(failed, Mapping)
        else {}
    )
    if unserved:  # calls the server never saw (a served call that fails is in the server's outcomes)
        count = sum(v for v in unserved.values() if isinstance(v, int))
        reasons = ", ".join(f"{reason} {n}" for reason, n in unserved.items())
        out.append(
            Issue(
                CRITICAL,
                "calls_failed",
                where,
                f"{count} of the calls it placed never began ({reasons})",
                "an http_503 is the server refusing: see its refusals (max_calls, max_load, draining)",
            )
        )
    deviation = _number(report, "deviation_ms.p99")
    severity = None if deviation is None else _severity(deviation, JITTER_MS, JITTER_CRITICAL_MS)
    if severity is not None:
        out.append(
            Issue(
                severity,
                "jitter",
                where,
                f"frames arrive {deviation:.0f} ms off their cadence (p99)",
                "pace the stream: a pacer just before the telephony stage",
            )
        )
    out.extend(_heard_underruns(where, report))
    gaps = _number(report, "gaps.count")
    if gaps:
        total = _number(report, "gaps.total_ms") or 0.0
        out.append(
            Issue(
                WARNING,
                "gaps",
                where,
                f"the receiver's playout ran dry {gaps:.0f} times ({total:.0f} ms)",
                "frames came later than their audio lasted: check the pacer's underruns and the network",
            )
        )
    wrong = _number(report, "wrong_size")
    if wrong:
        out.append(
            Issue(
                WARNING,
                "frame_size",
                where,
                f"{wrong:.0f} frames of the wrong size",
                "put a chunker with the protocol's frame_ms before the pacer",
            )
        )
    out.extend(_malformed(where, {"malformed": report.get("errors")}, ()))
    return out


def _heard_underruns(where: str, report: Mapping[str, Any]) -> list[Issue]:
    """Fill and dry playout the receiver heard between the speech of a reply."""
    frames, ms = _number(report, "in_utterance_underruns.frames"), _number(report, "in_utterance_underruns.ms")
    if not frames or ms is None:
        return []
    speech = _number(report, "in_utterance_underruns.speech_ms") or 0.0
    share = ms / max(ms + speech, 1.0)
    fill = _number(report, "in_utterance_underruns.fill_frames") or 0.0
    return [
        Issue(
            CRITICAL if share > UNDERRUNS_CRITICAL else WARNING,
            "underruns",
            where,
            f"{ms:.0f} ms inside replies was fill or dry playout ({share:.1%}; {fill:.0f} fill frames)",
            "the bridge's pacer ran short inside replies: check its in-utterance underruns and the process's CPU",
        )
    ]


def process_issues(loop_lag_ms: float) -> list[Issue]:
    """The process's own issue: its trio loop runs late (the moving average of its lag, in ms)."""
    severity = _severity(loop_lag_ms, LOOP_LAG_MS, LOOP_LAG_CRITICAL_MS)
    if severity is None:
        return []
    return [Issue(severity, "loop_lag", "the process", f"the event loop runs {loop_lag_ms:.0f} ms late", CPU_BOUND)]
