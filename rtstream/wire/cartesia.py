"""The Cartesia TTS WebSocket, sans I/O: the client (``cartesia_tts``) and the service (the simulator).

The client sends :class:`Request` and :class:`Cancel` and reads the responses :class:`Chunk`,
:class:`Timestamps`, :class:`FlushDone`, :class:`Done` and :class:`Error`; the service does
the inverse. All frames are JSON text. A request's voice, model and output format are a
:class:`Generation`, fixed for the connection's client; Cartesia's further request fields
(``max_buffer_delay_ms``, ``speed``...) are fields to add there, and its further responses
(``phoneme_timestamps``) response types to add beside these.

Beyond the real protocol the simulator numbers its chunks in a field of its own
(``sequence_field``, ``"seq"`` by default); both sides take that field's name, or None.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, ClassVar, TypeAlias

import attrs

from rtstream.frames import SAMPLE_RATES, AudioFormat, Encoding

from ._json import base64_payload, load_object
from .errors import RemoteProtocolError

ENCODINGS = tuple(e.value for e in Encoding)

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


@attrs.frozen
class Timestamps:
    """Words of a context with their start and end times, in seconds from the context's start."""

    context: str | None
    words: tuple[str, ...]
    start: tuple[float, ...]
    end: tuple[float, ...]


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


Response: TypeAlias = Chunk | Timestamps | FlushDone | Done | Error


class BadRequest(RemoteProtocolError):
    """A request the service refuses, with the context it named (for the error reply)."""

    def __init__(self, reason: str, detail: str, context: str | None = None) -> None:
        super().__init__(reason, detail)
        self.context = context


# -- the client -----------------------------------------------------------------------------------


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
            "encoding": g.format.encoding.value,
            "sample_rate": g.format.sample_rate,
        }
        message["add_timestamps"] = g.timestamps
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
        seq = data.get(self.sequence_field) if self.sequence_field else None
        step = data.get("step_time")
        return Chunk(
            context,
            base64_payload(data, "data"),
            seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
            float(step) if isinstance(step, int | float) and not isinstance(step, bool) else None,
        )

    def _timestamps(self, data: dict[str, Any], context: str | None) -> Response:
        stamps: Any = data.get("word_timestamps")  # the peer's JSON, any shape: the try below checks it
        try:
            words, starts, ends = stamps["words"], stamps["start"], stamps["end"]
            if not (isinstance(words, list) and len(words) == len(starts) == len(ends)):
                raise TypeError
            if not all(isinstance(w, str) for w in words):
                raise TypeError
            return Timestamps(context, tuple(words), tuple(map(_seconds, starts)), tuple(map(_seconds, ends)))
        except (TypeError, KeyError, ValueError):
            detail = "word_timestamps must hold words, start and end alike"
            raise RemoteProtocolError("bad_timestamps", detail) from None

    def _flush_done(self, data: dict[str, Any], context: str | None) -> Response:
        flush_id = data.get("flush_id")
        return FlushDone(context, flush_id if isinstance(flush_id, int) and not isinstance(flush_id, bool) else None)

    def _done(self, data: dict[str, Any], context: str | None) -> Response:
        return Done(context)

    def _error(self, data: dict[str, Any], context: str | None) -> Response:
        def field(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) else None

        status = data.get("status_code")
        return Error(
            context,
            status if isinstance(status, int) and not isinstance(status, bool) else None,
            field("error_code"),
            field("title"),
            field("message"),
        )

    _PARSERS: ClassVar[dict[str, Callable[[CartesiaClient, dict[str, Any], str | None], Response]]] = {
        "chunk": _chunk,
        "timestamps": _timestamps,
        "flush_done": _flush_done,
        "done": _done,
        "error": _error,
    }


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
        if not isinstance(voice, dict) or voice.get("mode") != "id" or not isinstance(voice.get("id"), str):
            raise bad('voice must be {"mode": "id", "id": "<voice id>"}')
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
        for key in ("add_timestamps", "continue", "flush"):
            flags[key] = request.get(key, False)
            if not isinstance(flags[key], bool):
                raise bad(f"{key} must be true or false")
        language = request.get("language")
        generation = Generation(
            model_id=request["model_id"],
            voice_id=voice["id"],
            format=AudioFormat(out["encoding"], rate),
            language=language if isinstance(language, str) else None,
            timestamps=flags["add_timestamps"],
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
            case Chunk(context, audio, seq, step_time):
                message: dict[str, Any] = {
                    "type": "chunk",
                    "data": base64.b64encode(audio).decode("ascii"),
                    "done": False,
                    "status_code": 206,
                }
                if step_time is not None:
                    message["step_time"] = step_time
                message["context_id"] = context
                if self.sequence_field and seq is not None:
                    message[self.sequence_field] = seq
            case Timestamps(context, words, start, end):
                message = {
                    "type": "timestamps",
                    "done": False,
                    "status_code": 206,
                    "context_id": context,
                    "word_timestamps": {"words": list(words), "start": list(start), "end": list(end)},
                }
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
                    "context_id": response.context,
                }
            case _:
                raise ValueError(f"no message for {type(response).__name__}")
        return json.dumps(message)
