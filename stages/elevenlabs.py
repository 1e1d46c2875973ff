"""``elevenlabs_tts``: speech from ElevenLabs input streaming (``multi-stream-input`` or ``stream-input``).

One context per utterance on ``multi-stream-input``: opened with ``" "`` and the voice settings,
text sent as whole words, ``flush`` then ``close_context`` at its end, ``close_context`` alone
on barge-in; keep-alives (``{"text": ""}``) while waiting for text from upstream. The character
alignment of each chunk (relative to that chunk) becomes word timings from the utterance's
start, which give the resume point after a lost connection. On ``stream-input`` each utterance
has a connection of its own (the service closes it after ``isFinal``). The output format is
negotiated among ``pcm_8000`` ... ``pcm_48000`` (PCM16), ``ulaw_8000`` and ``alaw_8000``.
The shell is :class:`rtstream.stages.tts.StreamingTTS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import attrs

from rtstream.caps import ANY_SIZE, Caps, StreamFormat
from rtstream.frames import SAMPLE_RATES, AudioFormat, Encoding
from rtstream.params import ParamError, param
from rtstream.registry import register
from rtstream.wire.elevenlabs import (
    MAX_CONTEXTS,
    AlignmentWords,
    Audio,
    CloseContext,
    ElevenLabsClient,
    Final,
    ServiceError,
    Text,
    connect_url,
    output_format,
)

from .tts import Dialect, Failed, Finished, Heard, Message, Reading, StreamingTTS, Timed

ENCODINGS = (Encoding.PCM_S16LE, Encoding.PCM_MULAW, Encoding.PCM_ALAW)
DEFAULT_URL = "wss://api.elevenlabs.io"
PCM_RATES = SAMPLE_RATES
"""ElevenLabs' pcm_RATE formats are rtstream's rates, 8 to 48 kHz."""
PCM = Caps((Encoding.PCM_S16LE,), PCM_RATES, (1,), (ANY_SIZE,))
ULAW = Caps((Encoding.PCM_MULAW,), (8000,), (1,), (ANY_SIZE,))
ALAW = Caps((Encoding.PCM_ALAW,), (8000,), (1,), (ANY_SIZE,))


class ElevenLabsDialect(Dialect):
    """``multi-stream-input`` (or ``stream-input``) messages for the shared TTS shell."""

    def __init__(
        self,
        fmt: AudioFormat,
        *,
        multi: bool,
        voice_settings: dict[str, Any] | None,
        sequence_field: str | None,
        max_message_bytes: int,
        max_contexts: int = MAX_CONTEXTS,
    ) -> None:
        self._max_contexts = max_contexts
        self._wire = ElevenLabsClient(multi=multi, sequence_field=sequence_field, max_message_bytes=max_message_bytes)
        self._multi = multi
        self._frame_bytes = fmt.frame_bytes
        self._rate = fmt.sample_rate
        self._voice_settings = voice_settings
        self._received: dict[str | None, int] = {}
        """Bytes of audio each context has sent (alignment times are relative to each chunk)."""
        self._words: dict[str | None, AlignmentWords] = {}
        self._open: str | None = None

    def _key(self, context: str) -> str | None:
        return context if self._multi else None

    def full(self) -> bool:
        """Every context the service allows is open (those cancelled stay open until their isFinal)."""
        return self._multi and len(self._received) >= self._max_contexts

    def start(self, context: str, text: str, now: float) -> list[Message]:
        key = self._key(context)
        self._received[key] = 0
        self._words[key] = AlignmentWords()
        self._open = context
        messages: list[Message] = [self._wire.send(Text(key, " ", voice_settings=self._voice_settings))]
        return messages + self.add(context, text, now) if text else messages

    def add(self, context: str, text: str, now: float) -> list[Message]:
        return [self._wire.send(Text(self._key(context), text))]

    def finish(self, context: str, now: float) -> list[Message]:
        key = self._key(context)
        if not self._multi:
            return [self._wire.send(CloseContext(context))]  # {"text": ""}: generate the rest and end
        return [self._wire.send(Text(key, "", flush=True)), self._wire.send(CloseContext(context))]

    def cancel(self, context: str) -> list[Message]:
        self._words.pop(self._key(context), None)
        return [self._wire.send(CloseContext(context))] if self._multi else []

    def keep_alive(self, context: str) -> list[Message]:
        return [self._wire.keep_alive(self._key(context))]

    def receive(self, message: Message, now: float) -> list[Reading]:
        response = self._wire.receive(message)
        context = response.context if not isinstance(response, ServiceError) else self._open
        if not self._multi and not isinstance(response, ServiceError):
            context = self._open
        match response:
            case Audio(_, audio, alignment, _, seq):
                readings: list[Reading] = [Heard(context, audio, seq)]
                key = self._key(context or "")
                if alignment is not None and key in self._words:
                    offset = self._received.get(key, 0) // self._frame_bytes / self._rate
                    timed = self._words[key].feed(alignment, offset)
                    if timed:
                        readings.append(Timed(context, tuple(timed)))
                if key in self._received:  # a context it opened (a stranger's audio is stale)
                    self._received[key] += len(audio)
                return readings
            case Final():
                self._received.pop(self._key(context or ""), None)
                words = self._words.pop(self._key(context or ""), None)
                rest = words.end() if words is not None else []
                return [*([Timed(context, tuple(rest))] if rest else []), Finished(context)]
            case ServiceError(_, error, _):
                return [Failed(context, error or "error")]
        return []


@register("elevenlabs_tts", klass="Source/Network")
@attrs.frozen(kw_only=True)
class ElevenLabsTTS(StreamingTTS):
    """Speech from ElevenLabs input streaming: a context per utterance, alignment as word timings, resuming."""

    name: ClassVar[str] = "elevenlabs_tts"
    produces = PCM | ULAW | ALAW

    url: str = param(DEFAULT_URL, kind="ws_url", help="The service (the simulator: '${services.NAME.url}').")
    api_key: str | None = param(
        type=str,
        optional=True,
        secret=True,
        kind="header",
        help="The xi-api-key header; write '${ELEVENLABS_API_KEY}'.",
    )
    voice_id: str = param("21m00Tcm4TlvDq8ikWAM", help="The voice.")
    model_id: str = param("eleven_flash_v2_5", help="The model.")
    endpoint: str = param(
        "multi-stream-input",
        choices=("multi-stream-input", "stream-input"),
        help="Contexts on one connection, or one connection per utterance.",
    )
    encoding: Encoding | None = param(
        type=Encoding,
        optional=True,
        help="pcm_s16le (pcm_RATE), pcm_mulaw (ulaw_8000) or pcm_alaw (alaw_8000); none lets negotiation choose.",
    )
    sample_rate: int | None = param(
        type=int, optional=True, choices=SAMPLE_RATES, unit="Hz", help="Rate to ask for; none lets negotiation choose."
    )
    stability: float | None = param(type=float, optional=True, min=0, max=1, help="voice_settings.stability.")
    similarity_boost: float | None = param(
        type=float, optional=True, min=0, max=1, help="voice_settings.similarity_boost."
    )
    speed: float | None = param(type=float, optional=True, min=0.7, max=1.2, help="voice_settings.speed.")
    inactivity_timeout: int = param(
        20, min=1, max=180, unit="s", help="The service's inactivity timeout (keep_alive must be shorter)."
    )
    auto_mode: bool = param(False, help="Ask the service to generate at once rather than buffer text (auto_mode).")
    max_contexts: int = param(
        MAX_CONTEXTS, min=1, max=100, help="Contexts the service allows open on one connection (cancelled ones count)."
    )
    sequence_field: str | None = param(
        "seq", type=str, optional=True, help="Chunk-number field to copy into AudioChunk.seq (the simulator's 'seq')."
    )

    def __attrs_post_init__(self) -> None:
        if self.encoding is not None and self.encoding not in ENCODINGS:
            raise ParamError("encoding", f"must be pcm_s16le, pcm_mulaw or pcm_alaw, got {self.encoding}")
        if self.keep_alive >= self.inactivity_timeout:
            raise ParamError(
                "keep_alive",
                f"must be shorter than inactivity_timeout ({self.inactivity_timeout} s), got {self.keep_alive:g}",
            )
        if self.encoding in (Encoding.PCM_MULAW, Encoding.PCM_ALAW) and self.sample_rate not in (None, 8000):
            raise ParamError("sample_rate", f"{self.encoding} comes at 8000 Hz only, got {self.sample_rate}")

    def output_caps(self, fmt_in: StreamFormat | None) -> Caps:
        """PCM16 at any rate ElevenLabs offers, or μ-law or A-law at 8 kHz: its output formats, no others."""
        pcm = PCM if self.sample_rate is None else PCM & Caps(rates=(self.sample_rate,))
        g711 = {Encoding.PCM_MULAW: ULAW, Encoding.PCM_ALAW: ALAW}
        if self.encoding is None:
            return pcm if self.sample_rate not in (None, 8000) else pcm | ULAW | ALAW
        return pcm if self.encoding is Encoding.PCM_S16LE else g711[self.encoding]

    def endpoint_url(self, fmt: AudioFormat) -> str:
        return connect_url(
            self.url,
            self.voice_id,
            multi=self.endpoint == "multi-stream-input",
            model_id=self.model_id,
            output_format=output_format(fmt),
            inactivity_timeout=self.inactivity_timeout,
            auto_mode=self.auto_mode,
        )

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [] if self.api_key is None else [(b"xi-api-key", self.api_key.encode())]

    def dialects(self, fmt: AudioFormat) -> Callable[[], ElevenLabsDialect]:
        settings = {
            key: value
            for key, value in (
                ("stability", self.stability),
                ("similarity_boost", self.similarity_boost),
                ("speed", self.speed),
            )
            if value is not None
        }
        return lambda: ElevenLabsDialect(
            fmt,
            multi=self.endpoint == "multi-stream-input",
            voice_settings=settings or None,
            sequence_field=self.sequence_field,
            max_message_bytes=self.max_message_bytes,
            max_contexts=self.max_contexts,
        )

    def one_stream(self) -> bool:
        return self.endpoint == "stream-input"
