"""A cheaper ``sleep_until`` for many tasks that each wake up every few tens of milliseconds.

``trio.sleep_until`` opens a cancel scope per call, and its expiry raises and catches a
``Cancelled``: about 15 µs a wake-up, the largest part of a pacer's cost per frame. Here the
tasks of one trio run share one sleeper: each waiting task parks in a heap of deadlines, and
one system task sleeps until the earliest and wakes every task due then. A wake-up costs a
heap push and a reschedule; the cancel scope is paid once per distinct wake-up time, shared
by all the calls due at it (hundreds of paced streams fall on far fewer epoll wake-ups).

The sleeper is started on first use and ends after it has had nobody to wake for a second.
Cancellation works as for any trio sleep.
"""

from __future__ import annotations

import heapq
import itertools

import trio
from trio.lowlevel import Abort, RunVar, checkpoint, current_task, reschedule, spawn_system_task, wait_task_rescheduled

_LINGER = 1.0
"""Seconds the sleeper waits with nobody to wake before it ends."""


class _Sleeper:
    __slots__ = ("heap", "order", "running", "scope")

    def __init__(self) -> None:
        self.heap: list[list] = []
        """[deadline, order, task or None once cancelled]"""
        self.order = itertools.count()
        self.scope: trio.CancelScope | None = None
        self.running = False

    async def run(self) -> None:
        heap = self.heap
        try:
            while True:
                linger = not heap
                with trio.CancelScope(deadline=heap[0][0] if heap else trio.current_time() + _LINGER) as scope:
                    self.scope = scope
                    await trio.sleep_forever()
                if linger and not heap:
                    return
                now = trio.current_time()
                while heap and (heap[0][2] is None or heap[0][0] <= now):
                    task = heapq.heappop(heap)[2]
                    if task is not None:
                        reschedule(task)
        finally:
            self.running = False
            self.scope = None


_sleeper: RunVar[_Sleeper] = RunVar("rtstream_sleeper")


async def sleep_until(deadline: float) -> None:
    """Sleep until ``trio.current_time()`` reaches ``deadline``; a checkpoint if it already has."""
    if deadline <= trio.current_time():
        await checkpoint()
        return
    try:
        sleeper = _sleeper.get()
    except LookupError:
        sleeper = _Sleeper()
        _sleeper.set(sleeper)
    entry = [deadline, next(sleeper.order), current_task()]
    heapq.heappush(sleeper.heap, entry)
    if not sleeper.running:
        sleeper.running = True
        spawn_system_task(sleeper.run, name="rtstream.timers sleeper")
    elif sleeper.heap[0] is entry and sleeper.scope is not None:
        sleeper.scope.deadline = deadline

    def abort(_: object) -> Abort:
        entry[2] = None
        return Abort.SUCCEEDED

    await wait_task_rescheduled(abort)
