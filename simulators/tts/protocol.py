"""A simulated Cartesia TTS service, sans I/O: requests in, timed response messages out.

A :class:`TtsSession` is one connection, speaking through the service side of
:mod:`rtstream.wire.cartesia`. It is fed each request message with the time it arrived and
gives back the messages to send when they are due; the server around it only moves
bytes and sleeps until :meth:`TtsSession.next_due`. Per context it keeps the text received
so far, synthesizes whole words as they arrive (everything on ``flush`` or ``continue: false``)
and schedules the audio as the chunks a generator running ``rtf`` times faster than real time
would give, after a first-byte latency. Word timestamps follow the chunk that completes the
words. The outgoing stream then goes through :class:`rtstream.simulators.netem.NetEm`.

Beyond the real protocol the simulator adds one field to every ``chunk`` message:
``"seq"`` (:data:`SEQUENCE_FIELD`), the chunk's number within its context from 0, given before
impairments, so a client can see duplicated, reordered and dropped chunks. Set
``sequence_field`` to none to leave it out.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Iterator
from typing import Any

import attrs
import numpy as np

from rtstream.audio.codec import from_float32
from rtstream.frames import AudioFormat
from rtstream.params import ParamError, param
from rtstream.stats import BoundedCounter
from rtstream.wire.cartesia import (
    BadRequest,
    CartesiaService,
    Chunk,
    Done,
    Error,
    FlushDone,
    Request,
    Response,
    Timestamps,
)

from ..netem import Impairments, NetEm, NetEmStatistics
from ..speech import synthesize

SEQUENCE_FIELD = "seq"
_EXPIRED_REMEMBERED = 1024


@attrs.frozen(kw_only=True)
class TtsSettings(Impairments):
    """How the simulated TTS service behaves: chunking, speed, limits, impairments."""

    chunking: str = param(
        "pattern",
        choices=("pattern", "random", "fixed"),
        help="Chunk sizes: the pattern cycled, random in a range, or fixed.",
    )
    pattern: tuple[int, ...] = param(
        (500, 300, 700, 200),
        type=(int,),
        min=1,
        max=1 << 20,
        unit="bytes",
        help="Chunk sizes cycled by pattern chunking.",
    )
    chunk_bytes: int = param(1000, min=1, max=1 << 20, unit="bytes", help="Chunk size for fixed chunking.")
    min_bytes: int = param(200, min=1, max=1 << 20, unit="bytes", help="Smallest chunk for random chunking.")
    max_bytes: int = param(2000, min=1, max=1 << 20, unit="bytes", help="Largest chunk for random chunking.")
    rtf: float = param(
        3.0, min=0, max=1000, help="Times faster than real time the audio is made; 0 sends it all at once."
    )
    first_byte_latency: float = param(0.1, min=0, max=60, unit="s", help="Delay before an idle context's first chunk.")
    max_contexts: int | None = param(
        type=int,
        optional=True,
        min=1,
        max=1 << 20,
        help="Concurrent contexts allowed across the server; more get a 429 error.",
    )
    context_timeout: float = param(
        1.0, gt=0, max=3600, unit="s", help="An open context expires this long after its last audio."
    )
    error_after: int | None = param(
        type=int,
        optional=True,
        min=0,
        max=1 << 31,
        help="Reply with an error (500) in place of this connection's next chunk after this many.",
    )
    sequence_field: str | None = param(
        SEQUENCE_FIELD,
        type=str,
        optional=True,
        help="Name of the chunk-number field the simulator adds; none leaves it out.",
    )
    seed: int = param(0, min=0, help="Seed of random chunk sizes and impairments (connection n uses seed + n).")

    def __attrs_post_init__(self) -> None:
        if self.min_bytes > self.max_bytes:
            raise ParamError("min_bytes", f"must not exceed max_bytes ({self.max_bytes}), got {self.min_bytes}")
        if not self.pattern:
            raise ParamError("pattern", "must list at least one chunk size")


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
    format: AudioFormat
    timestamps: bool
    sizes: Iterator[int]
    text: str = ""
    samples: int = 0
    """Samples synthesized so far."""
    generated_until: float = -float("inf")
    """When the generator finishes what it was given."""
    last_input: float = 0.0
    chunks: int = 0
    flushes: int = 0
    ended: bool = False
    queue: deque[tuple[float, Response]] = attrs.Factory(deque)
    """Responses being generated, with the time each is ready."""


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

    def __init__(self, settings: TtsSettings, *, seed: int = 0, limiter: ContextLimiter | None = None) -> None:
        self.settings = settings
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
        self._errors = BoundedCounter()

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
        self._errors.add(exc.code)
        self._net.push(self._wire.send(Error(exc.context, exc.status, exc.code, exc.title, str(exc))), now)

    def _handle(self, request: Request, now: float) -> None:
        context = request.context
        fmt, timestamps = request.generation.format, request.generation.timestamps
        transcript, keep_open, flush = request.transcript, request.more, request.flush
        if context is None:
            context = f"auto-{next(self._auto_ids)}"
        ctx = self._contexts.get(context)
        if ctx is None:
            ctx = self._open(context, fmt, timestamps, now)
        elif ctx.ended:
            raise RequestError(400, "context_closed", "Context closed", f"context {context!r} has ended", context)
        elif ctx.format != fmt:
            raise RequestError(
                400,
                "invalid_request",
                "Invalid request",
                f"context {context!r} was opened as {ctx.format}; a request cannot change it to {fmt}",
                context,
            )
        ctx.last_input = now
        ctx.text += transcript
        if keep_open and not flush:
            cut = max(ctx.text.rfind(" "), ctx.text.rfind("\n"), ctx.text.rfind("\t")) + 1
            ready_text, ctx.text = ctx.text[:cut], ctx.text[cut:]
        else:
            ready_text, ctx.text = ctx.text, ""
        self._generate(ctx, ready_text, now)
        if ctx.ended:  # the generation failed
            return
        if flush:
            ctx.flushes += 1
            self._queue(ctx, FlushDone(ctx.id, ctx.flushes))
        if not keep_open:
            ctx.ended = True
            self._queue(ctx, Done(ctx.id))

    def _open(self, context: str, fmt: AudioFormat, timestamps: bool, now: float) -> _Context:
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
        ctx = _Context(context, fmt, timestamps, self._sizes(), last_input=now)
        self._contexts[context] = ctx
        return ctx

    def _cancel(self, context: str) -> None:
        ctx = self._contexts.pop(context, None)
        if ctx is not None:
            self._cancelled += 1
            self._limiter.release()

    def _sizes(self) -> Iterator[int]:
        s = self.settings
        if s.chunking == "fixed":
            return itertools.repeat(s.chunk_bytes)
        if s.chunking == "pattern":
            return itertools.cycle(s.pattern)
        rng = self._rng
        return (rng.randint(s.min_bytes, s.max_bytes) for _ in itertools.count())

    # -- generation ----------------------------------------------------------------------------

    def _generate(self, ctx: _Context, text: str, now: float) -> None:
        if not text.split():
            return
        fmt = ctx.format
        audio, words = synthesize(text, fmt.sample_rate)
        payload = from_float32(audio, fmt.encoding).tobytes()
        s = self.settings
        start = now + s.first_byte_latency if ctx.generated_until <= now else ctx.generated_until
        bytes_per_second = fmt.sample_rate * fmt.frame_bytes
        base, rate = ctx.samples, fmt.sample_rate
        pending = list(words)
        offset = 0
        while offset < len(payload):
            size = next(ctx.sizes)
            piece = payload[offset : offset + size]
            offset += len(piece)
            ready = start + (offset / bytes_per_second / s.rtf if s.rtf else 0.0)
            ctx.generated_until = ready
            if s.error_after is not None and self._chunks >= s.error_after and not self._failed:
                self._failed = True  # one simulated failure per connection
                ctx.ended = True
                failure = Error(ctx.id, 500, "internal_error", "Internal error", "simulated generation failure")
                ctx.queue.append((ready, failure))
                return
            self._chunks += 1
            self._bytes += len(piece)
            step_time = round(len(piece) / bytes_per_second * 1000 / max(s.rtf, 1), 3)
            ctx.queue.append((ready, Chunk(ctx.id, piece, ctx.chunks, step_time)))
            ctx.chunks += 1
            covered = offset // fmt.frame_bytes
            done_words = [w for w in pending if w.end <= covered]
            if ctx.timestamps and done_words:
                del pending[: len(done_words)]
                stamps = Timestamps(
                    ctx.id,
                    tuple(w.text for w in done_words),
                    tuple((base + w.start) / rate for w in done_words),
                    tuple((base + w.end) / rate for w in done_words),
                )
                ctx.queue.append((ready, stamps))
        ctx.samples += len(audio)

    def _queue(self, ctx: _Context, response: Response) -> None:
        ready = max(ctx.generated_until, ctx.queue[-1][0] if ctx.queue else -float("inf"), ctx.last_input)
        ctx.queue.append((ready, response))

    # -- output --------------------------------------------------------------------------------

    def pop_due(self, now: float) -> list[Any]:
        """The messages due by ``now`` (strings, or :data:`rtstream.simulators.netem.DISCONNECT`)."""
        due: list[tuple[float, int, Response]] = []
        for order, ctx in enumerate(list(self._contexts.values())):
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
        return max(ctx.generated_until, ctx.last_input) + self.settings.context_timeout

    def next_due(self) -> float | None:
        """When :meth:`pop_due` next has something to do (None: only after new input)."""
        times = [t for t in (self._net.next_due(),) if t is not None]
        for ctx in self._contexts.values():
            times.append(ctx.queue[0][0] if ctx.queue else ctx.last_input if ctx.ended else self._expiry(ctx))
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
            self._errors.snapshot(),
            self._net.statistics(),
        )


def audio_of(text: str, fmt: AudioFormat) -> np.ndarray:
    """The samples the simulator makes for ``text`` in ``fmt``: what a client should receive."""
    audio, _ = synthesize(text, fmt.sample_rate)
    return from_float32(audio, fmt.encoding)
