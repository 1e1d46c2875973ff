"""The runner on virtual time: start order, end of stream, failures, stop, drain, grace, abort."""

import os
import signal

import attrs
import pytest
import trio
from helpers import PCM8K, pcm_chunk

from rtstream.caps import Caps
from rtstream.errors import StageFailed
from rtstream.frames import AudioChunk
from rtstream.pipeline import assemble
from rtstream.runner import RunControl, run_pipeline, run_pipelines, watch_signals
from rtstream.stage import Filter, Sink, Source
from rtstream.testing import run_stage, run_virtual


@attrs.frozen(kw_only=True)
class Ticker(Source):
    """Sends a 10 ms chunk every ``period`` seconds, ``count`` times (None: forever).

    The test stages here are their own elements: what they keep is the test's log.
    """

    count: int | None = 5
    period: float = 0.01
    log: list = attrs.field(factory=list, eq=False)

    def output_caps(self, fmt_in):
        return Caps.of(PCM8K)

    def open(self, fmt_in, fmt_out):
        return self

    async def run(self, tx, *, task_status=trio.TASK_STATUS_IGNORED):
        async with tx:
            self.log.append(("started", "Ticker"))
            task_status.started()
            n = 0
            while self.count is None or n < self.count:
                await tx.send(pcm_chunk(80, pts=80 * n))
                self.log.append(("sent", n, trio.current_time()))
                n += 1
                await trio.sleep(self.period)

    def statistics(self):
        return {"sent": sum(1 for e in self.log if e[0] == "sent")}


@attrs.frozen(kw_only=True)
class Relay(Filter):
    """Forwards frames; raises after ``fail_after`` frames, or waits ``delay`` per frame."""

    fail_after: int | None = None
    delay: float = 0.0
    log: list = attrs.field(factory=list, eq=False)
    seen: list = attrs.field(factory=list, eq=False)

    def open(self, fmt_in, fmt_out):
        return self

    async def run(self, rx, tx, *, task_status=trio.TASK_STATUS_IGNORED):
        async with rx, tx:
            self.log.append(("started", "Relay"))
            task_status.started()
            async for frame in rx:
                if self.fail_after is not None and len(self.seen) >= self.fail_after:
                    raise ValueError("bad frame")
                self.seen.append(frame)
                await trio.sleep(self.delay)
                await tx.send(frame)

    def statistics(self):
        return {"relayed": len(self.seen)}


@attrs.frozen(kw_only=True)
class Collector(Sink):
    log: list = attrs.field(factory=list, eq=False)
    stop_after: int | None = None
    hang: bool = False
    received: list = attrs.field(factory=list, eq=False)

    @property
    def frames(self):
        return [frame for _, frame in self.received]

    def open(self, fmt_in, fmt_out):
        return self

    def statistics(self):
        return {"frames": len(self.received)}

    async def run(self, rx, *, task_status=trio.TASK_STATUS_IGNORED):
        async with rx:
            self.log.append(("started", "Collector"))
            task_status.started()
            async for frame in rx:
                self.received.append((trio.current_time(), frame))
                if self.hang:
                    await trio.sleep_forever()
                if self.stop_after is not None and len(self.received) >= self.stop_after:
                    return


def chain(*stages, capacity=2):
    return assemble("p", stages, capacities=[capacity] * (len(stages) - 1))


async def test_stages_start_sink_first_and_the_stream_ends_by_closing(autojump_clock):
    log = []
    ticker, relay, sink = Ticker(log=log), Relay(log=log), Collector(log=log)
    report = await run_pipeline(chain(ticker, relay, sink))
    assert [e for e in log if e[0] == "started"] == [
        ("started", "Collector"),
        ("started", "Relay"),
        ("started", "Ticker"),
    ]
    assert report.status == "completed" and report.error is None
    assert [f.pts for f in sink.frames] == [0, 80, 160, 240, 320]
    assert [s.statistics for s in report.stages] == [{"sent": 5}, {"relayed": 5}, {"frames": 5}]
    assert report.stages[1].input == report.stages[1].output == "pcm_s16le 8000 Hz mono"
    assert report.duration == pytest.approx(0.05)


async def test_a_failing_stage_cancels_its_pipeline_and_is_named(autojump_clock):
    report = await run_pipeline(chain(Ticker(count=None), Relay(fail_after=3), Collector()))
    assert report.status == "failed"
    assert report.error == "pipeline 'p', stage 2 (Relay) failed: ValueError: bad frame"


async def test_a_failure_can_be_raised_for_tests(autojump_clock):
    with pytest.raises(StageFailed, match=r"^pipeline 'p', stage 2 \(Relay\) failed: ValueError: bad frame$") as info:
        await run_pipeline(chain(Ticker(), Relay(fail_after=0), Collector()), raise_on_failure=True)
    assert isinstance(info.value.cause, ValueError)


async def test_one_failing_call_leaves_the_others_running(autojump_clock):
    good = [Collector() for _ in range(3)]
    pipelines = [chain(Ticker(count=20), Relay(), sink) for sink in good]
    pipelines.insert(1, chain(Ticker(count=20), Relay(fail_after=2), Collector()))
    report = await run_pipelines(pipelines)
    assert [p.status for p in report.pipelines] == ["completed", "failed", "completed", "completed"]
    assert report.failed
    assert all(len(sink.received) == 20 for sink in good)


async def test_backpressure_holds_the_source_to_the_sink_pace(autojump_clock):
    ticker = Ticker(count=10, period=0)
    await run_pipeline(chain(ticker, Relay(delay=1.0), Collector(), capacity=1))
    sent_at = [e[2] for e in ticker.log if e[0] == "sent"]
    # the relay takes frame k at k seconds; the one-slot channel lets the source be one frame ahead
    assert sent_at == pytest.approx([0, 0, 1, 2, 3, 4, 5, 6, 7, 8])


async def test_stop_cancels_the_source_and_drains_the_rest(autojump_clock):
    control = RunControl(grace=5.0)
    ticker, sink = Ticker(count=None), Collector()
    result = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_store, result, run_pipeline(chain(ticker, Relay(delay=0.1), sink), control))
        await trio.sleep(1.0)
        control.stop()
        stopped_at = trio.current_time()
    assert result[0].status == "stopped"
    sent = ticker.statistics()["sent"]
    # every frame in flight when the source stopped (two in the channel, one in the relay) arrived
    assert len(sink.received) == sent
    assert trio.current_time() - stopped_at == pytest.approx(0.3)


async def test_grace_period_over_cancels_what_did_not_drain(autojump_clock):
    control = RunControl(grace=2.0)
    result = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_store, result, run_pipeline(chain(Ticker(count=None), Collector(hang=True)), control))
        await trio.sleep(1.0)
        control.stop()
    assert result[0].status == "cancelled"
    assert result[0].duration == pytest.approx(3.0)


async def test_abort_cancels_at_once(autojump_clock):
    control = RunControl(grace=100.0)
    result = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_store, result, run_pipeline(chain(Ticker(count=None), Collector(hang=True)), control))
        await trio.sleep(1.0)
        control.stop()
        await trio.sleep(0.5)
        control.abort()
    assert result[0].status == "cancelled"
    assert result[0].duration == pytest.approx(1.5)


async def test_stop_before_start_ends_promptly(autojump_clock):
    control = RunControl()
    control.stop()
    report = await run_pipeline(chain(Ticker(count=None), Collector()), control)
    assert report.status == "stopped"
    assert report.duration == 0


async def test_a_sink_that_ends_early_ends_the_pipeline_quietly(autojump_clock):
    sink = Collector(stop_after=3)
    report = await run_pipeline(chain(Ticker(count=None), Relay(), sink))
    assert report.status == "completed"
    assert len(sink.received) == 3


async def test_stop_after_a_duration(autojump_clock):
    report = await run_pipelines([chain(Ticker(count=None), Collector())], stop_after=2.5)
    assert report.pipelines[0].status == "stopped"
    assert report.pipelines[0].duration == pytest.approx(2.5)


async def test_run_stage_helper_times_scripted_input(autojump_clock):
    chunks = [pcm_chunk(80, pts=80 * i) for i in range(3)]
    out = await run_stage(Relay(), [(0.0, chunks[0]), (0.5, chunks[1]), (2.0, chunks[2])])
    assert out.chunks == chunks
    assert out.times == pytest.approx([0.0, 0.5, 2.0])
    assert isinstance(out.frames[0], AudioChunk)


async def _store(result, awaitable):
    result.append(await awaitable)


def test_run_virtual_runs_on_a_mock_clock():
    async def long_wait():
        await trio.sleep(600)
        return trio.current_time()

    assert run_virtual(long_wait) == pytest.approx(600)


async def test_a_first_sigint_drains_and_a_second_cancels_at_once(autojump_clock):
    control = RunControl(grace=100.0)
    result = []
    async with trio.open_nursery() as nursery:
        await nursery.start(watch_signals, control)
        nursery.start_soon(_store, result, run_pipeline(chain(Ticker(count=None), Collector(hang=True)), control))
        await trio.sleep(1.0)
        os.kill(os.getpid(), signal.SIGINT)
        await trio.sleep(0.5)
        assert control.stopping and not result  # stopping, draining: the hung sink keeps it open
        os.kill(os.getpid(), signal.SIGINT)
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert result[0].status == "cancelled"
    assert result[0].duration == pytest.approx(1.5, abs=0.01)
