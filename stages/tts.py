"""What the streaming TTS stages share: a protocol's :class:`Dialect`, the :class:`Speech` core, the shell.

A streaming TTS stage speaks utterances over one WebSocket, one at a time, each on a context
of its own (a connection's stream, for a service without contexts). It is a *source* when it
is given the text (``transcript``, ``transcripts`` or ``transcript_file``) and a *filter* when
it is not: then it speaks the :class:`rtstream.frames.TextToken` frames from upstream as they
come (whole words sent as soon as they are complete), cancels the utterance in progress on a
:class:`rtstream.frames.Clear` (and passes the Clear on), and passes other events through.

A :class:`Dialect` is one service's messages, sans I/O: text to start, extend, finish, cancel
or keep alive a context, and the service's messages read as :class:`Heard` audio,
:class:`Timed` words, :class:`Finished` and :class:`Failed`. :class:`Speech` is one utterance's
state across contexts: it turns what the dialect reads into frames (whole samples, ``pts``,
``arrival``, word timings from the utterance's start) and, when a context is lost (a dropped
connection, an error reply, a timeout), moves the resume point to the first word whose audio
did not all arrive (known from word timings; without them the context is spoken again).
:class:`StreamingTTS` is the stage config (frozen); it opens a :class:`TtsElement` per pipeline
instance, the shell that holds the run's state: connect, reconnect with backoff, keep-alives
while waiting for upstream text, bad messages counted by reason and logged once.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import trio

from rtstream.audio.payload import PayloadAligner
from rtstream.caps import ANY_SIZE, Caps
from rtstream.control import CallControl, listening
from rtstream.frames import (
    AudioChunk,
    AudioFormat,
    Clear,
    Frame,
    TextToken,
    UtteranceEnd,
    UtteranceStart,
    Word,
    WordTimings,
)
from rtstream.markup import MarkupError, strip_tags
from rtstream.params import ParamError, param, show_path
from rtstream.stage import Filter, Source
from rtstream.stats import BoundedCounter, Drops, Quantiles, Summary, stat
from rtstream.text import clip, one_line
from rtstream.websocket import ConnectionClosed, WebSocket
from rtstream.wire import RemoteProtocolError

from .wsclient import Backoff, ConnectFailed, ended, open_connection, peer

log = logging.getLogger(__name__)

Message = str | bytes
MAX_UTTERANCE = 4096
"""Characters in one utterance given as a parameter: a turn of a conversation, not a book."""
MAX_RUN = 0.25
"""Seconds of audio, at most, that the messages in hand merge into one chunk."""
MAX_IN_HAND = 32
"""Messages, at most, taken from what one socket read brought before the loop looks at its events."""

# -- what a dialect reads ------------------------------------------------------------------------


@attrs.frozen
class Heard:
    """Audio for a context (None: the connection's one stream)."""

    context: str | None
    audio: bytes
    seq: int | None = None


@attrs.frozen
class Timed:
    """Words of a context with their start and end, in seconds from the context's start."""

    context: str | None
    words: tuple[tuple[str, float, float], ...]


@attrs.frozen
class Finished:
    """The context has given all its audio."""

    context: str | None


@attrs.frozen
class Reached:
    """All audio of the context's first ``words`` words has arrived (a resume point without timings)."""

    context: str | None
    words: int


@attrs.frozen
class Failed:
    """The service refused or failed the context (``code``); its audio stops here."""

    context: str | None
    code: str


@attrs.frozen
class Noted:
    """The service warned (``code``) and goes on."""

    context: str | None
    code: str


Reading = Heard | Timed | Reached | Finished | Failed | Noted


class Dialect:
    """One service's messages for :class:`Speech`, sans I/O (one instance per connection).

    Text is whole words, each followed by a space. A dialect that must hold a message back
    (a rate limit) gives it from :meth:`due` once :meth:`next_due` has come.
    """

    def start(self, context: str, text: str, now: float) -> list[Message]:
        """Open ``context`` with its first text (possibly empty)."""
        raise NotImplementedError

    def add(self, context: str, text: str, now: float) -> list[Message]:
        """More text for an open context."""
        raise NotImplementedError

    def finish(self, context: str, now: float) -> list[Message]:
        """No more text: generate what is left and end the context (its :class:`Finished` follows)."""
        raise NotImplementedError

    def cancel(self, context: str) -> list[Message]:
        """Stop the context (barge-in); what it still sends is stale."""
        raise NotImplementedError

    def keep_alive(self, context: str) -> list[Message]:
        """Reset the service's inactivity timeout (nothing, for a service without one)."""
        return []

    def receive(self, message: Message, now: float) -> list[Reading]:
        """What a message says; RemoteProtocolError (with its reason) when it is malformed."""
        raise NotImplementedError

    def full(self) -> bool:
        """The connection can open no more contexts now (the next utterance takes a new connection)."""
        return False

    def next_due(self) -> float:
        """When :meth:`due` has a message held back (inf: none)."""
        return math.inf

    def due(self, now: float) -> list[Message]:
        return []


# -- the core --------------------------------------------------------------------------------------


@attrs.define
class Counts:
    """What a streaming TTS stage counted over its whole run."""

    utterances: int = 0
    utterances_failed: int = 0
    utterances_cancelled: int = 0
    contexts: int = 0
    chunks: int = 0
    samples: int = 0
    word_timings: int = 0
    resumes: int = 0
    repeated_seconds: float = 0.0
    restarts: int = 0
    connects: int = 0
    timeouts: int = 0
    keep_alives: int = 0
    tokens: int = 0
    service_errors: BoundedCounter = attrs.Factory(BoundedCounter)
    malformed: BoundedCounter = attrs.Factory(BoundedCounter)
    stale: int = 0
    first_chunk: Quantiles = attrs.Factory(Quantiles)
    drops: Drops = attrs.Factory(Drops)


class Speech:
    """One utterance's conversation with the service across contexts, sans I/O.

    :meth:`extend` takes its text as it comes, :meth:`open` (re)starts it on a new context,
    :meth:`receive` turns readings into frames, :meth:`lost` moves the resume point.
    """

    def __init__(self, utterance: str, fmt: AudioFormat, *, counts: Counts, pts: int, seq_base: int) -> None:
        self.utterance = utterance
        self.format = fmt
        self.words: list[str] = []
        self.final = False
        """All of the utterance's text has arrived."""
        self._pending = ""
        """Text after the last complete word."""
        self._counts = counts
        self.pts = pts
        self.seq_next = seq_base
        self._seq_base = seq_base
        self._aligner = PayloadAligner(fmt)
        self.context: str | None = None
        self._attempt = 0
        self._sent = 0
        """Words sent on the current context (from ``resume_from``)."""
        self.resume_from = 0
        self._context_start = 0.0
        self._context_samples = 0
        self._word_ends: list[float] = []
        self._unheard: list[Word] = []
        """Timed words whose audio has not all arrived: their WordTimings wait for it (a resume may re-time them)."""
        self._reached = 0
        """Words of the current context known to be fully heard without timings (:class:`Reached`)."""
        self._reached_at = 0.0
        self._timed = False
        self.context_done = False
        self.finishing = False
        """The current context was told there is no more text."""
        self.error: str | None = None
        self._failures = 0
        self._progress = 0
        self._asked: float | None = None
        self._run: list[np.ndarray] = []
        """Audio of the messages in hand not yet made a chunk (:meth:`receive`)."""
        self._run_samples = 0
        self._run_cap = round(MAX_RUN * fmt.sample_rate)
        self._run_pts = 0
        self._run_seq: int | None = None
        self._run_arrival = 0.0
        self._after_run: list[Frame] = []
        self._absorbed = 0
        """Service chunk numbers of the context merged into the chunk before them."""
        self._expected = 0
        self._in_order = True
        """The context's chunk numbers have all come in order from 0 (only then may numbered chunks merge)."""

    @property
    def finished(self) -> bool:
        return self.context_done and self.error is None

    @property
    def seconds(self) -> float:
        return self._context_start + self._context_samples / self.format.sample_rate

    def extend(self, dialect: Dialect | None, text: str, final: bool, now: float) -> list[Message]:
        """Take more of the utterance's text; the messages that send its complete words (and the end).

        Without a dialect (no context open yet) the words wait for :meth:`open`.
        """
        self._counts.tokens += 1
        self._pending += text
        if final:
            self.final = True
            complete, self._pending = self._pending.split(), ""
        else:
            cut = max(self._pending.rfind(" "), self._pending.rfind("\n"), self._pending.rfind("\t")) + 1
            complete, self._pending = self._pending[:cut].split(), self._pending[cut:]
        self.words += complete
        if dialect is None or self.context is None:
            return []
        return self._send_new(dialect, now)

    def _send_new(self, dialect: Dialect, now: float) -> list[Message]:
        messages: list[Message] = []
        new = self.words[self.resume_from + self._sent :]
        if new:
            messages += dialect.add(self.context or "", " ".join(new) + " ", now)
            self._sent += len(new)
        if self.final and not self.finishing:
            self.finishing = True
            messages += dialect.finish(self.context or "", now)
        return messages

    def open(self, dialect: Dialect, now: float) -> list[Message]:
        """A new context for the words not yet spoken: the messages that start it."""
        if self._attempt == 0:
            self._asked = now
        self._attempt += 1
        self.context = self.utterance if self._attempt == 1 else f"{self.utterance}-r{self._attempt - 1}"
        self._counts.contexts += 1
        self.context_done = self.finishing = False
        self.error = None
        self._seq_base = self.seq_next
        self._absorbed = self._expected = 0
        self._in_order = True
        words = self.words[self.resume_from :]
        self._sent = len(words)
        messages = dialect.start(self.context, " ".join(words) + " " if words else "", now)
        if self.final:
            self.finishing = True
            messages += dialect.finish(self.context, now)
        return messages

    def failed(self) -> int:
        """Count a failed attempt; how many in a row since the resume point last moved."""
        if self.resume_from > self._progress:
            self._progress, self._failures = self.resume_from, 0
        self._failures += 1
        return self._failures

    def lost(self) -> None:
        """The context was lost: resume from the first word whose audio did not all arrive."""
        received = self._context_samples / self.format.sample_rate
        done = sum(1 for end in self._word_ends if end <= received + 1e-9)
        if self._context_samples:
            self._counts.resumes += 1
            self._counts.restarts += not self._timed and not self._reached
            self._counts.repeated_seconds += received - (self._word_ends[done - 1] if done else self._reached_at)
        done = max(done, self._reached)
        self.resume_from += done
        self._next_context()

    def _next_context(self) -> None:
        if self._aligner.reset():
            self._counts.drops.add("partial_sample")
        self._context_start = self.seconds
        self._context_samples = 0
        self._word_ends = []
        self._unheard = []
        self._reached = 0
        self._reached_at = 0.0

    def receive(self, readings: list[Reading], now: float) -> list[Frame]:
        """The frames that ``readings`` (of one or more messages in hand) make.

        Audio readings in a row become one chunk (at most :data:`MAX_RUN` seconds): one pass
        downstream instead of one per message. Word timings found meanwhile follow that chunk
        (their audio has all arrived by then); any other reading ends the run first.
        """
        frames: list[Frame] = []
        for reading in readings:
            if self.context_done or (reading.context != self.context and reading.context is not None):
                self._counts.stale += 1  # after the context's end (or error), as for a context no longer open
                continue
            kind = type(reading)
            if kind is Heard:
                self._heard(reading, now, frames)  # type: ignore[arg-type]  # checked by type() above
                continue
            if kind is not Timed:
                self._end_run(frames)
            made = self._HANDLERS[kind](self, reading, now)
            (self._after_run if self._run else frames).extend(made)
        self._end_run(frames)
        return frames

    def _heard(self, heard: Heard, now: float, frames: list[Frame]) -> None:
        counts = self._counts
        counts.chunks += 1
        if self._asked is not None:
            counts.first_chunk.add(now - self._asked)
            self._asked = None
        samples = self._aligner.feed(heard.audio)
        seq = heard.seq
        if seq is not None:
            in_order = self._in_order and seq == self._expected
            self._in_order = in_order
            self._expected = seq + 1
        else:
            in_order = True
        run = self._run
        if (
            run
            and in_order
            and (seq is None) is (self._run_seq is None)
            and self._run_samples + len(samples) <= self._run_cap
        ):
            self._absorbed += seq is not None  # its number goes: the pipeline numbers the chunks it makes
        else:
            self._end_run(frames)
            if seq is not None:
                seq += self._seq_base - self._absorbed
                self.seq_next = max(self.seq_next, seq + 1)
            if not len(samples):
                return
            self._run_seq, self._run_arrival, self._run_pts = seq, now, self.pts
        if len(samples):
            self._run.append(samples)
            self._run_samples += len(samples)
            self.pts += len(samples)
            self._context_samples += len(samples)
            counts.samples += len(samples)
        self._after_run.extend(self._heard_words())

    def _end_run(self, frames: list[Frame]) -> None:
        """The audio run so far as one chunk, then the word timings that waited for it."""
        run = self._run
        if not run:
            return
        data = run[0] if len(run) == 1 else np.concatenate(run)
        frames.append(
            AudioChunk(
                data,
                self.format,
                pts=self._run_pts,
                seq=self._run_seq,
                arrival=self._run_arrival,
                utterance=self.utterance,
            )
        )
        run.clear()
        self._run_samples = 0
        if self._after_run:
            frames.extend(self._after_run)
            self._after_run.clear()

    def _heard_words(self, everything: bool = False) -> list[Frame]:
        """WordTimings for the timed words whose audio has now all arrived."""
        if not self._unheard:
            return []
        heard_until = self.seconds + 1e-9
        cut = len(self._unheard) if everything else sum(1 for w in self._unheard if w.end <= heard_until)
        words, self._unheard = self._unheard[:cut], self._unheard[cut:]
        self._counts.word_timings += len(words)
        return [WordTimings(self.utterance, words)] if words else []

    def _timed_words(self, timed: Timed, now: float) -> list[Frame]:
        self._timed = True
        offset = self._context_start
        self._unheard += [Word(text, offset + start, offset + end) for text, start, end in timed.words]
        self._word_ends += [end for _, _, end in timed.words]
        return self._heard_words()

    def _reached_words(self, reached: Reached, now: float) -> list[Frame]:
        self._reached = reached.words
        self._reached_at = self._context_samples / self.format.sample_rate
        return []

    def _noted(self, noted: Noted, now: float) -> list[Frame]:
        self._counts.service_errors.add(noted.code)
        return []

    def _finished(self, finished: Finished, now: float) -> list[Frame]:
        self.context_done = True
        frames = self._heard_words(everything=True)
        self._next_context()
        return frames

    def _failed(self, failed: Failed, now: float) -> list[Frame]:
        self.error = failed.code
        self._counts.service_errors.add(failed.code)
        self.context_done = True
        self.lost()
        return []

    _HANDLERS: ClassVar[dict[type, Callable[[Speech, Any, float], list[Frame]]]] = {
        Timed: _timed_words,
        Reached: _reached_words,
        Noted: _noted,
        Finished: _finished,
        Failed: _failed,
    }


# -- the stage -------------------------------------------------------------------------------------


@attrs.frozen
class TtsStatistics:
    utterances: int = stat(help="Utterances started.")
    utterances_failed: int = stat(help="Utterances given up after reconnect_attempts failures in a row.")
    utterances_cancelled: int = stat(help="Utterances cut short by a Clear (barge-in).")
    contexts: int = stat(help="Contexts opened (one per utterance, and one per resume).")
    chunks: int = stat(help="Audio messages received.")
    samples_out: int = stat(help="Samples sent on.")
    seconds_out: float = stat(help="Seconds of audio sent on.")
    word_timings: int = stat(help="Words timed (sent on once their audio had arrived).")
    connects: int = stat(help="Connections made (the first and every reconnect).")
    timeouts: int = stat(help="Contexts lost to silence: nothing heard within response_timeout (first audio included).")
    resumes: int = stat(help="Utterances resumed on a new context after a lost connection or an error.")
    repeated_seconds: float = stat(help="Audio asked for again by resumes (spoken twice if it had arrived).")
    restarts: int = stat(help="Resumes from the start of the context (nothing timed to resume from a word).")
    keep_alives: int = stat(help="Keep-alive messages sent while waiting for text.")
    tokens: int = stat(help="Text frames taken from upstream (the transcripts count one each).")
    service_errors: dict[str, int] = stat(help="Errors and warnings from the service, by code.")
    malformed: dict[str, int] = stat(help="Malformed messages from the service skipped, by RemoteProtocolError reason.")
    stale_messages: int = stat(help="Messages for a context no longer open, skipped.")
    first_chunk_ms: Summary = stat(
        help="Per utterance: from opening its first context to the arrival of its first audio, in ms."
    )
    drops: dict[str, Any] = stat(
        help="Dropped by reason: partial_sample (a sample split at a context end), upstream_* (frames it makes itself)."
    )


def read_lines(path: str) -> tuple[str, ...]:
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


_Item = tuple[str, Any]
"""What the shell's loop hears besides the service (whose socket it reads itself): ("input", a TextToken or
a Clear), ("barge_in", reason) from the call's control path, ("end", None)."""


class _Role:
    """A TTS stage's role: "source" for the type (as its klass says) and for a configuration with text,
    "filter" for one without (it speaks the text frames from upstream)."""

    def __get__(self, instance: StreamingTTS | None, owner: type) -> str:
        return "source" if instance is None or instance.utterances else "filter"


@attrs.frozen(kw_only=True)
class StreamingTTS(Source, Filter):
    """Base of the streaming TTS stages; subclasses give the URL, the headers and the dialect."""

    produces = Caps(frame_ms=(ANY_SIZE,))
    statistics_type = TtsStatistics
    frames_help = "makes chunks of any size, as the service sends them; takes TextToken frames as a filter"

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
        help="A UTF-8 file: each non-empty line one utterance. None of the three: text frames from upstream.",
    )
    gap: float = param(0.0, min=0, max=60, unit="s", help="Pause between one utterance's end and the next one's text.")
    max_message_bytes: int = param(
        1 << 20, min=1024, max=8 << 20, unit="bytes", help="Larger messages are dropped and counted."
    )
    response_timeout: float = param(
        3.0, min=0.01, max=600, unit="s", help="Silence on a finished context after which it counts as lost."
    )
    keep_alive: float = param(
        10.0,
        min=0.01,
        max=600,
        unit="s",
        help="Send a keep-alive after this long without sending (below the service's inactivity timeout).",
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

    name: ClassVar[str] = "tts"

    @utterances.default
    def _utterances(self) -> tuple[str, ...]:
        given = [key for key in ("transcript", "transcripts", "transcript_file") if getattr(self, key) is not None]
        if len(given) > 1:
            raise ParamError(
                "transcript", "give one of transcript, transcripts or transcript_file (or none: text from upstream)"
            )
        if self.transcript_file is not None:
            return read_lines(self.transcript_file)
        lines: tuple[str, ...] = (self.transcript,) if self.transcript is not None else self.transcripts or ()
        if self.transcripts == ():
            raise ParamError("transcripts", "gives nothing to say")
        for number, line in enumerate(lines, 1):
            try:
                strip_tags(line)
            except MarkupError as exc:
                raise ParamError(
                    given[0], str(exc) if self.transcript is not None else f"item {number}: {exc}"
                ) from None
        return lines

    role = _Role()  # a source with its own text, a filter of text frames without

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> TtsElement:
        assert fmt_out is not None
        if fmt_in is None and not self.utterances:
            raise ParamError(
                "transcript",
                f"{self.name} as the first stage needs a transcript; without one it speaks text frames from upstream",
            )
        return TtsElement(self, fmt_out)

    # -- what a subclass gives ------------------------------------------------------------------

    def endpoint_url(self, fmt: AudioFormat) -> str:
        """The URL to connect to for ``fmt`` (it may hold a key: logs name only its :func:`peer`)."""
        raise NotImplementedError

    def headers(self) -> list[tuple[bytes, bytes]]:
        raise NotImplementedError

    def dialects(self, fmt: AudioFormat) -> Callable[[], Dialect]:
        """A maker of fresh dialects, one per connection, for one run (what it shares outlives connections)."""
        raise NotImplementedError

    def one_stream(self) -> bool:
        """The service ends the connection with each utterance (ElevenLabs' stream-input)."""
        return False


class TtsElement:
    """One run of a streaming TTS stage: the connection, the utterance being spoken, what it counted."""

    def __init__(self, config: StreamingTTS, fmt: AudioFormat) -> None:
        self.config = config
        self.format = fmt
        self._counts = Counts()
        self._dialect = config.dialects(fmt)
        self._url = config.endpoint_url(fmt)
        self._peer = peer(self._url)
        self.name = config.name
        self.utterances = config.utterances
        self._written = {f"utt-{n}": text for n, text in enumerate(self.utterances, 1)}
        """The transcripts as written (speech tags included), by utterance id, for UtteranceStart."""
        self._control: CallControl | None = None
        self._barge_ins: deque[str] = deque()
        """Clears from the call's control path not yet acted on."""
        self._listening: trio.CancelScope | None = None
        """The session's wait on the service's socket, cut short when an event comes (:meth:`_wake`)."""

    async def run(self, *channels: Any, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        rx, tx = channels if len(channels) == 2 else (None, channels[0])
        fmt = self.format
        # the events besides the service's messages, across connections, so nothing is lost in a reconnect
        events_tx, events_rx = trio.open_memory_channel[_Item](16)

        def barge_in(reason: str) -> None:  # the call's control path: cancel at once, not behind queued frames
            self._barge_ins.append(reason)
            with contextlib.suppress(trio.WouldBlock):  # full: the loop finds the deque when it wakes
                events_tx.send_nowait(("barge_in", reason))
            self._wake()

        async with trio.open_nursery() as nursery, tx, events_tx:
            with listening(barge_in) as control:
                self._control = control
                nursery.start_soon(self._upstream, rx, tx, events_tx.clone())
                await self._converse(fmt, tx, events_rx, task_status)
                nursery.cancel_scope.cancel()

    def _wake(self) -> None:
        """An event is waiting: stop the session's wait on the socket (a cancelled read loses nothing)."""
        if self._listening is not None:
            self._listening.cancel()

    async def _upstream(self, rx: Any, tx: Any, inbox: trio.MemorySendChannel[_Item]) -> None:
        """Text frames (or the transcripts) and clears to the shell; other events on downstream."""

        async def post(item: _Item) -> None:
            await inbox.send(item)
            self._wake()

        async with inbox:
            if rx is None:
                for n, text in enumerate(self.utterances, 1):
                    await post(("input", TextToken(strip_tags(text), f"utt-{n}", final=True)))
            else:
                async with rx:
                    async for frame in rx:
                        if isinstance(frame, TextToken | Clear):
                            await post(("input", frame))
                        elif isinstance(frame, AudioChunk | UtteranceStart | UtteranceEnd | WordTimings):
                            self._counts.drops.add("upstream_" + type(frame).__name__)
                        else:
                            await tx.send(frame)
            await post(("end", None))

    async def _converse(
        self,
        fmt: AudioFormat,
        tx: Any,
        events: trio.MemoryReceiveChannel[_Item],
        task_status: Any,
    ) -> None:
        counts = self._counts
        backoff = Backoff(
            self.config.backoff_initial, self.config.backoff_max, self.config.reconnect_attempts, settle=0
        )
        state = _State(fmt)
        started = False
        while True:
            try:
                async with open_connection(
                    self._url, headers=self.config.headers(), timeout=self.config.connect_timeout
                ) as ws:
                    counts.connects += 1
                    backoff.connected()
                    if not started:
                        task_status.started()
                        started = True
                    done = await self._session(ws, state, tx, events, backoff)
                    if done:
                        return
                    continue  # stream-input: a new connection for the next utterance
            except ConnectFailed as exc:
                if exc.status is not None:
                    raise
                delay = backoff.failed(str(exc))
                log.warning("%s: %s; retrying", self.name, exc)
            except (ConnectionClosed, trio.TooSlowError) as exc:
                if isinstance(exc, ConnectionClosed):
                    why = ended(self._url, exc.reason)
                else:
                    counts.timeouts += 1
                    why = f"{self._peer}: no answer within {self.config.response_timeout:g} s"
                delay = backoff.failed(why)
                speech = state.speech
                if speech is not None and not (self.config.one_stream() and speech.finished):
                    speech.lost()
                    log.warning(
                        "%s: lost %s: %s; resuming from word %d", self.name, speech.context, why, speech.resume_from
                    )
                    if self._give_up(speech):
                        await tx.send(UtteranceEnd(speech.utterance))
                        state.end_speech()
                        continue  # given up: the next utterance (if any) needs no wait
                else:
                    log.warning("%s: %s; reconnecting", self.name, why)
            await trio.sleep(delay)

    async def _session(
        self,
        ws: WebSocket,
        state: _State,
        tx: Any,
        events: trio.MemoryReceiveChannel[_Item],
        backoff: Backoff,
    ) -> bool:
        """One connection's loop; True when the input has ended and every utterance is spoken."""
        dialect = self._dialect()
        last_sent = last_heard = trio.current_time()

        async def send(messages: list[Message]) -> None:
            nonlocal last_sent
            if messages:
                with trio.fail_after(self.config.response_timeout):  # a service that stops reading is silent too
                    await ws.send_many(messages)
                last_sent = trio.current_time()

        if state.speech is not None:  # resume on this connection
            await send(state.speech.open(dialect, trio.current_time()))
        while True:
            while self._barge_ins:
                self._barge_ins.popleft()
                await self._cancel(dialect, state, tx, send)
            if state.abandoned:  # stream-input: a cancelled stream ends with its connection
                state.abandoned = False
                return False
            speech = state.speech
            if speech is None and state.waiting and dialect.full():
                return False  # its contexts are all in use (cancelled ones not yet ended): a new connection
            if speech is None and state.waiting:
                speech = await self._begin(state, tx)
                await send(speech.open(dialect, trio.current_time()))
                continue
            if speech is None and state.ended:
                return True
            deadline = dialect.next_due()
            if speech is not None:
                deadline = min(deadline, last_sent + self.config.keep_alive)
                if speech.finishing:
                    deadline = min(deadline, last_heard + self.config.response_timeout)
            try:
                item: _Item | None = events.receive_nowait()
            except trio.WouldBlock:
                item = None  # (the wait below is outside the handler: no exception held through it)
            if item is not None:
                kind, payload = item
                now = trio.current_time()
                if kind == "input":
                    await self._input(dialect, state, payload, now, tx, send)
                elif kind == "end":
                    state.ended = True
                continue
            message = ws.receive_ready()
            if message is None:
                try:
                    with trio.move_on_at(deadline) as listening:  # until a message, an event or the deadline
                        self._listening = listening
                        message = await ws.receive()
                finally:
                    self._listening = None
            now = trio.current_time()
            if message is not None:
                last_heard = now
                messages, message = [message], None
                while len(messages) < MAX_IN_HAND and (more := ws.receive_ready()) is not None:
                    messages.append(more)
                await self._heard(dialect, state, messages, now, tx, backoff, send)
                last_heard = trio.current_time()  # silence counts from here: it had no room downstream till now
                if self.config.one_stream() and state.speech is None:  # the service closes after each one
                    return state.ended and not state.waiting
                continue
            if now < deadline:
                continue  # an event came: the loop takes it
            # a deadline passed
            await send(dialect.due(now))
            if speech is not None and speech.finishing and now >= last_heard + self.config.response_timeout:
                raise trio.TooSlowError
            if speech is not None and speech.context is not None and now >= last_sent + self.config.keep_alive:
                self._counts.keep_alives += 1
                await send(dialect.keep_alive(speech.context))
                last_sent = now

    async def _begin(self, state: _State, tx: Any) -> Speech:
        token = state.waiting[0]
        speech = Speech(token.utterance, state.format, counts=self._counts, pts=state.pts, seq_base=state.seq)
        state.speech = speech
        self._counts.utterances += 1
        await tx.send(UtteranceStart(speech.utterance, self._written.get(speech.utterance, "")))
        while state.waiting and state.waiting[0].utterance == speech.utterance:
            token = state.waiting.popleft()
            speech.extend(None, token.text, token.final, trio.current_time())
        return speech

    async def _input(self, dialect: Dialect, state: _State, item: Any, now: float, tx: Any, send: Any) -> None:
        speech = state.speech
        if isinstance(item, Clear):
            await self._cancel(dialect, state, tx, send)
            await tx.send(item)
            return
        if item.utterance in state.cancelled:
            self._counts.drops.add("cancelled_text")
            return
        if speech is not None and item.utterance == speech.utterance:
            await send(speech.extend(dialect, item.text, item.final, now))
        else:
            state.waiting.append(item)

    async def _cancel(self, dialect: Dialect, state: _State, tx: Any, send: Any) -> None:
        """Barge-in: cancel the utterance being spoken (a source goes on with its next transcript; a filter
        drops the text waiting, and what comes later of those utterances)."""
        speech = state.speech
        if speech is not None:
            self._counts.utterances_cancelled += 1
            if speech.context is not None:
                await send(dialect.cancel(speech.context))
            if self._control is not None:  # its audio still queued anywhere in the call is dropped
                self._control.clear_utterance(speech.utterance)
            state.cancelled.append(speech.utterance)
            state.abandoned = self.config.one_stream()
            await tx.send(UtteranceEnd(speech.utterance))
            state.end_speech()
        if not self.utterances:  # text from upstream that came before the barge-in is of replies now stale
            state.cancelled.extend(token.utterance for token in state.waiting)
            state.waiting.clear()

    async def _heard(
        self,
        dialect: Dialect,
        state: _State,
        messages: list[Message],
        now: float,
        tx: Any,
        backoff: Backoff,
        send: Any,
    ) -> None:
        """The service's messages in hand, read together (their audio in as few chunks as it fits)."""
        readings: list[Reading] = []
        for message in messages:
            try:
                readings += dialect.receive(message, now)
            except RemoteProtocolError as exc:
                self._counts.malformed.add(exc.reason)
                if self._counts.malformed[exc.reason] == 1:
                    log.warning(
                        "%s: malformed message from %s (%s, counted from now on): %.80r",
                        self.name,
                        self._peer,
                        exc.reason,
                        message,
                    )
        messages.clear()  # held no longer than they are needed, while the frames wait for room downstream
        speech = state.speech
        if speech is None:
            self._counts.stale += len(readings)
            return
        frames = speech.receive(readings, now)
        del readings
        for frame in frames:
            if type(frame) is AudioChunk:
                backoff.carried(now)
            await tx.send(frame)
        if speech.finished:
            await tx.send(UtteranceEnd(speech.utterance))
            state.end_speech()
            if self.config.gap and self.utterances:
                await trio.sleep(self.config.gap)
        elif speech.error is not None:
            why = f"{self._peer} answered {clip(one_line(speech.error), 64)} for {speech.context}"
            log.warning("%s: %s; resuming from word %d", self.name, why, speech.resume_from)
            delay = backoff.failed(why)
            if self._give_up(speech):
                await tx.send(UtteranceEnd(speech.utterance))
                state.end_speech()
                return
            await trio.sleep(delay)
            await send(speech.open(dialect, trio.current_time()))

    def _give_up(self, speech: Speech) -> bool:
        if speech.failed() <= self.config.reconnect_attempts:
            return False
        self._counts.utterances_failed += 1
        log.warning(
            "%s: giving up %s after %d failed attempts in a row",
            self.name,
            speech.utterance,
            self.config.reconnect_attempts + 1,
        )
        return True

    def delivered(self) -> bool:
        """Whether any audio came from the service (the runner fails a pipeline that got none)."""
        return self._counts.chunks > 0

    def statistics(self) -> TtsStatistics:
        c = self._counts
        rate = self.format.sample_rate
        return TtsStatistics(
            utterances=c.utterances,
            utterances_failed=c.utterances_failed,
            utterances_cancelled=c.utterances_cancelled,
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
            keep_alives=c.keep_alives,
            tokens=c.tokens,
            service_errors=c.service_errors.snapshot(),
            malformed=c.malformed.snapshot(),
            stale_messages=c.stale,
            first_chunk_ms=c.first_chunk.summary(scale=1000),
            drops=c.drops.snapshot(),
        )


@attrs.define
class _State:
    """The shell's state across connections."""

    format: AudioFormat
    speech: Speech | None = None
    waiting: deque[TextToken] = attrs.Factory(deque)
    """Text frames of utterances after the one being spoken."""
    cancelled: deque[str] = attrs.Factory(lambda: deque(maxlen=64))
    """Utterances cancelled by a barge-in (recent ones): their later text frames are dropped."""
    abandoned: bool = False
    """The connection's one stream was cancelled: the next utterance needs a new connection."""
    ended: bool = False
    pts: int = 0
    seq: int = 0

    def end_speech(self) -> None:
        assert self.speech is not None
        self.pts, self.seq = self.speech.pts, self.speech.seq_next
        self.speech = None
