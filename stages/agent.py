"""``agent_out`` and ``agent_in``: the two ends of a call's voice-agent WebSocket (:mod:`rtstream.wire.agent`).

A voice agent (STT → LLM → TTS behind one socket) is a *link* owned by the call, like the
provider's socket: ``agent_out`` is the sink of the caller's pipeline (the caller's audio up
as PCM16 16 kHz, DTMF up), ``agent_in`` the source of the bot's pipeline (the agent's replies
down). Both name the link (``link``, "agent" by default) and share **one WebSocket per call**:
the links live in a registry keyed by the call (:data:`LINKS`, weakly, so a call's links go
with it), the first stage of the call to open creates its link, and the first to run connects
it, in its own nursery, and keeps it until the other stage is done too. Both stages must give
the same connection settings (``url``, ``api_key``...); different ones are a config error.

On every connection the link first sends ``start`` with the call's ids and custom parameters.
It reconnects after a lost connection with exponential backoff and jitter, up to
``reconnect_attempts`` failed attempts in a row (an HTTP 5xx is one); a 4xx refusal or the last
failed attempt ends the link, ``agent_in`` then fails its pipeline (the bot has no voice) and
``agent_out`` counts the caller's audio as dropped. While the link is down, up to ``hold_ms``
of the caller's audio is held for the next connection (the oldest dropped beyond, counted).

Down, ``agent_in`` yields each reply as one utterance (``{link}-{connection}-{turn}``, unique
within the call): ``UtteranceStart`` (with the reply's text when the agent gives it), the
reply's audio as chunks of any size stamped with their arrival, a
:class:`~rtstream.frames.TextToken` per ``llm_token`` (``final`` for ``llm_done``), and
``UtteranceEnd``. A connection lost mid-reply ends the reply's utterance there.

Barge-in both ways: when the agent says ``barge_in``, the reply is cut — on the call's control
path (:mod:`rtstream.control`) when there is one, which clears every stage of the call at once,
else as an in-band :class:`~rtstream.frames.Clear` — and the rest of its audio is dropped. When
a clear comes from elsewhere on the control path (rtstream's own VAD), the link cuts the open
reply the same way and tells the agent ``barge_in`` with the played position the control path
knows.

An agent that says nothing within ``answer_timeout`` of the caller's first audio on a
connection is counted (``failures.no_answer``, logged once) and the call goes on in silence:
the agent's silence is not the call's failure (a caller may say nothing worth answering).
Malformed agent messages are counted by reason, logged once per reason, and skipped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

import attrs
import trio

from rtstream.calls import CURRENT_CALL, Call
from rtstream.caps import ANY_SIZE, Caps
from rtstream.control import CURRENT_CONTROL, CallControl
from rtstream.errors import FormatMismatch
from rtstream.frames import AudioChunk, AudioFormat, Clear, Dtmf, Frame, TextToken, UtteranceEnd, UtteranceStart
from rtstream.params import ParamError, param
from rtstream.registry import register
from rtstream.stage import ReceiveChannel, SendChannel, Sink, Source
from rtstream.stats import BoundedCounter, DropCount, Drops, Quantiles, Summary, stat
from rtstream.websocket import ConnectionClosed, HandshakeFailed, WebSocket, connect
from rtstream.wire import RemoteProtocolError
from rtstream.wire.agent import (
    FORMAT,
    AgentClient,
    BargeIn,
    CallerAudio,
    Error,
    LlmDone,
    LlmToken,
    ReplyAudio,
    Start,
    Stop,
    Transcript,
    TurnEnd,
    TurnStart,
    Up,
)
from rtstream.wire.agent import Dtmf as DtmfUp

from .wsclient import Backoff, peer

log = logging.getLogger(__name__)

FRAMES_QUEUED = 64
"""Frames read from the agent ahead of ``agent_in``; beyond, the link stops reading (TCP holds the agent back)."""
CONTROL_QUEUED = 64
"""Control messages (DTMF, barge-in) waiting to go up; beyond, the newest are dropped and counted."""


def _call(stage: str) -> Call:
    call = CURRENT_CALL.get(None)
    if call is None:
        raise FormatMismatch(f"{stage} runs only inside a call: list its pipeline in a [calls.NAME] table")
    return call


# ---------------------------------------------------------------------- the pure cores


class Uplink:
    """What goes up, in order: the caller's audio (at most ``hold`` samples queued) and control messages.

    Audio queued beyond the bound drops the oldest: ``link_down`` while there is no connection,
    ``backlog`` while the agent reads slower than the caller speaks.
    """

    def __init__(self, hold: int) -> None:
        self.hold = hold
        self.connected = False
        self.drops = Drops()
        self._queue: deque[tuple[Up, int]] = deque()
        self._held = 0
        self._controls = 0

    def audio(self, chunk: AudioChunk) -> None:
        self._queue.append((CallerAudio(chunk.tobytes()), chunk.samples))
        self._held += chunk.samples
        while self._held > self.hold:
            index = next(i for i, (command, _) in enumerate(self._queue) if isinstance(command, CallerAudio))
            _, samples = self._queue[index]
            del self._queue[index]
            self._held -= samples
            self.drops.add("backlog" if self.connected else "link_down", samples=samples)

    def control(self, command: Up) -> None:
        if self._controls >= CONTROL_QUEUED and not isinstance(command, Stop):
            self.drops.add("control_backlog")
            return
        self._queue.append((command, 0))
        self._controls += 1

    def take(self) -> list[tuple[Up, int]]:
        """Everything queued, to send now (with the samples each carries)."""
        batch = list(self._queue)
        self._queue.clear()
        self._held = self._controls = 0
        return batch


@attrs.define
class DownCounts:
    transcripts: int = 0
    replies: int = 0
    replies_lost: int = 0
    tokens: int = 0
    chunks: int = 0
    samples: int = 0
    agent_barge_ins: int = 0
    bridge_barge_ins: int = 0
    service_errors: BoundedCounter = attrs.Factory(BoundedCounter)
    malformed: BoundedCounter = attrs.Factory(BoundedCounter)
    turn: Quantiles = attrs.Factory(Quantiles)
    first_token: Quantiles = attrs.Factory(Quantiles)
    drops: Drops = attrs.Factory(Drops)


class Downlink:
    """The agent's messages as frames (see the module docstring), one connection after another."""

    def __init__(self, name: str, max_message_bytes: int) -> None:
        self.name = name
        self.max_message_bytes = max_message_bytes
        self.counts = DownCounts()
        self._wire = AgentClient(max_message_bytes=max_message_bytes)
        self._connection = 0
        self._pts = 0
        self._seq = 0
        self.open: tuple[int, str] | None = None
        """The open reply: its turn and utterance."""
        self._cut: int | None = None
        """The last reply cut on this connection (its late audio is dropped)."""
        self._heard: tuple[int, float] | None = None
        """The last transcript's turn and arrival, until the reply's first token and first audio."""
        self._awaiting_token = self._awaiting_audio = False

    def connected(self) -> None:
        self._connection += 1
        self._wire = AgentClient(max_message_bytes=self.max_message_bytes)
        self._cut = self._heard = None

    def utterance(self, turn: int) -> str:
        return f"{self.name}-{self._connection}-{turn}"

    def receive(self, message: str | bytes, now: float) -> list[Frame]:
        """The frames one message makes; a malformed one is counted and raises RemoteProtocolError."""
        try:
            event = self._wire.receive(message)
        except RemoteProtocolError as exc:
            self.counts.malformed.add(exc.reason)
            raise
        c = self.counts
        match event:
            case ReplyAudio(pcm, turn):
                data = FORMAT.array(pcm)
                if turn == self._cut:
                    c.drops.add("barged_in", samples=len(data))
                    return []
                if self._awaiting_audio and self._heard is not None and self._heard[0] == turn:
                    c.turn.add(now - self._heard[1])
                    self._awaiting_audio = False
                chunk = AudioChunk(
                    data, FORMAT, pts=self._pts, seq=self._seq, arrival=now, utterance=self.utterance(turn)
                )
                self._pts += len(data)
                self._seq += 1
                c.chunks += 1
                c.samples += len(data)
                return [chunk]
            case Transcript(turn):
                c.transcripts += 1
                self._heard = (turn, now)
                self._awaiting_token = self._awaiting_audio = True
                return []
            case TurnStart(turn, text):
                frames = self._end_open()
                c.replies += 1
                self.open = (turn, self.utterance(turn))
                return [*frames, UtteranceStart(self.open[1], text or "")]
            case LlmToken(turn, text):
                if turn == self._cut:
                    return []
                c.tokens += 1
                if self._awaiting_token and self._heard is not None and self._heard[0] == turn:
                    c.first_token.add(now - self._heard[1])
                    self._awaiting_token = False
                return [TextToken(text, self.utterance(turn))]
            case LlmDone(turn):
                return [] if turn == self._cut else [TextToken("", self.utterance(turn), final=True)]
            case TurnEnd(turn):
                return self._end_open() if self.open is not None and self.open[0] == turn else []
            case BargeIn(turn):
                c.agent_barge_ins += 1
                if turn == self._cut:
                    return []
                self._cut = turn
                return [Clear("agent_barge_in"), *self._end_open()]
            case Error(code):
                c.service_errors.add(code)
                return []
        raise AssertionError(f"unhandled agent event {event!r}")

    @property
    def cut_utterance(self) -> str | None:
        """The utterance of the last reply cut on this connection."""
        return None if self._cut is None else self.utterance(self._cut)

    def cut(self) -> tuple[int, str] | None:
        """The caller barged in (a clear on the control path): cut the open reply; its turn and utterance."""
        if self.open is None:
            return None
        cut = self.open
        self._cut = cut[0]
        self.counts.bridge_barge_ins += 1
        self.open = None
        return cut

    def lost(self) -> list[Frame]:
        """The connection was lost: the open reply ends where its audio stopped."""
        if self.open is not None:
            self.counts.replies_lost += 1
        return self._end_open()

    def _end_open(self) -> list[Frame]:
        if self.open is None:
            return []
        _, utterance = self.open
        self.open = None
        return [UtteranceEnd(utterance)]


# ---------------------------------------------------------------------- the link


@attrs.frozen(kw_only=True)
class AgentConnection:
    """The parameters both ends of a voice-agent link give (they must agree)."""

    link: str = param(
        "agent", max_length=64, help="The link's name: agent_out and agent_in naming it share one socket."
    )
    url: str = param(
        type=str, kind="ws_url", help="The voice agent's WebSocket (the simulator: '${services.NAME.url}')."
    )
    api_key: str | None = param(
        type=str,
        optional=True,
        secret=True,
        kind="header",
        help="Sent as 'Authorization: Bearer KEY'; write '${AGENT_API_KEY}'.",
    )
    answer_timeout: float = param(
        10.0,
        min=0.01,
        max=3600,
        unit="s",
        help="Agent silence after the caller's first audio on a connection counted as no_answer (the call goes on).",
    )
    connect_timeout: float = param(5.0, min=0.01, max=600, unit="s", help="Time allowed for one connection attempt.")
    reconnect_attempts: int = param(
        5, min=0, max=1000, help="Failed attempts in a row to (re)connect before giving up."
    )
    backoff_initial: float = param(
        0.1, min=0.001, max=60, unit="s", help="First retry delay; it doubles (with jitter) per attempt."
    )
    backoff_max: float = param(2.0, min=0.001, max=600, unit="s", help="Longest retry delay.")
    max_message_bytes: int = param(
        1 << 20, min=1024, max=16 << 20, unit="bytes", help="Largest agent message; larger closes the connection."
    )

    def connection(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in attrs.fields(AgentConnection)}


LINKS: weakref.WeakKeyDictionary[Call, dict[str, AgentLink]] = weakref.WeakKeyDictionary()
"""Each call's voice-agent links by name (see the module docstring)."""


def link_of(stage: str, config: AgentConnection, hold_ms: float | None = None) -> AgentLink:
    """The current call's link named ``config.link``, made by the first stage to ask."""
    call = _call(stage)
    links = LINKS.setdefault(call, {})
    link = links.get(config.link)
    if link is None:
        link = links[config.link] = AgentLink(_start_of(call), config)
    elif link.config.connection() != config.connection():
        raise ParamError(
            "url", f"agent_in and agent_out on link {config.link!r} must give the same connection settings"
        )
    if hold_ms is not None:
        link.uplink.hold = round(hold_ms / 1000 * FORMAT.sample_rate)
    return link


def _start_of(call: Call) -> Start:
    """The start message of ``call``'s links: its ids and custom parameters (the route alone before its start)."""
    if call.start is None:
        return Start(call_id=call.route)
    ids = call.variables()
    return Start(call_id=ids["call_id"], stream_id=ids["stream_id"], parameters=dict(call.start.custom_parameters))


class AgentLink:
    """One call's voice-agent connection, shared by its ``agent_out`` and ``agent_in`` (see the module docstring).

    It keeps no reference to its call (the registry holds the call weakly), only the start message.
    """

    def __init__(self, start: Start, config: AgentConnection) -> None:
        self.start = start
        self.config = config
        self.uplink = Uplink(0)
        self.downlink = Downlink(config.link, config.max_message_bytes)
        self._wire = AgentClient(max_message_bytes=config.max_message_bytes)
        """For what goes up (the downlink keeps its own, per connection, for what comes down)."""
        self._frames_tx, self.frames = trio.open_memory_channel[Frame](FRAMES_QUEUED)
        self.reader = False
        """An ``agent_in`` takes the frames; without one they are counted (``unread``) and dropped."""
        self.unread = 0
        self.connects = self.disconnects = self.messages_sent = self.samples_sent = 0
        self.dtmf_sent = self.barge_ins_sent = 0
        self.failures = BoundedCounter()
        self.failure: str | None = None
        """Why the link gave up (it will not connect again)."""
        self.finished = False
        self.done = trio.Event()
        self._users = 0
        self._hosted = False
        self._changed = trio.lowlevel.ParkingLot()
        self._answer_deadline = math.inf
        self._answered = self._answer_armed = False
        """On the current connection: the agent said something; the caller's first audio set the deadline."""
        self._clearing = False
        self._control: CallControl | None = None

    # -- what the stages call ------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def attached(self) -> AsyncIterator[None]:
        """Use the link for the block; the first user runs the connection until every user is done.

        After :meth:`finish` it also waits for the link to send its ``stop`` (or give up).
        """
        self._users += 1
        try:
            if self._hosted:
                yield
                return
            self._hosted = True
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._run)
                yield
                while (self._users > 1 or self.finished) and not self.done.is_set():  # the other end, or the stop
                    await self._changed.park()
                nursery.cancel_scope.cancel()
        finally:
            self._users -= 1
            self._changed.unpark_all()

    def audio(self, chunk: AudioChunk) -> None:
        if self.done.is_set():
            self.uplink.drops.add("link_closed", samples=chunk.samples)
            return
        self.uplink.audio(chunk)
        self._changed.unpark_all()

    def dtmf(self, digit: str) -> None:
        if len(digit) == 1 and not self.done.is_set():
            self.uplink.control(DtmfUp(digit))
            self._changed.unpark_all()

    def finish(self) -> None:
        """The caller's stream ended: send ``stop`` (on a live connection) and close the link."""
        self.finished = True
        self.uplink.control(Stop())
        self._changed.unpark_all()

    # -- the connection ------------------------------------------------------------------------

    async def _run(self) -> None:
        config = self.config
        # the link counts its own failures in a row; the backoff only spaces the attempts
        backoff = Backoff(config.backoff_initial, config.backoff_max, config.reconnect_attempts, settle=0.0)
        headers = [("Authorization", f"Bearer {config.api_key}")] if config.api_key is not None else []
        failed_in_row = 0
        self._control = CURRENT_CONTROL.get()
        try:
            async with self._frames_tx:
                with self._listening():
                    while not self.finished:
                        try:
                            ws = await connect(
                                config.url,
                                headers=headers,
                                timeout=config.connect_timeout,
                                max_message_size=config.max_message_bytes,
                            )
                        except HandshakeFailed as exc:
                            failed_in_row += 1
                            refused = exc.status is not None and exc.status < 500  # 5xx: busy, worth a retry
                            if refused or failed_in_row > config.reconnect_attempts:
                                self.failure = str(exc)
                                self.failures.add("refused" if refused else "unreachable")
                                log.error("%s: giving up the voice agent: %s", config.link, exc)
                                return
                            log.warning("%s: %s; retrying", config.link, exc)
                            await self._pause(backoff.failed(str(exc)))
                            continue
                        self.connects += 1
                        if await self._converse(ws, backoff):
                            return
                        self.disconnects += 1
                        for frame in self.downlink.lost():
                            await self._deliver(frame)
                        failed_in_row = 0 if self._answered else failed_in_row + 1  # accepted, then lost unheard
                        if failed_in_row > config.reconnect_attempts:
                            self.failure = f"{peer(config.url)}: lost {failed_in_row} connections in a row"
                            self.failures.add("unreachable")
                            log.error("%s: giving up the voice agent: %s", config.link, self.failure)
                            return
                        if not self.finished:
                            log.warning("%s: lost %s; reconnecting", config.link, peer(config.url))
                            await self._pause(backoff.failed(f"lost {peer(config.url)}"))
        finally:
            for _, samples in self.uplink.take():
                if samples:
                    self.uplink.drops.add("link_closed", samples=samples)
            self.done.set()
            self._changed.unpark_all()

    async def _pause(self, delay: float) -> None:
        """Wait ``delay`` before the next attempt, or less if the caller's stream ends meanwhile."""
        with trio.move_on_after(delay):
            while not self.finished:
                await self._changed.park()

    async def _converse(self, ws: WebSocket, backoff: Backoff) -> bool:
        """Send and read on one connection; True once ``stop`` went out, False when the connection was lost."""
        self.downlink.connected()
        self.uplink.connected = True
        self._answered = self._answer_armed = False
        self._answer_deadline = math.inf
        stopped = False
        try:
            await ws.send(self._wire.send(self.start))
            async with trio.open_nursery() as nursery:

                async def read() -> None:
                    await self._read(ws, backoff)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(read)
                stopped = await self._send(ws)
                nursery.cancel_scope.cancel()
        except ConnectionClosed:
            pass
        finally:
            self.uplink.connected = False
            with trio.CancelScope(shield=True):
                await ws.close()
        return stopped

    async def _send(self, ws: WebSocket) -> bool:
        """Send what is queued until ``stop`` went out (True) or the connection is lost (False)."""
        wire = self._wire
        while True:
            batch = self.uplink.take()
            if not batch:
                with trio.move_on_at(self._answer_deadline):
                    await self._changed.park()
                if trio.current_time() >= self._answer_deadline:
                    self._answer_deadline = math.inf
                    self.failures.add("no_answer")
                    if self.failures["no_answer"] == 1:
                        log.warning(
                            "%s: the voice agent said nothing within %g s", self.config.link, self.config.answer_timeout
                        )
                continue
            try:
                await ws.send_many(wire.send(command) for command, _ in batch)
            except ConnectionClosed:
                for _, samples in batch:
                    if samples:
                        self.uplink.drops.add("lost_in_flight", samples=samples)
                return False
            for command, samples in batch:
                self.messages_sent += 1
                self.samples_sent += samples
                self.dtmf_sent += isinstance(command, DtmfUp)
                self.barge_ins_sent += isinstance(command, BargeIn)
                if samples and not self._answer_armed:
                    self._answer_armed = True
                    self._answer_deadline = trio.current_time() + self.config.answer_timeout
                if isinstance(command, Stop):
                    return True

    async def _read(self, ws: WebSocket, backoff: Backoff) -> None:
        while True:
            try:
                message = await ws.receive()
            except ConnectionClosed:
                return
            now = trio.current_time()
            if not self._answered:
                self._answered = True
                self._answer_deadline = math.inf
                backoff.carried(now)  # an answer: the failures in a row are forgotten
            try:
                frames = self.downlink.receive(message, now)
            except RemoteProtocolError as exc:
                if self.downlink.counts.malformed[exc.reason] == 1:
                    log.warning(
                        "%s: malformed message from the voice agent (%s, counted from now on)", self.config.link, exc
                    )
                continue
            for frame in frames:
                await self._deliver(frame)

    async def _deliver(self, frame: Frame) -> None:
        control = self._control
        if isinstance(frame, Clear) and control is not None:
            if self.downlink.cut_utterance is not None:
                control.clear_utterance(self.downlink.cut_utterance)
            self._clearing = True
            try:
                control.clear(frame.reason, trio.current_time())
            finally:
                self._clearing = False
            return
        if self.reader:
            try:
                await self._frames_tx.send(frame)
                return
            except trio.BrokenResourceError:  # agent_in ended (cancelled): nothing reads from now on
                self.reader = False
        self.unread += 1

    @contextlib.contextmanager
    def _listening(self) -> Iterator[None]:
        control = self._control
        if control is None:
            yield
            return
        with control.listening(self._on_clear):
            yield

    def _on_clear(self, reason: str) -> None:
        """A clear on the control path from elsewhere: cut the open reply and tell the agent."""
        if self._clearing:
            return
        cut = self.downlink.cut()
        control = self._control
        if cut is None or control is None:
            return
        turn, utterance = cut
        control.clear_utterance(utterance)
        last = control.cuts[-1] if control.cuts else None
        played = last.played_ms if last is not None and last.utterance == utterance else None
        self.uplink.control(BargeIn(turn, played))
        self._changed.unpark_all()


# ---------------------------------------------------------------------- agent_out


@attrs.frozen
class AgentOutStatistics:
    connects: int = stat(help="Connections made to the agent (the first and every reconnect).")
    disconnects: int = stat(help="Connections lost before the call ended.")
    failures: dict[str, int] = stat(
        help="Failures by kind: refused (an HTTP 4xx refusal), unreachable (reconnect_attempts failed connections "
        "in a row, a connection lost before the agent said anything being one), "
        "no_answer (the agent said nothing within answer_timeout of the caller's first audio on a connection)."
    )
    messages_sent: int = stat(help="Messages sent up (start, audio, DTMF, barge_in, stop).")
    seconds_sent: float = stat(help="Seconds of the caller's audio sent to the agent.")
    dtmf_sent: int = stat(help="DTMF key presses sent up.")
    barge_ins_sent: int = stat(help="barge_in messages sent (a clear on the call's control path cut a reply).")
    unread: int = stat(help="Frames from the agent dropped because the call has no agent_in (or it ended).")
    drops: dict[str, DropCount] = stat(
        help="Caller audio not sent, by reason: link_down (held past hold_ms while disconnected), backlog (the agent "
        "read slower than the caller spoke), lost_in_flight (in a write the connection lost), link_closed (after the "
        "link ended); control_backlog (DTMF or barge_in beyond the queue)."
    )


class AgentSender:
    """The running ``agent_out``: the caller's frames into the link."""

    def __init__(self, link: AgentLink) -> None:
        self.link = link

    async def run(self, rx: ReceiveChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        link = self.link
        async with rx, link.attached():
            task_status.started()
            async for frame in rx:
                if isinstance(frame, AudioChunk):
                    link.audio(frame)
                elif isinstance(frame, Dtmf):
                    link.dtmf(frame.digit)
            link.finish()

    def delivered(self) -> None:
        """The caller may say nothing: no audio sent is no failure of its own."""

    def statistics(self) -> AgentOutStatistics:
        link = self.link
        return AgentOutStatistics(
            connects=link.connects,
            disconnects=link.disconnects,
            failures=link.failures.snapshot(),
            messages_sent=link.messages_sent,
            seconds_sent=link.samples_sent / FORMAT.sample_rate,
            dtmf_sent=link.dtmf_sent,
            barge_ins_sent=link.barge_ins_sent,
            unread=link.unread,
            drops=link.uplink.drops.snapshot(),
        )


@register("agent_out", klass="Sink/Network")
@attrs.frozen(kw_only=True)
class AgentOut(AgentConnection, Sink):
    """The caller's audio (PCM16 16 kHz) and DTMF up to the call's voice agent, after a start with the call's ids."""

    accepts = Caps.of(FORMAT)
    statistics_type = AgentOutStatistics

    hold_ms: float = param(
        2000.0,
        min=0,
        max=60_000,
        unit="ms",
        help="Caller audio held while the link is down; the oldest beyond is dropped.",
    )

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> AgentSender:
        return AgentSender(link_of("agent_out", self, self.hold_ms))


# ---------------------------------------------------------------------- agent_in


@attrs.frozen
class AgentInStatistics:
    transcripts: int = stat(help="Transcripts of the caller's turns from the agent.")
    replies: int = stat(help="Replies begun (turn_start).")
    replies_lost: int = stat(help="Replies cut short by a lost connection.")
    tokens: int = stat(help="llm_token messages passed on as TextToken frames.")
    chunks: int = stat(help="Reply audio chunks passed on.")
    seconds_out: float = stat(help="Seconds of reply audio passed on.")
    agent_barge_ins: int = stat(help="barge_in messages from the agent (it heard the caller over its reply).")
    bridge_barge_ins: int = stat(help="Replies cut by a clear on the call's control path (the agent was told).")
    turn_ms: Summary = stat(
        help="Per turn: from the agent's transcript to the reply's first audio here (the agent's turn latency), in ms."
    )
    first_token_ms: Summary = stat(help="Per turn: from the transcript to the reply's first llm_token here, in ms.")
    service_errors: dict[str, int] = stat(help="error messages from the agent, by code.")
    malformed: dict[str, int] = stat(help="Malformed agent messages skipped, by reason (rtstream.wire.agent).")
    drops: dict[str, DropCount] = stat(help="Reply audio dropped, by reason: barged_in (late audio of a cut reply).")
    failure: str | None = stat(help="Why the link gave up, if it did (the pipeline then fails).")


class AgentReceiver:
    """The running ``agent_in``: the link's frames into the bot's pipeline."""

    def __init__(self, link: AgentLink) -> None:
        self.link = link

    async def run(self, tx: SendChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        link = self.link
        async with tx, link.attached():
            task_status.started()
            async with link.frames:
                async for frame in link.frames:
                    await tx.send(frame)
        if link.failure is not None:
            raise ConnectionError(link.failure)

    def delivered(self) -> None:
        """An agent that never spoke is counted (failures.no_answer in agent_out), not a failed pipeline."""

    def statistics(self) -> AgentInStatistics:
        c = self.link.downlink.counts
        return AgentInStatistics(
            transcripts=c.transcripts,
            replies=c.replies,
            replies_lost=c.replies_lost,
            tokens=c.tokens,
            chunks=c.chunks,
            seconds_out=c.samples / FORMAT.sample_rate,
            agent_barge_ins=c.agent_barge_ins,
            bridge_barge_ins=c.bridge_barge_ins,
            turn_ms=c.turn.summary(scale=1000),
            first_token_ms=c.first_token.summary(scale=1000),
            service_errors=c.service_errors.snapshot(),
            malformed=c.malformed.snapshot(),
            drops=c.drops.snapshot(),
            failure=self.link.failure,
        )


@register("agent_in", klass="Source/Network")
@attrs.frozen(kw_only=True)
class AgentIn(AgentConnection, Source):
    """The call's voice agent's replies: audio (PCM16 16 kHz) per turn as utterances, tokens, barge-in clears."""

    produces = Caps.of(FORMAT, ANY_SIZE)
    statistics_type = AgentInStatistics
    frames_help = "makes chunks of any size, as the agent sends them"

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> AgentReceiver:
        link = link_of("agent_in", self)
        link.reader = True
        return AgentReceiver(link)
