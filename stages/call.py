"""``telephony_in`` and ``telephony_out``: the two ends of a call's provider socket, in server mode.

When a provider dials ``rtstream serve``, its WebSocket is the call's link
(:class:`rtstream.calls.Call`). ``telephony_in`` is the source of the caller's pipeline: the
caller's audio as chunks (numbered, stamped with the provider's media time and the arrival),
DTMF as :class:`~rtstream.frames.Dtmf` events, and the end of the stream at the provider's
stop. ``telephony_out`` is the sink of the bot's pipeline: the bot's frames as the provider's
media messages, a mark at every utterance end, the provider's clear for a
:class:`~rtstream.frames.Clear` — through the same :class:`~rtstream.stages.telephony.TelephonyLink`
core as the client-mode ``telephony_ws``, on the socket the provider opened.

Both find their call in :data:`rtstream.calls.CURRENT_CALL`; their formats are the call's, so
negotiation fits the rest of the pipeline to what the provider carries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import attrs
import numpy as np
import trio

from rtstream.calls import CURRENT_CALL, Call
from rtstream.caps import ANY_SIZE, Caps
from rtstream.control import CallControl
from rtstream.errors import FormatMismatch
from rtstream.frames import AudioChunk, AudioFormat, Frame, UtteranceEnd, UtteranceStart
from rtstream.frames import Dtmf as DtmfFrame
from rtstream.params import param
from rtstream.registry import register
from rtstream.stage import ReceiveChannel, SendChannel, Sink, Source
from rtstream.stats import Quantiles, stat
from rtstream.websocket import ConnectionClosed, WebSocket
from rtstream.wire import RemoteProtocolError
from rtstream.wire.telephony import Dtmf, Event, Media, Regrouper, Stop

from .telephony import Owed, TelephonyLink, TelephonyStatistics, send_at_once

log = logging.getLogger(__name__)


def _call(stage: str) -> Call:
    call = CURRENT_CALL.get(None)
    if call is None:
        raise FormatMismatch(f"{stage} runs only inside a call: list its pipeline in a [calls.NAME] table")
    return call


# ---------------------------------------------------------------------- the caller's audio in


@attrs.frozen
class CallerStatistics:
    media: int = stat(help="Media messages from the provider turned into chunks.")
    seconds: float = stat(help="Seconds of caller audio passed on.")
    dtmf: int = stat(help="DTMF key presses passed on.")
    stopped: bool = stat(help="The provider sent its stop (rather than the socket closing).")
    bad_payload: int = stat(help="Media messages whose payload was not a whole number of samples (dropped).")


class CallerStream:
    """The running ``telephony_in``: the call's :class:`~rtstream.calls.Inlet`.

    The call's reader delivers each message into the pipeline in its own task (one task wake
    per message); this stage's task only drains what the reader queued while the pipeline had
    no room, and raises what a delivery in the reader's task raised, so the failure is this
    stage's (or its fused successor's), as if it had run here.
    """

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._frame_bytes = fmt.frame_bytes
        self._dtype = fmt.encoding.dtype
        self.media = self.samples = self.dtmf = self.bad_payload = 0
        self.stopped = False
        self._pts = 0
        self._first_timestamp: int | None = None
        self._tx: SendChannel | None = None
        self._send_nowait: Callable[[Frame], None] | None = None
        self._failure: Exception | None = None

    def chunk(self, media: Media, arrival: float) -> AudioChunk | None:
        """The chunk of one media message: pts from the provider's timestamp where it gives one."""
        fmt = self.format
        payload = media.payload
        if len(payload) % self._frame_bytes:
            self.bad_payload += 1
            return None
        data = np.frombuffer(payload, self._dtype)  # mono, as every call is (CallSettings.format)
        pts = self._pts
        timestamp = media.timestamp
        if timestamp is not None:
            if self._first_timestamp is None:
                self._first_timestamp = timestamp
            pts = (timestamp - self._first_timestamp) * fmt.sample_rate // 1000
        n = len(data)
        self._pts = pts + n
        self.media += 1
        self.samples += n
        seq = media.chunk if media.chunk is not None else media.sequence_number
        return AudioChunk(data, fmt, pts, seq, arrival)

    def ready(self) -> bool:
        """Whether one frame goes downstream without waiting: a reader waits there, or there is room."""
        assert self._tx is not None, "ready before run"
        stats = self._tx.statistics()
        return stats is None or stats.tasks_waiting_receive > 0 or stats.current_buffer_used < stats.max_buffer_size

    async def deliver(self, event: Event, arrival: float) -> bool:
        """Pass one message on; True at the provider's stop (the end of the stream)."""
        tx = self._tx
        assert tx is not None, "deliver before run"
        if type(event) is Media:
            frame: Frame | None = self.chunk(event, arrival)
            if frame is None:
                return False
        elif type(event) is Dtmf:
            self.dtmf += 1
            frame = DtmfFrame(event.digit, arrival)
        else:
            assert type(event) is Stop, "the reader hands on media, DTMF and the stop only"
            self.stopped = True
            return True
        if self._send_nowait is not None:
            try:
                self._send_nowait(frame)  # never fails in the reader's task, which delivers only when ready()
                return False
            except trio.WouldBlock:
                pass
        await tx.send(frame)
        return False

    def failed(self, exc: Exception) -> None:
        self._failure = exc

    async def run(self, tx: SendChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        call = _call("telephony_in")
        self._tx = tx
        # A memory channel (or a sink's accept) takes a frame without a yield; a fused chain is awaited.
        self._send_nowait = getattr(tx, "send_nowait", None)
        async with tx:
            call.inlet = self
            try:
                task_status.started()
                await call.drain(self.deliver)
            finally:
                call.inlet = None
            if self._failure is not None:
                raise self._failure

    def statistics(self) -> CallerStatistics:
        return CallerStatistics(
            media=self.media,
            seconds=self.samples / self.format.sample_rate,
            dtmf=self.dtmf,
            stopped=self.stopped,
            bad_payload=self.bad_payload,
        )


@register("telephony_in", klass="Source/Network")
@attrs.frozen(kw_only=True)
class TelephonyIn(Source):
    """The caller's audio, DTMF and stop from the call's provider socket (in a call served by rtstream serve)."""

    statistics_type = CallerStatistics
    stoppable = False

    def output_caps(self, fmt_in: object) -> Caps:
        """The call's format, in chunks of the sizes the provider sends."""
        return Caps.of(_call("telephony_in").format, ANY_SIZE)

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> CallerStream:
        assert fmt_out is not None
        return CallerStream(fmt_out)


# ---------------------------------------------------------------------- the bot's audio out


class BotStream:
    """The running ``telephony_out``: a :class:`TelephonyLink` sending on the provider's socket.

    The call's reader hands it the provider's echoes (:meth:`take`) and tells it when the
    caller is gone (:meth:`hung_up`); frames that arrive after that are dropped as ``hangup``.
    A clear on the call's control path drops the queue and sends the provider's clear at once;
    every frame it takes tells the control what the caller is hearing (the played position).
    While its sender is idle, a frame goes out in the pacer's task if the socket takes it at
    once (as ``telephony_ws`` does): the sender is woken only for what is left.
    """

    def __init__(self, config: TelephonyOut, link: TelephonyLink) -> None:
        self.config = config
        self.link = link
        self.changed = trio.lowlevel.ParkingLot()
        self.gone = False
        self._control: CallControl | None = None
        self._idle: WebSocket | None = None
        """The socket, while the sender waits with nothing to send: :meth:`accept` may send on it itself."""
        self._owed: Owed | None = None
        """What :meth:`accept` took from the link and did not send whole, the sender's next: (kind, the
        message, or None when the socket took part of it and the rest is to be flushed)."""

    def take(self, event: Event, now: float) -> None:
        try:
            self.link.take(event, now)
        except RemoteProtocolError as exc:
            self.link.malformed.add(exc.reason)
        self.changed.unpark_all()

    def hung_up(self) -> None:
        self.gone = True
        self.changed.unpark_all()

    async def run(self, rx: ReceiveChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        call = _call("telephony_out")
        link, config = self.link, self.config
        link.attach(call.bridge)
        call.outbound = self
        control = self._control = call.control

        def clear(reason: str) -> None:
            link.clear()  # drops what is queued here, and tells the provider to drop what it buffered
            self.changed.unpark_all()

        async with rx, trio.open_nursery() as nursery:
            nursery.start_soon(self._send, call)
            task_status.started()
            with control.listening(clear):
                async for frame in rx:
                    self.accept(frame)
            link.finish()
            self.changed.unpark_all()
            with trio.move_on_after(config.drain_timeout):
                while link.pending and not self.gone:
                    await self.changed.park()
            link.abandon()
            with trio.move_on_after(config.linger):
                while link.awaiting_echoes and not self.gone:
                    await self.changed.park()
            nursery.cancel_scope.cancel()

    def accept(self, frame: Frame) -> None:
        """Queue one frame for the provider: read by :meth:`run`, or given in the pacer's task when fused."""
        link, control = self.link, self._control
        assert control is not None, "accept before run"
        if isinstance(frame, AudioChunk):
            if self.gone:
                link.frames_in += 1  # taken in, and dropped: the caller is gone
                link.drops.add("hangup", samples=frame.samples)
                return
            if control.stale(frame):
                return
            control.sent(frame, trio.current_time())  # paced upstream: queued now is sent now
        elif isinstance(frame, UtteranceStart | UtteranceEnd):
            control.reply(frame.utterance, started=isinstance(frame, UtteranceStart))
        link.push(frame)
        ws = self._idle
        if ws is not None:
            if self._owed is None:  # (a closed connection: the woken sender finds it)
                self._owed = send_at_once(link, ws, trio.current_time(), self._sent)
            if not link.pending and ws.closed is None:
                return
        self.changed.unpark_all()

    def _sent(self, kind: str, now: float) -> None:
        self.link.sent()

    async def _send(self, call: Call) -> None:
        """Send what the link has queued (and what :meth:`accept` left over), several messages per write."""
        link, ws = self.link, call.ws
        assert ws is not None, "a validation call has no socket"
        try:
            while not self.gone:
                owed, self._owed = self._owed, None
                if owed is not None:
                    kind, message = owed
                    try:
                        await (ws.flush() if message is None else ws.send(message))
                    except ConnectionClosed:
                        link.lost_in_flight(kind)
                        self.gone = True
                        return
                    link.sent()
                batch = []
                while (item := link.pop(trio.current_time())) is not None:
                    batch.append(item)
                if not batch:
                    self._idle = ws
                    try:
                        await self.changed.park()
                    finally:
                        self._idle = None
                    continue
                try:
                    await ws.send_many(message for _, message in batch)
                except ConnectionClosed:
                    for kind, _ in batch:
                        link.lost_in_flight(kind)
                    self.gone = True
                    return
                for _ in batch:
                    link.sent()
                self.changed.unpark_all()
        finally:
            if self._owed is not None:  # taken from the link, never sent whole
                link.lost_in_flight(self._owed[0])
                self._owed = None

    @property
    def first_audio(self) -> Quantiles:
        return self.link.first_audio

    def delivered(self) -> bool:
        """Whether any audio reached the provider (the runner fails a pipeline that sent none)."""
        return self.link.samples_sent > 0

    def statistics(self) -> TelephonyStatistics:
        return self.link.statistics()


@register("telephony_out", klass="Sink/Network")
@attrs.frozen(kw_only=True)
class TelephonyOut(Sink):
    """The bot's audio, marks and clears to the call's provider socket (in a call served by rtstream serve)."""

    statistics_type = TelephonyStatistics

    marks: bool = param(
        True, help="Send a mark (Plivo: checkpoint) at each utterance end, where the protocol has them."
    )
    hold_ms: float = param(
        1000.0, min=0, max=60_000, unit="ms", help="Audio queued for the socket beyond which the oldest is dropped."
    )
    drain_timeout: float = param(2.0, min=0, max=600, unit="s", help="At the end, time allowed to send what is queued.")
    linger: float = param(1.0, min=0, max=600, unit="s", help="At the end, time to wait for the echoes of marks sent.")

    def input_caps(self) -> Caps:
        """Exactly the call's format, at any frame duration (a pacer upstream keeps the clock)."""
        return Caps.of(_call("telephony_out").format)

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> BotStream:
        assert fmt_in is not None
        call = _call("telephony_out")
        rule = call.settings.wire.chunk_rule_for(fmt_in)
        regroup = Regrouper(rule, fmt_in.encoding.silence) if rule is not None else None
        link = TelephonyLink(
            call.settings.protocol, fmt_in, marks=self.marks, hold=self.hold_ms / 1000, regroup=regroup
        )
        return BotStream(self, link)
