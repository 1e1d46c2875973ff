"""Vonage Voice API WebSockets: a JSON ``websocket:connected`` first, then binary L16 frames of 20 ms both ways.

The opening names the rate (``"content-type": "audio/l16;rate=16000"``) beside the NCCO's
custom ``headers``, which become the start's custom parameters; Vonage names no stream.
Audio is exactly 20 ms per frame both ways (320 bytes at 8 kHz, 640 at 16 kHz: :data:`CHUNK_RULE`),
and Vonage buffers at most :data:`MAX_BUFFERED` frames (about 60 s) ahead of playout. The
bridge's commands are JSON text: ``{"action": "clear"}`` is answered with
``websocket:cleared``; a mark is a ``notify`` whose payload carries its name under
:data:`MARK_KEY`, echoed as ``websocket:notify`` once the audio before it has played.

Unsure: that L16 is little-endian (what Vonage's samples and SDKs use); the shape of
``websocket:dtmf`` (``digit`` and ``duration`` at the top); that a clear drops pending
notifies (the provider side answers it with ``websocket:cleared`` and echoes none); header
values that are not strings, kept as their JSON text; 24 kHz, offered by newer builds, not
carried. Vonage sends no stop: the stream ends when the socket closes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rtstream.frames import AudioFormat, Encoding

from .._json import load_object, member, text
from ..errors import RemoteProtocolError
from .base import (
    BridgeSide,
    ClearEcho,
    Command,
    Dtmf,
    DurationRule,
    Event,
    MarkEcho,
    Media,
    Metadata,
    Protocol,
    ProviderSide,
    SendClear,
    SendMark,
    SendMedia,
    Start,
    check_samples,
    unsupported,
)

CHUNK_RULE = DurationRule(20, 20, 20)
MAX_BUFFERED = 3072
"""Frames Vonage buffers ahead of playout (about 60 s); beyond, audio is lost."""
MARK_KEY = "rtstream_mark"
"""The key of a ``notify`` payload that holds a mark's name."""

_CONNECTED = "websocket:connected"
_CONTENT_TYPE = re.compile(r"audio/l16;\s*rate=(\d+)", re.IGNORECASE)


def _frame(payload: bytes, fmt: AudioFormat) -> bytes:
    """``payload`` if it is exactly one 20 ms frame."""
    if len(payload) != fmt.bytes_in(20):
        raise RemoteProtocolError("wrong_frame_size", f"{len(payload)} bytes; frames are {fmt.bytes_in(20)} (20 ms)")
    return payload


def _mark_name(data: dict[str, Any]) -> str:
    return text(member(data, "payload"), MARK_KEY)


class VonageBridge(BridgeSide):
    def receive(self, message: str | bytes) -> Event:
        if isinstance(message, bytes):
            if self.stream_id is None:
                raise RemoteProtocolError("audio_before_start", f"audio before {_CONNECTED}")
            return Media(_frame(check_samples(message, self.format), self.format))
        data = load_object(message, "event")
        match data["event"]:
            case "websocket:connected":
                return self._start(data)
            case "websocket:notify":
                return MarkEcho(_mark_name(data))
            case "websocket:cleared":
                return ClearEcho()
            case "websocket:dtmf":
                return Dtmf(text(data, "digit"))
        raise RemoteProtocolError("unknown_event", f"event {data['event']!r}")

    def _start(self, data: dict[str, Any]) -> Event:
        content = data.get("content-type")
        found = _CONTENT_TYPE.fullmatch(content) if isinstance(content, str) else None
        if found is None or int(found[1]) not in VONAGE.carries[Encoding.PCM_S16LE]:
            raise RemoteProtocolError("bad_media_format", f"content-type {content!r}")
        custom = {
            k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items() if k not in ("event", "content-type")
        }
        self.stream_id = ""
        return Start(stream_id="", format=AudioFormat(Encoding.PCM_S16LE, int(found[1])), custom_parameters=custom)

    def send(self, command: Command) -> str | bytes:
        match command:
            case SendMedia(payload):
                return payload
            case SendMark(name):
                return json.dumps({"action": "notify", "payload": {MARK_KEY: name}})
            case SendClear():
                return '{"action": "clear"}'
        raise unsupported(self, command)


class VonageProvider(ProviderSide):
    clear_echo = True

    @staticmethod
    def new_stream_id(digest: str) -> str | None:
        return None

    def receive(self, message: str | bytes) -> Command | Metadata:
        if isinstance(message, bytes):
            return SendMedia(_frame(check_samples(message, self.format), self.format))
        data = load_object(message, "action")
        match data["action"]:
            case "clear":
                return SendClear()
            case "notify":
                return SendMark(_mark_name(data))
        raise RemoteProtocolError("unknown_event", f"action {data['action']!r}")

    def send(self, event: Event) -> str | bytes:
        match event:
            case Start():
                content = f"audio/l16;rate={self.format.sample_rate}"
                return json.dumps({**event.custom_parameters, "event": _CONNECTED, "content-type": content})
            case Media(payload):
                return payload
            case MarkEcho(name):
                return json.dumps({"event": "websocket:notify", "payload": {MARK_KEY: name}})
            case ClearEcho():
                return '{"event": "websocket:cleared"}'
            case Dtmf(digit):
                return json.dumps({"event": "websocket:dtmf", "digit": digit, "duration": 250})  # a typical press
        raise unsupported(self, event)


VONAGE = Protocol(
    "vonage",
    {Encoding.PCM_S16LE: (8000, 16000)},
    Encoding.PCM_S16LE,
    frame_ms=20.0,
    bridge=VonageBridge,
    provider=VonageProvider,
    chunk_rule=CHUNK_RULE,
    max_buffered=MAX_BUFFERED,
)
