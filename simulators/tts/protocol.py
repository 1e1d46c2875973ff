"""A simulated Cartesia TTS service, sans I/O: requests in, timed response messages out.

A :class:`TtsSession` is one connection, speaking through the service side of
:mod:`rtstream.wire.cartesia`. It is fed each request message with the time it arrived and
gives back the messages to send when they are due; the server around it only moves
bytes and sleeps until :meth:`TtsSession.next_due`. Per context it keeps the text received
so far, synthesizes whole words as they arrive (everything on ``flush`` or ``continue: false``)
and schedules the audio as the chunks a generator running ``rtf`` times faster than real time
would give, after a first-byte latency (:class:`rtstream.simulators.tts.voice.Voice`, shared by
every TTS simulator). Word (and, when asked, phoneme) timestamps follow the chunk that
completes the words; after a context's first flush, its chunks and timestamps carry the
``flush_id`` of the flush they belong to. ``max_buffer_delay_ms`` holds text that does not end
a sentence back for that long (unset, words are spoken as they come); ``speed`` sets the pace.
Errors carry ``error_code``, ``title``, ``message``, ``doc_url`` and the connection's
``request_id``. The outgoing stream then goes through :class:`rtstream.simulators.netem.NetEm`.

Beyond the real protocol the simulator adds one field to every ``chunk`` message:
``"seq"`` (:data:`SEQUENCE_FIELD`), the chunk's number within its context from 0, given before
impairments, so a client can see duplicated, reordered and dropped chunks. Set
``sequence_field`` to none to leave it out.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter, deque
from typing import Any

import attrs
import numpy as np

from rtstream.audio.codec import from_float32
from rtstream.frames import AudioFormat
from rtstream.wire.cartesia import (
    SPEEDS,
    BadRequest,
    CartesiaService,
    Chunk,
    Done,
    Error,
    FlushDone,
    Generation,
    PhonemeTimestamps,
    Request,
    Response,
    Timestamps,
)

from ..netem import NetEm, NetEmStatistics
from ..speech import SpokenWord, synthesize
from .settings import TtsSettings
from .voice import Piece, Voice, chunk_sizes

_EXPIRED_REMEMBERED = 1024
DOC_URL = "https://docs.cartesia.ai/api-reference/tts/websocket"
_SENTENCE_END = (".", "!", "?")


class ContextLimiter:
    """Counts the contexts open across a server against ``limit`` (None: no limit)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.open = 0

    def acquire(self) -> bool:
        if self.limit is not None and self.open >= self.limit:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1


class RequestError(Exception):
    """A request the service refuses: answered with an ``error`` message."""

    def __init__(self, status: int, code: str, title: str, message: str, context: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.title, self.context = status, code, title, context


@attrs.define
class _Context:
    id: str
    generation: Generation
    voice: Voice
    text: str = ""
    """Text received and not yet spoken."""
    held_since: float | None = None
    """When the text held back (``max_buffer_delay_ms``) began waiting."""
    last_input: float = 0.0
    flushes: int = 0
    ended: bool = False
    failed: bool = False
    """Its generation failed: its error is on the way, and later requests for it are ignored."""
    queue: deque[tuple[float, Response]] = attrs.Factory(deque)
    """Responses being generated, with the time each is ready."""

    def hold_until(self) -> float:
        delay = self.generation.max_buffer_delay_ms
        if self.held_since is None or delay is None:
            return math.inf
        return self.held_since + delay / 1000


@attrs.frozen
class TtsSessionStatistics:
    requests: int
    contexts_opened: int
    contexts_done: int
    contexts_cancelled: int
    contexts_expired: int
    chunks: int
    audio_bytes: int
    errors: dict[str, int]
    network: NetEmStatistics


class TtsSession:
    """One connection's protocol state: :meth:`receive` requests, :meth:`pop_due` responses."""

    def __init__(
        self,
        settings: TtsSettings,
        *,
        seed: int = 0,
        limiter: ContextLimiter | None = None,
        request_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.request_id = request_id
        self._rng = random.Random(seed)
        self._net = NetEm(settings.impairments(), seed)
        self._wire = CartesiaService(sequence_field=settings.sequence_field)
        self._limiter = limiter or ContextLimiter(settings.max_contexts)
        self._contexts: dict[str, _Context] = {}
        self._expired: deque[str] = deque(maxlen=_EXPIRED_REMEMBERED)
        self._auto_ids = itertools.count(1)
        self._chunks = 0
        self._failed = False
        self._requests = self._opened = self._done = self._cancelled = self._expired_count = self._bytes = 0
        self._errors: Counter[str] = Counter()

    # -- input ---------------------------------------------------------------------------------

    def receive(self, message: str | bytes, now: float) -> None:
        """Take one request message that arrived at ``now``."""
        self._requests += 1
        try:
            request = self._wire.receive(message)
            if isinstance(request, Request):
                self._handle(request, now)
            else:
                self._cancel(request.context)
        except BadRequest as exc:
            json_error = exc.reason == "bad_json"
            error = RequestError(
                400,
                "invalid_json" if json_error else "invalid_request",
                "Invalid JSON" if json_error else "Invalid request",
                exc.detail,
                exc.context,
            )
            self._refuse(error, now)
        except RequestError as exc:
            self._refuse(exc, now)

    def _refuse(self, exc: RequestError, now: float) -> None:
        self._errors[exc.code] += 1
        self._net.push(self._wire.send(self._error(exc.context, exc.status, exc.code, exc.title, str(exc))), now)

    def _error(self, context: str | None, status: int, code: str, title: str, message: str) -> Error:
        return Error(context, status, code, title, message, DOC_URL, self.request_id)

    def _handle(self, request: Request, now: float) -> None:
        context = request.context
        keep_open, flush = request.more, request.flush
        if context is None:
            context = f"auto-{next(self._auto_ids)}"
        ctx = self._contexts.get(context)
        if ctx is None:
            ctx = self._open(context, request.generation, now)
        elif ctx.failed:
            return
        elif ctx.ended:
            raise RequestError(400, "context_closed", "Context closed", f"context {context!r} has ended", context)
        elif ctx.generation.format != request.generation.format:
            raise RequestError(
                400,
                "invalid_request",
                "Invalid request",
                f"context {context!r} was opened as {ctx.generation.format}; a request cannot change it to "
                f"{request.generation.format}",
                context,
            )
        ctx.last_input = now
        ctx.text += request.transcript
        if keep_open and not flush:
            cut = max(ctx.text.rfind(" "), ctx.text.rfind("\n"), ctx.text.rfind("\t")) + 1
            if ctx.generation.max_buffer_delay_ms and not ctx.text[:cut].rstrip().endswith(_SENTENCE_END):
                if ctx.text.strip() and ctx.held_since is None:
                    ctx.held_since = now  # held back until a sentence ends or the delay is over
                return
            ready_text, ctx.text = ctx.text[:cut], ctx.text[cut:]
        else:
            ready_text, ctx.text = ctx.text, ""
        ctx.held_since = None
        if flush:
            ctx.flushes += 1
        self._generate(ctx, ready_text, now)
        if ctx.ended:  # the generation failed
            return
        if flush:
            self._queue(ctx, FlushDone(ctx.id, ctx.flushes))
        if not keep_open:
            ctx.ended = True
            self._queue(ctx, Done(ctx.id))

    def _open(self, context: str, generation: Generation, now: float) -> _Context:
        if context in self._expired:
            raise RequestError(400, "context_expired", "Context expired", f"context {context!r} has expired", context)
        if not self._limiter.acquire():
            raise RequestError(
                429,
                "concurrency_limited",
                "Concurrency limit reached",
                f"too many concurrent contexts (limit {self._limiter.limit})",
                context,
            )
        self._opened += 1
        fmt = generation.format
        voice = Voice(
            self.settings,
            generation.wire_encoding,
            fmt.sample_rate,
            chunk_sizes(self.settings, self._rng),
            speed=SPEEDS[generation.speed or "normal"],
        )
        ctx = _Context(context, generation, voice, last_input=now)
        self._contexts[context] = ctx
        return ctx

    def _cancel(self, context: str) -> None:
        ctx = self._contexts.pop(context, None)
        if ctx is not None:
            self._cancelled += 1
            self._limiter.release()

    # -- generation ----------------------------------------------------------------------------

    def _generate(self, ctx: _Context, text: str, now: float) -> None:
        s = self.settings
        rate = ctx.generation.format.sample_rate
        # audio after the n-th flush belongs to flush n + 1, once there has been one (ours counts already)
        flush_id = ctx.flushes or None
        for piece in ctx.voice.speak(text, now):
            if s.error_after is not None and self._chunks >= s.error_after and not self._failed:
                self._failed = True  # one simulated failure per connection
                ctx.ended = ctx.failed = True
                failure = self._error(ctx.id, 500, "internal_error", "Internal error", "simulated generation failure")
                ctx.queue.append((piece.ready, failure))
                return
            self._chunks += 1
            self._bytes += len(piece.audio)
            step_time = round(piece.samples / rate * 1000 / max(s.rtf, 1), 3)
            ctx.queue.append((piece.ready, Chunk(ctx.id, piece.audio, piece.number, step_time, flush_id)))
            self._timestamps(ctx, piece, flush_id)

    def _timestamps(self, ctx: _Context, piece: Piece, flush_id: int | None) -> None:
        words, rate = piece.completed, ctx.generation.format.sample_rate
        if not words:
            return
        if ctx.generation.timestamps:
            stamps = Timestamps(
                ctx.id,
                tuple(w.text for w in words),
                tuple(w.start / rate for w in words),
                tuple(w.end / rate for w in words),
                flush_id,
            )
            ctx.queue.append((piece.ready, stamps))
        if ctx.generation.phoneme_timestamps:
            phonemes = [p for w in words for p in _phonemes(w, rate)]
            ctx.queue.append(
                (
                    piece.ready,
                    PhonemeTimestamps(
                        ctx.id,
                        tuple(p for p, _, _ in phonemes),
                        tuple(s for _, s, _ in phonemes),
                        tuple(e for _, _, e in phonemes),
                        flush_id,
                    ),
                )
            )

    def _queue(self, ctx: _Context, response: Response) -> None:
        ready = max(ctx.voice.generated_until, ctx.queue[-1][0] if ctx.queue else -float("inf"), ctx.last_input)
        ctx.queue.append((ready, response))

    # -- output --------------------------------------------------------------------------------

    def pop_due(self, now: float) -> list[Any]:
        """The messages due by ``now`` (strings, or :data:`rtstream.simulators.netem.DISCONNECT`)."""
        due: list[tuple[float, int, Response]] = []
        for order, ctx in enumerate(list(self._contexts.values())):
            if ctx.hold_until() <= now:  # the buffer delay is over: speak the whole words held
                cut = max(ctx.text.rfind(" "), ctx.text.rfind("\n"), ctx.text.rfind("\t")) + 1
                ready_text, ctx.text = ctx.text[:cut], ctx.text[cut:]
                ctx.held_since = None
                self._generate(ctx, ready_text, now)
            while ctx.queue and ctx.queue[0][0] <= now:
                ready, response = ctx.queue.popleft()
                due.append((ready, order, response))
            if ctx.queue or ctx.id not in self._contexts:
                continue
            if ctx.ended:
                self._close(ctx, done=True)
            elif now >= self._expiry(ctx):
                self._close(ctx, done=False)
        due.sort(key=lambda item: (item[0], item[1]))
        for ready, _, response in due:
            self._net.push(self._wire.send(response), ready, media=type(response) is Chunk)
        return self._net.pop_due(now)

    def _close(self, ctx: _Context, *, done: bool) -> None:
        del self._contexts[ctx.id]
        self._limiter.release()
        if done:
            self._done += 1
        else:
            self._expired_count += 1
            self._expired.append(ctx.id)

    def _expiry(self, ctx: _Context) -> float:
        if ctx.held_since is not None:
            return math.inf
        return max(ctx.voice.generated_until, ctx.last_input) + self.settings.context_timeout

    def next_due(self) -> float | None:
        """When :meth:`pop_due` next has something to do (None: only after new input)."""
        times = [t for t in (self._net.next_due(),) if t is not None]
        for ctx in self._contexts.values():
            times.append(
                min(
                    ctx.hold_until(),
                    ctx.queue[0][0] if ctx.queue else ctx.last_input if ctx.ended else self._expiry(ctx),
                )
            )
        return min(times) if times else None

    def close(self) -> None:
        """The connection ended: its contexts no longer count against the limit."""
        for ctx in list(self._contexts.values()):
            self._close(ctx, done=False)

    def statistics(self) -> TtsSessionStatistics:
        return TtsSessionStatistics(
            self._requests,
            self._opened,
            self._done,
            self._cancelled,
            self._expired_count,
            self._chunks,
            self._bytes,
            dict(sorted(self._errors.items())),
            self._net.statistics(),
        )


def _phonemes(word: SpokenWord, rate: int) -> list[tuple[str, float, float]]:
    """A word's letters as its "phonemes", sharing its sound evenly: (phoneme, start s, end s)."""
    letters = [c.lower() for c in word.text if c.isalpha()] or [word.text]
    step = (word.end - word.start) / len(letters)
    return [(p, (word.start + i * step) / rate, (word.start + (i + 1) * step) / rate) for i, p in enumerate(letters)]


def audio_of(text: str, fmt: AudioFormat) -> np.ndarray:
    """The samples the simulator makes for ``text`` in ``fmt``: what a client should receive."""
    audio, _ = synthesize(text, fmt.sample_rate)
    return from_float32(audio, fmt.encoding)
