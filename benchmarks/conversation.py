"""Scripted conversations through a served call: turn latency, barge-in time and stale audio at the caller.

    python benchmarks/conversation.py                    # N = 1, 50
    python benchmarks/conversation.py --calls 10 --pipeline my-agent.toml --agent-delay-ms 350

For each N, a server process (this script again, with ``--serve``: :class:`rtstream.server.Server`
with a Twilio :class:`rtstream.routes.CallEndpoint` on ``/twilio`` running ``--pipeline``'s
pipelines per call through :func:`rtstream.callrun.call_runner`, the file's services beside
it; ``rtstream serve`` is not on main yet) takes N calls dialled at once by the caller simulator
in this process, each playing ``--script`` (by default: listen to the bot, talk over it 400 ms
after its first audio, then wait for an answer). The default pipeline, ``conversation.toml``,
replies with a tone from the call's start and has ``barge_in`` on the caller's audio; the
voice-agent pipeline is swapped in with ``--pipeline``.

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
- server %, caller %: each process's CPU time over the run's wall time (near 100, that process
  is the bottleneck and the figures are its lateness).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rtstream.callrun import call_runner
from rtstream.calls import CallSettings
from rtstream.config import parse_config
from rtstream.httpserver import bound_port, open_listener
from rtstream.pipeline import build_service
from rtstream.realtime import quiet_gc
from rtstream.routes import CallEndpoint
from rtstream.runner import open_services
from rtstream.server import Server
from rtstream.simulators.caller import CallerSettings, Dialer
from rtstream.stats import Quantiles

HERE = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")


async def serve(args: argparse.Namespace) -> None:
    """The server process: one route, its calls until stdin closes; the port on stdout once listening.

    The file's services (the voice-agent simulator, a TTS simulator) run in this process too,
    as ``rtstream run`` runs them.
    """
    config = parse_config(Path(args.serve).read_text(), file=args.serve)
    services = {name: build_service(spec, file=config.file) for name, spec in config.services.items()}
    settings = CallSettings(path="/twilio", protocol="twilio", pipelines=tuple(args.pipelines.split(",")))
    async with open_services(services) as endpoints, trio.open_nursery() as nursery:
        endpoint = CallEndpoint("twilio", settings, call_runner(config, endpoints, {}), public_url=None)
        server = Server({"/twilio": endpoint}, max_calls=args.max_calls)
        listener = await open_listener("127.0.0.1", 0)
        await nursery.start(server.serve, [listener])
        print(bound_port(listener), flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)  # the parent closes it when done
        server.abort()


def start_server(args: argparse.Namespace, calls: int) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, __file__, "--serve", args.pipeline, "--pipelines", args.pipelines]
    process = subprocess.Popen(
        [*command, "--max-calls", str(calls)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip().isdigit():
        process.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return process, int(line)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def stop_server(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=30)


def one_run(args: argparse.Namespace, calls: int) -> dict[str, Any]:
    """N calls against a fresh server process: the row's figures."""
    server, port = start_server(args, calls)
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
    for key, q in measures.items():
        summary = q.summary(scale=1000)
        row[key] = None if not summary.count else {"p50": summary.p50, "p99": summary.p99, "max": summary.max}
    return row


def cell(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="1,50", help="comma-separated numbers of conversations at once")
    parser.add_argument("--pipeline", default=str(HERE / "conversation.toml"), help="the pipelines file served")
    parser.add_argument("--pipelines", default="caller,bot", help="the pipelines each call runs, comma-separated")
    parser.add_argument("--script", default=str(HERE / "conversation-script.toml"), help="the callers' script")
    parser.add_argument("--rate", type=float, default=200.0, help="calls dialled per second")
    parser.add_argument("--reply-timeout", type=float, default=2.0, help="how long a turn waits for a reply (s)")
    parser.add_argument(
        "--agent-delay-ms", type=float, default=0.0, help="the agent's and TTS's own delays, taken off turn latency"
    )
    parser.add_argument("--json", action="store_true", help="print each row as JSON too")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--max-calls", type=int, default=100, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        with quiet_gc():
            trio.run(serve, args)
        return
    print(f"pipeline {Path(args.pipeline).name}, script {Path(args.script).name}; Twilio 20 ms μ-law; times in ms")
    print(
        f"{'calls':>5} {'fail':>4} | {'latency p50':>11} {'p99':>6} | {'barge-in p50':>12} {'p99':>6} | "
        f"{'clear p50':>9} {'p99':>6} | {'stale p50':>9} {'max':>6} | {'barge-ins':>9} | "
        f"{'jitter p99':>10} {'gaps':>5} | {'server %':>8} {'caller %':>8}"
    )
    for calls in (int(n) for n in args.calls.split(",")):
        row = one_run(args, calls)
        lat, bar, clr, stl = (row[k] or {} for k in ("latency_ms", "barge_in_ms", "clear_ms", "stale_ms"))
        print(
            f"{calls:>5} {row['failed']:>4} | {cell(lat.get('p50'), 11)} {cell(lat.get('p99'), 6)} | "
            f"{cell(bar.get('p50'), 12)} {cell(bar.get('p99'), 6)} | {cell(clr.get('p50'), 9)} "
            f"{cell(clr.get('p99'), 6)} | {cell(stl.get('p50'), 9)} {cell(stl.get('max'), 6)} | "
            f"{row['barge_ins']:>4}/{calls:<4} | {cell(row['deviation_p99'], 10)} {row['gaps']:>5} | "
            f"{row['server_pct']:>8.0f} {row['caller_pct']:>8.0f}",
            flush=True,
        )
        if args.json:
            print(json.dumps(row))


if __name__ == "__main__":
    main()
