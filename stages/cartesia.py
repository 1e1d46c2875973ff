"""``cartesia_tts``: speech from a Cartesia-protocol TTS WebSocket (the real service or the simulator).

API 2026-03-01 through :mod:`rtstream.wire.cartesia`. Each utterance is spoken on a context of
its own: its text is sent with speech tags stripped, ``chunk_words`` words a request
(``continue: true``), or as it comes from upstream (filter mode), and the context ends with an
empty ``continue: false`` request; a barge-in (``Clear``) sends ``cancel``. The key goes as
``X-API-Key``, ``Authorization: Bearer`` or ``?api_key=`` (``auth``), the version as
``Cartesia-Version``. ``pcm_s32le`` and ``pcm_f16le`` (``transport``) are asked for and turned
into PCM16 and float32 on arrival. Responses become frames: audio (the chunks one socket read
brings merged, ``seq`` from the simulator's sequence field when present, renumbered so merged
chunks leave no hole), ``WordTimings`` from the timestamps once their audio has
arrived; after a lost connection or an error reply the utterance resumes on a new context from
the first word whose audio had not all arrived. The shell is
:class:`rtstream.stages.tts.StreamingTTS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import attrs

from rtstream.audio.payload import TransportDecoder
from rtstream.caps import ANY_SIZE, Caps, StreamFormat
from rtstream.frames import SAMPLE_RATES, AudioFormat, Encoding
from rtstream.params import ParamError, param
from rtstream.registry import register
from rtstream.wire.cartesia import (
    AUTH_MODES,
    SPEEDS,
    TRANSPORTS,
    VERSION,
    Cancel,
    CartesiaClient,
    Chunk,
    Done,
    Error,
    Generation,
    Request,
    Timestamps,
    handshake,
)

from .tts import Dialect, Failed, Finished, Heard, Message, Noted, Reading, StreamingTTS, Timed

DEFAULT_URL = "wss://api.cartesia.ai/tts/websocket"


class CartesiaDialect(Dialect):
    """Cartesia's requests and responses for the shared TTS shell."""

    def __init__(
        self, generation: Generation, *, chunk_words: int, sequence_field: str | None, max_message_bytes: int
    ) -> None:
        self._wire = CartesiaClient(sequence_field=sequence_field, max_message_bytes=max_message_bytes)
        self._generation = generation
        self._chunk_words = chunk_words
        self._decoders: dict[str, TransportDecoder] = {}

    def _request(self, context: str, transcript: str, *, more: bool = True) -> str:
        return self._wire.send(Request(context=context, transcript=transcript, generation=self._generation, more=more))

    def start(self, context: str, text: str, now: float) -> list[Message]:
        if self._generation.transport is not None:
            delivered, wire_dtype = TRANSPORTS[self._generation.transport]
            self._decoders[context] = TransportDecoder(wire_dtype, delivered)
        return self.add(context, text, now) if text else []

    def add(self, context: str, text: str, now: float) -> list[Message]:
        words = text.split()
        step = self._chunk_words or len(words)
        return [self._request(context, " ".join(words[i : i + step]) + " ") for i in range(0, len(words), step)]

    def finish(self, context: str, now: float) -> list[Message]:
        return [self._request(context, "", more=False)]

    def cancel(self, context: str) -> list[Message]:
        self._decoders.pop(context, None)
        return [self._wire.send(Cancel(context))]

    def receive(self, message: Message, now: float) -> list[Reading]:
        response = self._wire.receive(message)
        context = response.context
        if type(response) is Chunk:  # most messages: no pattern matching
            decoder = self._decoders.get(context or "") if self._decoders else None
            audio = response.audio
            return [Heard(context, decoder.feed(audio) if decoder else audio, response.seq)]
        match response:
            case Timestamps(_, words, starts, ends):
                return [Timed(context, tuple(zip(words, starts, ends, strict=True)))]
            case Done():
                self._decoders.pop(context or "", None)
                return [Finished(context)]
            case Error(_, _, code, title):
                if context is None:  # about the connection, not a context: counted, the utterance goes on
                    return [Noted(context, code or title or "error")]
                return [Failed(context, code or title or "error")]
        return []  # flush_done, phoneme_timestamps


@register("cartesia_tts", klass="Source/Network")
@attrs.frozen(kw_only=True)
class CartesiaTTS(StreamingTTS):
    """Speech from a Cartesia-protocol TTS WebSocket, one context per utterance, resuming after drops."""

    name: ClassVar[str] = "cartesia_tts"
    produces = Caps(tuple(Encoding), SAMPLE_RATES, (1,), (ANY_SIZE,))

    url: str = param(DEFAULT_URL, kind="ws_url", help="The TTS WebSocket (the simulator: '${services.NAME.url}').")
    api_key: str | None = param(
        type=str, optional=True, secret=True, kind="header", help="API key; write '${CARTESIA_API_KEY}'."
    )
    auth: str = param(
        "header", choices=AUTH_MODES, help="How the key goes: X-API-Key header, Authorization: Bearer, or ?api_key=."
    )
    version: str = param(VERSION, kind="header", help="The Cartesia-Version header.")
    model_id: str = param("sonic-3", help="The TTS model.")
    voice_id: str = param("a0e99841-438c-4a64-b679-ae501e7d6091", help="The voice (by id).")
    language: str = param("en", help="Language of the transcript.")
    encoding: Encoding | None = param(
        type=Encoding, optional=True, help="Encoding to ask for; none lets negotiation choose."
    )
    transport: str | None = param(
        type=str,
        optional=True,
        choices=tuple(TRANSPORTS),
        help="Ask for pcm_s32le (delivered as pcm_s16le) or pcm_f16le (as pcm_f32le) instead of encoding.",
    )
    sample_rate: int | None = param(
        type=int, optional=True, choices=SAMPLE_RATES, unit="Hz", help="Rate to ask for; none lets negotiation choose."
    )
    timestamps: bool = param(True, help="Ask for word timestamps (WordTimings frames; exact resume points).")
    speed: str | None = param(type=str, optional=True, choices=tuple(SPEEDS), help="slow, normal or fast.")
    max_buffer_delay_ms: int | None = param(
        type=int, optional=True, min=0, max=5000, unit="ms", help="How long the service may hold text back for context."
    )
    chunk_words: int = param(
        0, min=0, max=1000, help="Send the text this many words per request (continue: true); 0 sends it whole."
    )
    sequence_field: str | None = param(
        "seq", type=str, optional=True, help="Chunk-number field to copy into AudioChunk.seq (the simulator's 'seq')."
    )

    def __attrs_post_init__(self) -> None:
        if self.transport is not None and self.encoding not in (None, TRANSPORTS[self.transport][0]):
            raise ParamError(
                "transport", f"{self.transport} arrives as {TRANSPORTS[self.transport][0]}, not {self.encoding}"
            )

    def output_caps(self, fmt_in: StreamFormat | None) -> Caps:
        encoding = TRANSPORTS[self.transport][0] if self.transport else self.encoding
        return Caps(
            (encoding,) if encoding else tuple(Encoding),
            (self.sample_rate,) if self.sample_rate else SAMPLE_RATES,
            (1,),
            (ANY_SIZE,),
        )

    def _handshake(self) -> tuple[str, list[tuple[bytes, bytes]]]:
        return handshake(self.url, api_key=self.api_key, version=self.version, auth=self.auth)

    def endpoint_url(self, fmt: AudioFormat) -> str:
        return self._handshake()[0]

    def headers(self) -> list[tuple[bytes, bytes]]:
        return self._handshake()[1]

    def dialects(self, fmt: AudioFormat) -> Callable[[], CartesiaDialect]:
        generation = Generation(
            model_id=self.model_id,
            voice_id=self.voice_id,
            format=fmt,
            language=self.language,
            timestamps=self.timestamps,
            max_buffer_delay_ms=self.max_buffer_delay_ms,
            speed=self.speed,
            transport=self.transport,
        )
        return lambda: CartesiaDialect(
            generation,
            chunk_words=self.chunk_words,
            sequence_field=self.sequence_field,
            max_message_bytes=self.max_message_bytes,
        )
