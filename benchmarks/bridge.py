"""Concurrent bridged calls in one bridge process, the simulators in processes of their own.

    python benchmarks/bridge.py                          # N = 1, 50, 200, 500
    python benchmarks/bridge.py --calls 200 --profile    # py-spy's view of the bridge: out/bridge-200.speedscope.json
    python benchmarks/bridge.py --calls 50 --tts cartesia,elevenlabs,deepgram   # a row per TTS protocol
    python benchmarks/bridge.py --calls 50 --no-fuse     # a task per stage, for comparison

Each call is the product pipeline of ``pipelines.toml``: the TTS simulator (``rtstream simulate
tts``, Cartesia protocol; or ``elevenlabs`` or ``deepgram`` with ``--tts``, the same speech and
chunking) -> cartesia_tts (or elevenlabs_tts, deepgram_tts; 24 kHz PCM16) -> converter (soxr HQ to 8 kHz) ->
chunker (60 ms) -> pacer -> telephony_ws (raw binary frames) -> the telephony simulator
(``rtstream simulate telephony``), which times every frame. A call says ``--turns`` replies, the
next one asked for ``--gap`` seconds after the last one's audio is in (the caller's turn); calls
arrive one after another, ``--arrivals`` per second (40/s by default: 200 calls connect over 5 s;
a real contact centre sees a few per second, so this is already a storm of set-ups). The bridge
runs on CPU 0 and the simulators on the other CPUs (``--no-pin`` to share them all), so the
harness does not take the bridge's time. The bridge's trio loop runs inside :func:`rtstream.realtime.quiet_gc`. Each N
runs in a fresh process (this script again, with ``--one``), so CPU and memory are that N's alone.

Columns (times in ms):

- receiver p50/p99/max: |inter-arrival - 60 ms| at the telephony simulator, over all frames of
  all calls (the steadiness the caller's phone sees); gaps: its playout buffer ran dry;
- utt pacer, rx: in-utterance underruns (damaged speech), summed over calls: at the pacers, slots
  between two frames of a reply with no frame ready (``in_utterance_underruns``); at the
  receiver, frames of fill (digital silence) between the speech frames of a reply plus its
  playout gaps inside a reply in frames. Raw streams carry no marks, so there a reply ends at
  300 ms of fill or dry playout (the simulator's ``reply_idle_ms``; the line is idle about
  0.6 s between replies, and speech pauses are not silence): longer stalls inside a reply are
  in the pacer's figure only, and a late first audio right after a reply is in rx. 0 and 0 is
  a clean run;
- first audio p50/p99/max: per turn, from the arrival at the bridge of the turn's first TTS audio
  to the send of its first frame (``telephony_ws`` ``first_audio_ms``); target one frame (60 ms)
  plus the prebuffer (the pacer's lead, 0 here);
- sent p50/p99: the pacers' own lateness against their grid (the bridge's share of the receiver's
  figure; the rest is loopback and the telephony simulator's own scheduling);
- late: frames the pacers sent more than 10 ms after their deadline;
- cpu/call: the bridge process's CPU time per call per second of call (ms/s; 1000 is one core
  per call); rss/call: the growth of its peak resident memory per call;
- tts %, phone %: each simulator's CPU time over the run's wall time (near 100 it is the
  bottleneck, and its own lateness shows in the figures);
- rx cpu, msg/s, tts first p50: the TTS protocol's receive path alone — the CPU time of parsing
  each service message (JSON, base64) and turning it into frames, per call per second of audio
  (ms/s), the service messages received per call-second, and per turn the time from its first
  request to its first audio (the protocol's first-audio latency, the simulator's 100 ms
  first-byte latency included). rx cpu and msg/s only with ``--rx-cpu``: timing each message
  costs the bridge CPU of its own, so cpu/call is measured without it;
- steps/s, waits/s (``--steps``): per call-second, the trio task steps the bridge ran (each a task
  woken and run to its next wait: the scheduling cost that fusion removes) and the loop's waits
  for I/O or timers (over all calls: shared by the calls that wake together).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _procs import cpu_seconds, start_simulator, stop

from rtstream.pipeline import assemble
from rtstream.realtime import quiet_gc
from rtstream.runner import RunControl, run_pipeline
from rtstream.stages.cartesia import CartesiaTTS
from rtstream.stages.chunker import Chunker
from rtstream.stages.converter import Converter
from rtstream.stages.deepgram import DeepgramTTS
from rtstream.stages.elevenlabs import ElevenLabsTTS
from rtstream.stages.pacer import Pacer
from rtstream.stages.telephony import TelephonySink
from rtstream.stats import Quantiles

TURNS = ("Hello, and thanks for calling.", "Your order left our warehouse on Monday.", "It should arrive tomorrow.")
FRAME_MS = 60


PROTOCOLS = {
    "cartesia": ("tts", CartesiaTTS),
    "elevenlabs": ("elevenlabs", ElevenLabsTTS),
    "deepgram": ("deepgram", DeepgramTTS),
}
"""--tts: the simulator's service type and the stage, per TTS protocol."""


def call_stages(tts_url: str, phone_url: str, args: argparse.Namespace) -> list:
    stage = PROTOCOLS[args.tts][1]
    return [
        stage(
            url=tts_url, transcripts=TURNS[: args.turns], encoding="pcm_s16le", sample_rate=args.tts_rate, gap=args.gap
        ),
        Converter(quality=args.quality),
        Chunker(frame_ms=FRAME_MS),
        Pacer(frame_ms=FRAME_MS, lead=args.lead, align_ms=args.align_ms),
        TelephonySink(url=phone_url, protocol="raw", drain_timeout=5.0),
    ]


def start(kind: str, *settings: str, report: Path) -> tuple[subprocess.Popen[str], str]:
    """``rtstream simulate KIND`` in a process of its own, on the simulators' CPUs: (the process, its URL)."""
    return start_simulator(kind, *settings, report=report, cpus=SIMULATOR_CPUS)


BRIDGE_CPUS: set[int] | None = None
SIMULATOR_CPUS: set[int] | None = None


class StepCounter(trio.abc.Instrument):
    """Counts task steps (a task resumed and run to its next wait) and the loop's waits for I/O or timers."""

    def __init__(self) -> None:
        self.steps = self.waits = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1

    def before_io_wait(self, timeout: float) -> None:
        self.waits += 1


class TimedDialect:
    """A TTS dialect whose receive path is timed (CPU) and counted, for the rx columns."""

    def __init__(self, dialect, totals: dict) -> None:
        self._dialect, self._totals = dialect, totals

    def __getattr__(self, name: str):
        return getattr(self._dialect, name)

    def receive(self, message, now):
        started = time.process_time()
        try:
            return self._dialect.receive(message, now)
        finally:
            self._totals["cpu"] += time.process_time() - started
            self._totals["messages"] += 1


def time_receive_path(element, totals: dict) -> None:
    """Time the element's dialects (each connection's) as they parse the service's messages."""
    make = element._dialect
    element._dialect = lambda: TimedDialect(make(), totals)


async def run_calls(tts_url: str, phone_url: str, args: argparse.Namespace) -> tuple[list, list, dict]:
    pipelines = [
        assemble(f"call{i}", call_stages(tts_url, phone_url, args), instance=i, fuse=args.fuse) for i in range(args.one)
    ]
    rx = {"cpu": 0.0, "messages": 0}
    if args.rx_cpu:
        for pipeline in pipelines:
            time_receive_path(pipeline.elements[0], rx)
    reports: list = []
    control = RunControl()

    async def one(i: int) -> None:
        await trio.sleep(i / args.arrivals)
        reports.append(await run_pipeline(pipelines[i], control))

    async with trio.open_nursery() as nursery:
        for i in range(args.one):
            nursery.start_soon(one, i)
    return pipelines, reports, rx


def one_run(args: argparse.Namespace) -> dict:
    """One N, in this process: the row's figures."""
    with tempfile.TemporaryDirectory() as tmp:
        tts_report, phone_report = Path(tmp) / "tts.json", Path(tmp) / "phone.json"
        rate = args.tts_rate
        scale = rate * args.chunk_scale / 8000  # the simulator's 500/300/700/200 bytes at 8 kHz: 31/19/44/12 ms
        pattern = ",".join(str(round(b * scale / 2) * 2) for b in (500, 300, 700, 200))
        kind = PROTOCOLS[args.tts][0]
        tts, tts_url = start(kind, "rtf=3", "first_byte_latency=0.1", f"pattern=[{pattern}]", report=tts_report)
        phone, phone_url = start("telephony", "protocol=raw", "report_calls=0", report=phone_report)
        try:
            sims_before = cpu_seconds(tts.pid), cpu_seconds(phone.pid)
            before = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            steps = StepCounter() if args.steps else None
            with quiet_gc():
                pipelines, reports, rx = trio.run(
                    run_calls, tts_url, phone_url, args, instruments=[steps] if steps else []
                )
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_SELF)
            sims = cpu_seconds(tts.pid) - sims_before[0], cpu_seconds(phone.pid) - sims_before[1]
        finally:
            stop(tts)
            stop(phone)
        received = json.loads(phone_report.read_text())
    first_audio = Quantiles()
    tts_first = Quantiles()
    lateness = Quantiles()
    late = in_utterance = 0
    seconds = 0.0
    for pipeline in pipelines:
        sink, pacer = pipeline.elements[-1], pipeline.elements[-2]
        first_audio.merge(sink.first_audio)
        tts_first.merge(pipeline.elements[0]._counts.first_chunk)
        lateness.merge(pacer.lateness)
        pacer_stats = pacer.statistics()
        late += pacer_stats.late_frames
        in_utterance += pacer_stats.in_utterance_underruns
        seconds += sink.statistics().seconds_sent
    deviation = received["deviation_ms"]
    audio = first_audio.summary(scale=1000)
    sent = lateness.summary(scale=1000)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "calls": args.one,
        "failed": sum(r.status != "completed" for r in reports),
        "p50": deviation["p50"],
        "p99": deviation["p99"],
        "max": deviation["max"],
        "gaps": received["gaps"]["count"],
        "wrong_size": received["wrong_size"],
        "fa_p50": audio.p50,
        "fa_p99": audio.p99,
        "fa_max": audio.max,
        "turns": audio.count,
        "late": late,
        "utt_pacer": in_utterance,
        "utt_rx": received["in_utterance_underruns"]["frames"],
        "sent_p50": sent.p50,
        "sent_p99": sent.p99,
        "cpu_ms_per_call_s": cpu / seconds * 1000 if seconds else None,
        "rss_kb_per_call": (after.ru_maxrss - before.ru_maxrss) / args.one,
        "wall": wall,
        "tts_pct": sims[0] / wall * 100,
        "phone_pct": sims[1] / wall * 100,
        "rx_cpu_ms_per_call_s": rx["cpu"] / seconds * 1000 if seconds and args.rx_cpu else None,
        "rx_messages_per_call_s": rx["messages"] / seconds if seconds and args.rx_cpu else None,
        "tts_first_p50": tts_first.summary(scale=1000).p50,
        "steps_per_call_s": steps.steps / seconds if steps and seconds else None,
        "waits_per_call_s": steps.waits / seconds if steps and seconds else None,
    }


def cell(value: float | int | None, width: int, digits: int = 1) -> str:
    if value is None:
        return "-".rjust(width)
    return f"{value:{width}.{digits}f}" if isinstance(value, float) else f"{value:{width}d}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="1,50,200,500", help="comma-separated numbers of concurrent calls")
    parser.add_argument("--turns", type=int, default=3, choices=(1, 2, 3), help="replies per call")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between a reply's audio and the next request")
    parser.add_argument(
        "--arrivals", type=float, default=40.0, help="calls arriving per second (a set-up storm above a few hundred)"
    )
    parser.add_argument(
        "--tts-rate", type=int, default=24000, choices=(8000, 16000, 24000), help="rate asked of the TTS"
    )
    parser.add_argument(
        "--quality", default="HQ", choices=("LQ", "MQ", "HQ", "VHQ"), help="the converter's soxr recipe"
    )
    parser.add_argument(
        "--chunk-scale",
        type=float,
        default=1.0,
        help="TTS chunk durations relative to 31/19/44/12 ms (fewer, larger messages above 1)",
    )
    parser.add_argument("--lead", type=int, default=0, help="the pacer's lead (prebuffer) in frames")
    parser.add_argument(
        "--align-ms", type=float, default=5.0, help="the pacer's align_ms (0: each call's clock from its first frame)"
    )
    parser.add_argument(
        "--tts", default="cartesia", help="comma-separated TTS protocols, a row each: cartesia, elevenlabs, deepgram"
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="let the bridge and the simulators share every CPU (by default the bridge has CPU 0)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="record the bridge with py-spy (out/bridge-N.speedscope.json)"
    )
    parser.add_argument(
        "--rx-cpu",
        action="store_true",
        help="time the TTS receive path (the rx cpu and msg/s columns; the timing itself costs the bridge CPU)",
    )
    parser.add_argument(
        "--steps",
        action="store_true",
        help="count the bridge's task steps and loop waits per call-second (a trio instrument; it costs CPU)",
    )
    parser.add_argument(
        "--no-fuse", dest="fuse", action="store_false", help="a task per stage (the pipeline's fuse = false)"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pin and (os.cpu_count() or 1) > 1:  # the bridge on CPU 0, the simulators on the rest
        global BRIDGE_CPUS, SIMULATOR_CPUS
        BRIDGE_CPUS, SIMULATOR_CPUS = {0}, set(range(1, os.cpu_count() or 2))
        os.sched_setaffinity(0, BRIDGE_CPUS)
    if args.one:
        print(json.dumps(one_run(args)))
        return
    protocols = args.tts.split(",")
    if unknown := [p for p in protocols if p not in PROTOCOLS]:
        parser.error(f"--tts: unknown protocol {unknown[0]!r}; use {', '.join(PROTOCOLS)}")
    own = (
        ["--no-pin"] * (not args.pin)
        + ["--no-fuse"] * (not args.fuse)
        + ["--rx-cpu"] * args.rx_cpu
        + ["--steps"] * args.steps
        + [
            f"--turns={args.turns}",
            f"--gap={args.gap}",
            f"--arrivals={args.arrivals}",
            f"--tts-rate={args.tts_rate}",
            f"--quality={args.quality}",
            f"--lead={args.lead}",
            f"--align-ms={args.align_ms}",
            f"--chunk-scale={args.chunk_scale}",
        ]
    )
    print(
        f"{args.turns} turns per call from a TTS at {args.tts_rate} Hz (rtf 3), {args.quality} resampling to 8 kHz, "
        f"60 ms raw frames, lead {args.lead}, align {args.align_ms:g} ms; {args.arrivals:g} calls arrive per second; "
        "times in ms"
    )
    print(
        f"{'tts':>10} {'calls':>5} {'fail':>4} | {'receiver p50':>12} {'p99':>6} {'max':>6} {'gaps':>5} {'bad':>4} | "
        f"{'utt pacer':>9} {'rx':>5} | "
        f"{'first audio p50':>15} {'p99':>6} {'max':>6} | {'sent p50':>8} {'p99':>6} {'late':>5} {'cpu/call':>8} "
        f"{'rss KB/call':>11} "
        f"{'wall s':>6} {'tts %':>5} {'phone %':>7} | {'rx cpu':>6} {'msg/s':>5} {'tts first p50':>13} | "
        f"{'steps/s':>7} {'waits/s':>7}"
    )
    for protocol, calls in ((p, int(n)) for p in protocols for n in args.calls.split(",")):
        command = [sys.executable, __file__, *own, f"--tts={protocol}", "--one", str(calls)]
        if args.profile:  # py-spy comes with the bench extra; open the file in speedscope.app
            Path("out").mkdir(exist_ok=True)
            command = [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "-o",
                f"out/bridge-{calls}.speedscope.json",
                "-f",
                "speedscope",
                "--",
                *command,
            ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        line = next((x for x in reversed(done.stdout.splitlines()) if x.startswith("{")), None)
        if line is None:
            print(f"{protocol:>10} {calls:>5} failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
            continue
        r = json.loads(line)
        print(
            f"{protocol:>10} {r['calls']:>5} {r['failed']:>4} | {cell(r['p50'], 12, 2)} {cell(r['p99'], 6, 2)} "
            f"{cell(r['max'], 6)} "
            f"{r['gaps']:>5} {r['wrong_size']:>4} | {r['utt_pacer']:>9} {r['utt_rx']:>5} | "
            f"{cell(r['fa_p50'], 15)} {cell(r['fa_p99'], 6)} "
            f"{cell(r['fa_max'], 6)} | {cell(r['sent_p50'], 8, 2)} {cell(r['sent_p99'], 6, 2)} {r['late']:>5} "
            f"{cell(r['cpu_ms_per_call_s'], 8, 2)} "
            f"{cell(r['rss_kb_per_call'], 11)} {cell(r['wall'], 6)} {cell(r['tts_pct'], 5, 0)} "
            f"{cell(r['phone_pct'], 7, 0)} | {cell(r['rx_cpu_ms_per_call_s'], 6, 2)} "
            f"{cell(r['rx_messages_per_call_s'], 5, 0)} {cell(r['tts_first_p50'], 13)} | "
            f"{cell(r['steps_per_call_s'], 7, 0)} {cell(r['waits_per_call_s'], 7, 0)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
