"""Calls dialled into ``rtstream serve`` by the caller simulator: N two-way Twilio calls per row.

    python benchmarks/serve.py                          # N = 1, 50, 100, 200, one worker
    python benchmarks/serve.py --workers 2              # and a row per N with two workers
    python benchmarks/serve.py --calls 100 --duration 20 --rate 10
    python benchmarks/serve.py --offer 2                # admission by headroom: 2x the capacity offered
    python benchmarks/serve.py --served benchmarks/serve-inbound.toml   # the caller's audio in only

Per row, three processes of their own, all fresh: ``rtstream serve benchmarks/serve.toml``
(a Twilio route: the caller's audio in through telephony_in, the bot's three replies out from
cartesia_tts (24 kHz) -> converter (8 kHz mu-law) -> chunker (20 ms) -> pacer -> telephony_out),
the TTS simulator (``rtstream simulate tts``, rtf 3, 100 ms to first byte; the served file
reaches it through ``TTS_URL``, so the server's process runs nothing but the calls) and the
caller simulator (``rtstream simulate caller protocol=twilio``: ``--rate`` calls a second,
each saying ``--duration`` seconds of audio in 20 ms messages, then stop). One worker runs on
CPU 0, the simulators on CPU 1. Two workers run on both CPUs, and share CPU 1 with the
simulators: their rows carry the harness's load too. Once the caller has finished, the server
gets SIGTERM and writes its report. The script prints figures; it asserts nothing.

Columns (times in ms):

- ok, fail: calls the caller completed, and those it did not (refused, timed out, cut short);
- dev p50/p99/max: |inter-arrival - 20 ms| of the bot's frames at the caller, over every frame
  of every call; gaps: the caller's 40 ms playout buffer ran dry;
- utt pacer, rx, rx ms: in-utterance underruns (damaged speech), summed over calls: at the
  server's pacers, slots between two frames of a reply with no frame ready (20 ms of silence
  each; the wait for a reply's first audio is not in it); at the caller, the frames of fill
  (digital silence) between the speech frames of a reply (a reply ends at its mark) plus its
  playout gaps inside the reply in frames, and the same in ms;
- cut: the bot's frames telephony_out dropped (a reply still playing at the caller's stop, a
  backlog), summed;
- first audio p50/p99: per call, from the caller's connection to the bot's first audio (the
  TTS simulator's 100 ms to first byte included);
- pacer late p99: the pacers' send lateness against their grid; the median call's p99, then the
  worst call's;
- cpu ms/call-s: the server's CPU time (user + sys from /proc/PID/stat, the workers' and their
  parent's) while the calls ran, over the calls' seconds (the sum of their durations at the
  server); 1000 is one core per call;
- KB/call: the growth of the server's resident memory (its peak, sampled every 0.1 s, over its
  size before the first call) per call;
- server %, wait %: the server's CPU time, and the time its processes' main threads were
  runnable but waiting for a CPU (``/proc/PID/schedstat``: other processes on its CPU), over the
  calls' wall time (100 % is one core); a wait well above zero means the row measures the
  machine's other load too;
- caller %, tts %: each simulator's CPU time over the calls' wall time (near 100 % on one CPU
  it is the bottleneck, and its lateness shows in the columns);
- load: the machine's 1, 5 and 15-minute load averages before and after the row.

With ``--offer F``: first the capacity, the largest N of ``--calls`` (25, 50, 75, 100, 150, 200
by default) whose row, with admission by load off (``--max-load 0``), kept every call whole (no
failed call, no in-utterance underrun at the pacer or the caller), stopping at the first row
that did not (``--capacity N`` skips the search); then F times that many calls offered twice,
all dialled within the first half of a call: with admission by load off, then on
(``--max-load``, the file's 0.7 by default). Each prints offered, admitted, refused by reason,
and for the admitted calls receiver p99 and max, in-utterance underruns at the pacers (slots) and
the caller (frames, ms), CPU per call-second, the server's CPU and wait (as above) and its peak load.

The rows run with admission by load off (``--max-load 0``) unless ``--max-load`` says otherwise:
they measure what one server carries, and ``max_calls`` is each row's N.

With ``--workers 2``, "carried" is the largest N whose row had no failed call, receiver p99 at
most ``--p99-ms`` and no in-utterance underrun at the pacers or the caller, for each worker
count, and their ratio (as coarse as the list of N).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _procs import (
    children,
    cpu_seconds,
    load_average,
    pin_to,
    rss_kb,
    runqueue_wait_seconds,
    start_simulator,
    stop,
)

HERE = Path(__file__).resolve().parent
SERVED = HERE / "serve.toml"
DEFAULT_CALLS = "1,50,100,200"
OFFER_CALLS = "25,50,75,100,150,200"
RTSTREAM = [sys.executable, "-P", "-m", "rtstream.cli"]
"""The command line in a new interpreter; -P keeps a checkout's rtstream/ folder from shadowing the install."""


def start_server(
    workers: int,
    calls: int,
    tts_url: str,
    args: argparse.Namespace,
    report: Path,
    cpus: set[int] | None,
    max_load: float | None,
):
    """``rtstream serve`` on a free loopback port (``max_load`` None: the file's): (the process, its port)."""
    env = {**os.environ, "TTS_URL": tts_url, "TTS_RATE": str(args.tts_rate), "REPLY_GAP": str(args.gap)}
    command = [*RTSTREAM, "--log-level", "error", "serve", str(args.served), "--port", "0", "-q"]
    command += ["--workers", str(workers), "--max-calls", str(max(calls, 1)), "--drain", "10"]
    if max_load is not None:
        command += ["--max-load", str(max_load)]
    command += ["--report", str(report)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, preexec_fn=pin_to(cpus), env=env)
    line = process.stdout.readline() if process.stdout else ""
    if not line.startswith("serving "):
        process.kill()
        raise SystemExit(f"rtstream serve did not start: {line!r}")
    return process, int(line.split(" on http://")[1].split()[0].rsplit(":", 1)[1])


def pacer_and_sink(call: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The statistics of the call's pacer and telephony_out, from the server's report."""
    pacer = sink = None
    for pipeline in call.get("report", {}).get("pipelines", []):
        for stage in pipeline["stages"]:
            if stage["type"] == "pacer":
                pacer = stage["statistics"]
            elif stage["type"] == "telephony_out":
                sink = stage["statistics"]
    return pacer, sink


def one_run(
    calls: int, workers: int, args: argparse.Namespace, *, max_load: float | None = None, rate: float | None = None
) -> dict[str, Any]:
    """One row: N calls into a fresh server with ``workers`` workers, dialled at ``rate`` (default ``--rate``)."""
    pinned = args.pin and (os.cpu_count() or 1) > 1
    server_cpus = ({0} if workers == 1 else set(range(os.cpu_count() or 1))) if pinned else None
    simulator_cpus = set(range(1, os.cpu_count() or 2)) if pinned else None
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        directory = Path(args.keep) / f"{calls}-w{workers}" if args.keep else Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        tts_report, server_report, caller_report = (directory / f"{x}.json" for x in ("tts", "serve", "caller"))
        tts, tts_url = start_simulator(
            "tts", f"rtf={args.rtf}", "first_byte_latency=0.1", report=tts_report, cpus=simulator_cpus
        )
        try:
            server, port = start_server(workers, calls, tts_url, args, server_report, server_cpus, max_load)
            try:
                pids = [server.pid, *children(server.pid)] if workers > 1 else [server.pid]
                time.sleep(0.5)  # let the server settle after its start
                cpu_before = sum(cpu_seconds(p) for p in pids)
                wait_before = sum(runqueue_wait_seconds(p) for p in pids)
                rss_before = {p: rss_kb(p) for p in pids}
                tts_before = cpu_seconds(tts.pid)
                caller_args = [f"url=ws://127.0.0.1:{port}/twilio", "protocol=twilio", f"calls={calls}"]
                caller_args += [f"rate={rate or args.rate}", f"duration={args.duration}", "report_calls=0"]
                caller_args += ["--report", str(caller_report)]
                started = time.perf_counter()
                caller = subprocess.Popen(
                    [
                        sys.executable,
                        "-P",
                        "-m",
                        "rtstream.cli",
                        "--log-level",
                        "error",
                        "simulate",
                        "caller",
                        *caller_args,
                    ],
                    stdout=subprocess.DEVNULL,
                    preexec_fn=pin_to(simulator_cpus),
                )
                peak = dict(rss_before)
                caller_cpu = None
                while caller_cpu is None:
                    for p in pids:
                        with contextlib.suppress(OSError):  # a worker that died
                            peak[p] = max(peak[p], rss_kb(p))
                    time.sleep(0.1)
                    caller_cpu = caller_exited(caller)
                wall = time.perf_counter() - started
                time.sleep(0.5)  # the server's last calls end just after the caller's
                cpu = sum(cpu_seconds(p) for p in pids) - cpu_before
                wait = sum(runqueue_wait_seconds(p) for p in pids) - wait_before
                tts_cpu = cpu_seconds(tts.pid) - tts_before
                for p in pids:
                    peak[p] = max(peak[p], rss_kb(p))
            finally:
                stop(server, signal.SIGTERM)
        finally:
            stop(tts)
        caller_data = json.loads(caller_report.read_text())
        server_data = json.loads(server_report.read_text())["server"]
    figures = summarize(calls, workers, caller_data, server_data, cpu, peak, rss_before, wall, caller_cpu, tts_cpu)
    return figures | {"server_pct": cpu / wall * 100, "wait_pct": wait / wall * 100}


def caller_exited(caller: subprocess.Popen[bytes]) -> float | None:
    """The caller's whole CPU time once it has exited (its rusage, from wait4); None while it runs."""
    pid, status, usage = os.wait4(caller.pid, os.WNOHANG)
    if pid == 0:
        return None
    caller.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def summarize(
    calls: int,
    workers: int,
    caller: dict[str, Any],
    server: dict[str, Any],
    cpu: float,
    peak: dict[int, int],
    rss_before: dict[int, int],
    wall: float,
    caller_cpu: float,
    tts_cpu: float,
) -> dict[str, Any]:
    underruns = 0
    late_p99: list[float] = []
    cut = 0
    for call in server.get("calls", []):
        pacer, sink = pacer_and_sink(call)
        if pacer is not None:
            underruns += pacer["in_utterance_underruns"]
            if pacer["lateness_ms"]["p99"] is not None:
                late_p99.append(pacer["lateness_ms"]["p99"])
        if sink is not None:
            cut += sum(d["frames"] for d in sink["drops"].values())
    call_seconds = sum(c.get("duration") or 0.0 for c in server.get("calls", []))
    deviation, first = caller["deviation_ms"], caller["first_audio_ms"]
    return {
        "calls": calls,
        "workers": workers,
        "ok": caller["completed"],
        "failed": sum(caller["failed"].values()),
        "p50": deviation["p50"],
        "p99": deviation["p99"],
        "max": deviation["max"],
        "gaps": caller["gaps"]["count"],
        "utt_pacer": underruns,
        "utt_rx": caller["in_utterance_underruns"]["frames"],
        "utt_rx_ms": caller["in_utterance_underruns"]["ms"],
        "fa_p50": first["p50"],
        "fa_p99": first["p99"],
        "late_p99_median": statistics.median(late_p99) if late_p99 else None,
        "late_p99_worst": max(late_p99) if late_p99 else None,
        "cut_frames": cut,
        "cpu_ms_per_call_s": cpu / call_seconds * 1000 if call_seconds else None,
        "rss_kb_per_call": sum(peak[p] - rss_before[p] for p in rss_before) / calls,
        "caller_pct": caller_cpu / wall * 100,
        "tts_pct": tts_cpu / wall * 100,
        "refused": sum(server.get("refused", {}).values()),
        "refused_by": server.get("refused", {}),
        "admitted": server.get("admitted", 0),
        "peak_load": max((w["peak_load"] for w in _loads(server)), default=None),
        "failures": caller["failed"],
        "marks": (caller["marks"], caller["marks_echoed"]),
    }


def _loads(server: dict[str, Any]) -> list[dict[str, Any]]:
    """The server's load statistics: one process's, or each worker's."""
    load = server.get("load")
    return load if isinstance(load, list) else [load] if load else []


def cell(value: float | int | None, width: int, digits: int = 1) -> str:
    if value is None:
        return "-".rjust(width)
    return f"{value:{width}.{digits}f}" if isinstance(value, float) else f"{value:{width}d}"


HEADER = (
    f"{'workers':>7} {'calls':>5} {'ok':>4} {'fail':>4} | {'dev p50':>7} {'p99':>6} {'max':>6} {'gaps':>5} | "
    f"{'utt pacer':>9} {'rx':>5} {'rx ms':>7} {'cut':>5} | {'first audio p50':>15} {'p99':>6} | "
    f"{'pacer late p99':>14} {'worst':>6} | {'cpu ms/call-s':>13} {'KB/call':>7} {'server %':>8} {'wait %':>6} | "
    f"{'caller %':>8} {'tts %':>5} | "
    f"load before -> after"
)


def row(r: dict[str, Any], before: str, after: str) -> str:
    return (
        f"{r['workers']:>7} {r['calls']:>5} {r['ok']:>4} {r['failed']:>4} | {cell(r['p50'], 7, 2)} "
        f"{cell(r['p99'], 6, 2)} {cell(r['max'], 6)} {r['gaps']:>5} | {r['utt_pacer']:>9} "
        f"{r['utt_rx']:>5} {cell(r['utt_rx_ms'], 7, 0)} {r['cut_frames']:>5} | {cell(r['fa_p50'], 15)} "
        f"{cell(r['fa_p99'], 6)} | "
        f"{cell(r['late_p99_median'], 14, 2)} {cell(r['late_p99_worst'], 6)} | {cell(r['cpu_ms_per_call_s'], 13, 2)} "
        f"{cell(r['rss_kb_per_call'], 7, 0)} {cell(r['server_pct'], 8, 0)} {cell(r['wait_pct'], 6, 0)} | "
        f"{cell(r['caller_pct'], 8, 0)} {cell(r['tts_pct'], 5, 0)} | "
        f"{before} -> {after}"
    )


def carried(rows: list[dict[str, Any]], workers: int, p99_ms: float) -> int:
    """The largest N whose row with ``workers`` kept every call whole at receiver p99 <= ``p99_ms``."""
    good = [
        r["calls"]
        for r in rows
        if r["workers"] == workers
        and r["failed"] == 0
        and r["p99"] is not None
        and r["p99"] <= p99_ms
        and not r["utt_rx"]
        and not r["utt_pacer"]
    ]
    return max(good, default=0)


def whole(r: dict[str, Any]) -> bool:
    """Every call completed, with no in-utterance underrun at the pacer or the caller."""
    return r["failed"] == 0 and not r["utt_pacer"] and not r["utt_rx"]


OFFER_HEADER = (
    f"{'max_load':>8} {'offered':>7} {'admitted':>8} {'refused':>20} | {'dev p99':>7} {'max':>6} | "
    f"{'utt pacer':>9} {'rx':>5} {'rx ms':>7} | {'cpu ms/call-s':>13} {'server %':>8} {'wait %':>6} "
    f"{'peak load':>9} | load before -> after"
)


def offer_row(max_load: str, r: dict[str, Any], before: str, after: str) -> str:
    refused = ", ".join(f"{n} {why}" for why, n in sorted(r["refused_by"].items())) or "0"
    return (
        f"{max_load:>8} {r['calls']:>7} {r['admitted']:>8} {refused:>20} | {cell(r['p99'], 7, 2)} "
        f"{cell(r['max'], 6)} | {r['utt_pacer']:>9} {r['utt_rx']:>5} {cell(r['utt_rx_ms'], 7, 0)} | "
        f"{cell(r['cpu_ms_per_call_s'], 13, 2)} {cell(r['server_pct'], 8, 0)} {cell(r['wait_pct'], 6, 0)} "
        f"{cell(r['peak_load'], 9, 2)} | {before} -> {after}"
    )


def offer(args: argparse.Namespace) -> None:
    """Find the capacity with admission by load off, then offer ``args.offer`` times it, off and on."""
    capacity = args.capacity
    if capacity is None:
        print("capacity: admission by load off (--max-load 0)", flush=True)
        print(HEADER, flush=True)
        capacity = 0
        for calls in [int(n) for n in args.calls.split(",")]:
            before = load_average()
            r = one_run(calls, 1, args, max_load=0.0)
            print(row(r, before, load_average()), flush=True)
            if not whole(r):
                break
            capacity = calls
    offered = max(round(args.offer * capacity), 1)
    rate = max(args.rate, offered / (args.duration / 2))
    print(
        f"capacity {capacity} calls; offering {offered} ({args.offer:g}x), dialled at {rate:g} per second",
        flush=True,
    )
    print(OFFER_HEADER, flush=True)
    for max_load in (0.0, args.max_load):
        before = load_average()
        r = one_run(offered, 1, args, max_load=max_load, rate=rate)
        label = "off" if max_load == 0 else "file" if max_load is None else f"{max_load:g}"
        print(offer_row(label, r, before, load_average()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default=DEFAULT_CALLS, help="comma-separated numbers of calls, a row each")
    parser.add_argument(
        "--workers", type=int, default=1, choices=(1, 2), help="2: a row with two workers beside each one-worker row"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of caller audio per call")
    parser.add_argument("--rate", type=float, default=40.0, help="calls dialled per second")
    parser.add_argument("--gap", type=float, default=0.8, help="seconds between one reply's end and the next request")
    parser.add_argument("--rtf", type=float, default=3.0, help="the TTS simulator's speed (times real time)")
    parser.add_argument(
        "--tts-rate", type=int, default=24000, choices=(8000, 16000, 24000), help="rate asked of the TTS"
    )
    parser.add_argument("--p99-ms", type=float, default=5.0, help="receiver p99 a row may have to count as carried")
    parser.add_argument("--keep", help="keep each row's three JSON reports under this folder")
    parser.add_argument(
        "--served",
        type=Path,
        default=SERVED,
        help="the served file (serve-inbound.toml beside it: the caller's audio only, no replies, no TTS)",
    )
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="let the server and the simulators share every CPU"
    )
    parser.add_argument(
        "--offer", type=float, help="offer this many times the capacity, with admission by load off and on"
    )
    parser.add_argument("--capacity", type=int, help="with --offer: the capacity, instead of searching for it")
    parser.add_argument(
        "--max-load",
        type=float,
        help="the server's max_load: with --offer, for its admission-on run (default: the file's); "
        "otherwise for every row (default 0: the rows measure what the server carries, not what it admits)",
    )
    args = parser.parse_args()
    if args.offer is not None:
        if args.calls == DEFAULT_CALLS:
            args.calls = OFFER_CALLS
        offer(args)
        return
    counts = [int(n) for n in args.calls.split(",")]
    pinning = "not pinned" if not args.pin else "one worker on CPU 0, simulators on CPU 1"
    if args.workers == 2 and args.pin:
        pinning += "; two workers on CPUs 0-1, sharing CPU 1 with the simulators"
    print(
        f"Twilio calls of {args.duration:g} s, {args.rate:g} dialled per second; "
        + (
            f"three replies each from a TTS at {args.tts_rate} Hz (rtf {args.rtf:g}), {args.gap:g} s apart, "
            "to 20 ms mu-law frames"
            if args.served == SERVED
            else f"served by {args.served.name}"
        )
        + f"; {pinning}; {os.cpu_count()} CPUs; times in ms",
        flush=True,
    )
    print(HEADER, flush=True)
    rows: list[dict[str, Any]] = []
    for calls in counts:
        for workers in (1, 2)[: args.workers]:
            before = load_average()
            try:
                r = one_run(calls, workers, args, max_load=0.0 if args.max_load is None else args.max_load)
            except (OSError, ValueError, KeyError, subprocess.SubprocessError, SystemExit) as exc:
                print(f"{workers:>7} {calls:>5} failed: {exc!r}", flush=True)
                continue
            rows.append(r)
            print(row(r, before, load_average()), flush=True)
            if r["failures"] or r["refused"]:
                reasons = ", ".join(f"{n} {why}" for why, n in sorted(r["failures"].items()))
                print(f"{'':>7} {'':>5} failed: {reasons or 'none'}; refused by the server: {r['refused']}", flush=True)
    if args.workers == 2:
        one, two = carried(rows, 1, args.p99_ms), carried(rows, 2, args.p99_ms)
        ratio = f"{two / one:.2f}x" if one else "-"
        print(
            f"carried (no failed call, receiver p99 <= {args.p99_ms:g} ms, no in-utterance underrun): "
            f"1 worker {one}, 2 workers {two}: {ratio}",
            flush=True,
        )


if __name__ == "__main__":
    main()
