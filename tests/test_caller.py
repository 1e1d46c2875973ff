"""The caller simulator over real loopback sockets, against a tiny bridge built on the wire classes.

The bridge is :class:`rtstream.server.Server` with one endpoint that speaks the protocol's
bridge side: it takes the start, records the caller's audio and DTMF, replies with frames on
an absolute grid, a mark, a clear if asked, and bad messages if asked, and closes on stop. On
virtual time (loopback sockets deliver within the instant they are written), the caller's
report can be checked number by number.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import numpy as np
import pytest
import trio

from rtstream import websocket
from rtstream.audio.codec import from_int16
from rtstream.frames import AudioFormat
from rtstream.httpserver import Request, Response, Upgrade, bound_port, open_listener
from rtstream.server import Server
from rtstream.simulators.caller import CallerSettings, Dialer
from rtstream.wire import RemoteProtocolError
from rtstream.wire.telephony import PROTOCOLS, Event, Media, SendClear, SendMark, SendMedia, Start, Stop

SPEECH = "/work/shared/data/speech/speech_a.wav"


def tone(fmt: AudioFormat, samples: int) -> bytes:
    pcm = (np.sin(np.arange(samples) * 0.3) * 8000).astype(np.int16)
    return bytes(from_int16(pcm, fmt.encoding).astype(fmt.encoding.dtype))


class Bridge:
    """A bridge endpoint for one protocol: what it heard, and a reply it sends once the stream starts."""

    def __init__(
        self,
        protocol: str,
        fmt: AudioFormat,
        *,
        frame_bytes: int,
        reply_frames: int = 25,
        reply_at: float = 0.2,
        clear: bool = False,
        bad: Sequence[str | bytes] = (),
        close_on_stop: bool = True,
        subprotocols: Sequence[str] = (),
    ) -> None:
        self.protocol, self.format = protocol, fmt
        self.frame_bytes = frame_bytes
        self.period = frame_bytes / fmt.frame_bytes / fmt.sample_rate
        self.reply_frames, self.reply_at = reply_frames, reply_at
        self.clear, self.bad, self.close_on_stop = clear, bad, close_on_stop
        self.subprotocols = tuple(subprotocols)
        self.requests: list[Request] = []
        self.events: list[tuple[float, Event]] = []
        self.errors: Counter[str] = Counter()
        self.closed: list[websocket.CloseReason | None] = []

    async def handle(self, request: Request, server: Server) -> Response | Upgrade:
        self.requests.append(request)
        return server.admit(self.protocol, request, self.call, subprotocols=self.subprotocols)

    def of(self, kind: type) -> list[Any]:
        return [e for _, e in self.events if isinstance(e, kind)]

    async def call(self, ws: websocket.WebSocket) -> tuple[str, Mapping[str, Any]]:
        side = PROTOCOLS[self.protocol].bridge(self.format)
        started = trio.Event()
        if side.ready:
            started.set()

        async def reply() -> None:
            await started.wait()
            t0 = trio.current_time()
            payload = tone(self.format, self.frame_bytes // self.format.frame_bytes)
            for i in range(self.reply_frames):
                await trio.sleep_until(t0 + self.reply_at + i * self.period)
                await ws.send(side.send(SendMedia(payload)))
            if PROTOCOLS[self.protocol].marks:
                await ws.send(side.send(SendMark("utt-1")))
                if self.clear:
                    await ws.send(side.send(SendClear()))
            for message in self.bad:
                await ws.send(message)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reply)
            with contextlib.suppress(websocket.ConnectionClosed):
                while True:
                    message = await ws.receive()
                    try:
                        event = side.receive(message)
                    except RemoteProtocolError as exc:
                        self.errors[exc.reason] += 1
                        continue
                    self.events.append((trio.current_time(), event))
                    if isinstance(event, Start):
                        started.set()
                    if isinstance(event, Stop) and self.close_on_stop:
                        break
            self.closed.append(ws.closed)
            nursery.cancel_scope.cancel()
        return "completed", {}


@contextlib.asynccontextmanager
async def serving(bridge: Bridge, path: str = "/call") -> AsyncIterator[str]:
    server = Server({path: bridge}, max_calls=100)
    async with trio.open_nursery() as nursery:
        listener = await open_listener("127.0.0.1", 0)
        await nursery.start(server.serve, [listener])
        yield f"ws://127.0.0.1:{bound_port(listener)}{path}"
        server.abort()


def settings(url: str, protocol: str = "twilio", **kw: Any) -> CallerSettings:
    return CallerSettings(url=url, protocol=protocol, **{"duration": 1.0, "linger": 1.0, **kw})


async def dial(caller: CallerSettings) -> dict[str, Any]:
    dialer = Dialer(caller)
    await dialer.run()
    return dialer.report()


def first(report: dict[str, Any]) -> dict[str, Any]:
    return report["per_call"][0]


# -- each protocol, end to end -------------------------------------------------------------------------

CASES = [
    ("twilio", {}, 160),
    ("plivo", {}, 160),
    ("plivo", {"encoding": "pcm_s16le", "sample_rate": 16000}, 640),
    ("exotel", {}, 3200),
    ("raw", {}, 960),
    ("raw", {"sample_rate": 16000}, 1920),
]


@pytest.mark.parametrize("protocol,extra,frame_bytes", CASES)
async def test_each_protocol_end_to_end(autojump_clock, protocol, extra, frame_bytes):
    caller = settings("ws://x/", protocol, **extra)
    fmt = caller.format
    period = frame_bytes / fmt.frame_bytes / fmt.sample_rate
    replies = min(10, int(0.7 / period))  # all sent before the stop, 1 s in
    bridge = Bridge(protocol, fmt, frame_bytes=frame_bytes, reply_frames=replies)
    async with serving(bridge) as url:
        report = await dial(settings(url, protocol, parameters=["lang=en", "agent=7"], **extra))
    call = first(report)
    assert (report["placed"], report["completed"], report["failed"]) == (1, 1, {})
    assert call["frames"] == replies and call["seconds"] == pytest.approx(replies * period)
    assert call["wrong_size"] == 0 and call["errors"] == {}
    assert call["deviation_ms"]["count"] == replies - 1 and call["deviation_ms"]["max"] == pytest.approx(0, abs=1e-9)
    assert call["drift_ms"] == {"final": pytest.approx(0, abs=1e-9), "max": pytest.approx(0, abs=1e-9)}
    assert call["gaps"] == {"count": 0, "total_ms": 0.0, "max_ms": 0.0}
    sent_frames = caller.send_frames
    assert call["sent"]["frames"] == sent_frames == -(-1000 // round(caller.send_period * 1000))  # 1 s, rounded up
    assert call["sent"]["seconds"] == pytest.approx(sent_frames * caller.send_period)
    heard = bridge.of(Media)
    assert len(heard) == sent_frames and all(len(m.payload) == caller.send_frame_bytes for m in heard)
    if protocol == "raw":  # no start, no stop: the call ends by the caller closing
        assert call["close"] == {"code": 1000, "by": "caller", "reason": "stopped"}
        assert call["marks"] == 0 and not bridge.of(Start)
        return
    (start,) = bridge.of(Start)
    assert start.stream_id == call["stream_id"] and start.call_id and start.format == fmt
    assert dict(start.custom_parameters) == {"lang": "en", "agent": "7"}
    assert len(bridge.of(Stop)) == 1 and call["sent"]["stop"]
    assert call["close"] == {"code": 1000, "by": "server", "reason": ""}
    assert (call["marks"], call["marks_echoed"]) == (1, 1)
    assert call["outcome"] == "completed" and call["hangup"] is None
    assert [m.sequence_number for m in heard] == sorted(m.sequence_number for m in heard)
