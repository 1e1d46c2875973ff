"""``telephony_in`` fed by the call's reader: straight into the pipeline when it has room, queued in order when not.

The reader runs on a scripted socket (no network) and the caller's pipeline through the real
runner, on virtual time.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from rtstream.calls import CURRENT_CALL, INBOUND_CAPACITY, Call, CallSettings
from rtstream.caps import ANY_SIZE, Caps
from rtstream.frames import AudioChunk, AudioFormat, Frame
from rtstream.pipeline import assemble
from rtstream.runner import RunControl, run_pipeline
from rtstream.stage import NOTHING, Core, CoreElement, ReceiveChannel, Sink, Stage
from rtstream.stages.call import TelephonyIn
from rtstream.testing import CollectingSink, collected
from rtstream.websocket import CloseReason, ConnectionClosed
from rtstream.wire.telephony import Start

SID = "MZ" + "0" * 32


def media(n: int) -> str:
    payload = base64.b64encode(bytes([n % 256]) * 160).decode()
    return json.dumps({"event": "media", "streamSid": SID, "media": {"chunk": str(n), "payload": payload}})


STOP = json.dumps({"event": "stop", "streamSid": SID})


class ScriptedSocket:
    """What the reader needs of a WebSocket: messages from a channel, ConnectionClosed once it closes."""

    def __init__(self) -> None:
        self.tx, self._rx = trio.open_memory_channel[str](10_000)
        self.closed: CloseReason | None = None

    async def receive(self) -> str:
        try:
            return await self._rx.receive()
        except trio.EndOfChannel:
            self.closed = CloseReason(1000)
            raise ConnectionClosed(self.closed) from None


def make_call() -> tuple[Call, ScriptedSocket]:
    ws = ScriptedSocket()
    call = Call("/twilio", CallSettings(path="/twilio", protocol="twilio", pipelines=("caller",)), ws)  # type: ignore[arg-type]
    call.bridge.receive(json.dumps({"event": "start", "streamSid": SID, "start": {"streamSid": SID}}))
    call.start = Start(stream_id=SID)
    return call, ws


class Held:
    """A sink that reads nothing until released: the caller's pipeline has no room meanwhile."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.frames: list[Frame] = []

    async def run(self, rx: ReceiveChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with rx:
            task_status.started()
            await self.release.wait()
            async for frame in rx:
                self.frames.append(frame)

    def statistics(self) -> dict[str, int]:
        return {"frames": len(self.frames)}


@attrs.frozen
class HeldSink(Sink):
    element: Held

    def input_caps(self) -> Caps:
        return Caps.of(AudioFormat("pcm_mulaw", 8000), ANY_SIZE)

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> Held:
        return self.element


class FailsAt(Core):
    untimed = True

    def __init__(self, at: int) -> None:
        self.at, self.seen = at, 0

    def push(self, frame: Frame, now: float) -> Sequence[Frame]:
        self.seen += 1
        if self.seen == self.at:
            raise ValueError(f"frame {self.at} is bad")
        return NOTHING

    def statistics(self) -> dict[str, int]:
        return {"seen": self.seen}


@attrs.frozen
class FailingSink(Sink):
    at: int

    def input_caps(self) -> Caps:
        return Caps.of(AudioFormat("pcm_mulaw", 8000), ANY_SIZE)

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> CoreElement:
        return CoreElement(FailsAt(self.at))


async def serve(call: Call, sink: Stage, script: Any, *, capacity: int = 4, control: RunControl | None = None) -> Any:
    """Run the call's reader and ``telephony_in -> sink`` while ``script(ws, pipeline)`` feeds the socket."""
    token = CURRENT_CALL.set(call)
    try:
        pipeline = assemble("caller", [TelephonyIn(), sink], capacities=[capacity])
        reports: list[Any] = []

        async def run() -> None:
            reports.append(await run_pipeline(pipeline, control))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call.read)
            nursery.start_soon(run)
            await script(call.ws, pipeline)
    finally:
        CURRENT_CALL.reset(token)
    return pipeline, reports[0]


def chunk_numbers(frames: Sequence[Frame]) -> list[int | None]:
    return [f.seq for f in frames if isinstance(f, AudioChunk)]


async def test_with_room_downstream_the_reader_delivers_every_message_itself(autojump_clock: Any) -> None:
    call, _ = make_call()

    async def script(ws: ScriptedSocket, pipeline: Any) -> None:
        await trio.sleep(0.02)  # the pipeline has started (before, messages wait for it in the queue)
        for n in range(1, 101):
            await ws.tx.send(media(n))
            await trio.sleep(0.02)
        await ws.tx.send(STOP)

    pipeline, report = await serve(call, CollectingSink(), script)
    assert report.status == "completed"
    assert chunk_numbers([f for _, f in collected(pipeline)]) == list(range(1, 101))
    stats = pipeline.elements[0].statistics()
    assert (stats.media, stats.stopped) == (100, True)
    link = call.statistics()
    assert (link["queued"], link["inbound_dropped"]) == (0, 0)


async def test_while_the_pipeline_has_no_room_messages_queue_in_order_and_the_excess_is_counted(
    autojump_clock: Any,
) -> None:
    call, _ = make_call()
    held = Held()
    sent = INBOUND_CAPACITY + 100

    async def script(ws: ScriptedSocket, pipeline: Any) -> None:
        await trio.sleep(0.02)
        for n in range(1, sent + 1):
            await ws.tx.send(media(n))
        await trio.sleep(1)  # the reader has read them all: held up by nothing
        assert call.statistics()["queued"] > 0
        held.release.set()
        await trio.sleep(1)
        for n in range(sent + 1, sent + 11):  # the queue drained: the reader delivers itself again
            await ws.tx.send(media(n))
            await trio.sleep(0.02)
        await ws.tx.send(STOP)

    _, report = await serve(call, HeldSink(held), script, capacity=4)
    assert report.status == "completed"
    numbers = chunk_numbers(held.frames)
    link = call.statistics()
    kept = [n for n in numbers if n is not None and n <= sent]
    assert kept == list(range(1, len(kept) + 1))  # the first ones, in order; the newest were dropped
    assert len(kept) + link["inbound_dropped"] == sent
    assert link["inbound_dropped"] > 0
    assert numbers[len(kept) :] == list(range(sent + 1, sent + 11))
    assert link["queued"] == len(kept) - 4  # all but the four the pipeline's channel took before it was full


async def test_a_failure_in_the_readers_delivery_is_the_stages_and_the_reader_goes_on(autojump_clock: Any) -> None:
    call, _ = make_call()

    async def script(ws: ScriptedSocket, pipeline: Any) -> None:
        for n in range(1, 11):
            await ws.tx.send(media(n))
            await trio.sleep(0.02)
        await ws.tx.send(STOP)

    pipeline, report = await serve(call, FailingSink(3), script)
    assert report.status == "failed"
    assert report.error is not None and "FailingSink" in report.error and "frame 3 is bad" in report.error
    assert pipeline.elements[1].core.seen == 3
    assert call.statistics()["inbound_dropped"] == 9  # the bad frame, those after it and the stop: nobody reads them
    assert call.hung_up.is_set()


async def test_a_pipeline_gone_before_the_call_ends_costs_counted_drops_only(autojump_clock: Any) -> None:
    call, _ = make_call()
    control = RunControl()

    async def script(ws: ScriptedSocket, pipeline: Any) -> None:
        await ws.tx.send(media(1))
        await trio.sleep(0.02)
        control.abort()
        await trio.sleep(0.02)
        for n in range(2, 6):
            await ws.tx.send(media(n))
            await trio.sleep(0.02)
        await ws.tx.send(STOP)

    pipeline, report = await serve(call, CollectingSink(), script, control=control)
    assert report.status == "cancelled"
    assert chunk_numbers([f for _, f in collected(pipeline)]) == [1]
    assert call.statistics()["inbound_dropped"] == 5  # four media messages and the stop
    assert call.hung_up.is_set()
