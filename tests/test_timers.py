"""rtstream.timers.sleep_until: one shared sleeper wakes every task on time, and cancels cleanly."""

import random

import pytest
import trio
import trio.testing

from rtstream.timers import sleep_until


def _system_tasks() -> list[str]:
    found, todo = [], [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        found.append(task.name)
        todo.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return [name for name in found if name == "rtstream.timers sleeper"]


async def test_many_sleepers_wake_at_their_own_deadlines_in_order(autojump_clock):
    woke: list[tuple[float, float]] = []
    deadlines = [random.Random(1).uniform(0.001, 2.0) for _ in range(300)]

    async def sleeper(deadline: float) -> None:
        await sleep_until(deadline)
        woke.append((trio.current_time(), deadline))

    async with trio.open_nursery() as nursery:
        for d in deadlines:
            nursery.start_soon(sleeper, d)
    assert all(at == deadline for at, deadline in woke)
    assert [d for _, d in woke] == sorted(deadlines)


async def test_an_earlier_deadline_arriving_later_still_wakes_first(autojump_clock):
    order = []

    async def sleeper(name: str, start: float, deadline: float) -> None:
        await trio.sleep(start)
        await sleep_until(deadline)
        order.append((name, trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleeper, "late", 0.0, 5.0)
        nursery.start_soon(sleeper, "early", 1.0, 2.0)
    assert order == [("early", 2.0), ("late", 5.0)]


async def test_a_passed_deadline_is_a_checkpoint(autojump_clock):
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await sleep_until(trio.current_time() - 1)


async def test_cancelling_a_sleeper_leaves_the_others_and_then_no_task(autojump_clock):
    woke = []

    async def sleeper(deadline: float) -> None:
        await sleep_until(deadline)
        woke.append(deadline)

    async with trio.open_nursery() as nursery:
        with trio.move_on_after(0.5):
            await sleep_until(3.0)  # the earliest to be armed, cancelled first
        nursery.start_soon(sleeper, 1.0)
        with trio.move_on_after(0.5):
            await sleep_until(2.0)
    assert woke == [1.0] and trio.current_time() == 1.0
    assert _system_tasks() == ["rtstream.timers sleeper"]
    await trio.sleep(1.5)
    assert _system_tasks() == []
