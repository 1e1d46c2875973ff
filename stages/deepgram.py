"""``deepgram_tts``: speech from Deepgram Aura's streaming TTS (``/v1/speak``).

Deepgram has no contexts: a connection is one stream, and an utterance is the text between
two flushes. The stage sends whole words as ``Speak`` messages, a ``Flush`` after each
sentence while the flush budget allows (Deepgram takes 20 per 60 s; the stage keeps two in
hand for utterance ends) and one at each utterance's end, held back until the budget allows
it. ``Flushed`` after a sentence marks its words as fully heard (the resume point after a
lost connection: the utterance resumes from the first sentence not flushed); ``Flushed``
after the end ends the utterance. Barge-in sends ``Clear``; audio until ``Cleared`` is stale.
``Warning`` messages are counted by code and the stream goes on. The output format is
negotiated among linear16 (8, 16, 24, 48 kHz), mulaw and alaw (8, 16 kHz).
The shell is :class:`rtstream.stages.tts.StreamingTTS`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import ClassVar

import attrs

from rtstream.caps import ANY_SIZE, Caps, StreamFormat
from rtstream.frames import AudioFormat, Encoding
from rtstream.params import ParamError, param
from rtstream.registry import register
from rtstream.wire.deepgram import ENCODINGS as WIRE_ENCODINGS
from rtstream.wire.deepgram import (
    FLUSH_LIMIT,
    FLUSH_WINDOW,
    RATES,
    Audio,
    Clear,
    Cleared,
    DeepgramClient,
    Flush,
    Flushed,
    ServiceWarning,
    Speak,
    auth_header,
    connect_url,
    encoding_name,
)

from .tts import Dialect, Finished, Heard, Message, Noted, Reached, Reading, StreamingTTS

ENCODINGS = (Encoding.PCM_S16LE, Encoding.PCM_MULAW, Encoding.PCM_ALAW)
DEFAULT_URL = "wss://api.deepgram.com"
_SENTENCE_END = (".", "!", "?")
SPARE_FLUSHES = 2
"""Flushes of the budget kept for utterance ends (sentence flushes only use the rest)."""


class FlushBudget:
    """At most ``limit`` flushes in any ``window`` seconds, as Deepgram allows."""

    def __init__(self, limit: int = FLUSH_LIMIT, window: float = FLUSH_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def left(self, now: float) -> int:
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        return self.limit - len(self._times)

    def next_allowed(self, now: float) -> float:
        return now if self.left(now) > 0 else self._times[0] + self.window

    def spend(self, now: float) -> None:
        self._times.append(now)


class DeepgramDialect(Dialect):
    """``/v1/speak`` messages for the shared TTS shell; the budget outlives connections (it is the account's)."""

    def __init__(self, budget: FlushBudget, *, max_message_bytes: int) -> None:
        self._wire = DeepgramClient(max_message_bytes=max_message_bytes)
        self._budget = budget
        self._current: str | None = None
        self._cleared: str | None = None
        """The context cancelled by a Clear not yet answered: audio until Cleared is its."""
        self._words = 0
        """Words sent on the current context."""
        self._flushes: dict[int, tuple[str, int, bool]] = {}
        """Flushes sent and not yet answered, by the sequence_id their Flushed will carry:
        (context, words before it, the context's end)."""
        self._sequence = 0
        self._held: str | None = None
        """A context whose end flush waits for the budget."""
        self._held_since = 0.0

    def start(self, context: str, text: str, now: float) -> list[Message]:
        self._current, self._words, self._held = context, 0, None
        return self.add(context, text, now) if text else []

    def add(self, context: str, text: str, now: float) -> list[Message]:
        """Speak the text, a sentence a message, each flushed while the budget has more than its spare."""
        messages: list[Message] = []
        sentence: list[str] = []
        for word in text.split():
            sentence.append(word)
            if word.endswith(_SENTENCE_END) and self._budget.left(now) > SPARE_FLUSHES:
                messages.append(self._wire.send(Speak(" ".join(sentence) + " ")))
                self._words += len(sentence)
                sentence = []
                messages += self._flush(context, now, end=False)
        if sentence:
            messages.append(self._wire.send(Speak(" ".join(sentence) + " ")))
            self._words += len(sentence)
        return messages

    def _flush(self, context: str, now: float, *, end: bool) -> list[Message]:
        self._budget.spend(now)
        self._flushes[self._sequence] = (context, self._words, end)
        self._sequence += 1
        return [self._wire.send(Flush())]

    def finish(self, context: str, now: float) -> list[Message]:
        if self._budget.left(now) > 0:
            return self._flush(context, now, end=True)
        self._held, self._held_since = context, now
        return []

    def next_due(self) -> float:
        return math.inf if self._held is None else self._budget.next_allowed(self._held_since)

    def due(self, now: float) -> list[Message]:
        if self._held is None or self._budget.left(now) <= 0:
            return []
        context, self._held = self._held, None
        return self._flush(context, now, end=True)

    def cancel(self, context: str) -> list[Message]:
        self._cleared, self._current, self._held = context, None, None
        self._flushes = {seq: entry for seq, entry in self._flushes.items() if entry[0] != context}
        return [self._wire.send(Clear())]

    def receive(self, message: Message, now: float) -> list[Reading]:
        response = self._wire.receive(message)
        match response:
            case Audio(audio):
                return [Heard(self._cleared or self._current, audio)]
            case Flushed(sequence_id):
                entry = self._flushes.pop(sequence_id, None)
                if entry is None or entry[0] != self._current:
                    return []  # a cancelled utterance's
                context, words, end = entry
                return [Finished(context)] if end else [Reached(context, words)]
            case Cleared():
                self._cleared = None
            case ServiceWarning(_, code):
                return [Noted(self._current, code)]
        return []


@register("deepgram_tts", klass="Source/Network")
@attrs.frozen(kw_only=True)
class DeepgramTTS(StreamingTTS):
    """Speech from Deepgram Aura's streaming TTS: flushes within the rate limit, Clear on barge-in, resuming."""

    name: ClassVar[str] = "deepgram_tts"
    produces = Caps.union(
        structure
        for name, encoding in WIRE_ENCODINGS.items()
        for structure in Caps((encoding,), RATES[name], (1,), (ANY_SIZE,)).structures
    )

    url: str = param(DEFAULT_URL, kind="ws_url", help="The service (the simulator: '${services.NAME.url}').")
    api_key: str | None = param(
        type=str,
        optional=True,
        secret=True,
        kind="header",
        help="Sent as 'Authorization: Token ...'; write '${DEEPGRAM_API_KEY}'.",
    )
    model: str = param("aura-2-thalia-en", help="The Aura voice model.")
    encoding: Encoding | None = param(
        type=Encoding,
        optional=True,
        help="pcm_s16le (linear16), pcm_mulaw (mulaw) or pcm_alaw (alaw); none lets negotiation choose.",
    )
    sample_rate: int | None = param(
        type=int,
        optional=True,
        choices=(8000, 16000, 24000, 48000),
        unit="Hz",
        help="Rate to ask for; none lets negotiation choose.",
    )
    flush_limit: int = param(FLUSH_LIMIT, min=1, max=10000, help="Flushes the service allows per flush_window.")
    flush_window: float = param(FLUSH_WINDOW, gt=0, max=3600, unit="s", help="The window of the flush limit.")

    def __attrs_post_init__(self) -> None:
        if self.encoding is not None and self.encoding not in ENCODINGS:
            raise ParamError("encoding", f"must be pcm_s16le, pcm_mulaw or pcm_alaw, got {self.encoding}")
        if self.encoding is not None and self.sample_rate is not None:
            rates = RATES[encoding_name(self.encoding)]
            if self.sample_rate not in rates:
                listed = " or ".join(map(str, rates))
                raise ParamError("sample_rate", f"{self.encoding} comes at {listed} Hz, got {self.sample_rate}")

    def output_caps(self, fmt_in: StreamFormat | None) -> Caps:
        """linear16 at 8, 16, 24 or 48 kHz, mulaw or alaw at 8 or 16 kHz: Aura's formats that rtstream handles."""
        allowed = [
            Caps((encoding,), (self.sample_rate,) if self.sample_rate else RATES[name], (1,), (ANY_SIZE,))
            for name, encoding in WIRE_ENCODINGS.items()
            if self.encoding in (None, encoding) and self.sample_rate in (None, *RATES[name])
        ]
        return Caps.union(structure for caps in allowed for structure in caps.structures)

    def endpoint_url(self, fmt: AudioFormat) -> str:
        return connect_url(self.url, model=self.model, fmt=fmt)

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [] if self.api_key is None else [auth_header(self.api_key)]

    def dialects(self, fmt: AudioFormat) -> Callable[[], DeepgramDialect]:
        budget = FlushBudget(self.flush_limit, self.flush_window)  # the account's, across the run's connections
        return lambda: DeepgramDialect(budget, max_message_bytes=self.max_message_bytes)
