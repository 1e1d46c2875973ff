"""A simulated ElevenLabs input-streaming service (``multi-stream-input`` and ``stream-input``), sans I/O.

An :class:`ElevenLabsSession` is one connection, speaking through the service side of
:mod:`rtstream.wire.elevenlabs` with the speech, chunking and impairments every TTS simulator
shares (:mod:`rtstream.simulators.tts.voice`). Per context it buffers text and generates it the
way ElevenLabs does: once the buffer holds the next ``chunk_length_schedule`` count of
characters (at a word boundary), on ``flush``, at the end of the input, or at once with
``auto_mode``. Each audio message carries the alignment of the words that begin in it (times
relative to the chunk, as ElevenLabs sends them). ``close_context`` drops text not yet flushed
and ends the context with ``isFinal`` after the audio already made. Refusals (bad JSON, wrong
types, a sixth context, no key, inactivity past ``inactivity_timeout``) are an error message
and a close with 1008, as the service does.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import attrs
import trio

from rtstream.params import param
from rtstream.wire.elevenlabs import (
    MAX_CONTEXTS,
    OUTPUT_FORMATS,
    POLICY_VIOLATION,
    Alignment,
    Audio,
    BadRequest,
    CloseContext,
    CloseSocket,
    ElevenLabsService,
    Final,
    ServiceError,
    Text,
    read_handshake,
)

from ..netem import NetEm, NetEmStatistics
from ..websocket import Close
from .server import Refusal, SpeechServer, json_body
from .settings import TtsSettings
from .voice import Piece, Voice, chunk_sizes

INTERNAL_ERROR = 1011


@attrs.frozen(kw_only=True)
class ElevenLabsSettings(TtsSettings):
    """How the simulated ElevenLabs service behaves, beyond what every TTS simulator shares."""

    contexts_per_connection: int = param(
        MAX_CONTEXTS, min=1, max=100, help="Contexts open at once on one multi-stream-input connection."
    )
    inactivity_timeout: float = param(
        20.0, gt=0, max=180, unit="s", help="Silence from the client after which the connection is closed (1008)."
    )
    chunk_length_schedule: tuple[int, ...] = param(
        (120, 160, 250, 290),
        type=(int,),
        min=1,
        help="Characters buffered before each generation (the last one repeats); auto_mode skips it.",
    )


@attrs.define
class _Context:
    id: str | None
    voice: Voice
    text: str = ""
    generations: int = 0
    closed: bool = False
    queue: deque[tuple[float, Any]] = attrs.Factory(deque)


@attrs.frozen
class ElevenLabsStatistics:
    requests: int
    contexts_opened: int
    contexts_closed: int
    keep_alives: int
    flushes: int
    chunks: int
    audio_bytes: int
    errors: dict[str, int]
    network: NetEmStatistics


class ElevenLabsSession:
    """One connection: :meth:`receive` messages, :meth:`pop_due` what to send (and when to close)."""

    def __init__(
        self,
        settings: ElevenLabsSettings,
        *,
        multi: bool,
        output_format: str,
        api_key: str | None = None,
        authorized: bool = True,
        inactivity_timeout: float | None = None,
        auto_mode: bool = False,
        seed: int = 0,
        now: float = 0.0,
    ) -> None:
        self.settings = settings
        self.multi = multi
        self.format = OUTPUT_FORMATS[output_format]
        self._api_key = api_key
        self._authorized = authorized
        """The handshake carried the right key (else the first message must)."""
        self._timeout = inactivity_timeout or settings.inactivity_timeout
        self._auto = auto_mode
        self._rng = random.Random(seed)
        self._net = NetEm(settings.impairments(), seed)
        self._wire = ElevenLabsService(multi=multi, sequence_field=settings.sequence_field)
        self._contexts: dict[str | None, _Context] = {}
        self._last_input = now
        self._closing = False
        self._close: tuple[float, Close] | None = None
        self._chunks = self._bytes = self._requests = self._opened = self._closed = 0
        self._keep_alives = self._flushes = 0
        self._failed = False
        self._errors: Counter[str] = Counter()

    # -- input ---------------------------------------------------------------------------------

    def receive(self, message: str | bytes, now: float) -> None:
        if self._closing:
            return
        self._requests += 1
        self._last_input = now
        try:
            request = self._wire.receive(message)
        except BadRequest as exc:
            self._refuse("invalid_request" if exc.reason != "bad_json" else "invalid_json", exc.detail, now)
            return
        if not self._authorized:
            if not isinstance(request, Text) or request.api_key != self._api_key:
                self._refuse("invalid_api_key", "Invalid API key", now)
                return
            self._authorized = True
        match request:
            case CloseSocket():
                for ctx in self._contexts.values():
                    self._end(ctx, now)
                self._queue_close(Close(1000, ""), now)
            case CloseContext(context):
                closing = self._contexts.get(context)
                if closing is not None:
                    self._end(closing, now)
            case Text():
                self._text(request, now)

    def _text(self, request: Text, now: float) -> None:
        ctx = self._contexts.get(request.context)
        if ctx is None or ctx.closed:
            if ctx is None and len(self._contexts) >= self.settings.contexts_per_connection:
                self._refuse(
                    "max_active_conversations",
                    f"Maximum simultaneous contexts per WebSocket connection exceeded "
                    f"({self.settings.contexts_per_connection}). Please close an existing context before "
                    "opening a new one.",
                    now,
                )
                return
            ctx = self._open(request, now)
        if not request.text and not request.flush:
            if self.multi:
                self._keep_alives += 1
            else:  # the end of stream-input's one stream
                self._speak(ctx, ctx.text, now)
                ctx.text = ""
                self._end(ctx, now)
                self._queue_close(Close(1000, ""), now)
            return
        ctx.text += request.text
        if request.flush:
            self._flushes += 1
            ready, ctx.text = ctx.text, ""
        else:
            cut = max(ctx.text.rfind(" "), ctx.text.rfind("\n")) + 1
            schedule = self.settings.chunk_length_schedule
            if not self._auto and len(ctx.text[:cut].strip()) < schedule[min(ctx.generations, len(schedule) - 1)]:
                return
            ready, ctx.text = ctx.text[:cut], ctx.text[cut:]
        self._speak(ctx, ready, now)

    def _open(self, request: Text, now: float) -> _Context:
        self._opened += 1
        speed = (request.voice_settings or {}).get("speed") or 1.0
        voice = Voice(
            self.settings,
            self.format.encoding.value,
            self.format.sample_rate,
            chunk_sizes(self.settings, self._rng),
            speed=float(speed),
        )
        ctx = _Context(request.context, voice)
        self._contexts[request.context] = ctx
        return ctx

    def _end(self, ctx: _Context, now: float) -> None:
        """No more text for the context: what is not flushed is dropped; Final after the audio made."""
        if ctx.closed:
            return
        ctx.closed = True
        ctx.text = ""
        self._closed += 1
        ready = max(now, ctx.queue[-1][0] if ctx.queue else now)
        ctx.queue.append((ready, Final(ctx.id)))

    def _speak(self, ctx: _Context, text: str, now: float) -> None:
        rate = self.format.sample_rate
        pieces = ctx.voice.speak(text, now)
        if pieces:
            ctx.generations += 1
        for piece in pieces:
            s = self.settings
            if s.error_after is not None and self._chunks >= s.error_after and not self._failed:
                self._failed = True  # one simulated failure per connection
                self._errors["internal_error"] += 1
                ctx.queue.append((piece.ready, ServiceError("simulated generation failure", "internal_error", 1011)))
                ctx.queue.append((piece.ready, Close(INTERNAL_ERROR, "simulated generation failure")))
                self._closing = True
                return
            self._chunks += 1
            self._bytes += len(piece.audio)
            alignment = _alignment(piece, rate)
            ctx.queue.append((piece.ready, Audio(ctx.id, piece.audio, alignment, alignment, piece.number)))

    def _refuse(self, code: str, message: str, now: float) -> None:
        self._errors[code] += 1
        self._net.push(self._wire.send(ServiceError(message, code, POLICY_VIOLATION)), now)
        self._queue_close(Close(POLICY_VIOLATION, message[:120]), now)

    def _queue_close(self, close: Close, now: float) -> None:
        """Close the connection once every message queued so far has gone."""
        self._closing = True
        ready = max([now, *(ctx.queue[-1][0] for ctx in self._contexts.values() if ctx.queue)])
        self._close = (ready, close)

    # -- output --------------------------------------------------------------------------------

    def pop_due(self, now: float) -> list[Any]:
        if not self._closing and now >= self._last_input + self._timeout:
            self._refuse(
                "input_timeout_exceeded",
                f"Have not received a new text input within the timeout of {self._timeout:g} seconds. "
                "Streaming input terminated.",
                self._last_input + self._timeout,
            )
        due: list[tuple[float, int, Any]] = []
        for order, (key, ctx) in enumerate(list(self._contexts.items())):
            while ctx.queue and ctx.queue[0][0] <= now:
                ready, item = ctx.queue.popleft()
                due.append((ready, order, item))
            if ctx.closed and not ctx.queue:
                del self._contexts[key]
        due.sort(key=lambda item: (item[0], item[1]))
        if self._close is not None and self._close[0] <= now and not any(c.queue for c in self._contexts.values()):
            due.append((self._close[0], 0, self._close[1]))
            self._close = None
        for ready, _, item in due:
            if isinstance(item, Close):
                self._net.push(item, ready)
            else:
                self._net.push(self._wire.send(item), ready, media=type(item) is Audio)
        return self._net.pop_due(now)

    def next_due(self) -> float | None:
        times = [t for t in (self._net.next_due(),) if t is not None]
        times += [ctx.queue[0][0] for ctx in self._contexts.values() if ctx.queue]
        if self._close is not None:
            times.append(self._close[0])
        if not self._closing:
            times.append(self._last_input + self._timeout)
        return min(times) if times else None

    def close(self) -> None:
        self._contexts.clear()

    def statistics(self) -> ElevenLabsStatistics:
        return ElevenLabsStatistics(
            self._requests,
            self._opened,
            self._closed,
            self._keep_alives,
            self._flushes,
            self._chunks,
            self._bytes,
            dict(sorted(self._errors.items())),
            self._net.statistics(),
        )


def _alignment(piece: Piece, rate: int) -> Alignment | None:
    """The characters of the words that begin in ``piece`` (each followed by a space), in ms from its start."""
    if not piece.started:
        return None
    chars: list[str] = []
    starts: list[int] = []
    durations: list[int] = []

    def ms(samples: float) -> int:
        return round(samples / rate * 1000)

    for word in piece.started:
        step = (word.end - word.start) / len(word.text)
        for i, char in enumerate(word.text):
            chars.append(char)
            starts.append(ms(word.start + i * step - piece.start))
            durations.append(ms(word.start + (i + 1) * step - piece.start) - starts[-1])
        chars.append(" ")
        starts.append(ms(word.end - piece.start))
        durations.append(0)
    return Alignment(tuple(chars), tuple(starts), tuple(durations))


class ElevenLabsServer(SpeechServer):
    """The ElevenLabs simulator: ``/v1/text-to-speech/{voice_id}/multi-stream-input`` and ``.../stream-input``."""

    peer = "elevenlabs simulator"

    def __init__(self, settings: ElevenLabsSettings, *, api_key: str | None = None) -> None:
        super().__init__(settings)
        self.settings: ElevenLabsSettings = settings
        self._api_key = api_key

    def open(self, target: str, headers: Sequence[tuple[bytes, bytes]], number: int) -> ElevenLabsSession | Refusal:
        shake = read_handshake(target, headers)
        if shake is None:
            path = urlsplit(target).path
            return Refusal(404, "not_found", json_body(detail={"status": "not_found", "message": f"no route {path}"}))
        if self._api_key is not None and shake.api_key is not None and shake.api_key != self._api_key:
            return Refusal(401, "unauthorized", _detail("invalid_api_key", "Invalid API key"))
        name = shake.query.get("output_format", "mp3_44100_128")
        if name not in OUTPUT_FORMATS:
            detail = f"output_format {name!r} is not supported here; use one of {', '.join(OUTPUT_FORMATS)}"
            return Refusal(400, "bad_output_format", _detail("invalid_output_format", detail))
        timeout = shake.query.get("inactivity_timeout")
        if timeout is not None and not (timeout.isdigit() and 1 <= int(timeout) <= 180):
            detail = f"inactivity_timeout must be a whole number of seconds from 1 to 180, got {timeout!r}"
            return Refusal(400, "bad_inactivity_timeout", _detail("invalid_parameters", detail))
        return ElevenLabsSession(
            self.settings,
            multi=shake.multi,
            output_format=name,
            api_key=self._api_key,
            authorized=self._api_key is None or shake.api_key is not None,
            inactivity_timeout=float(timeout) if timeout else None,
            auto_mode=shake.query.get("auto_mode") == "true",
            seed=self.settings.seed + number,
            now=trio.current_time(),
        )


def _detail(status: str, message: str) -> bytes:
    """The body of a refused handshake, in the shape of ElevenLabs' HTTP errors."""
    return json_body(detail={"status": status, "message": message})
