"""The Cartesia TTS WebSocket, sans I/O: the client (``cartesia_tts``) and the service (the simulator).

API version 2026-03-01. The client sends :class:`Request` and :class:`Cancel` and reads the
responses :class:`Chunk`, :class:`Timestamps`, :class:`PhonemeTimestamps`, :class:`FlushDone`,
:class:`Done` and :class:`Error`; the service does the inverse. All frames are JSON text. A
request's voice, model, output format and options are a :class:`Generation`. The service side
ignores request fields it does not know, as Cartesia does, and refuses known values it cannot
honour (another container, a voice by embedding, a rate or encoding not listed) with a
:class:`BadRequest`. The opening handshake is :func:`handshake` (client) and
:func:`read_handshake` (service): the key by ``X-API-Key``, ``Authorization: Bearer`` (what the
official SDK sends) or ``?api_key=``, the version by ``Cartesia-Version`` or
``?cartesia_version=`` (the query wins).

``pcm_s32le`` and ``pcm_f16le`` are transport encodings: a :class:`Generation` with
``transport`` set asks for one of them and delivers its ``format`` (PCM16 or float32), the
samples converted on arrival (:data:`TRANSPORTS`).

Beyond the real protocol the simulator numbers its chunks in a field of its own
(``sequence_field``, ``"seq"`` by default); both sides take that field's name, or None.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeAlias
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import attrs

from rtstream.frames import SAMPLE_RATES, AudioFormat, Encoding

from ._json import base64_payload, load_object
from .errors import RemoteProtocolError

VERSION = "2026-03-01"
TRANSPORTS: dict[str, tuple[Encoding, str]] = {
    "pcm_s32le": (Encoding.PCM_S16LE, "<i4"),
    "pcm_f16le": (Encoding.PCM_F32LE, "<f2"),
}
"""Wire encodings rtstream converts on arrival: name -> (the encoding delivered, the wire's numpy dtype)."""
ENCODINGS = (*(e.value for e in Encoding), *TRANSPORTS)
SPEEDS = {"slow": 0.8, "normal": 1.0, "fast": 1.25}
"""``speed`` as the API names it, and the pace factor the simulator gives each."""
AUTH_MODES = ("header", "bearer", "query")
"""How a client sends its key: ``X-API-Key``, ``Authorization: Bearer``, or ``?api_key=``."""


# -- the opening handshake ---------------------------------------------------------------------------


def handshake(
    url: str, *, api_key: str | None, version: str, auth: str = "header"
) -> tuple[str, list[tuple[bytes, bytes]]]:
    """The URL and headers a client opens the connection with (``auth`` one of :data:`AUTH_MODES`)."""
    headers = [(b"Cartesia-Version", version.encode())]
    if api_key is None:
        return url, headers
    if auth == "query":
        parts = urlsplit(url)
        query = f"{parts.query}&" if parts.query else ""
        return urlunsplit(parts._replace(query=query + urlencode({"api_key": api_key}))), headers
    if auth == "bearer":
        return url, [*headers, (b"Authorization", b"Bearer " + api_key.encode())]
    return url, [*headers, (b"X-API-Key", api_key.encode())]


@attrs.frozen
class Handshake:
    """What a connection request carries: the key and the API version, each None when absent."""

    api_key: str | None
    version: str | None


def read_handshake(target: str, headers: Iterable[tuple[bytes, bytes]]) -> Handshake:
    """The key and version of a connection request (path with query, and its headers); the query wins."""
    key = version = None
    for name, value in headers:
        lower = name.lower()
        if lower == b"x-api-key":
            key = value.decode("latin-1")
        elif lower == b"authorization" and value[:7].lower() == b"bearer ":
            key = key or value[7:].decode("latin-1").strip()
        elif lower == b"cartesia-version":
            version = value.decode("latin-1")
    query = parse_qs(urlsplit(target).query)
    key = query["api_key"][0] if "api_key" in query else key
    version = query["cartesia_version"][0] if "cartesia_version" in query else version
    return Handshake(key, version)


# -- requests -------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Generation:
    """What every request of a context asks for: model, voice, language, output format, timestamps."""

    model_id: str
    voice_id: str
    format: AudioFormat
    language: str | None = None
    timestamps: bool = False
    """``add_timestamps``: word timestamps follow the audio."""
    phoneme_timestamps: bool = False
    """``add_phoneme_timestamps``: phoneme timestamps follow the audio."""
    max_buffer_delay_ms: int | None = None
    """How long the service may hold text back to gather context (0 to 5000; None: it starts at once)."""
    speed: str | None = None
    """``slow``, ``normal`` or ``fast`` (:data:`SPEEDS`); None leaves the service's default."""
    transport: str | None = attrs.field(default=None)
    """A wire encoding of :data:`TRANSPORTS` to ask for in place of ``format.encoding``."""

    @transport.validator
    def _check_transport(self, _attribute: attrs.Attribute, value: str | None) -> None:
        if value is not None and TRANSPORTS[value][0] is not self.format.encoding:
            raise ValueError(f"{value} arrives as {TRANSPORTS[value][0]}, not {self.format.encoding}")

    @property
    def wire_encoding(self) -> str:
        """The encoding named on the wire."""
        return self.transport or self.format.encoding.value


@attrs.frozen(kw_only=True)
class Request:
    """Text for a context; ``more`` (Cartesia's ``continue``) keeps the context open for more text."""

    context: str | None
    transcript: str
    generation: Generation
    more: bool = False
    flush: bool = False
    """Generate what the context holds now; answered by :class:`FlushDone`."""


@attrs.frozen
class Cancel:
    """Stop generating for a context (barge-in)."""

    context: str


# -- responses ------------------------------------------------------------------------------------


@attrs.frozen
class Chunk:
    context: str | None
    audio: bytes
    seq: int | None = None
    """The simulator's chunk number within the context (see the module docstring)."""
    step_time: float | None = None
    flush_id: int | None = None
    """The flush this audio belongs to (1 for the first), once the context has seen a flush."""


@attrs.frozen
class Timestamps:
    """Words of a context with their start and end times, in seconds from the context's start."""

    context: str | None
    words: tuple[str, ...]
    start: tuple[float, ...]
    end: tuple[float, ...]
    flush_id: int | None = None


@attrs.frozen
class PhonemeTimestamps:
    """Phonemes of a context with their start and end times, in seconds from the context's start."""

    context: str | None
    phonemes: tuple[str, ...]
    start: tuple[float, ...]
    end: tuple[float, ...]
    flush_id: int | None = None


@attrs.frozen
class FlushDone:
    context: str | None
    flush_id: int | None = None


@attrs.frozen
class Done:
    context: str | None


@attrs.frozen
class Error:
    """The service refused a request or failed; it ends the context."""

    context: str | None
    status_code: int | None = None
    error_code: str | None = None
    title: str | None = None
    message: str | None = None
    doc_url: str | None = None
    request_id: str | None = None
    """The connection's id, as the service names it."""


Response: TypeAlias = Chunk | Timestamps | PhonemeTimestamps | FlushDone | Done | Error


class BadRequest(RemoteProtocolError):
    """A request the service refuses, with the context it named (for the error reply)."""

    def __init__(self, reason: str, detail: str, context: str | None = None) -> None:
        super().__init__(reason, detail)
        self.context = context


# -- the client -----------------------------------------------------------------------------------


def _int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class CartesiaClient:
    """The client's side: requests out, responses in (messages over ``max_message_bytes`` are refused)."""

    def __init__(self, *, sequence_field: str | None = None, max_message_bytes: int = 1 << 20) -> None:
        self.sequence_field = sequence_field
        self.max_message_bytes = max_message_bytes

    def send(self, request: Request | Cancel) -> str:
        if isinstance(request, Cancel):
            return json.dumps({"context_id": request.context, "cancel": True})
        g = request.generation
        message: dict[str, Any] = {"model_id": g.model_id, "voice": {"mode": "id", "id": g.voice_id}}
        if g.language is not None:
            message["language"] = g.language
        message["output_format"] = {
            "container": "raw",
            "encoding": g.wire_encoding,
            "sample_rate": g.format.sample_rate,
        }
        message["add_timestamps"] = g.timestamps
        if g.phoneme_timestamps:
            message["add_phoneme_timestamps"] = True
        if g.max_buffer_delay_ms is not None:
            message["max_buffer_delay_ms"] = g.max_buffer_delay_ms
        if g.speed is not None:
            message["speed"] = g.speed
        message["transcript"] = request.transcript
        message["context_id"] = request.context
        message["continue"] = request.more
        if request.flush:
            message["flush"] = True
        return json.dumps(message)

    def receive(self, message: str | bytes) -> Response:
        if not isinstance(message, bytes) and len(message) > self.max_message_bytes:
            raise RemoteProtocolError("oversize", f"{len(message)} characters, more than {self.max_message_bytes}")
        data = load_object(message, "type")
        parse = self._PARSERS.get(data["type"])
        if parse is None:
            raise RemoteProtocolError("unknown_event", f"type {data['type']!r}")
        context = data.get("context_id")
        if context is not None and not isinstance(context, str):
            raise RemoteProtocolError("bad_shape", "context_id must be a string")
        return parse(self, data, context)

    def _chunk(self, data: dict[str, Any], context: str | None) -> Response:
        step = data.get("step_time")
        return Chunk(
            context,
            base64_payload(data, "data"),
            _int(data, self.sequence_field) if self.sequence_field else None,
            float(step) if isinstance(step, int | float) and not isinstance(step, bool) else None,
            _int(data, "flush_id"),
        )

    def _timestamps(self, data: dict[str, Any], context: str | None) -> Response:
        words, starts, ends = _timed(data, "word_timestamps", "words")
        return Timestamps(context, words, starts, ends, _int(data, "flush_id"))

    def _phoneme_timestamps(self, data: dict[str, Any], context: str | None) -> Response:
        phonemes, starts, ends = _timed(data, "phoneme_timestamps", "phonemes")
        return PhonemeTimestamps(context, phonemes, starts, ends, _int(data, "flush_id"))

    def _flush_done(self, data: dict[str, Any], context: str | None) -> Response:
        return FlushDone(context, _int(data, "flush_id"))

    def _done(self, data: dict[str, Any], context: str | None) -> Response:
        return Done(context)

    def _error(self, data: dict[str, Any], context: str | None) -> Response:
        def field(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) else None

        return Error(
            context,
            _int(data, "status_code"),
            field("error_code"),
            field("title"),
            field("message"),
            field("doc_url"),
            field("request_id"),
        )

    _PARSERS: ClassVar[dict[str, Callable[[CartesiaClient, dict[str, Any], str | None], Response]]] = {
        "chunk": _chunk,
        "timestamps": _timestamps,
        "phoneme_timestamps": _phoneme_timestamps,
        "flush_done": _flush_done,
        "done": _done,
        "error": _error,
    }


def _timed(data: dict[str, Any], key: str, items: str) -> tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...]]:
    """The names, starts and ends of a timestamps object (``bad_timestamps`` unless all alike)."""
    stamps = data.get(key)
    try:
        names, starts, ends = stamps[items], stamps["start"], stamps["end"]  # type: ignore[index]  # bad_timestamps
        if not (isinstance(names, list) and len(names) == len(starts) == len(ends)):
            raise TypeError
        if not all(isinstance(w, str) for w in names):
            raise TypeError
        return tuple(names), tuple(map(_seconds, starts)), tuple(map(_seconds, ends))
    except (TypeError, KeyError, ValueError):
        raise RemoteProtocolError("bad_timestamps", f"{key} must hold {items}, start and end alike") from None


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError
    return float(value)


# -- the service ----------------------------------------------------------------------------------


class CartesiaService:
    """The service's side: requests in (each refusal a :class:`BadRequest`), responses out."""

    def __init__(self, *, sequence_field: str | None = None) -> None:
        self.sequence_field = sequence_field

    def receive(self, message: str | bytes) -> Request | Cancel:
        try:
            request = load_object(message, noun="request")
        except RemoteProtocolError as exc:
            raise BadRequest(exc.reason, exc.detail) from None
        context = request.get("context_id")
        if context is not None and not isinstance(context, str):
            raise BadRequest("bad_shape", "context_id must be a string")
        if request.get("cancel") is True:
            if context is None:
                raise BadRequest("bad_shape", "cancel needs a context_id")
            return Cancel(context)

        def bad(message: str, reason: str = "bad_shape") -> BadRequest:
            return BadRequest(reason, message, context)

        for key in ("model_id", "transcript"):
            if not isinstance(request.get(key), str):
                raise bad(f"{key} must be a string")
        voice = request.get("voice")
        if isinstance(voice, dict):
            if voice.get("mode", "id") != "id":
                raise bad(f"voice mode {voice.get('mode')!r} is not supported; give a voice id", "unsupported")
            voice = voice.get("id")
        if not isinstance(voice, str):
            raise bad('voice must be a voice id or {"mode": "id", "id": "<voice id>"}')
        out = request.get("output_format")
        if not isinstance(out, dict):
            raise bad("output_format must be an object")
        if out.get("container") != "raw":
            raise bad(f"output_format.container must be 'raw', got {out.get('container')!r}", "bad_value")
        if out.get("encoding") not in ENCODINGS:
            raise bad(
                f"output_format.encoding must be one of {', '.join(ENCODINGS)}, got {out.get('encoding')!r}",
                "bad_value",
            )
        rate = out.get("sample_rate")
        if isinstance(rate, bool) or rate not in SAMPLE_RATES:
            raise bad(
                f"output_format.sample_rate must be one of {', '.join(map(str, SAMPLE_RATES))}, got {rate!r}",
                "bad_value",
            )
        flags = {}
        for key in ("add_timestamps", "add_phoneme_timestamps", "continue", "flush"):
            value = request.get(key)
            flags[key] = False if value is None else value  # null is "not set", as the SDK's types allow
            if not isinstance(flags[key], bool):
                raise bad(f"{key} must be true or false")
        delay = request.get("max_buffer_delay_ms")
        if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= 5000):
            raise bad(f"max_buffer_delay_ms must be an integer from 0 to 5000, got {delay!r}", "bad_value")
        speed = request.get("speed")
        if speed is not None and speed not in SPEEDS:
            raise bad(f"speed must be one of {', '.join(SPEEDS)}, got {speed!r}", "bad_value")
        language = request.get("language")
        encoding = out["encoding"]
        transport = encoding if encoding in TRANSPORTS else None
        generation = Generation(
            model_id=request["model_id"],
            voice_id=voice,
            format=AudioFormat(TRANSPORTS[encoding][0] if transport else encoding, rate),
            language=language if isinstance(language, str) else None,
            timestamps=flags["add_timestamps"],
            phoneme_timestamps=flags["add_phoneme_timestamps"],
            max_buffer_delay_ms=delay,
            speed=speed,
            transport=transport,
        )
        return Request(
            context=context,
            transcript=request["transcript"],
            generation=generation,
            more=flags["continue"],
            flush=flags["flush"],
        )

    def send(self, response: Response) -> str:
        match response:
            case Chunk(context, audio, seq, step_time, flush_id):
                message: dict[str, Any] = {
                    "type": "chunk",
                    "data": base64.b64encode(audio).decode("ascii"),
                    "done": False,
                    "status_code": 206,
                }
                if step_time is not None:
                    message["step_time"] = step_time
                message["context_id"] = context
                if flush_id is not None:
                    message["flush_id"] = flush_id
                if self.sequence_field and seq is not None:
                    message[self.sequence_field] = seq
            case Timestamps(context, words, start, end, flush_id):
                message = {
                    "type": "timestamps",
                    "done": False,
                    "status_code": 206,
                    "context_id": context,
                    "word_timestamps": {"words": list(words), "start": list(start), "end": list(end)},
                }
                if flush_id is not None:
                    message["flush_id"] = flush_id
            case PhonemeTimestamps(context, phonemes, start, end, flush_id):
                message = {
                    "type": "phoneme_timestamps",
                    "done": False,
                    "status_code": 206,
                    "context_id": context,
                    "phoneme_timestamps": {"phonemes": list(phonemes), "start": list(start), "end": list(end)},
                }
                if flush_id is not None:
                    message["flush_id"] = flush_id
            case FlushDone(context, flush_id):
                message = {
                    "type": "flush_done",
                    "done": False,
                    "flush_done": True,
                    "flush_id": flush_id,
                    "status_code": 206,
                    "context_id": context,
                }
            case Done(context):
                message = {"type": "done", "done": True, "status_code": 206, "context_id": context}
            case Error():
                message = {
                    "type": "error",
                    "done": True,
                    "status_code": response.status_code,
                    "error_code": response.error_code,
                    "title": response.title,
                    "message": response.message,
                    "doc_url": response.doc_url,
                    "request_id": response.request_id,
                    "context_id": response.context,
                }
            case _:
                raise ValueError(f"no message for {type(response).__name__}")
        return json.dumps(message)
