"""``cartesia_tts``: speech from a Cartesia-protocol TTS WebSocket (the real service or the simulator).

Each utterance (the transcript, or each line of a transcript file) is spoken on a context of
its own: the source sends the text with speech tags stripped, in one request or a few words at
a time (``continue: true``), and turns the responses into frames: ``UtteranceStart`` with the
transcript as written, audio chunks (whole samples, an odd byte carried into the next chunk,
``arrival`` stamped, ``seq`` from the simulator's sequence field when present), ``WordTimings``
from the timestamps, ``UtteranceEnd``.

:class:`Utterance` is the sans-I/O core: requests out, messages in, frames out, speaking
through :class:`rtstream.wire.cartesia.CartesiaClient`. Malformed messages (not JSON, bad
base64, unknown type, oversize...) are counted by reason, logged once per reason with the
peer, and skipped. When the connection drops or the service answers with an error,
the utterance resumes on a new context from the first word whose audio had not fully arrived
(known from the word timestamps; without them, from the start of the lost context), after an
exponential backoff with jitter.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import attrs
import trio

from rtstream.audio.payload import PayloadAligner
from rtstream.caps import ANY_SIZE, Caps, StreamFormat
from rtstream.frames import (
    SAMPLE_RATES,
    AudioChunk,
    AudioFormat,
    Encoding,
    Frame,
    UtteranceEnd,
    UtteranceStart,
    Word,
    WordTimings,
)
from rtstream.markup import MarkupError, strip_tags
from rtstream.params import ParamError, param, show_path
from rtstream.registry import register
from rtstream.stage import SendChannel, Source
from rtstream.stats import BoundedCounter, Drops, Quantiles, Summary, stat
from rtstream.text import clip, one_line
from rtstream.websocket import ConnectionClosed, WebSocket
from rtstream.wire import RemoteProtocolError
from rtstream.wire.cartesia import (
    CartesiaClient,
    Chunk,
    Done,
    Error,
    FlushDone,
    Generation,
    Request,
    Timestamps,
)

from .wsclient import Backoff, ConnectFailed, ended, open_connection, peer

log = logging.getLogger(__name__)

DEFAULT_URL = "wss://api.cartesia.ai/tts/websocket"
MAX_UTTERANCE = 4096
"""Characters in one utterance: a turn of a conversation, not a book."""
RATE_LIMITED = 429


@attrs.define
class Counts:
    """What the source counted over its whole run."""

    utterances: int = 0
    utterances_failed: int = 0
    contexts: int = 0
    chunks: int = 0
    samples: int = 0
    word_timings: int = 0
    resumes: int = 0
    repeated_seconds: float = 0.0
    restarts: int = 0
    connects: int = 0
    timeouts: int = 0
    service_errors: BoundedCounter = attrs.Factory(BoundedCounter)
    malformed: BoundedCounter = attrs.Factory(BoundedCounter)
    stale: int = 0
    first_chunk: Quantiles = attrs.Factory(Quantiles)
    drops: Drops = attrs.Factory(Drops)


class Utterance:
    """One utterance's conversation with the service, sans I/O.

    :meth:`requests` gives the messages that (re)start it on a new context; :meth:`receive`
    takes each message with the time it arrived and gives the frames it makes; :meth:`lost`
    says the context was lost (a dropped connection, a timeout) and moves the resume point.
    """

    def __init__(
        self,
        utterance: str,
        words: list[str],
        generation: Generation,
        *,
        counts: Counts,
        pts: int,
        seq_base: int,
        chunk_words: int = 0,
        sequence_field: str | None = None,
        max_message_bytes: int = 1 << 20,
    ) -> None:
        self.utterance = utterance
        self.words = words
        self.format = fmt = generation.format
        self._generation = generation
        self._wire = CartesiaClient(sequence_field=sequence_field, max_message_bytes=max_message_bytes)
        self._counts = counts
        self.pts = pts
        """The pts of the next sample (stream time)."""
        self.seq_next = seq_base
        """One past the highest sequence number given so far (stream-wide)."""
        self._seq_base = seq_base
        self._chunk_words = chunk_words
        self._timestamps = generation.timestamps
        self._aligner = PayloadAligner(fmt)
        self.context: str | None = None
        self._attempt = 0
        self.resume_from = 0
        """Index in ``words`` of the first word the current context speaks."""
        self._context_start = 0.0
        """Seconds of the utterance's audio received before the current context."""
        self._context_samples = 0
        self._word_ends: list[float] = []
        """End times (in the context) of its words timed so far."""
        self.context_done = False
        self.error: tuple[int, str] | None = None
        """(status, error code) of an error reply ending the current context."""
        self._failures = 0
        self._progress = 0
        self._asked: float | None = None
        """When the utterance was first requested, until its first audio arrived."""

    def failed(self) -> int:
        """Count a failed attempt; how many failed in a row since the resume point last moved."""
        if self.resume_from > self._progress:
            self._progress, self._failures = self.resume_from, 0
        self._failures += 1
        return self._failures

    @property
    def finished(self) -> bool:
        """Every word has been spoken."""
        return self.context_done and self.error is None

    @property
    def seconds(self) -> float:
        """Seconds of this utterance's audio received so far."""
        return self._context_start + self._context_samples / self.format.sample_rate

    def requests(self, now: float = 0.0) -> list[str]:
        """Open a new context for the words not yet spoken; the requests to send on it at ``now``."""
        if self._attempt == 0:
            self._asked = now
        self._attempt += 1
        self.context = self.utterance if self._attempt == 1 else f"{self.utterance}-r{self._attempt - 1}"
        self._counts.contexts += 1
        self.context_done = False
        self.error = None
        self._seq_base = self.seq_next
        words = self.words[self.resume_from :]
        step = self._chunk_words or max(len(words), 1)
        pieces = [" ".join(words[i : i + step]) + " " for i in range(0, len(words), step)] or [""]
        last = len(pieces) - 1
        return [
            self._wire.send(
                Request(
                    context=self.context,
                    transcript=piece.rstrip() if i == last else piece,
                    generation=self._generation,
                    more=i != last,
                )
            )
            for i, piece in enumerate(pieces)
        ]

    def lost(self) -> None:
        """The current context was lost: resume from the first word whose audio did not all arrive.

        The audio received past the end of the last complete word will be heard again; it is
        counted in ``repeated_seconds``. Without timestamps the whole context is repeated.
        """
        received = self._context_samples / self.format.sample_rate
        done = sum(1 for end in self._word_ends if end <= received + 1e-9)
        if self._context_samples:
            self._counts.resumes += 1
            self._counts.restarts += not self._timestamps
            self._counts.repeated_seconds += received - (self._word_ends[done - 1] if done else 0.0)
        self.resume_from += done
        self._next_context()

    def _next_context(self) -> None:
        if self._aligner.reset():
            self._counts.drops.add("partial_sample")
        self._context_start = self.seconds
        self._context_samples = 0
        self._word_ends = []

    def receive(self, message: str | bytes, now: float) -> list[Frame]:
        """The frames a message makes; a malformed one is counted and raises RemoteProtocolError."""
        try:
            response = self._wire.receive(message)
        except RemoteProtocolError as exc:
            self._counts.malformed.add(exc.reason)
            raise
        if response.context != self.context:
            self._counts.stale += 1
            return []
        return self._HANDLERS[type(response)](self, response, now)

    def _chunk(self, chunk: Chunk, now: float) -> list[Frame]:
        samples = self._aligner.feed(chunk.audio)
        seq = chunk.seq
        if seq is not None:
            seq += self._seq_base
            self.seq_next = max(self.seq_next, seq + 1)
        counts = self._counts
        counts.chunks += 1
        if self._asked is not None:
            counts.first_chunk.add(now - self._asked)
            self._asked = None
        if not len(samples):
            return []
        frame = AudioChunk(samples, self.format, pts=self.pts, seq=seq, arrival=now, utterance=self.utterance)
        self.pts += len(samples)
        self._context_samples += len(samples)
        self._counts.samples += len(samples)
        return [frame]

    def _timestamps_message(self, stamps: Timestamps, now: float) -> list[Frame]:
        offset = self._context_start
        timed = tuple(
            Word(w, offset + s, offset + e) for w, s, e in zip(stamps.words, stamps.start, stamps.end, strict=True)
        )
        self._word_ends += stamps.end
        self._counts.word_timings += len(timed)
        return [WordTimings(self.utterance, timed)] if timed else []

    def _done(self, done: Done, now: float) -> list[Frame]:
        self.context_done = True
        self._next_context()
        return []

    def _flushed(self, flushed: FlushDone, now: float) -> list[Frame]:
        return []

    def _error(self, error: Error, now: float) -> list[Frame]:
        code = error.error_code or error.title or "error"
        self.error = (error.status_code or 0, code)
        self._counts.service_errors.add(code)
        self.context_done = True
        self.lost()
        return []

    _HANDLERS: ClassVar[dict[type, Callable[[Utterance, Any, float], list[Frame]]]] = {
        Chunk: _chunk,
        Timestamps: _timestamps_message,
        Done: _done,
        FlushDone: _flushed,
        Error: _error,
    }


@attrs.frozen
class CartesiaStatistics:
    utterances: int = stat(help="Utterances started.")
    utterances_failed: int = stat(help="Utterances given up after reconnect_attempts failures in a row.")
    contexts: int = stat(help="TTS contexts opened (one per utterance, and one per resume).")
    chunks: int = stat(help="Audio chunks sent on.")
    samples_out: int = stat(help="Samples sent on.")
    seconds_out: float = stat(help="Seconds of audio sent on.")
    word_timings: int = stat(help="Words timed by the service's timestamps.")
    connects: int = stat(help="Connections made (the first and every reconnect).")
    timeouts: int = stat(help="Contexts lost to silence: no message within response_timeout (first audio included).")
    resumes: int = stat(help="Utterances resumed on a new context after a lost connection or an error.")
    repeated_seconds: float = stat(help="Audio asked for again by resumes (spoken twice if it had arrived).")
    restarts: int = stat(help="Resumes from the start of the context (no timestamps to resume from a word).")
    service_errors: dict[str, int] = stat(help="Error replies from the service, by code.")
    malformed: dict[str, int] = stat(help="Malformed messages skipped, by reason.")
    stale_messages: int = stat(help="Messages for a context no longer open, skipped.")
    first_chunk_ms: Summary = stat(
        help="Per utterance: from sending its request to the arrival of its first audio (the service's latency), in ms."
    )
    drops: dict[str, Any] = stat(help="Dropped audio by reason: partial_sample (an odd byte at a context's end).")


def _read_lines(path: str) -> tuple[str, ...]:
    """The utterances of a transcript file: its non-empty lines, stripped, each one's tags checked."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamError(
            "transcript_file", f"cannot read {show_path(path)}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    lines = []
    for number, line in enumerate(text.splitlines(), 1):
        utterance = line.strip()
        if not utterance:
            continue
        if len(utterance) > MAX_UTTERANCE:
            raise ParamError(
                "transcript_file", f"{show_path(path)} line {number}: must be at most {MAX_UTTERANCE} characters"
            )
        try:
            strip_tags(utterance)
        except MarkupError as exc:  # the position within the line as written
            at = MarkupError(exc.message, exc.tag, exc.position + len(line) - len(line.lstrip()))
            raise ParamError("transcript_file", f"{show_path(path)} line {number}: {at}") from None
        lines.append(utterance)
    return tuple(lines)


@register("cartesia_tts", klass="Source/Network")
@attrs.frozen(kw_only=True)
class CartesiaTTS(Source):
    """Speech from a Cartesia-protocol TTS WebSocket, one context per utterance, resuming after drops."""

    produces = Caps(tuple(Encoding), SAMPLE_RATES, (1,), (ANY_SIZE,))
    statistics_type = CartesiaStatistics
    frames_help = "makes chunks of any size, as the service sends them"

    url: str = param(DEFAULT_URL, kind="ws_url", help="The TTS WebSocket (the simulator: '${services.NAME.url}').")
    api_key: str | None = param(
        type=str,
        optional=True,
        secret=True,
        kind="header",
        help="API key, sent as the X-API-Key header; write '${CARTESIA_API_KEY}'.",
    )
    version: str = param("2026-03-01", kind="header", help="The Cartesia-Version header.")
    model_id: str = param("sonic-3", help="The TTS model.")
    voice_id: str = param("a0e99841-438c-4a64-b679-ae501e7d6091", help="The voice (by id).")
    language: str = param("en", help="Language of the transcript.")
    transcript: str | None = param(
        type=str, optional=True, max_length=MAX_UTTERANCE, help="What to say (speech tags allowed); one utterance."
    )
    transcripts: tuple[str, ...] | None = param(
        type=(str,),
        optional=True,
        max_length=MAX_UTTERANCE,
        help="Several utterances (speech tags allowed), spoken one after another.",
    )
    transcript_file: str | None = param(
        type=str,
        optional=True,
        kind="input_file",
        max_size=1 << 20,
        help="A UTF-8 file: each non-empty line one utterance.",
    )
    encoding: Encoding | None = param(
        type=Encoding, optional=True, help="Encoding to ask for; none lets negotiation choose."
    )
    sample_rate: int | None = param(
        type=int, optional=True, choices=SAMPLE_RATES, unit="Hz", help="Rate to ask for; none lets negotiation choose."
    )
    timestamps: bool = param(True, help="Ask for word timestamps (WordTimings frames; exact resume points).")
    chunk_words: int = param(
        0, min=0, max=1000, help="Send the text this many words per request (continue: true); 0 sends it whole."
    )
    gap: float = param(
        0.0, min=0, max=60, unit="s", help="Pause between one utterance's end and the next one's request."
    )
    sequence_field: str | None = param(
        "seq", type=str, optional=True, help="Chunk-number field to copy into AudioChunk.seq (the simulator's 'seq')."
    )
    max_message_bytes: int = param(
        1 << 20, min=1024, max=8 << 20, unit="bytes", help="Larger messages are dropped and counted."
    )
    response_timeout: float = param(
        10.0, min=0.01, max=600, unit="s", help="Silence on an open context after which it counts as lost."
    )
    reconnect_attempts: int = param(
        5, min=0, max=1000, help="Attempts in a row to (re)connect or resume before giving up."
    )
    backoff_initial: float = param(
        0.1, min=0.001, max=60, unit="s", help="First retry delay; it doubles (with jitter) per attempt."
    )
    backoff_max: float = param(2.0, min=0.001, max=600, unit="s", help="Longest retry delay.")
    connect_timeout: float = param(5.0, min=0.01, max=600, unit="s", help="Time allowed for one connection attempt.")
    utterances: tuple[str, ...] = attrs.field(init=False)
    """What to say, one item per utterance, read when the config is made (so a bad file is a config error)."""

    @utterances.default
    def _utterances(self) -> tuple[str, ...]:
        given = [key for key in ("transcript", "transcripts", "transcript_file") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ParamError(
                "transcript", "give either transcript or transcript_file, or a list of transcripts (one of them)"
            )
        if self.transcript_file is not None:
            return _read_lines(self.transcript_file)
        lines: tuple[str, ...] = (self.transcript,) if self.transcript is not None else self.transcripts  # type: ignore[assignment]
        if not lines:
            raise ParamError("transcripts", "gives nothing to say")
        for number, line in enumerate(lines, 1):
            try:
                strip_tags(line)
            except MarkupError as exc:
                raise ParamError(
                    given[0], str(exc) if self.transcript is not None else f"item {number}: {exc}"
                ) from None
        return lines

    def output_caps(self, fmt_in: StreamFormat | None) -> Caps:
        return Caps(
            (self.encoding,) if self.encoding else tuple(Encoding),
            (self.sample_rate,) if self.sample_rate else SAMPLE_RATES,
            (1,),
            (ANY_SIZE,),
        )

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> CartesiaStream:
        assert fmt_out is not None
        return CartesiaStream(self, fmt_out)

    def generation(self, fmt: AudioFormat) -> Generation:
        """What every request of a run asks for."""
        return Generation(
            model_id=self.model_id,
            voice_id=self.voice_id,
            format=fmt,
            language=self.language,
            timestamps=self.timestamps,
        )


class CartesiaStream:
    """One run of the source: its connection, the utterance being spoken, and what it counted."""

    def __init__(self, config: CartesiaTTS, fmt: AudioFormat) -> None:
        self.config = config
        self.format = fmt
        self.counts = Counts()

    async def run(self, tx: SendChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        config, fmt, counts = self.config, self.format, self.counts
        generation = config.generation(fmt)
        backoff = Backoff(config.backoff_initial, config.backoff_max, config.reconnect_attempts, settle=0)
        headers = [(b"Cartesia-Version", config.version.encode())]
        if config.api_key is not None:
            headers.append((b"X-API-Key", config.api_key.encode()))
        texts = iter(enumerate(config.utterances, 1))
        utterance: Utterance | None = None
        pts = seq = 0
        started = False
        async with tx:
            while True:
                try:
                    async with open_connection(config.url, headers=headers, timeout=config.connect_timeout) as ws:
                        counts.connects += 1
                        backoff.connected()
                        if not started:
                            task_status.started()
                            started = True
                        while True:
                            if utterance is None:
                                n, text = next(texts, (0, None))
                                if text is None:
                                    return
                                utterance = Utterance(
                                    f"utt-{n}",
                                    strip_tags(text).split(),
                                    generation,
                                    counts=counts,
                                    pts=pts,
                                    seq_base=seq,
                                    chunk_words=config.chunk_words,
                                    sequence_field=config.sequence_field,
                                    max_message_bytes=config.max_message_bytes,
                                )
                                counts.utterances += 1
                                await tx.send(UtteranceStart(utterance.utterance, text))
                            await self._speak(ws, utterance, tx, backoff)
                            pts, seq = utterance.pts, utterance.seq_next
                            await tx.send(UtteranceEnd(utterance.utterance))
                            utterance = None
                            if config.gap:
                                await trio.sleep(config.gap)
                except ConnectFailed as exc:
                    if exc.status is not None:
                        raise
                    why = str(exc)
                    log.warning("cartesia_tts: %s; retrying", why)
                except (ConnectionClosed, trio.TooSlowError) as exc:
                    if isinstance(exc, ConnectionClosed):
                        why = ended(config.url, exc.reason)
                    else:
                        counts.timeouts += 1
                        why = f"{peer(config.url)}: no answer within {config.response_timeout:g} s"
                    if utterance is None:  # lost between utterances: nothing to resume
                        log.warning("cartesia_tts: %s; reconnecting", why)
                    else:
                        utterance.lost()
                        log.warning(
                            "cartesia_tts: lost %s: %s; resuming from word %d",
                            utterance.context,
                            why,
                            utterance.resume_from,
                        )
                        if self._give_up(utterance):
                            await tx.send(UtteranceEnd(utterance.utterance))
                            utterance = None
                await trio.sleep(backoff.failed(why))

    async def _speak(self, ws: WebSocket, utterance: Utterance, tx: SendChannel, backoff: Backoff) -> None:
        """Speak one utterance to its end on ``ws``, on new contexts after error replies.

        ConnectionClosed, or TooSlowError when the requests cannot be sent or the service stays
        silent for ``response_timeout``; LinkFailed when the failures in a row ran out.
        """
        config = self.config
        while not utterance.finished:
            with trio.CancelScope() as waiting:  # one scope per context, its deadline moved per message
                waiting.deadline = trio.current_time() + config.response_timeout
                await ws.send_many(utterance.requests(trio.current_time()))
                while not utterance.context_done:
                    waiting.deadline = trio.current_time() + config.response_timeout
                    message = await ws.receive()
                    waiting.deadline = math.inf  # no timeout while downstream holds us back
                    now = trio.current_time()
                    try:
                        frames = utterance.receive(message, now)
                    except RemoteProtocolError as exc:
                        self._log_malformed(exc.reason, message)
                        continue
                    for frame in frames:
                        if type(frame) is AudioChunk:
                            backoff.carried(now)
                        await tx.send(frame)
            if waiting.cancelled_caught:
                raise trio.TooSlowError
            if utterance.error is not None:
                status, code = utterance.error
                why = f"{peer(config.url)} answered {status} {clip(one_line(code), 64)} for {utterance.context}"
                log.warning("cartesia_tts: %s; resuming from word %d", why, utterance.resume_from)
                delay = backoff.failed(why)
                if self._give_up(utterance):
                    return
                await trio.sleep(delay)

    def _give_up(self, utterance: Utterance) -> bool:
        """Count a failed attempt; True (and counted) when the utterance is abandoned."""
        config = self.config
        if utterance.failed() <= config.reconnect_attempts:
            return False
        self.counts.utterances_failed += 1
        log.warning(
            "cartesia_tts: giving up %s after %d failed attempts in a row",
            utterance.utterance,
            config.reconnect_attempts + 1,
        )
        return True

    def _log_malformed(self, reason: str, message: str | bytes) -> None:
        config = self.config
        if self.counts.malformed[reason] == 1:
            log.warning(
                "cartesia_tts: malformed message from %s (%s, counted from now on): %.80r",
                peer(config.url),
                reason,
                message,
            )

    def delivered(self) -> bool:
        """Whether any audio came from the service (the runner fails a pipeline that got none)."""
        return self.counts.chunks > 0

    def statistics(self) -> CartesiaStatistics:
        c = self.counts
        rate = self.format.sample_rate
        return CartesiaStatistics(
            utterances=c.utterances,
            utterances_failed=c.utterances_failed,
            contexts=c.contexts,
            chunks=c.chunks,
            samples_out=c.samples,
            seconds_out=c.samples / rate,
            word_timings=c.word_timings,
            connects=c.connects,
            timeouts=c.timeouts,
            resumes=c.resumes,
            repeated_seconds=c.repeated_seconds,
            restarts=c.restarts,
            service_errors=c.service_errors.snapshot(),
            malformed=c.malformed.snapshot(),
            stale_messages=c.stale,
            first_chunk_ms=c.first_chunk.summary(scale=1000),
            drops=c.drops.snapshot(),
        )
