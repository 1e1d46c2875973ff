"""The stage contract: a frozen factory per stage type, a running element per pipeline instance.

A stage type is an ``@attrs.frozen(kw_only=True)`` config of ``param()`` fields (its TOML
parameters) that declares the formats it takes and gives (:meth:`Stage.input_caps`,
:meth:`Stage.output_caps`). Once negotiation has fixed the format of every edge,
:meth:`Stage.open` makes the :class:`Element` that runs in one pipeline instance and holds all
its run-time state; the config stays as it was read, so one config can open any number of
elements (GStreamer's element factory and element).

The work lives in a :class:`Core`: synchronous, no I/O, time passed in, one shape for every
stage (``push``, ``poll``, ``deadline``, ``end``, ``statistics``). :func:`run_core` is the one
trio shell that runs any core; :class:`CoreElement` wraps a core in it. A stage writes its own
element only where it waits on something else: a socket, a service, a file, a clock of its own.
Because every core has the same shape, the runner fuses a chain of :attr:`Core.untimed` cores into
the task of the stage before them by handing each core's output to the next core's ``push``
(GStreamer's chain functions; :mod:`rtstream.fusion`).

Inside any element's ``run``: enter the channels (``async with rx, tx:``), call
``task_status.started()`` once its resources are open, and end the stream by closing ``tx``;
never send an "end" object. Sources have no receive channel, sinks no send channel.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import trio

from .caps import Caps, StreamFormat
from .control import CURRENT_CONTROL, listening
from .frames import AudioFormat, Clear, Frame

if TYPE_CHECKING:
    from .registry import StageInfo

SendChannel = trio.MemorySendChannel[Frame]
ReceiveChannel = trio.MemoryReceiveChannel[Frame]

NOTHING: tuple[Frame, ...] = ()


class Core:
    """The shape of every pure core; subclasses override what they use.

    ``push(frame, now)`` takes one frame and returns the frames to send on, in order;
    ``poll(now)`` returns the frames due by ``now``; ``deadline`` is when ``poll`` next wants
    calling (inf while untimed; -inf for at once); ``end()`` flushes at the end of the stream
    (a timed core may still have frames due at its deadlines after it); ``full`` stops the shell
    reading input until a poll makes room (backpressure); ``statistics()`` is a frozen record.
    """

    __slots__ = ()

    untimed: ClassVar[bool] = False
    """No deadline ever, never ``full``, ``poll`` never has anything: the core only transforms what
    it is pushed, so the runner may fuse it into the task of the stage before it (:mod:`rtstream.fusion`)."""

    decoupled: ClassVar[bool] = False
    """``push`` and ``end`` never return frames (they only buffer): the shell may read input in a task of
    its own while polled output waits on downstream, a queue boundary (GStreamer's ``queue``)."""

    @property
    def deadline(self) -> float:
        return math.inf

    @property
    def full(self) -> bool:
        return False

    def push(self, frame: Frame, now: float) -> Sequence[Frame]:
        raise NotImplementedError

    def poll(self, now: float) -> Sequence[Frame]:
        return NOTHING

    def end(self) -> Sequence[Frame]:
        return NOTHING

    def statistics(self) -> Any:
        raise NotImplementedError


class Element(Protocol):
    """A running stage: ``run(*channels, task_status=...)`` once, ``statistics()`` at any time.

    ``run`` takes ``tx`` for a source, ``rx, tx`` for a filter, ``rx`` for a sink.
    """

    @property
    def run(self) -> Callable[..., Awaitable[None]]: ...

    def statistics(self) -> Any: ...


async def run_core(
    core: Core,
    rx: ReceiveChannel,
    tx: SendChannel | None = None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    clock_stops_while_sending: bool = False,
) -> None:
    """Run ``core`` between ``rx`` and ``tx`` (None for a sink) until the input ends and the core is done.

    Input goes to ``push`` as it comes, and ``poll`` runs when the deadline comes. While the
    core is ``full`` no input is read, and the channel holds upstream back. After ``end()`` a
    timed core is polled at its deadlines until it has none. With ``clock_stops_while_sending``
    the core's clock leaves out the time spent blocked on downstream (its bounds then measure
    waits on input only). A :attr:`Core.decoupled` core has its input read by a task of its own.
    """
    if core.decoupled:
        assert tx is not None and not clock_stops_while_sending
        await _run_decoupled(core, rx, tx, task_status)
        return
    stopped = 0.0  # time spent blocked on downstream, when it does not count

    async def send(frames: Sequence[Frame]) -> None:
        nonlocal stopped
        for frame in frames:
            assert tx is not None, "a sink's core returns no frames"
            if clock_stops_while_sending:
                before = trio.current_time()
                await tx.send(frame)
                stopped += trio.current_time() - before
            else:
                await tx.send(frame)

    control = CURRENT_CONTROL.get()
    held: list[Frame] = []  # what the core let go when a clear reached it between frames

    def clear(reason: str) -> None:
        held.extend(f for f in core.push(Clear(reason), trio.current_time() - stopped) if type(f) is not Clear)

    async with rx, tx if tx is not None else contextlib.nullcontext():
        task_status.started()
        with listening(clear):
            while True:
                if held:
                    out, held[:] = list(held), []
                    await send(out)
                deadline = core.deadline
                if deadline == math.inf and not core.full:
                    try:
                        frame = await rx.receive()
                    except trio.EndOfChannel:
                        break
                elif deadline <= trio.current_time() - stopped:
                    await send(core.poll(trio.current_time() - stopped))
                    continue
                elif core.full:
                    await trio.sleep_until(deadline + stopped)
                    continue
                else:
                    with trio.move_on_at(deadline + stopped) as waiting:
                        try:
                            frame = await rx.receive()
                        except trio.EndOfChannel:
                            break
                    if waiting.cancelled_caught:
                        continue
                if control is not None and control.stale(frame):
                    continue
                await send(core.push(frame, trio.current_time() - stopped))
            await send(core.end())
            while (deadline := core.deadline) < math.inf:
                await trio.sleep_until(deadline + stopped)
                await send(core.poll(trio.current_time() - stopped))


async def _run_decoupled(core: Core, rx: ReceiveChannel, tx: SendChannel, task_status: trio.TaskStatus[None]) -> None:
    """A reader task pushes input as it comes while the task that polls is blocked sending output.

    The reader stops while the core is ``full``, until a poll's output has been sent and left
    room. The poller reads the core's deadline after every send, so a push made meanwhile is
    never missed.
    """
    changed = trio.lowlevel.ParkingLot()
    room = trio.lowlevel.ParkingLot()
    reading = True
    control = CURRENT_CONTROL.get()

    def clear(reason: str) -> None:
        core.push(Clear(reason), trio.current_time())  # a decoupled core sends its events at its next poll
        changed.unpark_all()

    async def read() -> None:
        nonlocal reading
        async with rx:
            async for frame in rx:
                if control is not None and control.stale(frame):
                    continue
                core.push(frame, trio.current_time())
                changed.unpark_all()
                while core.full:
                    await room.park()
        core.end()
        reading = False
        changed.unpark_all()

    async with tx, trio.open_nursery() as nursery:
        nursery.start_soon(read)
        task_status.started()
        with listening(clear):
            while reading or core.deadline < math.inf:
                deadline = core.deadline
                if deadline > trio.current_time():
                    with trio.move_on_at(deadline):
                        await changed.park()
                    continue
                for frame in core.poll(trio.current_time()):
                    await tx.send(frame)
                if not core.full:  # as the sends left it: the reader waits for the next poll otherwise
                    room.unpark_all()


class CoreElement:
    """The element of a stage whose work is all in its core: the core in the shared shell."""

    __slots__ = ("clock_stops_while_sending", "core")

    def __init__(self, core: Core, *, clock_stops_while_sending: bool = False) -> None:
        self.core = core
        self.clock_stops_while_sending = clock_stops_while_sending

    async def run(
        self,
        rx: ReceiveChannel,
        tx: SendChannel | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await run_core(
            self.core, rx, tx, task_status=task_status, clock_stops_while_sending=self.clock_stops_while_sending
        )

    def statistics(self) -> Any:
        return self.core.statistics()


class Stage:
    """Base of every stage config; subclass :class:`Source`, :class:`Filter` or :class:`Sink`."""

    role: ClassVar[str]
    info: ClassVar[StageInfo]
    """Set by :func:`rtstream.registry.register`."""

    accepts: ClassVar[Caps] = Caps.ANY
    """Formats the stage takes in (for documentation and the default :meth:`input_caps`)."""

    produces: ClassVar[Caps | None] = None
    """Formats the stage gives out; None means exactly the format (and frames) it took in."""

    statistics_type: ClassVar[type | None] = None
    """The frozen record its elements' ``statistics()`` return (``rtstream inspect`` lists its fields)."""

    frames_help: ClassVar[str] = ""
    """What it needs or makes of frame durations, in words (``rtstream inspect``); empty: any, as they come."""

    def input_caps(self) -> Caps:
        """The formats this configured stage accepts."""
        return self.accepts

    def frames_out(self) -> float | None:
        """The frame duration a stage that passes formats through cuts its output into (``ANY_SIZE``:
        chunks of any length), or None when it passes the frames on as they came."""
        return None

    def output_caps(self, fmt_in: StreamFormat | None) -> Caps:
        """The formats this configured stage can produce from ``fmt_in`` (None for a source)."""
        if self.produces is None:
            assert fmt_in is not None, "a source must declare what it produces"
            frames = self.frames_out()
            return Caps.of(fmt_in) if frames is None else Caps.of(fmt_in.format, frames)
        return self.produces

    def upstream_caps(self, downstream: Caps) -> Caps:
        """What this stage's input may be, given what the stages downstream of it accept.

        A stage that passes its format through passes the constraint up (less the frame
        duration if it cuts frames of its own); one that converts absorbs it.
        """
        if self.produces is not None:
            return self.input_caps()
        return self.input_caps() & (downstream if self.frames_out() is None else downstream.with_frames(None))

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> Element:
        """The running element for one pipeline instance, once negotiation fixed the formats.

        ValueError (or ParamError) when the configuration cannot work with those formats.
        """
        raise NotImplementedError(f"{type(self).__name__} does not open an element")


class Source(Stage):
    """A stage that makes frames: its element runs ``run(tx, *, task_status)``."""

    role = "source"

    stoppable: ClassVar[bool] = True
    """A stop of the run (Ctrl-C, SIGTERM, a caller hanging up) cuts the source short. A source
    whose stream ends with its peer's (``telephony_in``, ended by the provider's stop) says
    False: it drains what the peer sent, and only the grace period's end cancels it."""


class Filter(Stage):
    """A stage between two others: its element runs ``run(rx, tx, *, task_status)``."""

    role = "filter"


class Sink(Stage):
    """A stage that consumes frames: its element runs ``run(rx, *, task_status)``."""

    role = "sink"
