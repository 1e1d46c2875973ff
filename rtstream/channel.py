"""A bounded memory channel that wakes a blocked sender only once several slots are free.

A trio memory channel wakes its blocked sender as soon as one slot frees. Ahead of a pacer,
whose source is faster than real time and so always blocked, that is one task step for the
source per frame sent. :func:`open_refill_channel` wakes the sender only when the buffer has
fallen to ``low`` items, so it sends ``capacity - low`` items per wake. The receiver sees an
ordinary channel; at least ``low`` items stay queued whenever the sender could be refilling.
"""

from __future__ import annotations

from typing import Any

import trio
from trio.lowlevel import ParkingLot, cancel_shielded_checkpoint, checkpoint_if_cancelled


class _Room:
    __slots__ = ("lot", "low", "queued")

    def __init__(self, low: int) -> None:
        self.low = low
        self.queued = 0
        """Items in the buffer (only these two ends touch it)."""
        self.lot = ParkingLot()


class RefillSend(trio.abc.SendChannel[Any]):
    """The send end: :meth:`send` waits, when the buffer is full, until it has fallen to ``low``."""

    __slots__ = ("_room", "_tx")

    def __init__(self, tx: trio.MemorySendChannel[Any], room: _Room) -> None:
        self._tx = tx
        self._room = room

    def send_nowait(self, value: Any) -> None:
        self._tx.send_nowait(value)
        self._room.queued += 1

    async def send(self, value: Any) -> None:
        await checkpoint_if_cancelled()
        parked = False
        while True:
            try:
                self.send_nowait(value)
            except trio.WouldBlock:
                parked = True
                await self._room.lot.park()
                continue
            break
        if not parked:
            await cancel_shielded_checkpoint()

    def statistics(self) -> Any:
        return self._tx.statistics()

    def close(self) -> None:
        self._tx.close()

    async def aclose(self) -> None:
        await self._tx.aclose()


class RefillReceive(trio.abc.ReceiveChannel[Any]):
    """The receive end: taking an item that leaves ``low`` or fewer wakes the sender."""

    __slots__ = ("_room", "_rx")

    def __init__(self, rx: trio.MemoryReceiveChannel[Any], room: _Room) -> None:
        self._rx = rx
        self._room = room

    def receive_nowait(self) -> Any:
        value = self._rx.receive_nowait()
        self._took()
        return value

    async def receive(self) -> Any:
        value = await self._rx.receive()
        self._took()
        return value

    def _took(self) -> None:
        room = self._room
        room.queued -= 1
        if room.queued <= room.low and room.lot:
            room.lot.unpark_all()

    def statistics(self) -> Any:
        return self._rx.statistics()

    def close(self) -> None:
        self._rx.close()
        self._room.lot.unpark_all()  # a parked sender finds the channel broken

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


def open_refill_channel(capacity: int, low: int) -> tuple[RefillSend, RefillReceive]:
    """A channel of ``capacity`` items whose blocked sender is woken once ``low`` or fewer are queued."""
    if not 0 <= low < capacity:
        raise ValueError(f"low must be from 0 to capacity - 1 ({capacity - 1}), got {low}")
    tx, rx = trio.open_memory_channel[Any](capacity)
    room = _Room(low)
    return RefillSend(tx, room), RefillReceive(rx, room)
