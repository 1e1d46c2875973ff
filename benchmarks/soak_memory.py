"""Memory over a long run of calls in one process: does it stay flat, or grow with every call?

    python benchmarks/soak_memory.py                      # 10 minutes, 4 calls at a time
    python benchmarks/soak_memory.py --minutes 2 --tracemalloc

The calls are bridge.py's (TTS simulator -> cartesia_tts -> converter -> chunker -> pacer ->
telephony_ws -> telephony simulator, the simulators in processes of their own), one after
another in ``--concurrency`` lanes, under the metrics monitor (the runner's watcher, as in
``rtstream serve``) and :func:`rtstream.realtime.quiet_gc`. Nothing of a call is kept once it
ends. Every ``--every`` calls it samples the process's RSS, the objects the collector tracks and,
with ``--tracemalloc`` (slower), the size Python has allocated.

It prints RSS at call 10, 100, 1000..., the slope in KB per call by least squares over the
second half of the samples (the first half is warm-up: allocator pools and caches filling), the
object types that grew most over that half, and a verdict: flat when the slope is below
``--threshold`` KB per call (1 by default: a leak of 1 KB a call is 1 GB over a million calls).
The exit status is 0 when flat, 1 when not.
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _procs import load_average, rss_kb, start_simulator, stop
from bridge import call_stages

from rtstream.metrics import Monitor
from rtstream.pipeline import assemble
from rtstream.realtime import quiet_gc
from rtstream.runner import RunControl, run_pipeline


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def type_counts() -> collections.Counter[str]:
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


async def soak(args: argparse.Namespace, tts_url: str, phone_url: str) -> dict:
    monitor = Monitor()
    monitor.install()
    control = RunControl()
    samples: list[tuple[int, int, int, int]] = []  # (calls, rss KB, gc objects, traced KB)
    state: dict = {"calls": 0, "failed": 0, "half_types": None, "half_snapshot": None}
    deadline = trio.current_time() + args.minutes * 60

    def sample() -> None:
        traced = tracemalloc.get_traced_memory()[0] // 1024 if args.tracemalloc else 0
        samples.append((state["calls"], rss_kb(os.getpid()), len(gc.get_objects()), traced))

    async def lane() -> None:
        while trio.current_time() < deadline:
            pipeline = assemble("bridge", call_stages(tts_url, phone_url, args), instance=state["calls"] + 1)
            report = await run_pipeline(pipeline, control)
            state["failed"] += report.status != "completed"
            del pipeline, report
            state["calls"] += 1
            if state["calls"] % args.every == 0:
                sample()
                if state["half_types"] is None and trio.current_time() > deadline - args.minutes * 30:
                    state["half_types"] = (state["calls"], type_counts())
                    if args.tracemalloc:  # kept on disk: in memory its traces would count as growth
                        tracemalloc.take_snapshot().dump(args.snapshot)
                        state["half_snapshot"] = args.snapshot

    sample()
    async with trio.open_nursery() as nursery:
        for _ in range(args.concurrency):
            nursery.start_soon(lane)
    end = tracemalloc.take_snapshot() if args.tracemalloc else None
    return {
        "samples": samples,
        **state,
        "live": len(monitor.live),
        "gc": gc.get_stats(),
        "end_types": type_counts(),
        "end_snapshot": end,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run calls")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="calls at a time (each lane runs calls one after another)"
    )
    parser.add_argument("--every", type=int, default=10, help="sample every this many calls")
    parser.add_argument("--turns", type=int, default=1, choices=(1, 2, 3), help="replies per call")
    parser.add_argument("--threshold", type=float, default=1.0, help="KB per call below which memory counts as flat")
    parser.add_argument("--tracemalloc", action="store_true", help="also sample tracemalloc's traced size (slower)")
    args = parser.parse_args()
    # bridge.call_stages's settings
    args.tts, args.tts_rate, args.gap, args.quality, args.lead = "cartesia", 24000, 0.5, "HQ", 0
    if args.tracemalloc:
        tracemalloc.start(10)
    print(
        f"soak: {args.minutes:g} min of bridged calls, {args.concurrency} at a time, {args.turns} turn(s) each; "
        f"load average {load_average()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        args.snapshot = Path(tmp) / "half.snapshot"
        pattern = "[1500,900,2100,600]"  # bridge.py's 24 kHz chunks
        tts, tts_url = start_simulator(
            "tts", "rtf=3", "first_byte_latency=0.1", f"pattern={pattern}", report=Path(tmp) / "t"
        )
        phone, phone_url = start_simulator("telephony", "protocol=raw", "report_calls=0", report=Path(tmp) / "p")
        try:
            with quiet_gc():
                result = trio.run(soak, args, tts_url, phone_url)
            if result["half_snapshot"] is not None:
                result["half_snapshot"] = tracemalloc.Snapshot.load(result["half_snapshot"])
        finally:
            stop(tts)
            stop(phone)
    samples = result["samples"]
    print(f"{'calls':>7} {'rss KB':>8} {'gc objects':>10} {'traced KB':>9}")
    quarters = {samples[len(samples) * q // 4][0] for q in range(1, 4)}
    shown = {0, samples[-1][0], *quarters, *(10**k for k in range(1, 8))}
    for calls, rss, objects, traced in samples:
        if calls in shown:
            print(f"{calls:>7} {rss:>8} {objects:>10} {traced if args.tracemalloc else '-':>9}")
    second = samples[len(samples) // 2 :]
    if len(second) < 3:
        print("verdict: too few samples for a slope; run longer or sample more often")
        sys.exit(1)
    calls = [s[0] for s in second]
    rss_slope = slope(calls, [s[1] for s in second])
    objects_slope = slope(calls, [s[2] for s in second])
    traced = f", traced {slope(calls, [s[3] for s in second]):+.3f} KB/call" if args.tracemalloc else ""
    print(
        f"second half (calls {calls[0]}-{calls[-1]}): rss {rss_slope:+.3f} KB/call, "
        f"gc objects {objects_slope:+.2f}/call{traced}"
    )
    if result["half_types"] is not None:
        at, before = result["half_types"]
        grown = (result["end_types"] - before).most_common(5)
        print(f"types grown most since call {at}: " + (", ".join(f"{t} +{n}" for t, n in grown) or "none"))
    if result["half_snapshot"] is not None:
        print("allocations grown most since then (tracemalloc):")
        own = (tracemalloc.Filter(False, tracemalloc.__file__),)
        half = result["half_snapshot"].filter_traces(own)
        diffs = result["end_snapshot"].filter_traces(own).compare_to(half, "traceback")
        for diff in sorted(diffs, key=lambda d: -d.size_diff)[:5]:
            where = " < ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(diff.traceback))
            print(f"  {diff.size_diff / 1024:+8.1f} KB {diff.count_diff:+6d} blocks  {where}")
    collections_ = ", ".join(f"gen{i} {g['collections']}" for i, g in enumerate(result["gc"]))
    print(
        f"{result['calls']} calls, {result['failed']} failed; pipelines still watched: {result['live']}; "
        f"collections: {collections_}; load average {load_average()}"
    )
    flat = rss_slope < args.threshold
    print(
        f"verdict: memory is {'flat' if flat else 'GROWING'}: {rss_slope:+.3f} KB/call "
        f"{'<' if flat else '>='} {args.threshold:g} KB/call"
    )
    sys.exit(0 if flat and not result["failed"] else 1)


if __name__ == "__main__":
    main()
