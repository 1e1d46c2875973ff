"""Fusion of untimed cores into the task before them: same output, same control path, same failures."""

import attrs
import numpy as np
import pytest
import trio
from helpers import PCM8K, pcm_chunk
from test_runner import Collector, Ticker

from rtstream.config import parse_config
from rtstream.control import CURRENT_CONTROL, CallControl
from rtstream.errors import ConfigError, StageFailed
from rtstream.frames import AudioChunk, AudioFormat, Encoding, UtteranceEnd, UtteranceStart
from rtstream.fusion import ChainSend, fusible
from rtstream.pipeline import assemble
from rtstream.runner import run_pipeline
from rtstream.stage import Core, CoreElement, Filter
from rtstream.stages.chunker import Chunker
from rtstream.stages.converter import Converter
from rtstream.stages.pacer import Pacer

PCM16K = AudioFormat(Encoding.PCM_S16LE, 16000, 1)


@attrs.frozen(kw_only=True)
class Speaker(Ticker):
    """Sends one utterance of ``count`` 10 ms chunks at 16 kHz, ``period`` apart, and remembers its task."""

    tasks: list = attrs.field(factory=list, eq=False)

    def output_caps(self, fmt_in):
        from rtstream.caps import Caps

        return Caps.of(PCM16K)

    async def run(self, tx, *, task_status=trio.TASK_STATUS_IGNORED):
        self.tasks.append(trio.lowlevel.current_task())
        async with tx:
            task_status.started()
            await tx.send(UtteranceStart("u1"))
            for n in range(self.count or 0):
                await tx.send(pcm_chunk(160, pts=160 * n, fmt=PCM16K, seed=n, utterance="u1"))
                self.log.append(("sent", n, trio.current_time()))
                await trio.sleep(self.period)
            await tx.send(UtteranceEnd("u1"))


class Recorder(Core):
    """An untimed core that notes the task it runs in; raises on frame ``fail_at`` (counting from 1)."""

    untimed = True

    def __init__(self, tasks, fail_at=None):
        self.tasks, self.fail_at, self.seen = tasks, fail_at, 0
        self.kinds: list[str] = []

    def push(self, frame, now):
        self.tasks.append(trio.lowlevel.current_task())
        self.kinds.append(type(frame).__name__)
        self.seen += 1
        if self.fail_at == self.seen:
            raise ValueError("bad frame")
        return (frame,)

    def statistics(self):
        return {"seen": self.seen}


@attrs.frozen(kw_only=True)
class Recording(Filter):
    tasks: list = attrs.field(factory=list, eq=False)
    fail_at: int | None = None

    def open(self, fmt_in, fmt_out):
        return CoreElement(Recorder(self.tasks, self.fail_at))


def bot(fuse, *, count=20, sink=None, extra=()):
    stages = [Speaker(count=count), *extra, Converter(sample_rate=8000), Chunker(frame_ms=20), sink or Collector()]
    return assemble("p", stages, capacities=[2] * (len(stages) - 1), fuse=fuse)


def audio(frames):
    chunks = [f for f in frames if isinstance(f, AudioChunk)]
    return np.concatenate([c.data for c in chunks]) if chunks else np.zeros(0, np.int16), chunks


async def test_fused_and_unfused_chains_deliver_the_same_frames(autojump_clock):
    results = []
    for fuse in (True, False):
        sink = Collector()
        pipeline = bot(fuse, sink=sink)
        report = await run_pipeline(pipeline, raise_on_failure=True)
        assert report.status == "completed"
        results.append((sink.frames, [s.statistics for s in report.stages]))
    (fused, fused_stats), (plain, plain_stats) = results
    assert [type(f) for f in fused] == [type(f) for f in plain]
    data, chunks = audio(fused)
    np.testing.assert_array_equal(data, audio(plain)[0])
    assert {len(c.data) for c in chunks} == {160}  # 20 ms frames at 8 kHz
    assert len(data) == 20 * 80
    assert fused_stats == plain_stats  # every fused stage still reports its own statistics


async def test_untimed_filters_run_in_the_task_of_the_stage_before_them(autojump_clock):
    tasks: list = []
    pipeline = assemble("p", [Speaker(count=3, tasks=tasks), Recording(tasks=tasks), Collector()], fuse=True)
    await run_pipeline(pipeline, raise_on_failure=True)
    assert len(set(tasks)) == 1 and len(tasks) > 1
    tasks.clear()
    pipeline = assemble("p", [Speaker(count=3, tasks=tasks), Recording(tasks=tasks), Collector()], fuse=False)
    await run_pipeline(pipeline, raise_on_failure=True)
    assert len(set(tasks)) == 2


def test_only_untimed_core_elements_fuse():
    converter = Converter().open(PCM16K, PCM8K)
    pacer = Pacer(frame_ms=20).open(PCM8K, PCM8K)
    assert fusible(converter) is converter.core
    assert fusible(pacer) is None  # waits on a clock: a task of its own


async def test_a_failing_fused_core_is_named_as_its_own_stage(autojump_clock):
    pipeline = assemble("p", [Speaker(count=5), Recording(fail_at=3), Collector()], fuse=True)
    with pytest.raises(StageFailed) as caught:
        await run_pipeline(pipeline, raise_on_failure=True)
    assert caught.value.stage.index == 2
    assert "bad frame" in str(caught.value)


async def test_backpressure_reaches_through_a_fused_chain(autojump_clock):
    speaker = Speaker(count=10, period=0.0)
    sink = Collector(hang=True)
    pipeline = assemble("p", [speaker, Converter(), Chunker(frame_ms=10), sink], capacities=[2, 2, 2], fuse=True)
    with trio.move_on_after(5):
        await run_pipeline(pipeline)
    assert len(sink.received) == 1
    sent = sum(1 for e in speaker.log if e[0] == "sent")
    assert sent < 10  # held by the one full channel at the chain's end


async def test_a_clear_on_the_control_path_reaches_every_fused_core(autojump_clock):
    control = CallControl()
    token = CURRENT_CONTROL.set(control)
    try:
        sink = Collector()
        speaker = Speaker(count=8, period=0.1)
        pipeline = assemble("p", [speaker, Chunker(frame_ms=60), Recording(), sink], fuse=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_pipeline, pipeline)
            await trio.sleep(0.35)  # four 10 ms chunks sent: 40 ms in the chunker's partial frame
            control.clear("barge-in", trio.current_time())
    finally:
        CURRENT_CONTROL.reset(token)
    cutter, recorder = pipeline.elements[1].core, pipeline.elements[2].core
    assert cutter.drops.snapshot()["clear"].samples == 640  # the partial frame of the cleared reply went
    assert "Clear" in recorder.kinds  # the core after it heard the clear too
    assert control.dropped_frames == 4  # the rest of the reply was dropped before the first core
    assert not [f for f in sink.frames if isinstance(f, AudioChunk)]


async def test_chain_send_flushes_the_cores_at_the_end_and_closes_downstream(autojump_clock):
    tx, rx = trio.open_memory_channel(10)
    cutter = Chunker(frame_ms=60).open(PCM8K, PCM8K).core
    chain = ChainSend([cutter], tx, None)
    await chain.send(pcm_chunk(80))  # 10 ms: held in the partial frame
    assert rx.statistics().current_buffer_used == 0
    async with chain:
        pass
    with pytest.raises(trio.ClosedResourceError):
        await chain.send(pcm_chunk(80))
    await chain.finish()
    frames = [f async for f in rx]
    assert [len(f.data) for f in frames] == [480]  # padded to one frame


def test_fuse_is_read_from_the_pipeline_table():
    text = '[pipelines.a]\nfuse = false\n[[pipelines.a.stages]]\ntype = "tone"\n[[pipelines.a.stages]]\ntype = "null"\n'
    assert parse_config(text, file="p.toml").pipelines["a"].fuse is False
    with pytest.raises(ConfigError, match=r"pipeline 'a', key 'fuse': must be true or false, got 'no'"):
        parse_config(text.replace("false", '"no"'), file="p.toml")


@attrs.frozen(kw_only=True)
class Queueing(Collector):
    """A sink that takes frames in the sender's task (``accept``); its own task only waits for the end."""

    fail_at: int | None = None
    quit: bool = False
    tasks: list = attrs.field(factory=list, eq=False)

    async def run(self, rx, *, task_status=trio.TASK_STATUS_IGNORED):
        if not self.quit:
            return await super().run(rx, task_status=task_status)
        async with rx:
            task_status.started()

    def accept(self, frame):
        self.tasks.append(trio.lowlevel.current_task())
        if self.fail_at is not None and len(self.received) + 1 >= self.fail_at:
            raise ValueError("cannot queue")
        self.received.append((trio.current_time(), frame))


async def test_a_sink_that_accepts_takes_frames_in_the_task_before_it(autojump_clock):
    speaker, sink = Speaker(count=4), Queueing()
    pipeline = assemble("p", [speaker, Chunker(frame_ms=10), sink], fuse=True)
    report = await run_pipeline(pipeline, raise_on_failure=True)
    assert report.status == "completed"
    assert len([f for f in sink.frames if isinstance(f, AudioChunk)]) == 4
    assert set(sink.tasks) == set(speaker.tasks)  # the speaker's task queued every frame
    unfused = Queueing()
    await run_pipeline(assemble("p", [Speaker(count=4), Chunker(frame_ms=10), unfused], fuse=False))
    assert not unfused.tasks  # unfused, the sink's task reads its channel


async def test_a_sink_that_accepts_and_ends_early_ends_the_pipeline(autojump_clock):
    sink = Queueing(quit=True)  # its task returns at once: what is sent after is refused
    speaker = Speaker(count=1000, period=0.01)
    with trio.fail_after(5):
        report = await run_pipeline(assemble("p", [speaker, sink], fuse=True))
    assert report.status == "completed"
    assert trio.current_time() < 0.1


async def test_a_failing_accept_is_named_as_the_sink(autojump_clock):
    pipeline = assemble("p", [Speaker(count=5), Recording(), Queueing(fail_at=2)], fuse=True)
    with pytest.raises(StageFailed) as caught:
        await run_pipeline(pipeline, raise_on_failure=True)
    assert caught.value.stage.index == 3


async def test_an_untimed_sink_core_runs_in_the_task_before_it(autojump_clock):
    from rtstream.stages.null import NullSink

    speaker = Speaker(count=4)
    pipeline = assemble("p", [speaker, Chunker(frame_ms=10), NullSink()], fuse=True)
    report = await run_pipeline(pipeline, raise_on_failure=True)
    assert report.status == "completed"
    assert pipeline.elements[2].core.audio.chunks == 4  # counted in the speaker's task: no channel, no task
    assert fusible(pipeline.elements[2]) is not None


async def test_two_tasks_sending_on_one_chain_keep_each_frames_output_together(autojump_clock):
    tx, rx = trio.open_memory_channel(0)  # every send waits for the reader
    cutter = Chunker(frame_ms=10).open(PCM8K, PCM8K).core
    chain = ChainSend([cutter], tx, None)
    first = pcm_chunk(240, seed=1)  # three 10 ms frames
    second = pcm_chunk(80, pts=240, seed=2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(chain.send, first)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(chain.send, second)  # while the first is still sending its frames
        got = [await rx.receive() for _ in range(4)]
    assert [int(f.pts) for f in got] == [0, 80, 160, 240]
