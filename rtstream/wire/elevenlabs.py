"""ElevenLabs input streaming, sans I/O: ``multi-stream-input`` and ``stream-input``, both sides.

The client (``elevenlabs_tts``) sends :class:`Text`, :class:`CloseContext` and
:class:`CloseSocket`; the service (the simulator) answers :class:`Audio`, :class:`Final` and
:class:`ServiceError`. All frames are JSON text. On ``multi-stream-input`` every message names
its context (``context_id`` out, ``contextId`` back; at most 5 open per connection); a context
opens with the text ``" "``, ``{"text": ""}`` keeps it alive, ``flush`` generates what it holds,
``close_context`` ends it (audio already flushed still comes, then ``isFinal``). On
``stream-input`` there is one stream per connection and no context ids: ``{"text": ""}`` ends
the input, a single space keeps it alive, and the service closes after ``isFinal``. A refusal
is ``{"message", "error", "code"}`` followed by a close with that code (1008).

The key travels in the ``xi-api-key`` header (:func:`connect_url`, :func:`read_handshake`) or in
a context's first message (``xi_api_key``). Alignment times are per audio chunk; an
:class:`AlignmentWords` turns them into word timings from the context's start.
:data:`OUTPUT_FORMATS` maps the ``output_format`` names rtstream handles to formats.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any, TypeAlias
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import attrs

from rtstream.frames import AudioFormat

from ._json import base64_payload, load_object
from .errors import RemoteProtocolError

OUTPUT_FORMATS: dict[str, AudioFormat] = {
    **{f"pcm_{rate}": AudioFormat("pcm_s16le", rate) for rate in (8000, 16000, 22050, 24000, 44100, 48000)},
    "ulaw_8000": AudioFormat("pcm_mulaw", 8000),
    "alaw_8000": AudioFormat("pcm_alaw", 8000),
}
"""``output_format`` names and the audio they carry (ElevenLabs' mp3 and opus formats are not handled)."""
MAX_CONTEXTS = 5
"""Contexts open at once on one ``multi-stream-input`` connection."""
POLICY_VIOLATION = 1008


def output_format(fmt: AudioFormat) -> str:
    """The ``output_format`` name of an audio format (KeyError when ElevenLabs has none)."""
    return next(name for name, candidate in OUTPUT_FORMATS.items() if candidate == fmt)


# -- the opening handshake ---------------------------------------------------------------------------


def connect_url(
    base: str,
    voice_id: str,
    *,
    multi: bool = True,
    model_id: str | None = None,
    output_format: str = "pcm_16000",
    inactivity_timeout: int | None = None,
    sync_alignment: bool = False,
    auto_mode: bool = False,
) -> str:
    """The URL of a voice's input-streaming endpoint under ``base`` (``wss://api.elevenlabs.io``)."""
    query: dict[str, Any] = {"output_format": output_format}
    if model_id is not None:
        query["model_id"] = model_id
    if inactivity_timeout is not None:
        query["inactivity_timeout"] = inactivity_timeout
    if sync_alignment:
        query["sync_alignment"] = "true"
    if auto_mode:
        query["auto_mode"] = "true"
    endpoint = "multi-stream-input" if multi else "stream-input"
    return f"{base.rstrip('/')}/v1/text-to-speech/{quote(voice_id, safe='')}/{endpoint}?{urlencode(query)}"


@attrs.frozen
class Handshake:
    """A connection request: which endpoint, the voice, the query, and the key from the header or query."""

    multi: bool
    voice_id: str
    query: dict[str, str]
    api_key: str | None


def read_handshake(target: str, headers: Iterable[tuple[bytes, bytes]]) -> Handshake | None:
    """The request's endpoint and key; None when the path is no input-streaming endpoint."""
    url = urlsplit(target)
    parts = url.path.strip("/").split("/")
    if (
        len(parts) != 4
        or parts[:2] != ["v1", "text-to-speech"]
        or parts[3] not in ("multi-stream-input", "stream-input")
    ):
        return None
    query = {key: values[0] for key, values in parse_qs(url.query).items()}
    key = query.get("authorization") or query.get("xi-api-key")
    for name, value in headers:
        if name.lower() == b"xi-api-key":
            key = value.decode("latin-1")
        elif name.lower() == b"authorization" and value[:7].lower() == b"bearer ":
            key = value[7:].decode("latin-1").strip()
    return Handshake(parts[3] == "multi-stream-input", unquote(parts[2]), query, key)


# -- messages ----------------------------------------------------------------------------------------


@attrs.frozen
class Text:
    """Text for a context: ``" "`` opens it, ``""`` keeps it alive (ends it on stream-input), ``flush`` generates."""

    context: str | None
    text: str
    flush: bool = False
    voice_settings: dict[str, Any] | None = None
    """Only on a context's first message: stability, similarity_boost, style, use_speaker_boost, speed."""
    generation_config: dict[str, Any] | None = None
    """Only on a context's first message: ``chunk_length_schedule``."""
    api_key: str | None = attrs.field(default=None, repr=False)
    """``xi_api_key``, when the header did not carry the key (first message only)."""


@attrs.frozen
class CloseContext:
    context: str


@attrs.frozen
class CloseSocket:
    pass


Request: TypeAlias = Text | CloseContext | CloseSocket


@attrs.frozen
class Alignment:
    """Characters and their times in ms from the start of their own audio chunk."""

    chars: tuple[str, ...]
    starts_ms: tuple[int, ...]
    durations_ms: tuple[int, ...]


@attrs.frozen
class Audio:
    context: str | None
    audio: bytes
    alignment: Alignment | None = None
    normalized: Alignment | None = None
    seq: int | None = None
    """The simulator's chunk number within the context (its ``sequence_field``)."""


@attrs.frozen
class Final:
    """The context (the stream, on stream-input) has no more audio."""

    context: str | None


@attrs.frozen
class ServiceError:
    """A refusal; the service closes the connection with ``code`` after it."""

    message: str
    error: str | None = None
    code: int | None = None


Response: TypeAlias = Audio | Final | ServiceError


class BadRequest(RemoteProtocolError):
    """A message the service refuses: answered with a :class:`ServiceError` and a close."""


# -- the client ----------------------------------------------------------------------------------


class ElevenLabsClient:
    """The client's side of one connection (``multi``: multi-stream-input); responses over the bound refused."""

    def __init__(
        self, *, multi: bool = True, sequence_field: str | None = None, max_message_bytes: int = 1 << 20
    ) -> None:
        self.multi = multi
        self.sequence_field = sequence_field
        self.max_message_bytes = max_message_bytes

    def send(self, request: Request) -> str:
        match request:
            case CloseSocket():
                return json.dumps({"close_socket": True})
            case CloseContext(context):
                if not self.multi:
                    return json.dumps({"text": ""})  # stream-input ends its one stream with empty text
                return json.dumps({"context_id": context, "close_context": True})
            case Text():
                message: dict[str, Any] = {"text": request.text}
                if self.multi and request.context is not None:
                    message["context_id"] = request.context
                if request.flush:
                    message["flush"] = True
                if request.voice_settings is not None:
                    message["voice_settings"] = request.voice_settings
                if request.generation_config is not None:
                    message["generation_config"] = request.generation_config
                if request.api_key is not None:
                    message["xi_api_key"] = request.api_key
                return json.dumps(message)
        raise ValueError(f"no message for {type(request).__name__}")

    def keep_alive(self, context: str | None) -> str:
        """Reset the inactivity timeout without adding text."""
        return self.send(Text(context, "" if self.multi else " "))

    def receive(self, message: str | bytes) -> Response:
        if not isinstance(message, bytes) and len(message) > self.max_message_bytes:
            raise RemoteProtocolError("oversize", f"{len(message)} characters, more than {self.max_message_bytes}")
        data = load_object(message)
        context = data.get("contextId")
        if context is not None and not isinstance(context, str):
            raise RemoteProtocolError("bad_shape", "contextId must be a string")
        if isinstance(data.get("audio"), str):
            seq = data.get(self.sequence_field) if self.sequence_field else None
            return Audio(
                context,
                base64_payload(data, "audio"),
                _alignment(data, "alignment"),
                _alignment(data, "normalizedAlignment"),
                seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
            )
        if data.get("isFinal") is True:
            return Final(context)
        if isinstance(data.get("message"), str):
            error, code = data.get("error"), data.get("code")
            return ServiceError(
                data["message"],
                error if isinstance(error, str) else None,
                code if isinstance(code, int) and not isinstance(code, bool) else None,
            )
        if "audio" in data:
            raise RemoteProtocolError("bad_shape", "audio must be a string")
        raise RemoteProtocolError("unknown_event", f"a message with keys {sorted(data)[:5]}")


def _alignment(data: dict[str, Any], key: str) -> Alignment | None:
    value = data.get(key)
    if value is None:
        return None
    try:
        chars, starts, durations = value["chars"], value["charStartTimesMs"], value["charDurationsMs"]
        if not (isinstance(chars, list) and len(chars) == len(starts) == len(durations)):
            raise TypeError
        if not all(isinstance(c, str) for c in chars):
            raise TypeError
        return Alignment(tuple(chars), tuple(map(_ms, starts)), tuple(map(_ms, durations)))
    except (TypeError, KeyError):
        raise RemoteProtocolError(
            "bad_alignment", f"{key} must hold chars, charStartTimesMs and charDurationsMs alike"
        ) from None


def _ms(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError
    return int(value)


class AlignmentWords:
    """Word timings (seconds from the context's start) from per-chunk character alignments.

    Feed each chunk's alignment with the seconds of the context's audio before that chunk; a
    word is complete when whitespace follows it (or at :meth:`end`).
    """

    def __init__(self) -> None:
        self._text = ""
        self._start = 0.0
        self._end = 0.0

    def feed(self, alignment: Alignment, offset: float) -> list[tuple[str, float, float]]:
        words = []
        for char, start_ms, duration_ms in zip(
            alignment.chars, alignment.starts_ms, alignment.durations_ms, strict=True
        ):
            start = offset + start_ms / 1000
            if char.isspace():
                words += self.end()
                continue
            if not self._text:
                self._start = start
            self._text += char
            self._end = start + duration_ms / 1000
        return words

    def end(self) -> list[tuple[str, float, float]]:
        """The word in progress, if any, as complete."""
        if not self._text:
            return []
        word, self._text = (self._text, self._start, self._end), ""
        return [word]


# -- the service ---------------------------------------------------------------------------------

_VOICE_SETTINGS = {"stability": (0.0, 1.0), "similarity_boost": (0.0, 1.0), "style": (0.0, 1.0), "speed": (0.7, 1.2)}


class ElevenLabsService:
    """The service's side of one connection: requests in (each refusal a :class:`BadRequest`), responses out."""

    def __init__(self, *, multi: bool = True, sequence_field: str | None = None) -> None:
        self.multi = multi
        self.sequence_field = sequence_field

    def receive(self, message: str | bytes) -> Request:
        try:
            data = load_object(message)
        except RemoteProtocolError as exc:
            raise BadRequest(exc.reason, exc.detail) from None
        context = data.get("context_id") if self.multi else None
        if context is not None and not isinstance(context, str):
            raise BadRequest("bad_shape", "context_id must be a string")
        if data.get("close_socket") is True:
            return CloseSocket()
        if data.get("close_context") is True:
            if context is None:
                raise BadRequest("bad_shape", "close_context needs a context_id")
            return CloseContext(context)
        text = data.get("text", "" if data.get("flush") is True else None)
        if not isinstance(text, str):
            raise BadRequest("bad_shape", "text must be a string")
        flush = data.get("flush", False)
        if not isinstance(flush, bool):
            raise BadRequest("bad_shape", "flush must be true or false")
        settings = data.get("voice_settings")
        if settings is not None:
            if not isinstance(settings, dict):
                raise BadRequest("bad_shape", "voice_settings must be an object")
            for name, (low, high) in _VOICE_SETTINGS.items():
                value = settings.get(name)
                if value is not None and (
                    isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high
                ):
                    raise BadRequest(
                        "bad_value", f"voice_settings.{name} must be a number from {low} to {high}, got {value!r}"
                    )
        config = data.get("generation_config")
        if config is not None:
            schedule = config.get("chunk_length_schedule") if isinstance(config, dict) else None
            if not isinstance(config, dict) or (
                schedule is not None
                and not (
                    isinstance(schedule, list)
                    and all(isinstance(n, int | float) and not isinstance(n, bool) and 50 <= n <= 500 for n in schedule)
                )
            ):
                raise BadRequest(
                    "bad_value", "generation_config.chunk_length_schedule must list numbers from 50 to 500"
                )
        key = data.get("xi_api_key", data.get("xi-api-key", data.get("authorization")))
        if key is not None and not isinstance(key, str):
            raise BadRequest("bad_shape", "xi_api_key must be a string")
        if isinstance(key, str) and key.lower().startswith("bearer "):
            key = key[7:].strip()
        return Text(context, text, flush, settings, config, key)

    def send(self, response: Response) -> str:
        match response:
            case Audio(context, audio, alignment, normalized, seq):
                message: dict[str, Any] = {
                    "audio": base64.b64encode(audio).decode("ascii"),
                    "isFinal": False if self.multi else None,
                    "normalizedAlignment": _alignment_json(normalized),
                    "alignment": _alignment_json(alignment),
                }
                if self.multi:
                    message["contextId"] = context
                if self.sequence_field and seq is not None:
                    message[self.sequence_field] = seq
            case Final(context):
                message = {"isFinal": True}
                if self.multi:
                    message["contextId"] = context
            case ServiceError(text, error, code):
                message = {"message": text, "error": error, "code": code}
            case _:
                raise ValueError(f"no message for {type(response).__name__}")
        return json.dumps(message)


def _alignment_json(alignment: Alignment | None) -> dict[str, Any] | None:
    if alignment is None:
        return None
    return {
        "chars": list(alignment.chars),
        "charStartTimesMs": list(alignment.starts_ms),
        "charDurationsMs": list(alignment.durations_ms),
    }
