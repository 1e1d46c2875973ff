"""Scripted conversations through a served call: turn latency, barge-in time and stale audio at the caller.

    python benchmarks/conversation.py                    # N = 1, 50
    python benchmarks/conversation.py --calls 10 --pipeline my-agent.toml --agent-delay-ms 350

For each N, ``rtstream serve --pipeline`` runs in a process of its own (its ``[calls]``
template on ``/twilio``, Twilio protocol, and the services its calls use) and takes N calls
dialled at once by the caller simulator in this process, each playing ``--script`` (by
default: listen to the bot, talk over it 400 ms after its first audio, then wait for an
answer); ``--rate`` calls arrive per second (20: 50 calls over 2.5 s, each about 5 s long, so
all overlap). The default file, ``conversation.toml``, replies with a tone from the call's start and
has ``barge_in`` on the caller's audio; the voice-agent pipeline is swapped in with ``--pipeline``.

Columns (ms, on the callers' clocks; definitions in ``simulators/caller/conversation.py``):

- latency p50/p99: turn latency (end of the caller's speech to the reply's first audio) minus
  ``--agent-delay-ms``, the agent's and TTS's own configured delays: what rtstream adds. Empty
  while the bot does not answer turns (the tone bot);
- barge-in p50/p99: the caller's speech onset over a reply to the end of the reply's last audio
  at the caller; target: the detector's onset time (``barge_in`` min_speech_ms, 60) + 60;
- clear p50/p99: onset to Twilio's ``clear`` arriving;
- stale p50/max: bot audio arriving later than onset + the detector's time; target one frame (20);
- barge-ins: turns that talked over a reply / calls; fail: calls that did not complete;
- jitter p99: the bot's frames' |inter-arrival - 20 ms| at the callers; gaps: their playout
  buffers ran dry (a reply that falls silent for ``reply_gap_ms`` looks finished, so an
  overloaded server shows as fewer barge-ins);
- utt pacer, rx: in-utterance underruns (damaged speech), summed over calls: at the server's
  pacers, slots between two frames of a reply with no frame ready (from the server's report);
  at the callers, frames of fill (digital silence) between the speech frames of a reply (a reply
  ends at its mark or clear) plus its playout gaps inside the reply in frames;
- server %, caller %: each process's CPU time over the run's wall time (near 100, that process
  is the bottleneck and the figures are its lateness).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rtstream.realtime import quiet_gc
from rtstream.simulators.caller import CallerSettings, Dialer
from rtstream.stats import Quantiles

HERE = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")


def start_server(args: argparse.Namespace, calls: int, report: Path) -> tuple[subprocess.Popen[str], int]:
    """``rtstream serve`` on a free port, writing its report at the end: the process and its port."""
    command = [sys.executable, "-P", "-m", "rtstream", "serve", args.pipeline, "--port", "0", "--drain", "2"]
    command += ["--report", str(report), "--max-calls", str(calls), "--max-load", "0"]  # every call in: the row's N
    process = subprocess.Popen([*command, "--log-level", "error"], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("serving "):
        process.kill()
        raise SystemExit(f"rtstream serve did not start: {line!r}")
    return process, int(line.split(" on http://", 1)[1].split()[0].rsplit(":", 1)[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def stop_server(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)


def pacer_underruns(server: dict[str, Any]) -> int:
    """The in-utterance underruns of every pacer of every call, from the server's report."""
    return sum(
        stage["statistics"]["in_utterance_underruns"]
        for call in server.get("calls", [])
        for pipeline in call.get("report", {}).get("pipelines", [])
        for stage in pipeline["stages"]
        if stage["type"] == "pacer"
    )


def one_run(args: argparse.Namespace, calls: int) -> dict[str, Any]:
    """N calls against a fresh server process: the row's figures."""
    with tempfile.TemporaryDirectory(prefix="conversation-bench-") as tmp:
        served = Path(tmp) / "serve.json"
        row = calls_against(args, calls, served)
        row["utt_pacer"] = pacer_underruns(json.loads(served.read_text())["server"])
    return row


def calls_against(args: argparse.Namespace, calls: int, served: Path) -> dict[str, Any]:
    """N calls against a fresh server process that writes its report to ``served``."""
    server, port = start_server(args, calls, served)
    try:
        settings = CallerSettings(
            url=f"ws://127.0.0.1:{port}/twilio",
            protocol="twilio",
            script=args.script,
            calls=calls,
            rate=args.rate,
            speak_at=0.0,
            linger=0.5,
            reply_timeout=args.reply_timeout,
            report_calls=calls,
        )
        dialer = Dialer(settings)
        began, own = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
        with quiet_gc():
            trio.run(dialer.run)
        wall = time.monotonic() - began
        used = resource.getrusage(resource.RUSAGE_SELF)
        caller_cpu = used.ru_utime + used.ru_stime - own.ru_utime - own.ru_stime
        server_cpu = cpu_seconds(server.pid)
        report = dialer.report()
    finally:
        stop_server(server)
    measures = {key: Quantiles(resolution=1e-6) for key in ("latency_ms", "barge_in_ms", "clear_ms", "stale_ms")}
    for call in report["per_call"]:
        for turn in call["turns"]:
            for key, quantiles in measures.items():
                if turn[key] is not None:
                    shift = args.agent_delay_ms if key == "latency_ms" else 0.0
                    quantiles.add((turn[key] - shift) / 1000)
    row: dict[str, Any] = {"calls": calls, "failed": sum(report["failed"].values())}
    row["server_pct"], row["caller_pct"] = 100 * server_cpu / wall, 100 * caller_cpu / wall
    row["gaps"], row["deviation_p99"] = report["gaps"]["count"], report["deviation_ms"]["p99"]
    row["barge_ins"] = report["conversation"]["barge_ins"]
    row["utt_rx"] = report["in_utterance_underruns"]["frames"]
    for key, q in measures.items():
        summary = q.summary(scale=1000)
        row[key] = None if not summary.count else {"p50": summary.p50, "p99": summary.p99, "max": summary.max}
    return row


def cell(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="1,50", help="comma-separated numbers of conversations at once")
    parser.add_argument(
        "--pipeline", default=str(HERE / "conversation.toml"), help="the file served (calls on /twilio)"
    )
    parser.add_argument("--script", default=str(HERE / "conversation-script.toml"), help="the callers' script")
    parser.add_argument("--rate", type=float, default=20.0, help="calls dialled per second")
    parser.add_argument("--reply-timeout", type=float, default=2.0, help="how long a turn waits for a reply (s)")
    parser.add_argument(
        "--agent-delay-ms", type=float, default=0.0, help="the agent's and TTS's own delays, taken off turn latency"
    )
    parser.add_argument("--json", action="store_true", help="print each row as JSON too")
    args = parser.parse_args()
    print(f"pipeline {Path(args.pipeline).name}, script {Path(args.script).name}; Twilio 20 ms μ-law; times in ms")
    print(
        f"{'calls':>5} {'fail':>4} | {'latency p50':>11} {'p99':>6} | {'barge-in p50':>12} {'p99':>6} | "
        f"{'clear p50':>9} {'p99':>6} | {'stale p50':>9} {'max':>6} | {'barge-ins':>9} | "
        f"{'jitter p99':>10} {'gaps':>5} | {'utt pacer':>9} {'rx':>5} | {'server %':>8} {'caller %':>8}"
    )
    for calls in (int(n) for n in args.calls.split(",")):
        row = one_run(args, calls)
        lat, bar, clr, stl = (row[k] or {} for k in ("latency_ms", "barge_in_ms", "clear_ms", "stale_ms"))
        print(
            f"{calls:>5} {row['failed']:>4} | {cell(lat.get('p50'), 11)} {cell(lat.get('p99'), 6)} | "
            f"{cell(bar.get('p50'), 12)} {cell(bar.get('p99'), 6)} | {cell(clr.get('p50'), 9)} "
            f"{cell(clr.get('p99'), 6)} | {cell(stl.get('p50'), 9)} {cell(stl.get('max'), 6)} | "
            f"{row['barge_ins']:>4}/{calls:<4} | {cell(row['deviation_p99'], 10)} {row['gaps']:>5} | "
            f"{row['utt_pacer']:>9} {row['utt_rx']:>5} | "
            f"{row['server_pct']:>8.0f} {row['caller_pct']:>8.0f}",
            flush=True,
        )
        if args.json:
            print(json.dumps(row))


if __name__ == "__main__":
    main()
