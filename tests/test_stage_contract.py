"""The stage contract: configs open elements, and the one shared shell runs any core on virtual time."""

import math
from collections import deque

import attrs
import pytest
import trio
from helpers import pcm_chunk

from rtstream.frames import UtteranceEnd
from rtstream.pipeline import assemble
from rtstream.runner import run_pipeline
from rtstream.stage import Core, CoreElement, Filter, Sink
from rtstream.testing import CollectingSink, ScriptedSource, run_stages


class Delay(Core):
    """Sends each frame ``delay`` seconds after it came; holds at most ``room`` frames."""

    def __init__(self, delay: float, room: int = 100) -> None:
        self.delay, self.room = delay, room
        self.held: deque = deque()
        self.pushed_at: list[float] = []

    @property
    def deadline(self) -> float:
        return self.held[0][0] + self.delay if self.held else math.inf

    @property
    def full(self) -> bool:
        return len(self.held) >= self.room

    def push(self, frame, now):
        self.pushed_at.append(now)
        self.held.append((now, frame))
        return ()

    def poll(self, now):
        out = []
        while self.held and self.held[0][0] + self.delay <= now:
            out.append(self.held.popleft()[1])
        return out

    def statistics(self):
        return {"held": len(self.held)}


class Buffered(Delay):
    """The same, run with its input read by a task of its own."""

    decoupled = True


@attrs.frozen(kw_only=True)
class Delayed(Filter):
    """A stage whose element is a Delay core in the shared shell."""

    delay: float = 1.0
    room: int = 100
    decoupled: bool = False
    clock_stops_while_sending: bool = False

    def open(self, fmt_in, fmt_out):
        core = (Buffered if self.decoupled else Delay)(self.delay, self.room)
        return CoreElement(core, clock_stops_while_sending=self.clock_stops_while_sending)


@attrs.frozen(kw_only=True)
class Slow(Sink):
    """Takes a frame, then sleeps ``pause`` seconds (a stalled peer); its own element."""

    pause: float = 1.0
    received: list = attrs.field(factory=list, eq=False)

    def open(self, fmt_in, fmt_out):
        return self

    async def run(self, rx, *, task_status=trio.TASK_STATUS_IGNORED):
        async with rx:
            task_status.started()
            async for frame in rx:
                self.received.append((trio.current_time(), frame))
                await trio.sleep(self.pause)

    def statistics(self):
        return {}


def chunks(n):
    return [pcm_chunk(80, pts=80 * k, seed=k) for k in range(n)]


def test_a_config_opens_a_fresh_element_each_time_and_stays_as_it_was():
    stage = Delayed(delay=0.5)
    one, two = (assemble("p", [ScriptedSource(script=chunks(1)), stage, CollectingSink()]) for _ in range(2))
    assert one.elements[1] is not two.elements[1] and one.elements[1].core is not two.elements[1].core
    assert one.stages[1] is two.stages[1] is stage == Delayed(delay=0.5)  # nothing of a run lives in the config


async def test_a_timed_core_is_polled_at_its_deadlines_and_after_the_input_ends(autojump_clock):
    script = [(0.1 * k, c) for k, c in enumerate(chunks(3))]
    out = await run_stages([Delayed(delay=1.0)], script)
    assert out.times == pytest.approx([1.0, 1.1, 1.2])  # the input ended at 0.2: the core still had all three
    assert [c.pts for c in out.chunks] == [0, 80, 160]
    assert out.report.duration == pytest.approx(1.2) and out.report.stages[1].statistics == {"held": 0}


async def test_a_full_core_holds_the_source_back(autojump_clock):
    out = await run_stages([Delayed(delay=1.0, room=1)], chunks(3), capacity=0)
    assert out.times == pytest.approx([1.0, 2.0, 3.0])  # each frame taken in only once the one before left


async def test_the_clock_can_leave_out_the_time_spent_blocked_on_downstream(autojump_clock):
    script = [(0.0, c) for c in chunks(2)] + [(4.0, UtteranceEnd("u"))]
    for stops, expected in ((False, [0.0, 0.0, 4.0]), (True, [0.0, 0.0, 1.0])):
        stage = Delayed(delay=0.0, clock_stops_while_sending=stops)
        pipeline = assemble("p", [ScriptedSource(script=script), stage, Slow(pause=3.0)], capacities=[2, 0])
        start = trio.current_time()
        await run_pipeline(pipeline)
        # the second frame's send waited 3 s on the slow sink: with the clock stopped, 4.0 is seen as 1.0
        assert [t - start for t in pipeline.elements[1].core.pushed_at] == pytest.approx(expected)


async def test_a_decoupled_core_takes_input_as_it_comes_while_its_output_waits(autojump_clock):
    script = [(0.1 * k, c) for k, c in enumerate(chunks(4))]
    for decoupled, expected in ((True, [0.0, 0.1, 0.2, 0.3]), (False, [0.0, 0.1, 1.0, 2.0])):
        sink = Slow(pause=1.0)
        stage = Delayed(delay=0.0, decoupled=decoupled)
        pipeline = assemble("p", [ScriptedSource(script=script), stage, sink], capacities=[0, 0])
        start = trio.current_time()
        report = await run_pipeline(pipeline)
        assert report.status == "completed" and len(sink.received) == 4
        assert [t - start for t in pipeline.elements[1].core.pushed_at] == pytest.approx(expected)
