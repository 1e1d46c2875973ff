"""Memory: a finished pipeline is freed whole, and nothing the process keeps grows with the calls it ran.

``benchmarks/soak_memory.py`` measures the same over ten minutes of real calls; these check the
mechanisms on virtual time: the elements of an ended pipeline die, and the metrics monitor,
the runner's watcher and a call's control path hold nothing per pipeline once it is over.
"""

from __future__ import annotations

import gc
import tracemalloc
import weakref

import numpy as np
import soxr
import trio
import trio.testing

from rtstream.audio.resample import StreamResampler
from rtstream.control import CURRENT_CONTROL, CallControl
from rtstream.metrics import Monitor
from rtstream.pipeline import assemble
from rtstream.runner import WATCHER, RunControl, run_pipeline
from rtstream.series import SERIES_LIMIT, Marks, Series
from rtstream.stages.chunker import Chunker
from rtstream.stages.converter import Converter
from rtstream.stages.null import NullSink
from rtstream.stages.pacer import Pacer
from rtstream.stages.tone import Tone


def call_pipeline(i: int):
    """tone (16 kHz, a second) -> converter (to 8 kHz) -> chunker -> pacer -> null sink: a short paced call."""
    stages = [
        Tone(duration=1.0, sample_rate=16000, chunk_ms=20, speed=0),
        Converter(sample_rate=8000),
        Chunker(frame_ms=60),
        Pacer(frame_ms=60),
        NullSink(),
    ]
    return assemble("call", stages, instance=i)


def run_calls(k: int, monitor: Monitor, control: CallControl) -> tuple[set[type], weakref.ref]:
    """Run ``k`` calls one after another on virtual time: the types of their elements and cores, the last pipeline."""
    types: set[type] = set()
    refs: list[weakref.ref] = []

    async def main() -> None:
        monitor.install()
        CURRENT_CONTROL.set(control)
        run = RunControl()
        for i in range(k):
            pipeline = call_pipeline(i)
            report = await run_pipeline(pipeline, run)
            assert report.status == "completed", report
            types.update(type(x) for e in pipeline.elements for x in (e, getattr(e, "core", e)))
            refs[:] = [weakref.ref(pipeline)]
            del pipeline, report

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return types, refs[0]


def kept(monitor: Monitor, control: CallControl) -> dict[str, int]:
    """The sizes of everything the monitor and the call's control path keep across pipelines."""
    totals = monitor.totals
    return {
        "live": len(monitor.live),
        "counters": len(totals.counters),
        "histograms": len(totals.histograms),
        "buckets": sum(q.buckets for q in totals.histograms.values()),
        "finished": len(monitor.finished),
        "issues": len(monitor.issues),
        "labels": sum(len(v) for v in monitor._label._seen.values()),
        "listeners": len(control._listeners),
        "live_utterances": len(control._live),
    }


def test_a_finished_pipeline_is_freed_whole():
    def alive(types: set[type]) -> int:
        return sum(type(o) in types for o in gc.get_objects())

    opened = call_pipeline(0)
    types = {type(x) for e in opened.elements for x in (e, getattr(e, "core", e))}
    del opened
    gc.collect()
    before = alive(types)
    ran, pipeline = run_calls(1, Monitor(), CallControl())
    gc.collect()
    assert ran == types and len(types) >= 6  # the elements and cores of the five stages
    assert pipeline() is None
    assert alive(types) == before


def test_what_the_process_keeps_does_not_grow_with_the_calls_it_ran():
    monitor, control = Monitor(), CallControl()
    run_calls(3, monitor, control)
    after_few = kept(monitor, control)
    gc.collect()
    objects_few = len(gc.get_objects())
    run_calls(30, monitor, control)
    gc.collect()
    objects_many = len(gc.get_objects())
    assert kept(monitor, control) == after_few
    assert after_few["live"] == after_few["listeners"] == 0
    assert monitor.finished[("call", "completed")] == 33
    assert objects_many - objects_few < 30  # under one object a call: nothing kept per call
    assert WATCHER.get() is None and CURRENT_CONTROL.get() is None  # set inside the run only


def test_the_bytes_python_holds_do_not_grow_with_the_calls_it_ran():
    monitor, control = Monitor(), CallControl()
    run_calls(5, monitor, control)  # warm: first-use caches, histogram buckets
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run_calls(40, monitor, control)
        gc.collect()
        per_call = (tracemalloc.get_traced_memory()[0] - before) / 40
    finally:
        tracemalloc.stop()
    # CPython's type attribute cache keeps the names a call looks up (4096 entries at most): a
    # couple of hundred bytes a call, bounded; a leak of a call's frames or reports is kilobytes
    assert per_call < 1024


def test_a_short_series_holds_little_and_a_long_one_its_bound():
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        short = [Series() for _ in range(100)]
        for s in short:
            for n in range(10):
                s.add(n * 0.06, 0.001)
        per_series = (tracemalloc.get_traced_memory()[0] - before) / 100
    finally:
        tracemalloc.stop()
    assert per_series < 2 * 64 * 8 + 512  # two arrays of the first 64 points, not of SERIES_LIMIT (32 KB)
    long = Series()
    for n in range(10 * SERIES_LIMIT):
        long.add(n * 0.06, float(n % 7))
    assert len(long.snapshot()["t"]) <= SERIES_LIMIT + 1


def test_a_grown_series_keeps_real_points_in_order_and_the_spike():
    values = np.random.default_rng(7).normal(size=1000)
    values[613] = 9.0
    series = Series(limit=130)  # grows 64 -> 128 -> 130, then halves
    for n, v in enumerate(values):
        series.add(float(n), float(v))
    snap = series.snapshot()
    assert snap["count"] == 1000 and len(snap["t"]) <= 131
    assert snap["t"] == sorted(set(snap["t"]))
    assert all(v == round(float(values[int(t)]), 6) for t, v in zip(snap["t"], snap["v"], strict=True))
    assert (613.0, 9.0) in zip(snap["t"], snap["v"], strict=True)


def test_marks_grow_to_their_limit_and_count_the_rest():
    marks = Marks(limit=100)
    for n in range(150):
        marks.add(float(n))
    assert marks.snapshot() == {"count": 150, "t": [float(n) for n in range(100)]}


def test_between_segments_the_resampler_holds_no_soxr_stream():
    def streams() -> int:
        return sum(isinstance(o, soxr.ResampleStream) for o in gc.get_objects())

    x = np.sin(np.arange(2400) / 10).astype(np.float32)
    before = streams()
    resampler = StreamResampler(24000, 8000)
    assert streams() == before + 1  # opened at once: bad settings fail where they are given
    resampler.process(x)
    resampler.flush()
    assert streams() == before
    resampler.process(x)
    assert streams() == before + 1
    resampler.clear()
    assert streams() == before
