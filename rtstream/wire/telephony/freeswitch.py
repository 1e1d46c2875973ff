"""FreeSWITCH mod_audio_stream and TeleCMI PIOPIY: binary L16 from FreeSWITCH, JSON ``streamAudio`` back.

``uuid_audio_stream <uuid> start wss://… mono 8k|16k <metadata>`` sends the caller's audio as
binary PCM16 LE frames of a multiple of 20 ms (``STREAM_BUFFER_SIZE``), and the metadata, if
given, as the first text frame. The open build plays audio sent back as JSON text,
``{"type": "streamAudio", "data": {"audioDataType": "raw", "sampleRate": 8000, "audioData":
"<base64>"}}`` (:data:`FREESWITCH`); newer builds also play raw binary frames
(:data:`FREESWITCH_BINARY`). Text frames are JSON metadata both ways; there are no marks or
clears, and no stream id.

Unsure: that the metadata is JSON (mod_audio_stream passes any text; non-JSON is refused as
``bad_json``); that FreeSWITCH never sends a last frame shorter than 20 ms; the chunk sizes
``streamAudio`` plays smoothly (the open build writes each message to a file and plays it, so
none is imposed); newer builds' interrupt command, not modelled.
"""

from __future__ import annotations

import base64
import json
from typing import Any, ClassVar

from rtstream.frames import AudioFormat, Encoding

from .._json import base64_payload, load_json, member
from ..errors import RemoteProtocolError
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


def _frames(payload: bytes, fmt: AudioFormat) -> bytes:
    """``payload`` if it is a whole number of 20 ms frames."""
    if len(check_samples(payload, fmt)) % fmt.bytes_in(20):
        raise RemoteProtocolError("wrong_frame_size", f"{len(payload)} bytes is not a multiple of 20 ms")
    return payload


class FreeswitchBridge(BridgeSide):
    binary_return: ClassVar[bool] = False
    """Audio back as binary frames (newer builds) rather than ``streamAudio`` JSON."""

    def __init__(self, fmt: AudioFormat) -> None:
        super().__init__(fmt)
        data = f'"audioDataType":"raw","sampleRate":{fmt.sample_rate}'
        self._media_head = '{"type":"streamAudio","data":{' + data + ',"audioData":"'

    @property
    def ready(self) -> bool:
        return True

    def receive(self, message: str | bytes) -> Event:
        if isinstance(message, bytes):
            return Media(_frames(message, self.format))
        return Metadata(load_json(message))

    def send(self, command: Command) -> str | bytes:
        if isinstance(command, SendMedia):
            if self.binary_return:
                return command.payload
            return self._media_head + base64.b64encode(command.payload).decode("ascii") + '"}}'
        raise unsupported(self, command)


class FreeswitchBinaryBridge(FreeswitchBridge):
    binary_return = True


class FreeswitchProvider(ProviderSide):
    binary_return: ClassVar[bool] = False

    @staticmethod
    def new_stream_id(digest: str) -> str | None:
        return None

    def opening(self, start: Start) -> list[str | bytes]:
        """The ``uuid_audio_stream`` metadata: the custom parameters, if any."""
        return [json.dumps(dict(start.custom_parameters))] if start.custom_parameters else []

    def receive(self, message: str | bytes) -> Command | Metadata:
        if isinstance(message, bytes):
            if not self.binary_return:
                raise RemoteProtocolError("binary_frame", "this build plays streamAudio JSON, not binary frames")
            return SendMedia(check_samples(message, self.format))
        data = load_json(message)
        if self.binary_return or not (isinstance(data, dict) and data.get("type") == "streamAudio"):
            return Metadata(data)
        return SendMedia(self._stream_audio(member(data, "data")))

    def _stream_audio(self, data: dict[str, Any]) -> bytes:
        if data.get("audioDataType") != "raw":
            raise RemoteProtocolError("wrong_audio_type", f"audioDataType {data.get('audioDataType')!r}")
        if data.get("sampleRate") != self.format.sample_rate:
            raise RemoteProtocolError("wrong_sample_rate", f"sampleRate {data.get('sampleRate')!r}")
        return check_samples(base64_payload(data, "audioData"), self.format)

    def send(self, event: Event) -> str | bytes:
        match event:
            case Media(payload):
                return payload
            case Metadata(data):
                return json.dumps(data)
        raise unsupported(self, event)


class FreeswitchBinaryProvider(FreeswitchProvider):
    binary_return = True


_CARRIES = {Encoding.PCM_S16LE: (8000, 16000)}

FREESWITCH = Protocol(
    "freeswitch",
    _CARRIES,
    Encoding.PCM_S16LE,
    frame_ms=20.0,
    bridge=FreeswitchBridge,
    provider=FreeswitchProvider,
    marks=False,
)
FREESWITCH_BINARY = Protocol(
    "freeswitch_binary",
    _CARRIES,
    Encoding.PCM_S16LE,
    frame_ms=20.0,
    bridge=FreeswitchBinaryBridge,
    provider=FreeswitchBinaryProvider,
    marks=False,
)
