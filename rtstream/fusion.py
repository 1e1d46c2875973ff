"""Fusing chains of untimed cores into the task of the stage before them (GStreamer's chain functions).

A stage whose core never waits — no deadline, never full, not a queue (:attr:`Core.untimed`) —
needs no task of its own: the stage before it can call the core's ``push`` as it sends, and
send what comes out to the channel after it (nothing, when the chain ends in the sink's core).
:class:`ChainSend` is that send channel. The upstream element sees an ordinary send channel;
backpressure still comes from the one real channel at the chain's end, and cancellation from
the upstream task. Each fused stage keeps its
element, its statistics and its report; only the task and the two channel hops per frame go.

A sink whose input is a bounded queue of its own (the telephony link) can take its frames the
same way: an element with ``accept(frame)`` gets them from the upstream task through
:class:`Accepting`, and its own task sees only the end of the stream on its channel.

The call's control path reaches a fused core as it would in its own shell: frames of cleared
utterances are dropped (and counted) before each core, and a clear pushes a
:class:`~rtstream.frames.Clear` into every core of the chain at once; what a core lets go then
goes on at once when the channel has room, or ahead of the next frame otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import trio

from .control import CallControl, listening
from .frames import Clear, Frame
from .stage import NOTHING, Core, CoreElement, Element, SendChannel


class FusedCoreFailed(Exception):
    """A fused core raised ``error``; ``position`` is its place in the chain, so the report names its stage."""

    def __init__(self, position: int, error: Exception) -> None:
        super().__init__(f"fused core {position} failed: {error}")
        self.position = position
        self.error = error


def fusible(element: Element) -> Core | None:
    """The core to fuse into the upstream stage's task, or None when ``element`` needs a task of its own."""
    if type(element) is not CoreElement or element.clock_stops_while_sending:
        return None
    core = element.core
    return core if core.untimed and not core.decoupled else None


YIELD_EVERY = 16
"""A fused send that had nothing to wait for yields to the scheduler once in this many sends."""


class Waits:
    """When a fused send yields: after a send that waited anyway, and once in :data:`YIELD_EVERY` otherwise.

    A channel's send always yields (a scheduling round trip, most of a frame's cost on a busy
    loop). A fused send whose frames went straight into room downstream only checks for
    cancellation: the task yields at its own next wait (a socket, a clock). The yield once in
    sixteen is for a source that never waits otherwise, so it cannot hold the loop for long.
    """

    __slots__ = ("_since",)

    def __init__(self) -> None:
        self._since = 0

    async def after(self, waited: bool) -> None:
        if waited:
            self._since = 0
            return
        self._since += 1
        if self._since >= YIELD_EVERY:
            self._since = 0
            await trio.lowlevel.checkpoint()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()


class _FusedSend:
    """What an element's ``async with tx`` needs of a fused send channel; subclasses say what closing does."""

    __slots__ = ()

    def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> _FusedSend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class ChainSend(_FusedSend):
    """A send channel that runs ``cores`` in order on every frame and sends what comes out to ``tx``
    (None when the last core is the pipeline's sink).

    Ending the stream is :meth:`finish` (the runner calls it when the upstream element has
    returned): the cores' ``end()`` flush goes out, then ``tx`` closes. Closing this channel
    (``close``, or leaving ``async with``) only stops sends; after a failure or a cancellation
    the runner closes ``tx`` without flushing, as a task of its own would.
    """

    __slots__ = ("_closed", "_control", "_cores", "_lock", "_pending", "_single", "_waits", "tx")

    def __init__(self, cores: Sequence[Core], tx: SendChannel | None, control: CallControl | None) -> None:
        self._cores = tuple(cores)
        self._single = self._cores[0] if len(self._cores) == 1 else None
        self.tx = tx
        self._control = control
        self._pending: list[Frame] = []
        """What cores let go at a clear while the channel was full: sent ahead of the next frame."""
        self._closed = False
        self._lock = trio.StrictFIFOLock()
        self._waits = Waits()

    def _through(self, frames: Sequence[Frame], start: int, now: float) -> list[Frame]:
        """``frames`` pushed through the cores from ``start`` on."""
        control = self._control
        for position in range(start, len(self._cores)):
            core = self._cores[position]
            out: list[Frame] = []
            try:
                for frame in frames:
                    if control is None or not control.stale(frame):
                        out.extend(core.push(frame, now))
            except Exception as exc:
                raise FusedCoreFailed(position, exc) from exc
            frames = out
        return list(frames)

    async def send(self, frame: Frame) -> None:
        """Push ``frame`` through the cores and send what comes out, in order even when two tasks send."""
        if self._closed:
            raise trio.ClosedResourceError("the stage closed its send channel")
        lock = self._lock
        try:
            lock.acquire_nowait()  # one sender, the common case: no scheduling round trip
        except trio.WouldBlock:
            await lock.acquire()  # another task is sending what its frame made: after it, in order
        try:
            if self._pending:
                await self._send_pending()
            now = trio.current_time()
            single = self._single
            if single is None:
                out: Sequence[Frame] = self._through((frame,), 0, now)
            elif self._control is not None and self._control.stale(frame):
                out = NOTHING
            else:
                try:
                    out = single.push(frame, now)
                except Exception as exc:
                    raise FusedCoreFailed(0, exc) from exc
            waited = await self._send_all(out) if out else False
            await self._waits.after(waited)
        finally:
            lock.release()

    async def _send_all(self, frames: Sequence[Frame]) -> bool:
        """Send ``frames`` on ``tx``, waiting only while it is full; whether any send waited (and so yielded)."""
        waited = False
        for frame in frames:
            tx = self.tx
            assert tx is not None, "a sink's core returns no frames"
            try:
                tx.send_nowait(frame)
            except trio.WouldBlock:
                await tx.send(frame)
                waited = True
        return waited

    def clear(self, reason: str) -> None:
        """A clear on the call's control path: every core drops what it holds of cleared replies."""
        now = trio.current_time()
        for index, core in enumerate(self._cores):
            let_go = [f for f in core.push(Clear(reason), now) if type(f) is not Clear]  # as run_core's clear
            self._pending.extend(self._through(let_go, index + 1, now))
        while self._pending and not self._lock.locked():  # a send under way sends them after its own
            assert self.tx is not None, "a sink's core returns no frames"
            try:
                self.tx.send_nowait(self._pending[0])
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                return  # sent ahead of the next frame, or at the end
            del self._pending[0]

    async def _send_pending(self) -> None:
        pending, self._pending = self._pending, []
        await self._send_all(pending)

    async def finish(self) -> None:
        """The upstream stage ended its stream: flush every core in order, then close ``tx``."""
        await self._send_pending()
        now = trio.current_time()
        for index, core in enumerate(self._cores):
            try:
                flushed = core.end()
            except Exception as exc:
                raise FusedCoreFailed(index, exc) from exc
            await self._send_all(self._through(flushed, index + 1, now))
        if self.tx is not None:
            await self.tx.aclose()

    def listening(self) -> Any:
        """Enter while the chain runs, to hear the call's clears."""
        return listening(self.clear)

    def close(self) -> None:
        self._closed = True

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def statistics(self) -> Any:
        """The statistics of the channel the chain ends in (the runner asks whether its reader left);
        None for a chain that ends in a sink's core."""
        return None if self.tx is None else self.tx.statistics()


class Accepting(_FusedSend):
    """The send channel into a sink that accepts frames in the sender's task (``accept(frame)``).

    Closing it closes ``tx``, the channel the sink's own task reads, so the sink sees the end of
    the stream as it would otherwise; nothing else travels on ``tx``.
    """

    __slots__ = ("_accept", "_position", "_waits", "tx")

    def __init__(self, accept: Callable[[Frame], None], tx: SendChannel, position: int) -> None:
        self._accept = accept
        self._position = position
        """The sink's place after the head of the chain (0: right after it), for :class:`FusedCoreFailed`."""
        self.tx = tx
        self._waits = Waits()

    async def send(self, frame: Frame) -> None:
        self.send_nowait(frame)
        await self._waits.after(False)

    def send_nowait(self, frame: Frame) -> None:
        """BrokenResourceError once the sink's task has ended, as its channel would raise."""
        if not self.tx.statistics().open_receive_channels:
            raise trio.BrokenResourceError("the sink has ended")
        try:
            self._accept(frame)
        except Exception as exc:
            raise FusedCoreFailed(self._position, exc) from exc

    def close(self) -> None:
        self.tx.close()

    async def aclose(self) -> None:
        await self.tx.aclose()

    def statistics(self) -> Any:
        return self.tx.statistics()


def accepting(element: Element) -> Callable[[Frame], None] | None:
    """The sink's ``accept``, when it takes frames in its upstream's task."""
    accept = getattr(element, "accept", None)
    return accept if callable(accept) else None
