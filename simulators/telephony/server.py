"""The telephony simulator's WebSocket server: a thin trio shell around :class:`TelephonyCall`.

Each connection is a call: the server sends the protocol's opening messages, records the
audio to a WAV file when asked (``record``, with ``{call}`` for the call number), and keeps
the call's report. :meth:`TelephonyServer.report` sums the calls up.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import attrs
import trio

from rtstream.frames import AudioFormat, Encoding
from rtstream.httpserver import Request, Upgrade
from rtstream.stats import Quantiles
from rtstream.wavfile import WavWriter
from rtstream.websocket import WebSocket

from ..websocket import converse, serve
from .protocol import TelephonyCall, TelephonySettings
from .underruns import UNDERRUN_KEYS

MAX_MESSAGE_BYTES = 1 << 20


class _RecordingCall:
    """A call whose audio also goes to a WAV file."""

    def __init__(self, call: TelephonyCall, writer: WavWriter | None) -> None:
        self.call = call
        self._writer = writer

    def receive(self, message: str | bytes, now: float) -> None:
        pcm = self.call.receive(message, now)
        if pcm is not None and self._writer is not None:
            self._writer.write(pcm)

    def pop_due(self, now: float) -> list[Any]:
        return self.call.pop_due(now)

    def next_due(self) -> float | None:
        return self.call.next_due()


class TelephonyServer:
    """Accepts media streams, checks and measures each, and reports on all of them."""

    def __init__(self, settings: TelephonySettings, *, record: str | None = None, report_calls: int = 20) -> None:
        self.settings = settings
        self._record = record
        self._report_calls = report_calls
        self._numbers = itertools.count(1)
        self._drops_left = settings.disconnects or None
        self.calls: list[TelephonyCall] = []
        self.deviations = Quantiles(resolution=1e-6)
        self.active = 0
        self._idle = trio.Event()
        self._idle.set()

    async def route(self, request: Request) -> Upgrade:
        return Upgrade(self.handle, max_message_size=MAX_MESSAGE_BYTES)

    async def handle(self, ws: WebSocket) -> None:
        number = next(self._numbers)
        call = TelephonyCall(
            self.settings, number, disconnect_after=self._take_disconnect(), all_deviations=self.deviations
        )
        self.calls.append(call)
        self.active += 1
        self._idle = trio.Event()
        try:
            with self._writer(number) as writer:
                await ws.send_many(call.opening())
                dropped = await converse(ws, _RecordingCall(call, writer), peer=f"telephony simulator call {number}")
            call.closed = "simulator" if dropped else "bridge"
        finally:
            self.active -= 1
            if not self.active:
                self._idle.set()

    def _take_disconnect(self) -> int | None:
        if self.settings.disconnect_after is None:
            return None
        if self._drops_left is None:
            return self.settings.disconnect_after
        if self._drops_left > 0:
            self._drops_left -= 1
            return self.settings.disconnect_after
        return None

    def _writer(self, number: int) -> contextlib.AbstractContextManager[WavWriter | None]:
        if self._record is None:
            return contextlib.nullcontext()
        fmt = self.settings.format
        return WavWriter(self._record.format(call=number), AudioFormat(Encoding.PCM_S16LE, fmt.sample_rate))

    async def wait_idle(self) -> None:
        """Return once no call is connected."""
        await self._idle.wait()

    def report(self) -> dict[str, Any]:
        """Totals over every call, and the first ``report_calls`` calls one by one."""
        reports = [call.report() for call in self.calls]
        errors: dict[str, int] = {}
        for r in reports:
            for reason, count in r["errors"].items():
                errors[reason] = errors.get(reason, 0) + count
        return {
            "protocol": self.settings.protocol,
            "format": str(self.settings.format),
            "calls": len(reports),
            "active": self.active,
            "frames": sum(r["frames"] for r in reports),
            "seconds": sum(r["seconds"] for r in reports),
            "wrong_size": sum(r["wrong_size"] for r in reports),
            "errors": dict(sorted(errors.items())),
            "marks": sum(r["marks"] for r in reports),
            "marks_echoed": sum(r["marks_echoed"] for r in reports),
            "deviation_ms": attrs.asdict(self.deviations.summary(scale=1000)),
            "max_drift_ms": max((r["drift_ms"]["max"] for r in reports), default=0.0),
            "gaps": {
                "count": sum(r["gaps"]["count"] for r in reports),
                "total_ms": sum(r["gaps"]["total_ms"] for r in reports),
                "max_ms": max((r["gaps"]["max_ms"] for r in reports), default=0.0),
            },
            "in_utterance_underruns": {
                key: sum(r["in_utterance_underruns"][key] for r in reports) for key in UNDERRUN_KEYS
            },
            "per_call": reports[: self._report_calls],
        }


async def serve_telephony(
    settings: TelephonySettings,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    server: TelephonyServer | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the telephony simulator until cancelled; ``task_status.started(port)`` once listening."""
    server = server or TelephonyServer(settings)
    await serve(server.route, host, port, task_status=task_status)
