"""The jitter_buffer stage on virtual time: its clock, backpressure, events and barge-in."""

import json

import numpy as np
import pytest
import trio
from helpers import PCM8K, pcm_chunk

from rtstream.errors import ConfigError
from rtstream.frames import AudioChunk, AudioFormat, Clear, UtteranceEnd, UtteranceStart
from rtstream.params import ParamError
from rtstream.pipeline import assemble
from rtstream.report import RunReport
from rtstream.runner import run_pipeline
from rtstream.stages.jitter.stage import JitterBufferStage
from rtstream.stages.sequencer import Sequencer
from rtstream.testing import CollectingSink, ScriptedSource, collected, run_stage, run_stages


def burst(seconds: float, *, size: int = 160, utterance: str = "u"):
    n = round(seconds * 8000) // size
    return (
        [UtteranceStart(utterance)]
        + [pcm_chunk(size, pts=k * size, seed=k, utterance=utterance) for k in range(n)]
        + [UtteranceEnd(utterance)]
    )


async def test_tick_clock_plays_a_burst_in_real_time(autojump_clock):
    script = burst(2.0, size=333)
    out = await run_stage(JitterBufferStage(), script)
    source = np.concatenate([f.data for f in script if isinstance(f, AudioChunk)])
    np.testing.assert_array_equal(out.audio(), source)
    assert isinstance(out.frames[0], UtteranceStart) and isinstance(out.frames[-1], UtteranceEnd)
    times = [t for t, f in out.received if isinstance(f, AudioChunk)]
    assert times == pytest.approx([k * 0.02 for k in range(100)])  # one 20 ms block per tick from the first
    stats = out.report.stages[1].statistics
    assert stats["concealment_events"] == 0 and stats["state"] == "idle"


async def test_backpressure_holds_the_source_at_the_maximum(autojump_clock):
    pipeline = assemble(
        "p", [ScriptedSource(script=burst(3.0)), JitterBufferStage(max_delay_ms=200.0), CollectingSink()]
    )
    seen = []

    async def watch():
        while True:
            await trio.sleep(0.1)
            seen.append(pipeline.elements[1].statistics().current_delay_ms)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        report = await run_pipeline(pipeline)
        nursery.cancel_scope.cancel()
    # the source could send everything at once, but the buffer held it to 200 ms ahead (plus
    # the chunk that filled it) until the source had nothing more to send; which of the two a
    # sample sees depends on whether the watcher or the buffer runs first at that instant
    assert len(seen) == 29 and set(seen[:-2]) <= {200.0, 220.0} and seen[-2:] == [180.0, 80.0]
    assert report.duration == pytest.approx(3.0)  # the stream ends when its last block has played
    assert report.stages[1].statistics["drops"] == {}
    assert len(collected(pipeline)) == 2 + 3 * 8000 // 160


async def test_pull_clock_follows_the_consumer(autojump_clock):
    script = burst(1.0)
    taken = []

    async def consume(rx):
        async with rx:
            async for frame in rx:
                taken.append((trio.current_time(), frame))
                await trio.sleep(0.06)  # a pacer that takes a block every 60 ms

    send, receive = trio.open_memory_channel(0)
    element = JitterBufferStage(clock="pull").open(PCM8K, PCM8K)
    source_tx, source_rx = trio.open_memory_channel(100)
    for frame in script:
        source_tx.send_nowait(frame)
    source_tx.close()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume, receive)
        await element.run(source_rx, send)
    chunk_times = [t for t, f in taken if isinstance(f, AudioChunk)]
    assert chunk_times == pytest.approx([k * 0.06 for k in range(1, 51)])  # 50 blocks of 20 ms, one per take
    assert sum(f.samples for _, f in taken if isinstance(f, AudioChunk)) == 8000


async def test_pull_clock_without_a_pacer_stays_near_real_time(autojump_clock):
    out = await run_stage(JitterBufferStage(clock="pull"), burst(4.0))
    assert len(out.audio()) == 4 * 8000
    assert out.times[-1] >= 4.0 - 1.0 - 0.05  # never more than a second ahead of real time


async def test_clear_goes_out_at_once_and_drops_the_rest(autojump_clock):
    # the TTS sent 0.8 s at once; the caller barges in at 0.5 s (the source stops sending audio)
    script = [(0.0, f) for f in burst(0.8)[:-1]] + [(0.5, Clear("barge-in")), (0.5, UtteranceEnd("u"))]
    out = await run_stage(JitterBufferStage(), script)
    clear_at = next(t for t, f in out.received if isinstance(f, Clear))
    assert clear_at == pytest.approx(0.52)  # at the first tick after it came
    assert [type(f) for f in out.frames[-2:]] == [Clear, UtteranceEnd]
    assert not any(isinstance(f, AudioChunk) for f in out.frames[out.frames.index(out.events[-2]) :])
    stats = out.report.stages[1].statistics
    assert stats["clears"] == 1 and stats["drops"]["clear"].samples == 0.8 * 8000 - 0.52 * 8000  # all not yet played


async def test_inbound_through_the_sequencer_conceals_a_loss(autojump_clock):
    chunks = [pcm_chunk(160, pts=k * 160, seq=k % 65536, seed=k) for k in range(50) if k != 20]
    script = [(k * 0.02, c) for k, c in enumerate(chunks)]
    stages = [
        Sequencer(mode="receiver", wire_bits=16, window=2, window_unit="packets"),
        JitterBufferStage(direction="inbound"),
    ]
    out = await run_stages(stages, script)
    stats = out.report.stages[2].statistics
    assert stats["gaps_in"] == 1 and stats["lost_samples"] == 160 and stats["concealment_events"] == 1
    assert len(out.audio()) == 50 * 160 - round(stats["accelerate_rate"] * stats["samples_out"])


def test_parameters_are_checked():
    with pytest.raises(ParamError, match=r"^min_delay_ms: must not exceed max_delay_ms"):
        JitterBufferStage(min_delay_ms=600.0)
    with pytest.raises(ParamError, match=r"^tick_ms: must be one of 10\.0, 20\.0, got 15\.0$"):
        JitterBufferStage(tick_ms=15.0)
    with pytest.raises(ConfigError, match="22050 Hz"):
        assemble(
            "x",
            [
                ScriptedSource(script=(), format=AudioFormat("pcm_s16le", 22050)),
                JitterBufferStage(tick_ms=10.0),
                CollectingSink(),
            ],
        )


async def test_statistics_before_and_after_a_run(autojump_clock):
    pipeline = assemble("p", [ScriptedSource(script=burst(0.2)), JitterBufferStage(), CollectingSink()])
    before = pipeline.elements[1].statistics()
    assert (before.state, before.chunks_in, before.samples_out) == ("idle", 0, 0)
    report = await run_pipeline(pipeline)
    assert report.status == "completed"
    after = report.stages[1].statistics
    assert (after["state"], after["chunks_in"], after["samples_out"]) == ("idle", 10, 1600)


def jittered(n: int, *, seed: int = 1, duplicates: float = 0.05):
    """n packets of 20 ms with up to 60 ms of jitter (so they reorder), some sent twice."""
    rng = np.random.default_rng(seed)
    items = []
    for k in range(n):
        at = k * 0.02 + rng.uniform(0, 0.06)
        chunk = pcm_chunk(160, pts=k * 160, seq=k, seed=k)
        items.append((at, chunk))
        if rng.random() < duplicates:
            items.append((at + 0.015, chunk))
    return sorted(items, key=lambda item: item[0])


async def test_reordering_happens_inside_the_buffer_and_a_sequencer_changes_nothing(autojump_clock):
    script = jittered(150)
    stage = JitterBufferStage(direction="inbound", start_delay_ms=100.0, max_stretch=0.0)
    alone = await run_stage(stage, script)
    chained = await run_stages([Sequencer(mode="receiver", window=20.0), stage], script)
    source = np.concatenate([pcm_chunk(160, seed=k).data for k in range(150)])
    np.testing.assert_array_equal(alone.audio(), source)  # every packet in its place, nothing concealed
    np.testing.assert_array_equal(chained.audio(), alone.audio())
    receiver = chained.report.stages[1].statistics["receiver"]
    jb = chained.report.stages[2].statistics
    assert receiver.reordered > 10 and receiver.max_held == 0 and receiver.duplicates > 0
    assert jb["late_losses"] == 0 and jb["concealedSamples"] == 0 and jb["gaps_in"] == receiver.gaps


async def test_the_report_carries_the_webrtc_counters_by_name(autojump_clock):
    out = await run_stage(JitterBufferStage(direction="inbound"), jittered(50, duplicates=0))
    stats = json.loads(RunReport(pipelines=(out.report,)).to_json())["pipelines"][0]["stages"][1]["statistics"]
    names = (
        "jitterBufferDelay",
        "jitterBufferTargetDelay",
        "jitterBufferEmittedCount",
        "totalSamplesReceived",
        "concealedSamples",
        "silentConcealedSamples",
        "concealmentEvents",
        "insertedSamplesForDeceleration",
        "removedSamplesForAcceleration",
    )
    assert set(names) <= set(stats)
    assert stats["totalSamplesReceived"] == 50 * 160
    assert 0 < stats["jitterBufferDelay"] / stats["jitterBufferEmittedCount"] < 0.2
