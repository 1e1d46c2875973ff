"""Telnyx media streaming, bidirectional RTP mode: JSON text frames, base64 PCMU or PCMA 8 kHz both ways.

Twilio's envelope in snake_case, numbers as strings (``"sequence_number": "4"``), the stream
named at the top (``stream_id``). **Media frames may arrive out of order**: the bridge side
hands each frame's ``sequence_number``, ``chunk`` and ``timestamp`` on in :class:`Media` and
leaves the reordering to a jitter buffer. Telnyx's ``error`` frames become :class:`Metadata`
carrying their ``payload``, so a shell can log them. Audio back goes as ``media``, ``mark``
and ``clear`` without a stream id, 20 ms to 30 s of audio per message (:data:`CHUNK_RULE`).

Unsure: that RTP-mode chunks must be whole 20 ms packets (the rule's multiple; the docs give
only the 20 ms–30 s bounds); how ``custom_parameters`` appear in ``start`` (taken as
Twilio's object of strings); whether ``clear`` echoes pending marks (taken as Twilio does,
so the provider side echoes them at once); L16 (some SDKs speak it; the documented
bidirectional codecs are PCMU, PCMA, G722, OPUS and AMR-WB, of which only G.711 is carried).
Only the inbound track is modelled: ``both_tracks`` would interleave the bot's own audio.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, ClassVar

from rtstream.frames import AudioFormat, Encoding

from .._json import base64_payload, load_object, member, text
from ..errors import RemoteProtocolError
from .base import (
    Command,
    Connected,
    Dtmf,
    DurationRule,
    Event,
    Metadata,
    Protocol,
    SendClear,
    SendMark,
    SendMedia,
    Start,
    Stop,
    check_samples,
    unsupported,
)
from .twilio import TwilioBridge, TwilioProvider, _Names

CHUNK_RULE = DurationRule(20, 20, 30_000)
_ENCODINGS = {"PCMU": Encoding.PCM_MULAW, "PCMA": Encoding.PCM_ALAW}
_NAMES = {encoding: name for name, encoding in _ENCODINGS.items()}
_MEDIA_HEAD = '{"event":"media","media":{"payload":"'


class _TelnyxNames(_Names):
    STREAM: ClassVar[str] = "stream_id"
    SEQUENCE: ClassVar[str] = "sequence_number"
    CALL: ClassVar[str] = "call_control_id"
    ACCOUNT: ClassVar[str] = "user_id"
    CUSTOM: ClassVar[str] = "custom_parameters"
    FORMAT: ClassVar[str] = "media_format"


class TelnyxBridge(_TelnyxNames, TwilioBridge):
    def _format_of(self, fmt: dict[str, Any]) -> AudioFormat:
        name = fmt.get("encoding")
        encoding = _ENCODINGS.get(name) if isinstance(name, str) else None
        if encoding is None or fmt.get("sample_rate") != 8000 or fmt.get("channels", 1) != 1:
            raise RemoteProtocolError("bad_media_format", f"{self.FORMAT} {fmt!r}")
        return AudioFormat(encoding, 8000)

    def _started(self, sid: str) -> None:
        self.stream_id = sid  # Telnyx's commands name no stream: one media head serves every stream

    def _error(self: TwilioBridge, data: dict[str, Any]) -> Event:
        self._stream_of(data)
        return Metadata(member(data, "payload"))

    _PARSERS: ClassVar[dict[str, Callable[[TwilioBridge, dict[str, Any]], Event]]] = {
        **TwilioBridge._PARSERS,
        "error": _error,
    }

    def send(self, command: Command) -> str | bytes:
        if self.stream_id is None:
            raise RuntimeError("the stream has not started: no stream id to send to")
        match command:
            case SendMedia(payload):
                return _MEDIA_HEAD + base64.b64encode(payload).decode("ascii") + '"}}'
            case SendMark(name):
                return json.dumps({"event": "mark", "mark": {"name": name}})
            case SendClear():
                return '{"event": "clear"}'
        raise unsupported(self, command)


class TelnyxProvider(_TelnyxNames, TwilioProvider):
    example_account = "3E6F995F-85F7-4705-9741-53B116D28237"

    def __init__(self, fmt: AudioFormat, stream_id: str | None) -> None:
        super().__init__(fmt, stream_id)
        self._account: str | None = None

    @staticmethod
    def new_stream_id(digest: str) -> str | None:
        hex_ = digest[:32].upper()
        return f"{hex_[:8]}-{hex_[8:12]}-{hex_[12:16]}-{hex_[16:20]}-{hex_[20:32]}"

    def receive(self, message: str | bytes) -> Command | Metadata:
        data = load_object(message, "event")
        event = data["event"]
        if event not in ("media", "mark", "clear"):
            raise RemoteProtocolError("unknown_event", f"event {event!r}")
        if self.STREAM in data:  # Telnyx's commands name no stream; one that does must name this one
            self._check_stream(data, self.STREAM)
        if event == "media":
            return SendMedia(check_samples(base64_payload(member(data, "media"), "payload"), self.format))
        if event == "mark":
            return SendMark(text(member(data, "mark"), "name"))
        return SendClear()

    def send(self, event: Event) -> str | bytes:
        match event:
            case Connected():
                return '{"event": "connected", "version": "1.0.0"}'
            case Start():
                self._account = event.account_id
            case Dtmf(digit):
                return self._numbered("dtmf", {"dtmf": {"digit": digit}})
            case Stop():
                return self._numbered("stop", {"stop": {self.ACCOUNT: self._account, self.CALL: self._call_id}})
            case Metadata(data):
                return self._numbered("error", {"payload": data})
        return super().send(event)

    def _start_body(self, start: Start) -> dict[str, Any]:
        fmt = self.format
        return {
            self.ACCOUNT: start.account_id,
            self.CALL: start.call_id,
            self.CUSTOM: dict(start.custom_parameters),
            self.FORMAT: {"encoding": _NAMES[fmt.encoding], "sample_rate": fmt.sample_rate, "channels": 1},
        }


TELNYX = Protocol(
    "telnyx",
    {Encoding.PCM_MULAW: (8000,), Encoding.PCM_ALAW: (8000,)},
    Encoding.PCM_MULAW,
    frame_ms=20.0,
    bridge=TelnyxBridge,
    provider=TelnyxProvider,
    chunk_rule=CHUNK_RULE,
)
