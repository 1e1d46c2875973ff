"""Concurrent calls through one bridge process, the simulator in a separate process.

    python benchmarks/bridge.py [--calls 1,50,200] [--seconds 3] [--protocol raw]

Each call is a pipeline built by :func:`call_stages`; for now that is ``tone`` (exact
real-time 60 ms frames, or 20 ms for Twilio) into ``telephony_ws``, so the figures are those of
the telephony side alone: the sink, the socket and the receiver. The telephony simulator runs
as ``rtstream simulate telephony`` in its own process and measures what arrives. Per N the
table shows the receiver's inter-arrival deviation from the frame period (p50/p99/max over all
frames of all calls), gaps and wrong-size frames, then the bridge process's CPU time per call
per second of audio and its peak memory growth per call. Once the converter, chunker and pacer
are in, :func:`call_stages` becomes the full bridge (TTS simulator -> cartesia_tts ->
converter -> chunker -> pacer -> telephony_ws) and a TTS simulator process joins.

The simulator shares the machine: at high N its own load shows up in the deviation figures
(``sim cpu %`` is its CPU time over the run's wall time; near 100 it is the bottleneck).
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from rtstream.pipeline import assemble
from rtstream.runner import run_pipelines
from rtstream.stage import Stage
from stages.telephony import TelephonySink
from stages.tone import Tone

FRAME_MS = {"raw": 60, "twilio": 20}


def call_stages(url: str, protocol: str, seconds: float) -> list[Stage]:
    """The stages of one call (``seconds`` rounded to whole frames, as a pacer pads the last one)."""
    encoding = "pcm_mulaw" if protocol == "twilio" else "pcm_s16le"
    frame = FRAME_MS[protocol] / 1000
    tone = Tone(sample_rate=8000, encoding=encoding, chunk_ms=FRAME_MS[protocol], duration=round(seconds / frame) * frame)
    return [tone, TelephonySink(url=url, protocol=protocol, marks=protocol != "raw")]


def start_simulator(protocol: str, report: Path) -> tuple[subprocess.Popen[str], str]:
    args = [sys.executable, "-m", "rtstream.cli", "simulate", "telephony", f"protocol={protocol}", "report_calls=0",
            "--report", str(report)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline() if process.stdout else ""
    if " listening on " not in line:
        process.kill()
        raise SystemExit(f"the simulator did not start: {line!r}")
    return process, line.split(" listening on ")[1].split()[0]


def one_run(calls: int, seconds: float, protocol: str) -> dict[str, float | int | None]:
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        process, url = start_simulator(protocol, report_path)
        try:
            pipelines = [assemble(f"call{i}", call_stages(url, protocol, seconds), instance=i) for i in range(calls)]
            before = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            run = trio.run(run_pipelines, pipelines)
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=30)
        sim = resource.getrusage(resource.RUSAGE_CHILDREN)
        report = json.loads(report_path.read_text())
    failed = sum(p.status != "completed" for p in run.pipelines)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    deviation = report["deviation_ms"]
    return {
        "calls": calls,
        "failed": failed,
        "p50_ms": deviation["p50"],
        "p99_ms": deviation["p99"],
        "max_ms": deviation["max"],
        "gaps": report["gaps"]["count"],
        "wrong_size": report["wrong_size"],
        "cpu_ms_per_call_s": cpu / calls / seconds * 1000,
        "rss_kb_per_call": (after.ru_maxrss - before.ru_maxrss) / calls,
        "wall_s": wall,
        "sim_cpu_pct": ((sim.ru_utime + sim.ru_stime) - (children.ru_utime + children.ru_stime)) / wall * 100,
    }


def fmt(value: float | int | None, width: int, digits: int = 2) -> str:
    if value is None:
        return "-".rjust(width)
    return f"{value:{width}.{digits}f}" if isinstance(value, float) else f"{value:{width}d}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="1,50,200", help="comma-separated numbers of concurrent calls")
    parser.add_argument("--seconds", type=float, default=3.0, help="audio per call")
    parser.add_argument("--protocol", choices=sorted(FRAME_MS), default="raw")
    args = parser.parse_args()
    print(f"{args.protocol} frames of {FRAME_MS[args.protocol]} ms, {args.seconds:g} s per call; "
          "deviation = receiver inter-arrival minus frame period, over all frames")
    print(f"{'calls':>6} {'failed':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'gaps':>6} {'badsize':>7} "
          f"{'cpu ms/call/s':>13} {'rss KB/call':>11} {'wall s':>7} {'sim cpu %':>9}")
    for calls in (int(n) for n in args.calls.split(",")):
        r = one_run(calls, args.seconds, args.protocol)
        print(f"{r['calls']:>6} {r['failed']:>6} {fmt(r['p50_ms'], 8)} {fmt(r['p99_ms'], 8)} {fmt(r['max_ms'], 8)} "
              f"{r['gaps']:>6} {r['wrong_size']:>7} {fmt(r['cpu_ms_per_call_s'], 13)} {fmt(r['rss_kb_per_call'], 11, 1)} "
              f"{fmt(r['wall_s'], 7)} {fmt(r['sim_cpu_pct'], 9, 0)}", flush=True)


if __name__ == "__main__":
    main()
