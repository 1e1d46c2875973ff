"""Deepgram Aura's streaming TTS (``/v1/speak``), sans I/O: both sides.

The client (``deepgram_tts``) sends :class:`Speak`, :class:`Flush`, :class:`Clear` and
:class:`Close` as JSON text; the service (the simulator) answers binary frames of audio
(:class:`Audio`) and the JSON :class:`Metadata`, :class:`Flushed`, :class:`Cleared` and
:class:`ServiceWarning` (``Warning``). There are no contexts: one connection is one stream, a ``Flush`` ends a piece
of it (``Flushed`` carries its ``sequence_id``, from 0) and ``Clear`` drops what is buffered.
A service allows :data:`FLUSH_LIMIT` flushes per :data:`FLUSH_WINDOW` seconds and warns past that.
The model, encoding and rate are query parameters (:func:`connect_url`); the key is
``Authorization: Token <key>`` (or ``Bearer`` for a temporary token, or the
``Sec-WebSocket-Protocol`` pair ``token, <key>``), read by :func:`read_handshake`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypeAlias
from urllib.parse import parse_qs, urlencode, urlsplit

import attrs

from rtstream.frames import AudioFormat, Encoding

from ._json import load_object, text
from .errors import RemoteProtocolError

PATH = "/v1/speak"
ENCODINGS: dict[str, Encoding] = {
    "linear16": Encoding.PCM_S16LE,
    "mulaw": Encoding.PCM_MULAW,
    "alaw": Encoding.PCM_ALAW,
}
RATES: dict[str, tuple[int, ...]] = {
    "linear16": (8000, 16000, 24000, 48000),
    "mulaw": (8000, 16000),
    "alaw": (8000, 16000),
}
"""Rates per encoding that rtstream handles (Deepgram's linear16 also offers 32000)."""
FLUSH_LIMIT = 20
FLUSH_WINDOW = 60.0
MAX_TEXT = 2000
"""Characters in one Speak message."""


def encoding_name(encoding: Encoding) -> str:
    """Deepgram's name for an encoding (KeyError when it has none)."""
    return next(name for name, candidate in ENCODINGS.items() if candidate is encoding)


def connect_url(base: str, *, model: str, fmt: AudioFormat) -> str:
    """The ``/v1/speak`` URL under ``base`` (``wss://api.deepgram.com``) for a model and format."""
    query = {"model": model, "encoding": encoding_name(fmt.encoding), "sample_rate": fmt.sample_rate}
    return f"{base.rstrip('/')}{PATH}?{urlencode(query)}"


def auth_header(api_key: str) -> tuple[bytes, bytes]:
    return (b"Authorization", b"Token " + api_key.encode())


@attrs.frozen
class Handshake:
    path: str
    query: dict[str, str]
    api_key: str | None


def read_handshake(target: str, headers: Iterable[tuple[bytes, bytes]]) -> Handshake:
    """The path, query and key of a connection request."""
    url = urlsplit(target)
    key = None
    for name, value in headers:
        lower = name.lower()
        if lower == b"authorization":
            scheme, _, credential = value.decode("latin-1").partition(" ")
            if scheme.lower() in ("token", "bearer"):
                key = credential.strip()
        elif lower == b"sec-websocket-protocol":
            protocols = [p.strip() for p in value.decode("latin-1").split(",")]
            if len(protocols) == 2 and protocols[0].lower() == "token":
                key = protocols[1]
    return Handshake(url.path, {k: v[0] for k, v in parse_qs(url.query).items()}, key)


def stream_format(query: dict[str, str]) -> AudioFormat:
    """The format a request's query asks for (linear16 at 24 kHz by default); ValueError names the bad one."""
    encoding = query.get("encoding", "linear16")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    rate = query.get("sample_rate", "24000")
    if not rate.isdigit() or int(rate) not in RATES[encoding]:
        raise ValueError(
            f"sample_rate for {encoding} must be one of {', '.join(map(str, RATES[encoding]))}, got {rate!r}"
        )
    return AudioFormat(ENCODINGS[encoding], int(rate))


# -- messages ----------------------------------------------------------------------------------------


@attrs.frozen
class Speak:
    text: str


@attrs.frozen
class Flush:
    pass


@attrs.frozen
class Clear:
    pass


@attrs.frozen
class Close:
    pass


Request: TypeAlias = Speak | Flush | Clear | Close


@attrs.frozen
class Audio:
    audio: bytes


@attrs.frozen
class Metadata:
    request_id: str
    model_name: str
    model_version: str
    model_uuid: str


@attrs.frozen
class Flushed:
    sequence_id: int


@attrs.frozen
class Cleared:
    sequence_id: int


@attrs.frozen
class ServiceWarning:
    """A ``Warning``: the request named was ignored; the connection goes on."""

    description: str
    code: str


Response: TypeAlias = Audio | Metadata | Flushed | Cleared | ServiceWarning


# -- the client ----------------------------------------------------------------------------------


class DeepgramClient:
    """The client's side: requests out, responses in (text messages over ``max_message_bytes`` refused)."""

    def __init__(self, *, max_message_bytes: int = 1 << 20) -> None:
        self.max_message_bytes = max_message_bytes

    def send(self, request: Request) -> str:
        if isinstance(request, Speak):
            return json.dumps({"type": "Speak", "text": request.text})
        return json.dumps({"type": type(request).__name__})

    def receive(self, message: str | bytes) -> Response:
        if isinstance(message, bytes):
            return Audio(message)
        if len(message) > self.max_message_bytes:
            raise RemoteProtocolError("oversize", f"{len(message)} characters, more than {self.max_message_bytes}")
        data = load_object(message, "type")
        kind = data["type"]
        if kind == "Metadata":
            return Metadata(*(text(data, key) for key in ("request_id", "model_name", "model_version", "model_uuid")))
        if kind in ("Flushed", "Cleared"):
            sequence = data.get("sequence_id")
            if isinstance(sequence, bool) or not isinstance(sequence, int):
                raise RemoteProtocolError("bad_shape", "sequence_id must be an integer")
            return Flushed(sequence) if kind == "Flushed" else Cleared(sequence)
        if kind == "Warning":
            return ServiceWarning(text(data, "description"), text(data, "code"))
        raise RemoteProtocolError("unknown_event", f"type {kind!r}")


_SIGNALS: dict[str, Request] = {"Flush": Flush(), "Clear": Clear(), "Close": Close()}

# -- the service ---------------------------------------------------------------------------------


class DeepgramService:
    """The service's side: requests in (each refusal a RemoteProtocolError), responses out (str or bytes)."""

    def receive(self, message: str | bytes) -> Request:
        data = load_object(message, "type")
        kind = data["type"]
        if kind == "Speak":
            return Speak(text(data, "text"))
        if kind in _SIGNALS:
            return _SIGNALS[kind]
        raise RemoteProtocolError("unknown_event", f"unknown message type {kind!r}; send Speak, Flush, Clear or Close")

    def send(self, response: Response) -> str | bytes:
        match response:
            case Audio(audio):
                return audio
            case Metadata():
                message: dict[str, Any] = {"type": "Metadata", **attrs.asdict(response)}
            case Flushed(sequence_id):
                message = {"type": "Flushed", "sequence_id": sequence_id}
            case Cleared(sequence_id):
                message = {"type": "Cleared", "sequence_id": sequence_id}
            case ServiceWarning(description, code):
                message = {"type": "Warning", "description": description, "code": code}
            case _:
                raise ValueError(f"no message for {type(response).__name__}")
        return json.dumps(message)
