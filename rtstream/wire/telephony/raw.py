"""Raw binary media streams (TeleCMI PIOPIY, FreeSWITCH mod_audio_stream style).

Audio rides in binary frames of raw PCM16 little-endian mono, both ways; text frames carry
JSON metadata. There are no stream ids, marks or clears.
"""

from __future__ import annotations

import json

from rtstream.frames import Encoding

from .._json import load_json
from .base import (
    BridgeSide,
    Command,
    Event,
    Media,
    Metadata,
    Protocol,
    ProviderSide,
    SendMedia,
    Start,
    check_samples,
    unsupported,
)


class RawBridge(BridgeSide):
    @property
    def ready(self) -> bool:
        return True

    def receive(self, message: str | bytes) -> Event:
        if isinstance(message, bytes):
            return Media(check_samples(message, self.format))
        return Metadata(load_json(message))

    def send(self, command: Command) -> str | bytes:
        if isinstance(command, SendMedia):
            return command.payload
        raise unsupported(self, command)


class RawProvider(ProviderSide):
    @staticmethod
    def new_stream_id(digest: str) -> str | None:
        return None

    def opening(self, start: Start) -> list[str | bytes]:
        return []

    def receive(self, message: str | bytes) -> Command | Metadata:
        if isinstance(message, bytes):
            return SendMedia(check_samples(message, self.format))
        return Metadata(load_json(message))

    def send(self, event: Event) -> str | bytes:
        match event:
            case Media(payload):
                return payload
            case Metadata(data):
                return json.dumps(data)
        raise unsupported(self, event)


RAW = Protocol(
    "raw",
    {Encoding.PCM_S16LE: (8000, 16000)},
    Encoding.PCM_S16LE,
    frame_ms=60.0,
    bridge=RawBridge,
    provider=RawProvider,
    marks=False,
)
