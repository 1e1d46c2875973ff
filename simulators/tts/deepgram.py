"""A simulated Deepgram Aura streaming TTS (``/v1/speak``), sans I/O.

A :class:`DeepgramSession` is one connection, speaking through the service side of
:mod:`rtstream.wire.deepgram` with the speech, chunking and impairments every TTS simulator
shares. It sends ``Metadata`` first; it speaks each sentence once its end has arrived and the
rest on ``Flush`` (answered by ``Flushed`` after its audio), drops what is buffered and queued
on ``Clear`` (``Cleared``), and closes on ``Close``. Past ``flush_limit`` flushes in
``flush_window`` seconds a flush is ignored with a ``Warning``; so are bad JSON, wrong types,
unknown message types and text over ``max_text`` characters: the connection goes on, as
Deepgram's does. Silence past ``inactivity_timeout`` closes it (1011).
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from rtstream.params import param
from rtstream.wire import RemoteProtocolError
from rtstream.wire.deepgram import (
    FLUSH_LIMIT,
    FLUSH_WINDOW,
    MAX_TEXT,
    PATH,
    Audio,
    Clear,
    Cleared,
    Close,
    DeepgramService,
    Flush,
    Flushed,
    Metadata,
    ServiceWarning,
    Speak,
    read_handshake,
    stream_format,
)

from ..netem import NetEm, NetEmStatistics
from ..websocket import Close as CloseConnection
from .server import Refusal, SpeechServer, json_body
from .settings import TtsSettings
from .voice import Voice, chunk_sizes

INTERNAL_ERROR = 1011
_SENTENCE_END = (".", "!", "?")


@attrs.frozen(kw_only=True)
class DeepgramSettings(TtsSettings):
    """How the simulated Deepgram Aura service behaves, beyond what every TTS simulator shares."""

    flush_limit: int = param(FLUSH_LIMIT, min=1, max=10000, help="Flushes allowed per flush_window.")
    flush_window: float = param(FLUSH_WINDOW, gt=0, max=3600, unit="s", help="The window of the flush limit.")
    max_text: int = param(MAX_TEXT, min=1, max=1 << 20, help="Characters allowed in one Speak message.")
    inactivity_timeout: float = param(
        60.0, gt=0, max=3600, unit="s", help="Silence from the client after which the connection is closed (1011)."
    )


@attrs.frozen
class DeepgramStatistics:
    requests: int
    flushes: int
    flushes_refused: int
    clears: int
    chunks: int
    audio_bytes: int
    errors: dict[str, int]
    network: NetEmStatistics


class DeepgramSession:
    """One connection: :meth:`receive` messages, :meth:`pop_due` what to send (and when to close)."""

    def __init__(
        self, settings: DeepgramSettings, *, fmt: Any, model: str, request_id: str, seed: int = 0, now: float = 0.0
    ) -> None:
        self.settings = settings
        self.format = fmt
        self._rng = random.Random(seed)
        self._net = NetEm(settings.impairments(), seed)
        self._wire = DeepgramService()
        self._voice = Voice(settings, fmt.encoding.value, fmt.sample_rate, chunk_sizes(settings, self._rng))
        self._text = ""
        self._queue: deque[tuple[float, Any]] = deque()
        self._flush_times: deque[float] = deque()
        self._sequence = 0
        self._last_input = now
        self._closing = False
        self._failed = False
        self._requests = self._flushes = self._refused = self._clears = self._chunks = self._bytes = 0
        self._errors: Counter[str] = Counter()
        self._queue.append((now, Metadata(request_id, model, "2025-01-01.0", f"00000000-0000-0000-0000-{seed:012d}")))

    def receive(self, message: str | bytes, now: float) -> None:
        if self._closing:
            return
        self._requests += 1
        self._last_input = now
        try:
            request = self._wire.receive(message)
        except RemoteProtocolError as exc:
            self._warn(exc.reason.upper(), exc.detail, now)
            return
        match request:
            case Speak(text):
                if len(text) > self.settings.max_text:
                    self._warn(
                        "TEXT_TOO_LONG", f"text is {len(text)} characters, more than {self.settings.max_text}", now
                    )
                    return
                self._text += text
                cut = max(self._text.rfind(end + " ") for end in _SENTENCE_END) + 2  # past the last sentence end
                if cut > 1:
                    self._speak(self._text[:cut], now)
                    self._text = self._text[cut:]
            case Flush():
                window = self.settings.flush_window
                while self._flush_times and self._flush_times[0] <= now - window:
                    self._flush_times.popleft()
                if len(self._flush_times) >= self.settings.flush_limit:
                    self._refused += 1
                    self._warn(
                        "FLUSH_LIMIT_EXCEEDED",
                        f"more than {self.settings.flush_limit} flushes in {window:g} s; this flush is ignored",
                        now,
                    )
                    return
                self._flush_times.append(now)
                self._flushes += 1
                self._speak(self._text, now)
                self._text = ""
                self._queue.append((self._tail(now), Flushed(self._sequence)))
                self._sequence += 1
            case Clear():
                self._clears += 1
                self._text = ""
                self._queue = deque(item for item in self._queue if not isinstance(item[1], Audio | Flushed))
                self._voice.generated_until = -float("inf")
                self._queue.append((now, Cleared(self._sequence)))
            case Close():
                self._close(CloseConnection(1000, ""), now)

    def _tail(self, now: float) -> float:
        return max(now, self._queue[-1][0] if self._queue else now)

    def _speak(self, text: str, now: float) -> None:
        s = self.settings
        for piece in self._voice.speak(text, now):
            if s.error_after is not None and self._chunks >= s.error_after and not self._failed:
                self._failed = True  # one simulated failure per connection
                self._errors["internal_error"] += 1
                self._close(CloseConnection(INTERNAL_ERROR, "simulated generation failure"), piece.ready)
                return
            self._chunks += 1
            self._bytes += len(piece.audio)
            self._queue.append((piece.ready, Audio(piece.audio)))

    def _warn(self, code: str, description: str, now: float) -> None:
        self._errors[code] += 1
        self._queue.append((self._tail(now), ServiceWarning(description, code)))

    def _close(self, close: CloseConnection, now: float) -> None:
        self._closing = True
        self._queue.append((self._tail(now), close))

    def pop_due(self, now: float) -> list[Any]:
        if not self._closing and now >= self._last_input + self.settings.inactivity_timeout:
            self._close(CloseConnection(INTERNAL_ERROR, "NET-0001: no messages within the inactivity timeout"), now)
        while self._queue and self._queue[0][0] <= now:
            ready, item = self._queue.popleft()
            if isinstance(item, CloseConnection):
                self._net.push(item, ready)
            else:
                self._net.push(self._wire.send(item), ready, media=type(item) is Audio)
        return self._net.pop_due(now)

    def next_due(self) -> float | None:
        times = [t for t in (self._net.next_due(),) if t is not None]
        if self._queue:
            times.append(self._queue[0][0])
        if not self._closing:
            times.append(self._last_input + self.settings.inactivity_timeout)
        return min(times) if times else None

    def close(self) -> None:
        self._queue.clear()

    def statistics(self) -> DeepgramStatistics:
        return DeepgramStatistics(
            self._requests,
            self._flushes,
            self._refused,
            self._clears,
            self._chunks,
            self._bytes,
            dict(sorted(self._errors.items())),
            self._net.statistics(),
        )


class DeepgramServer(SpeechServer):
    """The Deepgram Aura simulator on ``/v1/speak``."""

    peer = "deepgram simulator"

    def __init__(self, settings: DeepgramSettings, *, api_key: str | None = None) -> None:
        super().__init__(settings)
        self.settings: DeepgramSettings = settings
        self._api_key = api_key

    def open(self, target: str, headers: Sequence[tuple[bytes, bytes]], number: int) -> DeepgramSession | Refusal:
        shake = read_handshake(target, headers)
        request_id = f"00000000-0000-4000-8000-{number:012d}"
        if shake.path != PATH:
            return Refusal(404, "not_found", _error("NOT_FOUND", f"no route {shake.path}; use {PATH}", request_id))
        if self._api_key is not None and shake.api_key != self._api_key:
            return Refusal(401, "unauthorized", _error("INVALID_AUTH", "Invalid credentials.", request_id))
        try:
            fmt = stream_format(shake.query)
        except ValueError as exc:
            return Refusal(400, "bad_format", _error("Bad Request", str(exc), request_id))
        return DeepgramSession(
            self.settings,
            fmt=fmt,
            model=shake.query.get("model", "aura-asteria-en"),
            request_id=request_id,
            seed=self.settings.seed + number,
            now=trio.current_time(),
        )


def _error(code: str, message: str, request_id: str) -> bytes:
    """The body of a refused handshake, in the shape of Deepgram's HTTP errors."""
    return json_body(err_code=code, err_msg=message, request_id=request_id)
