"""The caller simulator's shell: N calls dialled at a set rate, each a :class:`CallerCall` on a socket.

Each call is its own task with an absolute deadline: it connects with the provider's headers
(a signature where the provider signs, a subprotocol where one is asked for), runs its
:class:`CallerCall` until the caller hangs up or the server closes, records the bot's audio
when asked (``record``, ``{call}`` for the call number), and folds its report into the totals.
Only the first ``report_calls`` reports are kept one by one, so a long run holds bounded state.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import attrs
import numpy as np
import trio

from rtstream.frames import AudioFormat, Encoding
from rtstream.stats import Quantiles
from rtstream.wavfile import WavWriter, read_wav
from rtstream.websocket import GOING_AWAY, NORMAL, ConnectionClosed, HandshakeFailed, WebSocket, connect

from ..script import Turn
from ..speech import synthesize
from ..telephony.underruns import UNDERRUN_KEYS
from .protocol import CallerCall, CallerSettings, Hangup, speech_bytes

log = logging.getLogger(__name__)

SENT_KEYS = ("frames", "seconds", "dtmf", "dropped", "duplicated", "reordered")
TURN_MEASURES = ("latency_ms", "reply_ms", "barge_in_ms", "clear_ms", "stale_ms")
TURN_OUTCOMES = ("replied", "no_reply", "waiting", "hung_up", "speaking")


SILENT = 10 ** (-60 / 20)
"""A turn's speech starts and ends with its first and last sample louder than this (-60 dBFS)."""


def _read_mono(path: str) -> tuple[np.ndarray, int]:
    pcm, fmt = read_wav(path)
    mono = pcm.astype(np.float32) / 32768 if pcm.ndim == 1 else pcm.astype(np.float32).mean(axis=1) / 32768
    return mono, fmt.sample_rate


def load_speech(settings: CallerSettings) -> bytes:
    """The caller's audio in the stream's encoding: the WAV file mixed to mono and resampled, or the text."""
    if settings.audio is None:
        return speech_bytes(settings)
    return speech_bytes(settings, *_read_mono(settings.audio))


def load_conversation(settings: CallerSettings) -> tuple[tuple[Turn, ...], tuple[bytes, ...]] | None:
    """The script's turns and each turn's speech in the stream's encoding; None without a script.

    Silence before and after the speech is cut, so the speech ends where its sound does (the
    synthesizer pauses after every word, the last too): turn latency counts from there.
    """
    turns = settings.conversation()
    if turns is None:
        return None
    speech = []
    for turn in turns:
        if turn.audio is not None:
            samples, rate = _read_mono(turn.audio)
        elif turn.caller is not None:
            samples, rate = synthesize(turn.caller, settings.sample_rate)[0], settings.sample_rate
        else:
            speech.append(b"")
            continue
        loud = np.flatnonzero(np.abs(samples) > SILENT)
        speech.append(speech_bytes(settings, samples[loud[0] : loud[-1] + 1] if loud.size else samples[:0], rate))
    return turns, tuple(speech)


class _Totals:
    """The aggregate of the finished calls' reports."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.close_codes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.sums: Counter[str] = Counter()
        self.max_drift_ms = self.max_gap_ms = 0.0
        self.underruns: Counter[str] = Counter()
        self.first_audio = Quantiles(resolution=1e-6)
        self.turns: Counter[str] = Counter()
        self.measures = {key: Quantiles(resolution=1e-6) for key in TURN_MEASURES}

    def add(self, report: dict[str, Any]) -> None:
        self.outcomes[report["outcome"]] += 1
        if report["close"] is not None:
            self.close_codes[str(report["close"]["code"])] += 1
        self.errors.update(report["errors"])
        for key in ("frames", "seconds", "wrong_size", "marks", "marks_echoed", "clears"):
            self.sums[key] += report[key]
        for key in SENT_KEYS:
            self.sums["sent_" + key] += report["sent"][key]
        self.sums["gaps"] += report["gaps"]["count"]
        self.sums["gap_ms"] += report["gaps"]["total_ms"]
        self.max_gap_ms = max(self.max_gap_ms, report["gaps"]["max_ms"])
        self.max_drift_ms = max(self.max_drift_ms, report["drift_ms"]["max"])
        if report["first_audio_ms"] is not None:
            self.first_audio.add(report["first_audio_ms"] / 1000)
        self.underruns.update(report["in_utterance_underruns"])
        if report["turns"] is not None:
            self.turns["unexpected_replies"] += report["unexpected_replies"]
            for turn in report["turns"]:
                self.turns[turn["outcome"]] += 1
                self.turns["barge_ins"] += turn["barge_in_ms"] is not None
                for key, quantiles in self.measures.items():
                    if turn[key] is not None:
                        quantiles.add(turn[key] / 1000)

    def conversation(self) -> dict[str, Any]:
        counts = {key: self.turns[key] for key in (*TURN_OUTCOMES, "barge_ins", "unexpected_replies")}
        return {**counts, **{key: attrs.asdict(q.summary(scale=1000)) for key, q in self.measures.items()}}


class Dialer:
    """Places ``settings.calls`` calls to ``settings.url``, ``settings.rate`` per second, and reports on them."""

    def __init__(self, settings: CallerSettings, *, speech: bytes | None = None) -> None:
        self.settings = settings
        self._script = load_conversation(settings)
        if speech is None:
            speech = b"" if self._script is not None else load_speech(settings)
        self._speech = speech
        self.deviations = Quantiles(resolution=1e-6)
        self.placed = 0
        self.active = 0
        self._totals = _Totals()
        self._kept: list[dict[str, Any]] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Place every call on the arrival grid and return once all have ended."""
        s = self.settings
        async with trio.open_nursery() as nursery:
            began = trio.current_time()
            task_status.started()
            for k in range(s.calls):
                await trio.sleep_until(began + k / s.rate)
                self.placed += 1
                nursery.start_soon(self._call, k + 1)

    async def _call(self, number: int) -> None:
        s = self.settings
        unix_ms = round(time.time() * 1000)
        call = CallerCall(s, number, self._speech, script=self._script, unix_ms=unix_ms, all_deviations=self.deviations)
        self.active += 1
        try:
            with trio.move_on_after(s.call_timeout(0 if self._script is None else len(self._script[0]))) as deadline:
                await self._dial(call)
            if deadline.cancelled_caught:
                call.finish("timeout")
        finally:
            if call.outcome is None:
                call.finish("cancelled")
            self.active -= 1
            self._fold(call)

    async def _dial(self, call: CallerCall) -> None:
        s = self.settings
        try:
            ws = await connect(
                s.url,
                headers=s.upgrade_headers(call.number),
                subprotocols=s.subprotocols,
                timeout=s.connect_timeout,
            )
        except HandshakeFailed as exc:
            call.finish("unreachable" if exc.status is None else f"http_{exc.status}")
            return
        try:
            with self._writer(call.number) as writer:
                await self._converse(ws, call, writer)
        finally:
            with trio.CancelScope(shield=True):  # a hang-up is a normal close; a call cut short goes away
                await ws.close(NORMAL if call.ended else GOING_AWAY, call.hangup or "going away")
            closed = ws.closed
            assert closed is not None
            call.record_close(int(closed.code), "caller" if closed.local else "server", closed.reason)
        call.finish("completed" if call.script_done else "server_closed")

    async def _converse(self, ws: WebSocket, call: CallerCall, writer: WavWriter | None) -> None:
        """Run ``call`` on ``ws`` until the caller hangs up or the server closes."""
        wake = _Wake()
        call.open(trio.current_time())

        async def read(cancel: trio.CancelScope) -> None:
            try:
                while True:
                    message = await ws.receive()
                    now = trio.current_time()
                    pcm = call.receive(message, now)
                    if pcm is not None and writer is not None:
                        writer.write(pcm)
                    wake.maybe(call.next_due())
            except ConnectionClosed:
                cancel.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, nursery.cancel_scope)
            try:
                while True:
                    items = call.pop_due(trio.current_time())
                    messages = [m for m in items if not isinstance(m, Hangup)]
                    if messages:
                        await ws.send_many(messages)
                    if call.ended:
                        break
                    await wake.sleep_until(call.next_due())
            except ConnectionClosed:
                pass
            nursery.cancel_scope.cancel()

    def _writer(self, number: int) -> contextlib.AbstractContextManager[WavWriter | None]:
        if self.settings.record is None:
            return contextlib.nullcontext()
        rate = self.settings.format.sample_rate
        return WavWriter(self.settings.record.format(call=number), AudioFormat(Encoding.PCM_S16LE, rate))

    def _fold(self, call: CallerCall) -> None:
        report = call.report()
        if report["outcome"] != "completed" or report["errors"] or report["wrong_size"]:
            log.warning(
                "caller call %d to %s: %s, close %s, bad messages %s, wrong-size frames %d",
                call.number,
                _shown(self.settings.url),
                report["outcome"],
                report["close"],
                report["errors"],
                report["wrong_size"],
            )
        self._totals.add(report)
        if call.number <= self.settings.report_calls:
            self._kept.append(report)

    def report(self) -> dict[str, Any]:
        """Calls placed, completed and failed by reason; the bot's audio across every call; the kept calls.

        ``failed`` counts each outcome but ``completed``: ``http_NNN`` (refused before the
        upgrade), ``unreachable``, ``timeout``, ``server_closed`` (before the caller's script
        ran out), ``cancelled``. ``close_codes`` counts the calls by their close code;
        ``deviation_ms`` and ``first_audio_ms`` are percentiles over every call's values;
        ``in_utterance_underruns`` sums the calls' fill and gaps inside replies (frames, ms, and
        each part: see :mod:`rtstream.simulators.telephony.underruns`).
        ``conversation`` (None without a script): the turns by outcome, the barge-ins, the replies
        no turn waited for, and percentiles over every turn of each measure of
        :mod:`.conversation` (turn latency, reply heard, barge-in time, clear time, stale audio).
        """
        s, t = self.settings, self._totals
        return {
            "url": _shown(s.url),
            "protocol": s.protocol,
            "format": str(s.format),
            "placed": self.placed,
            "active": self.active,
            "completed": t.outcomes["completed"],
            "failed": dict(sorted((k, v) for k, v in t.outcomes.items() if k != "completed")),
            "close_codes": dict(sorted(t.close_codes.items())),
            "frames": t.sums["frames"],
            "seconds": t.sums["seconds"],
            "wrong_size": t.sums["wrong_size"],
            "errors": dict(sorted(t.errors.items())),
            "marks": t.sums["marks"],
            "marks_echoed": t.sums["marks_echoed"],
            "clears": t.sums["clears"],
            "deviation_ms": attrs.asdict(self.deviations.summary(scale=1000)),
            "max_drift_ms": t.max_drift_ms,
            "gaps": {"count": t.sums["gaps"], "total_ms": t.sums["gap_ms"], "max_ms": t.max_gap_ms},
            "in_utterance_underruns": {key: t.underruns[key] for key in UNDERRUN_KEYS},
            "first_audio_ms": attrs.asdict(t.first_audio.summary(scale=1000)),
            "sent": {key: t.sums["sent_" + key] for key in SENT_KEYS},
            "conversation": None if self._script is None else t.conversation(),
            "per_call": sorted(self._kept, key=lambda r: r["call"]),
        }


def _shown(url: str) -> str:
    """A URL without its query, which may hold a key."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class _Wake:
    """The writer's sleep: until its next due time, or earlier when the reader makes something due sooner."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self._until = -math.inf  # awake

    def maybe(self, due: float | None) -> None:
        if due is not None and due < self._until:
            self._event.set()

    async def sleep_until(self, due: float | None) -> None:
        self._until = math.inf if due is None else due
        with trio.move_on_at(self._until):
            await self._event.wait()
        self._until = -math.inf  # awake: nothing to wake
        if self._event.is_set():
            self._event = trio.Event()
