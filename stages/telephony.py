"""``telephony_ws``: frames out to a telephony media socket (raw, Twilio, Plivo, Exotel).

The sink connects to the telephony side (client mode), sends each audio frame as the
protocol's media message the moment it arrives (a pacer upstream keeps the clock), marks
every utterance end, and turns a :class:`~rtstream.frames.Clear` into the protocol's clear.

:class:`TelephonyLink` is the sans-I/O core: frames and incoming messages in, messages to send
out, through one bounded queue; the messages are the protocol's, from its bridge side in
:mod:`rtstream.wire.telephony`. While the connection is down (or before a JSON protocol's
``start`` named the stream), frames wait in that queue up to ``hold_ms`` of audio; older ones
are dropped and counted. The trio shell reconnects with exponential backoff and jitter.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import trio

from rtstream.caps import Caps, Structure
from rtstream.frames import AudioChunk, AudioFormat, Clear, Encoding, Frame, UtteranceEnd, UtteranceStart
from rtstream.params import ParamError, param, require_at_least
from rtstream.registry import register
from rtstream.stage import ReceiveChannel, Sink
from rtstream.stats import BoundedCounter, DropCount, Drops, Quantiles, Summary, stat
from rtstream.websocket import ConnectionClosed, WebSocket
from rtstream.wire import RemoteProtocolError
from rtstream.wire.telephony import PROTOCOLS as WIRE
from rtstream.wire.telephony import BridgeSide, ChunkRule, Event, MarkEcho, Regrouper, SendClear, SendMark, SendMedia

from .wsclient import Backoff, ConnectFailed, ended, open_connection, peer

log = logging.getLogger(__name__)

PROTOCOLS = tuple(WIRE)
_CAPS = {name: protocol.carries for name, protocol in WIRE.items()}
"""What each protocol carries: encodings and, for each, the sample rates."""
_DEFAULT_ENCODING = {name: protocol.default_encoding for name, protocol in WIRE.items()}


@attrs.frozen
class TelephonyStatistics:
    frames_in: int = stat(help="Audio frames taken in.")
    messages_sent: int = stat(help="Messages sent: media, marks and clears.")
    seconds_sent: float = stat(help="Seconds of audio sent.")
    marks_sent: int = stat(help="Marks (Plivo: checkpoints) sent at utterance ends.")
    marks_echoed: int = stat(help="Marks the far end echoed back (its playback reached them).")
    mark_delay_ms: Summary = stat(help="From sending a mark to its echo, in ms.")
    clears_sent: int = stat(help="Clears sent for barge-ins.")
    clears_unmapped: int = stat(help="Barge-ins on a protocol without a clear message (raw).")
    padded_bytes: int = stat(help="Exotel: silence bytes added to complete a chunk.")
    connects: int = stat(help="Connections made (the first and every reconnect).")
    disconnects: int = stat(help="Connections lost before the stream ended.")
    first_audio_ms: Summary = stat(
        help="Per utterance: from the arrival at the bridge of the audio in its first frame to its send, in ms."
    )
    incoming: dict[str, int] = stat(help="Messages received from the far end, by event (raw: binary or text).")
    malformed: dict[str, int] = stat(help="Malformed messages received, by reason.")
    drops: dict[str, DropCount] = stat(
        help="Dropped audio by reason: outage, backlog, cleared, send_failed, unsent_at_end."
    )


class TelephonyLink:
    """The protocol and the queue of one media stream, sans I/O (see the module docstring)."""

    def __init__(
        self, protocol: str, fmt: AudioFormat, *, marks: bool, hold: float, regroup: Regrouper | None = None
    ) -> None:
        self.protocol = protocol
        self.wire = WIRE[protocol]
        self.format = fmt
        self._marks = marks and self.wire.marks
        self._hold_samples = round(hold * fmt.sample_rate)
        self._regroup = regroup
        self._queue: deque[tuple[str, Any, float | None]] = deque()
        """(kind, value, arrival): arrival is set on an utterance's first media message only."""
        self._queued_samples = 0
        self._in_flight = 0
        self._in_flight_samples = 0
        """Samples in the message last popped (0 for a mark or clear)."""
        self.stream = self.wire.bridge(fmt)
        """The protocol's bridge side for the current connection."""
        self.connected = False
        self._mark_times: dict[str, float] = {}
        self.drops = Drops()
        self.frames_in = self.messages_sent = self.samples_sent = 0
        self.marks_sent = self.marks_echoed = self.clears_sent = self.clears_unmapped = 0
        self.connects = self.disconnects = 0
        self._awaiting_first = True
        self._first_arrival: float | None = None
        self.first_audio = Quantiles()
        self.mark_delay = Quantiles()
        self.incoming = BoundedCounter()
        self.malformed = BoundedCounter()

    # -- frames in -----------------------------------------------------------------------------

    def push(self, frame: Any) -> None:
        """Queue what ``frame`` means on the wire."""
        kind = type(frame)
        if kind is AudioChunk:
            self.frames_in += 1
            if self._awaiting_first and frame.arrival is not None:
                self._awaiting_first = False
                self._first_arrival = frame.arrival
            payload = frame.tobytes()
            for piece in self._regroup.push(payload) if self._regroup else (payload,):
                self._queue_media(piece)
        elif kind is UtteranceStart:
            self._awaiting_first = True
        elif kind is UtteranceEnd:
            self._flush_regroup()
            if self._marks:
                self._queue.append(("mark", frame.utterance, None))
        elif kind is Clear:
            self.clear()

    def finish(self) -> None:
        """The stream ended: send what the regrouper holds."""
        self._flush_regroup()

    def _flush_regroup(self) -> None:
        if self._regroup is not None:
            rest = self._regroup.flush()
            if rest is not None:
                self._queue_media(rest)

    def _queue_media(self, payload: bytes) -> None:
        """Queue a frame; beyond it, keep at most ``hold`` of older audio, dropping the oldest."""
        samples = len(payload) // self.format.frame_bytes
        self._queue.append(("media", payload, self._first_arrival))
        self._first_arrival = None
        self._queued_samples += samples
        reason = "outage" if not self.ready else "backlog"
        while self._queued_samples - samples > self._hold_samples and self._drop_oldest_media(reason):
            pass

    def _drop_oldest_media(self, reason: str) -> bool:
        for i, (kind, payload, arrival) in enumerate(self._queue):
            if kind == "media":
                del self._queue[i]
                samples = len(payload) // self.format.frame_bytes
                self._queued_samples -= samples
                self.drops.add(reason, samples=samples)
                if arrival is not None and reason != "cleared":
                    self._pass_arrival(i, arrival)
                return True
        return False

    def _pass_arrival(self, start: int, arrival: float) -> None:
        """An utterance's first frame was dropped: its latency counts to the next frame sent."""
        for i in range(start, len(self._queue)):
            kind, payload, _ = self._queue[i]
            if kind == "media":
                self._queue[i] = (kind, payload, arrival)
                return
        self._first_arrival = arrival

    def clear(self) -> None:
        """Barge-in: queued audio is dropped, and the far end is told to drop what it buffered."""
        if self._regroup is not None:
            dropped = self._regroup.reset()
            if dropped:
                self.drops.add("cleared", samples=dropped // self.format.frame_bytes)
        while self._drop_oldest_media("cleared"):
            pass
        if not self.wire.marks:
            self.clears_unmapped += 1
        else:
            self._first_arrival = None
            self._queue.append(("clear", None, None))

    # -- connection ----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Connected and, for the JSON protocols, told the stream id."""
        return self.connected and self.stream.ready

    def connect(self) -> None:
        self.connected = True
        self.connects += 1
        self.stream = self.wire.bridge(self.format)

    def disconnect(self, *, lost: bool = True) -> None:
        """The connection closed: ``lost`` (counted) unless the stream ended and the sink closed it."""
        if self.connected:
            self.connected = False
            self.disconnects += lost
        self._mark_times.clear()  # a new stream will not echo the old one's marks

    @property
    def pending(self) -> int:
        """Messages queued or being sent."""
        return len(self._queue) + self._in_flight

    def abandon(self) -> None:
        """Give up on what is still queued (at the end of the stream), counting the audio dropped."""
        while self._drop_oldest_media("unsent_at_end"):
            pass
        self._queue.clear()

    @property
    def awaiting_echoes(self) -> int:
        return len(self._mark_times)

    def pop(self, now: float) -> tuple[str, str | bytes] | None:
        """The next message to send and its kind (media, mark, clear), if the stream is ready."""
        if not self.ready or not self._queue:
            return None
        kind, value, arrival = self._queue.popleft()
        self.messages_sent += 1
        self._in_flight += 1
        self._in_flight_samples = 0
        if kind == "media":
            samples = self._in_flight_samples = len(value) // self.format.frame_bytes
            self._queued_samples -= samples
            self.samples_sent += samples
            if arrival is not None:
                self.first_audio.add(now - arrival)
            return kind, self.stream.send(SendMedia(value))
        if kind == "mark":
            self.marks_sent += 1
            self._mark_times[value] = now
            return kind, self.stream.send(SendMark(value))
        self.clears_sent += 1
        return kind, self.stream.send(SendClear())

    def sent(self) -> None:
        """The message last popped went out."""
        self._in_flight -= 1

    def lost_in_flight(self, kind: str) -> None:
        """The message last popped could not be sent (the connection broke under it)."""
        self._in_flight -= 1
        self.messages_sent -= 1
        self.samples_sent -= self._in_flight_samples
        if kind == "media":
            self.drops.add("send_failed", samples=self._in_flight_samples)

    def receive(self, message: str | bytes, now: float) -> None:
        """Take a message from the telephony side; RemoteProtocolError (counted) if it is malformed."""
        try:
            self.take(self.stream.receive(message), now)
        except RemoteProtocolError as exc:
            self.malformed.add(exc.reason)
            raise

    def take(self, event: Event, now: float) -> None:
        """Take an event of the stream (a mark echo settles its mark); RemoteProtocolError for an unknown mark."""
        self.incoming.add(event.kind)
        if type(event) is MarkEcho:
            sent = self._mark_times.pop(event.name, None)
            if sent is None:
                raise RemoteProtocolError("unknown_mark", f"no mark {event.name!r} is awaiting its echo")
            self.marks_echoed += 1
            self.mark_delay.add(now - sent)

    def attach(self, stream: BridgeSide) -> None:
        """Use a stream the provider opened to us (server mode): connected, named, for good."""
        self.stream = stream
        self.connected = True
        self.connects += 1

    def statistics(self) -> TelephonyStatistics:
        return TelephonyStatistics(
            frames_in=self.frames_in,
            messages_sent=self.messages_sent,
            seconds_sent=self.samples_sent / self.format.sample_rate,
            marks_sent=self.marks_sent,
            marks_echoed=self.marks_echoed,
            mark_delay_ms=self.mark_delay.summary(scale=1000),
            clears_sent=self.clears_sent,
            clears_unmapped=self.clears_unmapped,
            padded_bytes=self._regroup.padded if self._regroup else 0,
            connects=self.connects,
            disconnects=self.disconnects,
            first_audio_ms=self.first_audio.summary(scale=1000),
            incoming=self.incoming.snapshot(),
            malformed=self.malformed.snapshot(),
            drops=self.drops.snapshot(),
        )


def _caps(*protocols: str) -> Caps:
    """What the ``protocols`` carry: per encoding its rates (mono, any frame duration)."""
    rates: dict[Encoding, set[int]] = {}
    for protocol in protocols:
        for encoding, carried in _CAPS[protocol].items():
            rates.setdefault(encoding, set()).update(carried)
    return Caps.union(Structure((encoding,), sorted(r), (1,)) for encoding, r in rates.items())


@register("telephony_ws", klass="Sink/Network")
@attrs.frozen(kw_only=True)
class TelephonySink(Sink):
    """Sends frames to a telephony media WebSocket (raw PCM16, Twilio, Plivo or Exotel), reconnecting when it drops."""

    accepts = _caps(*PROTOCOLS)
    statistics_type = TelephonyStatistics

    url: str = param(type=str, kind="ws_url", help="The media WebSocket to connect to (ws:// or wss://).")
    protocol: str = param("raw", choices=PROTOCOLS, help="raw (binary PCM16 frames), twilio, plivo or exotel.")
    encoding: Encoding | None = param(
        type=Encoding,
        optional=True,
        help="Audio encoding; none takes the protocol's (raw and exotel pcm_s16le, twilio and plivo pcm_mulaw).",
    )
    sample_rate: int | None = param(
        type=int,
        optional=True,
        choices=(8000, 16000, 24000),
        unit="Hz",
        help="Audio rate; none lets negotiation pick one the protocol carries.",
    )
    marks: bool = param(True, help="Send a mark (Plivo: checkpoint) at each utterance end; raw streams have none.")
    hold_ms: float = param(
        1000.0,
        min=0,
        max=60_000,
        unit="ms",
        help="Audio held (besides the newest frame) while disconnected; older audio is dropped.",
    )
    reconnect_attempts: int = param(5, min=0, max=1000, help="Attempts in a row to reconnect before the call fails.")
    backoff_initial: float = param(
        0.1, min=0.001, max=60, unit="s", help="First reconnect delay; it doubles (with jitter) per attempt."
    )
    backoff_max: float = param(2.0, min=0.001, max=600, unit="s", help="Longest reconnect delay.")
    connect_timeout: float = param(5.0, min=0.01, max=600, unit="s", help="Time allowed for one connection attempt.")
    drain_timeout: float = param(2.0, min=0, max=600, unit="s", help="At the end, time allowed to send what is queued.")
    linger: float = param(1.0, min=0, max=600, unit="s", help="At the end, time to wait for the echoes of marks sent.")
    exotel_multiple: int = param(
        320, min=1, max=1 << 20, unit="bytes", help="Exotel: chunk sizes are a multiple of this."
    )
    exotel_min_bytes: int = param(
        3200, min=0, max=1 << 20, unit="bytes", help="Exotel: smallest chunk (100 ms of 8 kHz PCM16)."
    )
    exotel_max_bytes: int = param(100_000, min=1, max=1 << 20, unit="bytes", help="Exotel: largest chunk.")

    def __attrs_post_init__(self) -> None:
        carried = _CAPS[self.protocol]
        if self.encoding is not None and self.encoding not in carried:
            listed = ", ".join(e.value for e in carried)
            raise ParamError("encoding", f"{self.protocol} streams carry {listed}, got {self.encoding.value!r}")
        rates = {r for e, rs in carried.items() if self.encoding in (None, e) for r in rs}
        if self.sample_rate is not None and self.sample_rate not in rates:
            raise ParamError(
                "sample_rate",
                f"{self.protocol} streams carry {'|'.join(map(str, sorted(rates)))} Hz, got {self.sample_rate}",
            )
        if self.exotel_min_bytes > self.exotel_max_bytes:
            raise ParamError("exotel_min_bytes", f"must not exceed exotel_max_bytes ({self.exotel_max_bytes})")
        require_at_least("exotel_max_bytes", self.exotel_max_bytes, "exotel_multiple", self.exotel_multiple)
        try:
            ChunkRule(self.exotel_multiple, self.exotel_min_bytes, self.exotel_max_bytes)
        except ValueError as exc:
            raise ParamError("exotel_max_bytes", f"the chunk rule allows no chunk: {exc}") from None

    def input_caps(self) -> Caps:
        """The protocol's formats in the configured encoding (default: the protocol's), at any frame duration."""
        encoding = self.encoding or _DEFAULT_ENCODING[self.protocol]
        rates = _CAPS[self.protocol][encoding]
        return Caps((encoding,), (self.sample_rate,) if self.sample_rate else rates, (1,))

    def link(self, fmt: AudioFormat) -> TelephonyLink:
        """A fresh core for this configuration."""
        regroup = None
        if WIRE[self.protocol].chunk_rule is not None:
            rule = ChunkRule(self.exotel_multiple, self.exotel_min_bytes, self.exotel_max_bytes)
            regroup = Regrouper(rule, fmt.encoding.silence)
        return TelephonyLink(self.protocol, fmt, marks=self.marks, hold=self.hold_ms / 1000, regroup=regroup)

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> TelephonyStream:
        assert fmt_in is not None
        return TelephonyStream(self, self.link(fmt_in))


Owed = tuple[str, str | bytes | None]
"""What a sender still owes after :func:`send_at_once`: (kind, message), or (kind, None) when the
socket took part of the message and the rest is to be flushed."""


def send_at_once(link: TelephonyLink, ws: WebSocket, now: float, sent: Callable[[str, float], None]) -> Owed | None:
    """Send what ``link`` has queued, from a synchronous caller, while the socket takes it without a wait.

    Each message sent whole is reported to ``sent(kind, now)``; the first one the socket did not
    take whole is returned, for the sender task. A connection found closed counts its message
    lost in flight and sends nothing more.
    """
    while (item := link.pop(now)) is not None:
        kind, message = item
        try:
            taken = ws.try_send(message)
        except ConnectionClosed:
            link.lost_in_flight(kind)
            return None
        if not taken:
            return item
        if ws.flushing:
            return (kind, None)
        sent(kind, now)
    return None


class TelephonyStream:
    """One media stream: the link, the connection that carries it, and the task that feeds it."""

    def __init__(self, config: TelephonySink, link: TelephonyLink) -> None:
        self.config = config
        self.link = link
        self.closing = False
        """The stream has ended: close the connection once nothing is pending."""
        self.changed = trio.lowlevel.ParkingLot()
        """Woken whenever the link changes: a frame queued, a message sent or received, a disconnect."""
        self._idle: WebSocket | None = None
        """The connection, while its sender waits with nothing to send: :meth:`accept` may send on it itself."""
        self._owed: Owed | None = None
        """What :meth:`accept` took from the link and did not send whole, the sender's next: (kind, the
        message, or None when the socket took part of it and the rest is to be flushed)."""
        self._backoff: Backoff | None = None

    def poke(self) -> None:
        self.changed.unpark_all()

    def accept(self, frame: Frame) -> None:
        """Queue one frame on the link: read by :meth:`run`, or given in the pacer's task when fused.

        While the sender is idle, what the frame queued goes out at once in the caller's task, if
        the socket takes it without a wait: the sender is woken only for what is left (a task
        step less per frame).
        """
        link = self.link
        link.push(frame)
        ws = self._idle
        if ws is not None:
            if self._owed is None:  # (a closed connection: the woken sender finds it, and reconnects)
                self._owed = send_at_once(link, ws, trio.current_time(), self._sent)
            if not link.pending and ws.closed is None:
                return
        self.changed.unpark_all()

    def _sent(self, kind: str, now: float) -> None:
        self.link.sent()
        if kind == "media" and self._backoff is not None:
            self._backoff.carried(now)

    async def run(self, rx: ReceiveChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        config, link = self.config, self.link
        call = trio.CancelScope()
        async with rx, trio.open_nursery() as nursery:
            await nursery.start(self._keep_connected, call)
            task_status.started()
            with call:
                async for frame in rx:
                    self.accept(frame)
                link.finish()
                self.poke()
                with trio.move_on_after(config.drain_timeout):
                    while link.pending:
                        await self.changed.park()
                link.abandon()
                with trio.move_on_after(config.linger):
                    while link.awaiting_echoes and link.connected:
                        await self.changed.park()
                self.closing = True
                self.poke()
                with trio.move_on_after(config.drain_timeout):
                    while link.connected:
                        await self.changed.park()
            nursery.cancel_scope.cancel()

    async def _keep_connected(self, call: trio.CancelScope, *, task_status: trio.TaskStatus[None]) -> None:
        """Hold the connection: reconnect with backoff when it drops; end the call if the far end hangs up.

        ConnectFailed when the far end refuses; LinkFailed after ``reconnect_attempts`` retries
        in a row failed, a connection that carried no media for a while counting as failed.
        """
        config, link = self.config, self.link
        backoff = Backoff(config.backoff_initial, config.backoff_max, config.reconnect_attempts)
        started = False
        while True:
            try:
                async with open_connection(config.url, timeout=config.connect_timeout) as ws:
                    link.connect()
                    backoff.connected()
                    if not started:
                        task_status.started()
                        started = True
                    await self._converse(ws, backoff)
                    if self.closing:
                        link.disconnect(lost=False)
                        self.poke()
                        return
            except ConnectFailed as exc:
                if exc.status is not None:
                    raise
                why = str(exc)
            else:
                link.disconnect()
                self.poke()
                if ws.closed is not None and ws.closed.code == 1000 and not ws.closed.local:
                    log.info("telephony_ws: %s ended the stream", peer(config.url))
                    call.cancel()
                    return
                why = ended(config.url, ws.closed)
            delay = backoff.failed(why)
            log.warning("telephony_ws: %s; reconnecting in %.2g s", why, delay)
            await trio.sleep(delay)

    async def _converse(self, ws: WebSocket, backoff: Backoff) -> None:
        link, url = self.link, self.config.url

        async def read(cancel_scope: trio.CancelScope) -> None:
            try:
                while True:
                    message = await ws.receive()
                    try:
                        link.receive(message, trio.current_time())
                    except RemoteProtocolError as exc:
                        if link.malformed[exc.reason] == 1:
                            log.warning("telephony_ws: malformed message from %s (%s): %.80r", peer(url), exc, message)
                    self.poke()
            except ConnectionClosed:
                cancel_scope.cancel()

        self._backoff = backoff
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, nursery.cancel_scope)
            try:
                while True:
                    item: Owed | None = self._owed or link.pop(trio.current_time())
                    self._owed = None
                    if item is None:
                        if self.closing:
                            nursery.cancel_scope.cancel()
                            return
                        self._idle = ws
                        try:
                            await self.changed.park()
                        finally:
                            self._idle = None
                        continue
                    kind, message = item
                    try:
                        await (ws.flush() if message is None else ws.send(message))
                    except (ConnectionClosed, trio.Cancelled):  # cancelled: the far end stopped reading
                        link.lost_in_flight(kind)
                        raise
                    self._sent(kind, trio.current_time())
                    self.poke()
            except ConnectionClosed:
                nursery.cancel_scope.cancel()
            finally:
                if self._owed is not None:  # taken from the link for this connection, never sent whole
                    link.lost_in_flight(self._owed[0])
                    self._owed = None

    @property
    def first_audio(self) -> Quantiles:
        """The per-utterance first-audio latencies (seconds) of ``first_audio_ms``, to merge across calls."""
        return self.link.first_audio

    def delivered(self) -> bool:
        """Whether any audio reached the peer (the runner fails a pipeline that sent none)."""
        return self.statistics().seconds_sent > 0

    def statistics(self) -> TelephonyStatistics:
        return self.link.statistics()
