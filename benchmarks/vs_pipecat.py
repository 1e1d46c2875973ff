"""rtstream and Pipecat side by side on one job, in one harness, each N of each in a fresh process.

    pip install -e '.[pipecat]'                       # Pipecat 1.14, a bench-only extra
    python benchmarks/vs_pipecat.py                    # N = 10, 50, 100
    python benchmarks/vs_pipecat.py --calls 1 --systems rtstream
    python benchmarks/vs_pipecat.py --systems rtstream,pipecat,pipecat-lean,pipecat-nomix

The job (``benchmarks/vs_pipecat.toml``): per call, three replies from the TTS simulator
(``rtstream simulate tts``, the Cartesia protocol, 24 kHz PCM16 at 3x real time in
31/19/44/12 ms chunks, 100 ms to first byte; the next reply asked for 0.5 s after the last one's
audio is in), resampled to 8 kHz with soxr VHQ, cut into 60 ms frames and paced to the
telephony simulator (``rtstream simulate telephony protocol=raw``: binary 960-byte PCM16 frames),
which times every frame. Calls arrive ``--arrivals`` per second. Both systems dial the same two
simulators, started afresh for each run in processes of their own, on the CPUs the system
under test does not have (``--no-pin`` shares them all).

- rtstream: the ``bridge`` pipeline of the TOML file, built by ``rtstream.config`` and
  ``build_pipeline`` as each call arrives and run by ``run_pipeline`` under ``quiet_gc``, as
  ``rtstream run`` does; so whatever the default path does (fusion, say) is what is measured.
- Pipecat (``_pipecat_calls.py``): per call, built as it arrives, a ``PipelineWorker`` of
  ``CartesiaTTSService`` (its ``url`` the simulator's, 24 kHz) -> ``WebsocketClientTransport``
  output (8 kHz, 60 ms chunks; its MediaSender resamples with soxr VHQ and paces; no WAV header;
  no end silence), run by a ``WorkerRunner`` of its own as a per-call bot server runs one.
  Pipecat has no raw serializer; its ``VonageFrameSerializer`` at 8 kHz sends the audio as
  binary PCM16, which is the raw protocol. Each reply is a ``TTSSpeakFrame``, then an
  ``EndFrame``. Pipecat logs at WARNING, as rtstream does by default.

What had to be made equal:

- The cadence. rtstream's pacer sends silence between replies; Pipecat's output sends nothing
  when its queue is empty (the receiver, which has no marks on a raw stream, would count each
  pause as jitter and a gap), unless it has a mixer. It gets one that mixes nothing in
  (``Cadence``), so both send a frame every 60 ms for the whole call, and both fill a frame
  missing inside a reply with silence on time (the receiver counts those for both).
- The turns. rtstream's cartesia_tts asks for the next reply ``gap`` seconds after it has handed
  the last one's audio downstream, through bounded buffers: about when that audio is sent.
  Pipecat's output queue is unbounded, so the matching moment there is its output passing the
  reply's ``TTSStoppedFrame`` on (after the reply's last frame is sent); waiting on the service's
  own ``TTSStoppedFrame`` instead would ask while the reply is still playing. The speech, ctx and
  got s columns show whether the two did the same job.
- Pipecat's output keeps one frame of lead: the first two frames of a call arrive together, so
  its receiver max is about 60 ms at any N (rtstream's pacer has ``lead = 0``).
- Both import their modules before the measured window and build their calls inside it.

Columns (times in ms):

- cpu/call: the system's process CPU time (getrusage: user + sys, every thread) per call-second
  of the job (the speech of its three replies, 7.8 s a call, as the simulator speaks them: the
  same for both whatever a system retried); rss KB/call: growth of its peak resident memory
  per call;
- receiver p50/p99/max: |inter-arrival - 60 ms| at the telephony simulator over every frame of
  every call; gaps: its 40 ms playout buffer ran dry; bad: frames of the wrong size; got s: the
  seconds it received (speech plus what was sent as silence);
- speech s, ctx: the seconds of audio the TTS simulator sent and the contexts (replies) it was
  asked for: 3 a call when the job ran as written; more when a system asked again (a retry,
  whose speech is in the seconds too);
- cut ms: the receiver's in-utterance underruns — fill (all-zero frames) and dry playout between
  the speech frames of a reply, words split — for both systems alike (both fill a missing frame
  inside a reply with silence on time, which its timing figures do not show);
- wait %: the system's time runnable but waiting for a CPU over the wall time (the machine's
  other load: a high one means the row measured the machine); tts %, phone %: each
  simulator's CPU over the wall time (near 100 it was the bottleneck).

The ratio rows are rtstream / Pipecat. ``--systems`` adds variants of Pipecat, each with a ratio
row: ``pipecat-lean`` turns off what every PipelineWorker has by default and this job does not
use (the RTVI processor and observer, turn tracking); ``pipecat-nomix`` is Pipecat without the
cadence mixer, as it ships: it sends nothing between replies (the receiver counts each pause as
deviation and a gap, so its timing columns are not comparable) and, when its queue runs dry
inside a reply, waits for the frame instead of sending silence (compare cut ms and cpu/call).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _procs import cpu_seconds, load_average, runqueue_wait_seconds, start_simulator, stop

from rtstream import __version__
from rtstream.config import Config, ServiceSpec, load_config
from rtstream.pipeline import build_pipeline
from rtstream.realtime import quiet_gc
from rtstream.runner import RunControl, run_pipeline
from rtstream.simulators.speech import synthesize

JOB = Path(__file__).with_name("vs_pipecat.toml")
PIPELINE = "bridge"
SYSTEMS = ("rtstream", "pipecat", "pipecat-lean", "pipecat-nomix")
PIPECAT_VERSION = "1.14.0"
INSTALL = "pip install -e '.[pipecat]'"

SYSTEM_CPUS: set[int] | None = None
SIMULATOR_CPUS: set[int] | None = None


def toml_value(value: Any) -> str:
    """A parameter as ``rtstream simulate`` reads it (a TOML value)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ",".join(toml_value(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else str(value)


def start_service(spec: ServiceSpec, report: Path) -> tuple[subprocess.Popen[str], str]:
    """The TOML file's service as ``rtstream simulate TYPE KEY=VALUE...`` in a process of its own."""
    settings = [f"{key}={toml_value(value)}" for key, value in spec.params.items()]
    return start_simulator(spec.type, *settings, report=report, cpus=SIMULATOR_CPUS)


def speech_seconds(config: Config) -> float:
    """Seconds of speech in one call as the TTS simulator speaks its transcripts: the job's call-seconds."""
    params = config.pipelines[PIPELINE].stages[0].params
    rate, speed = params["sample_rate"], config.services["tts"].params.get("speed", 1.0)
    return sum(len(synthesize(text, rate, speed)[0]) for text in script(config)[0]) / rate


def script(config: Config) -> tuple[list[str], float]:
    """The transcripts and gap of the pipeline's TTS stage: what the Pipecat side says too."""
    params = config.pipelines[PIPELINE].stages[0].params
    return list(params["transcripts"]), float(params.get("gap", 0.0))


# -- rtstream ------------------------------------------------------------------------------------


def run_rtstream(config: Config, endpoints: Mapping[str, Mapping[str, str]], calls: int, arrivals: float) -> int:
    """``calls`` instances of the TOML pipeline, as ``rtstream run`` builds and runs them; how many failed."""
    spec = config.pipelines[PIPELINE]
    reports: list = []

    async def run_all() -> None:
        control = RunControl()

        async def one(i: int) -> None:  # built as it arrives, as a served call is (Pipecat's are too)
            await trio.sleep(i / arrivals)
            pipeline = build_pipeline(spec, file=config.file, instance=i + 1, endpoints=endpoints)
            reports.append(await run_pipeline(pipeline, control))

        async with trio.open_nursery() as nursery:
            for i in range(calls):
                nursery.start_soon(one, i)

    with quiet_gc():
        trio.run(run_all)
    return sum(r.status != "completed" for r in reports)


def run_pipecat(
    config: Config,
    endpoints: Mapping[str, Mapping[str, str]],
    calls: int,
    arrivals: float,
    **options: bool,
) -> int:
    """The same calls in Pipecat (``_pipecat_calls``, imported before the measured window)."""
    import _pipecat_calls

    turns, gap = script(config)
    tts, phone = endpoints["tts"]["url"], endpoints["phone"]["url"]
    return _pipecat_calls.run(tts, phone, turns, gap, calls, arrivals, **options)


RUNNERS: dict[str, Callable[[Config, Mapping[str, Mapping[str, str]], int, float], int]] = {
    "rtstream": run_rtstream,
    "pipecat": run_pipecat,
    "pipecat-lean": functools.partial(run_pipecat, lean=True),
    "pipecat-nomix": functools.partial(run_pipecat, cadence=False),
}


# -- one run -------------------------------------------------------------------------------------


def one_run(system: str, calls: int, arrivals: float) -> dict:
    """One system at one N, in this process, against fresh simulators: the row's figures."""
    config = load_config(JOB)
    if system.startswith("pipecat"):
        import _pipecat_calls  # noqa: F401  (its imports are not the calls' cost)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        endpoints: dict[str, dict[str, str]] = {}
        pids = {}
        for name, spec in config.services.items():
            process, url = start_service(spec, Path(tmp) / f"{name}.json")
            stack.callback(stop, process)
            pids[name] = process.pid
            endpoints[name] = {"url": url}
        sims_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        wait_before = runqueue_wait_seconds(os.getpid())
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        failed = RUNNERS[system](config, endpoints, calls, arrivals)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        waited = runqueue_wait_seconds(os.getpid()) - wait_before
        sims = {name: (cpu_seconds(pid) - sims_before[name]) / wall * 100 for name, pid in pids.items()}
        stack.close()  # the simulators report as they stop
        received = json.loads((Path(tmp) / "phone.json").read_text())
        sent = json.loads((Path(tmp) / "tts.json").read_text())
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    speech = sent["audio_bytes"] / (2 * config.pipelines[PIPELINE].stages[0].params["sample_rate"])
    job = calls * speech_seconds(config)
    deviation = received["deviation_ms"]
    return {
        "system": system,
        "calls": calls,
        "failed": failed + calls - received["calls"],
        "cpu_ms_per_call_s": cpu / job * 1000,
        "rss_kb_per_call": (after.ru_maxrss - before.ru_maxrss) / calls,
        "p50": deviation["p50"],
        "p99": deviation["p99"],
        "max": deviation["max"],
        "gaps": received["gaps"]["count"],
        "wrong_size": received["wrong_size"],
        "speech": speech,
        "contexts": sent["contexts_opened"],
        "received": received["seconds"],
        "cut_ms": received["in_utterance_underruns"]["ms"],
        "wall": wall,
        "wait_pct": waited / wall * 100,
        "tts_pct": sims["tts"],
        "phone_pct": sims["phone"],
    }


# -- the table -----------------------------------------------------------------------------------

COLUMNS = (
    ("calls", 5),
    ("system", 14),
    ("fail", 4),
    ("cpu/call", 8),
    ("rss KB/call", 11),
    ("receiver p50", 12),
    ("p99", 7),
    ("max", 8),
    ("gaps", 5),
    ("bad", 4),
    ("speech s", 8),
    ("ctx", 5),
    ("got s", 7),
    ("cut ms", 8),
    ("wall s", 6),
    ("wait %", 6),
    ("tts %", 5),
    ("phone %", 7),
)
KEYS = (
    "calls",
    "system",
    "failed",
    "cpu_ms_per_call_s",
    "rss_kb_per_call",
    "p50",
    "p99",
    "max",
    "gaps",
    "wrong_size",
    "speech",
    "contexts",
    "received",
    "cut_ms",
    "wall",
    "wait_pct",
    "tts_pct",
    "phone_pct",
)
"""The figure under each column."""
RATIOS = ("cpu_ms_per_call_s", "rss_kb_per_call", "p50", "p99", "max")


def cell(value: Any, width: int, digits: int = 2) -> str:
    if value is None:
        return "-".rjust(width)
    if isinstance(value, float):
        return f"{value:{width}.{digits}f}"
    return f"{value:>{width}}"


def row(values: list[Any]) -> str:
    return " ".join(cell(v, w) for v, (_, w) in zip(values, COLUMNS, strict=True))


def system_row(r: dict) -> str:
    return row([r[key] for key in KEYS])


def ratio_row(ours: dict, theirs: dict, label: str) -> str:
    def ratio(key: str) -> str | None:
        a, b = ours[key], theirs[key]
        return f"{a / b:.2f}x" if a is not None and b else None

    return row([ours["calls"], label, *(ratio(key) if key in RATIOS else None for key in KEYS[2:])])


def run_child(system: str, calls: int, args: argparse.Namespace) -> dict | str:
    """This script again with ``--one``: the figures, or why it failed."""
    command = [sys.executable, __file__, f"--arrivals={args.arrivals}", "--one", system, str(calls)]
    command += ["--no-pin"] * (not args.pin)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    line = next((x for x in reversed(done.stdout.splitlines()) if x.startswith("{")), None)
    if line is None:
        return (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    result = json.loads(line)
    result["stderr"] = done.stderr.strip().splitlines()
    return result


def require_pipecat() -> str:
    """Pipecat's version; SystemExit naming the install command when it is not installed."""
    if importlib.util.find_spec("pipecat") is None:
        raise SystemExit(f"vs_pipecat.py: Pipecat is not installed; {INSTALL} (or --systems rtstream)")
    from importlib.metadata import version

    return version("pipecat-ai")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="10,50,100", help="comma-separated numbers of concurrent calls")
    parser.add_argument(
        "--systems",
        default="rtstream,pipecat",
        help=(
            "comma-separated: rtstream, pipecat, pipecat-lean (RTVI and turn tracking off), "
            "pipecat-nomix (no cadence mixer)"
        ),
    )
    parser.add_argument("--arrivals", type=float, default=40.0, help="calls arriving per second")
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="let the system under test and the simulators share every CPU (by default it has CPU 0)",
    )
    parser.add_argument("--one", nargs=2, metavar=("SYSTEM", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pin and (os.cpu_count() or 1) > 1:
        global SYSTEM_CPUS, SIMULATOR_CPUS
        SYSTEM_CPUS, SIMULATOR_CPUS = {0}, set(range(1, os.cpu_count() or 2))
        os.sched_setaffinity(0, SYSTEM_CPUS)
    if args.one:
        print(json.dumps(one_run(args.one[0], int(args.one[1]), args.arrivals)))
        return
    systems = args.systems.split(",")
    if unknown := [s for s in systems if s not in SYSTEMS]:
        parser.error(f"--systems: unknown system {unknown[0]!r}; use {', '.join(SYSTEMS)}")
    counts = [int(n) for n in args.calls.split(",")]
    versions = {"rtstream": __version__}
    if any(s.startswith("pipecat") for s in systems):
        versions.update(dict.fromkeys(SYSTEMS[1:], require_pipecat()))
        if versions["pipecat"] != PIPECAT_VERSION:
            print(f"note: Pipecat {versions['pipecat']} installed; the extra pins {PIPECAT_VERSION}")
    turns, gap = script(load_config(JOB))
    print(
        f"{' and '.join(f'{s} {versions[s]}' for s in systems)}; {len(turns)} replies per call (gap {gap:g} s), "
        f"{args.arrivals:g} calls arrive per second; "
        f"{'system on CPU 0, simulators on the rest' if SYSTEM_CPUS else 'no pinning'}; load {load_average()}"
    )
    print(" ".join(f"{name:>{width}}" for name, width in COLUMNS), flush=True)
    for calls in counts:  # interleaved: each system at this N before the next N
        results = {}
        for system in systems:
            result = run_child(system, calls, args)
            if isinstance(result, str):
                print(f"{calls:>5} {system:>14} failed: {result}", flush=True)
                continue
            results[system] = result
            print(system_row(result), flush=True)
            if result["failed"] and result["stderr"]:  # why, in the system's words
                print(f"{'':>20} {len(result['stderr'])} lines on stderr, the last: {result['stderr'][-1][:160]}")
        for pipecat in (s for s in systems if s.startswith("pipecat") and s in results):
            if "rtstream" in results:
                print(ratio_row(results["rtstream"], results[pipecat], f"/{pipecat}"), flush=True)
    print(f"load after: {load_average()}")


if __name__ == "__main__":
    main()
