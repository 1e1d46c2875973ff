"""The refill channel: a blocked sender wakes once the buffer is down to ``low``, and only then."""

import pytest
import trio
import trio.testing

from rtstream.channel import open_refill_channel


class Source:
    """Sends 0, 1, 2… as fast as the channel takes them, counting its wakes from a full channel."""

    def __init__(self, tx, count: int) -> None:
        self.tx, self.count = tx, count
        self.sent = 0
        self.wakes = 0

    async def run(self) -> None:
        async with self.tx:
            for value in range(self.count):
                try:
                    self.tx.send_nowait(value)
                except trio.WouldBlock:
                    await self.tx.send(value)
                    self.wakes += 1
                self.sent += 1


async def test_the_sender_waits_until_low_is_left_then_fills_the_channel() -> None:
    tx, rx = open_refill_channel(6, 2)
    source = Source(tx, 100)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(source.run)
        await trio.testing.wait_all_tasks_blocked()
        assert source.sent == 6
        queued = []
        for value in range(3):  # 5, 4, 3 left: the sender sleeps on
            assert rx.receive_nowait() == value
            await trio.testing.wait_all_tasks_blocked()
            queued.append(rx.statistics().current_buffer_used)
        assert queued == [5, 4, 3]
        assert rx.receive_nowait() == 3  # 2 left: refilled to 6
        await trio.testing.wait_all_tasks_blocked()
        assert rx.statistics().current_buffer_used == 6
        assert source.sent == 10
        received = [rx.receive_nowait() for _ in range(6)]
        assert received == list(range(4, 10))
        while True:  # item by item, the sender running whenever it can
            try:
                received.append(rx.receive_nowait())
            except trio.WouldBlock:
                await trio.testing.wait_all_tasks_blocked()
            except trio.EndOfChannel:
                break
    assert received == list(range(4, 100))
    assert source.wakes == 16  # drained to empty before it runs: one wake per six items (94 / 6), not per item


async def test_a_receiver_that_waits_gets_each_item_as_it_is_sent(autojump_clock) -> None:
    tx, rx = open_refill_channel(3, 0)
    got = []

    async def reader() -> None:
        async with rx:
            async for value in rx:
                got.append((value, trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        async with tx:
            for value in range(3):
                await trio.sleep(1)
                await tx.send(value)
    assert got == [(0, 1.0), (1, 2.0), (2, 3.0)]


async def test_closing_the_receiver_breaks_a_sender_waiting_for_room() -> None:
    tx, rx = open_refill_channel(2, 0)
    tx.send_nowait(1)
    tx.send_nowait(2)
    failed = []

    async def sender() -> None:
        with pytest.raises(trio.BrokenResourceError):
            await tx.send(3)
        failed.append(True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.testing.wait_all_tasks_blocked()
        assert not tx.statistics().tasks_waiting_send  # parked on the room, not in trio's channel
        await rx.aclose()
    assert failed == [True]


async def test_a_sender_cancelled_while_waiting_sends_nothing(autojump_clock) -> None:
    tx, rx = open_refill_channel(1, 0)
    tx.send_nowait("a")
    with trio.move_on_after(1):
        await tx.send("b")
    assert rx.receive_nowait() == "a"
    with pytest.raises(trio.WouldBlock):
        rx.receive_nowait()
    tx.send_nowait("c")
    assert rx.receive_nowait() == "c"


def test_low_must_leave_room() -> None:
    with pytest.raises(ValueError, match=r"^low must be from 0 to capacity - 1 \(1\), got 2$"):
        open_refill_channel(2, 2)
