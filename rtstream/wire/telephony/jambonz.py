"""Jambonz ``listen`` (subprotocol ``audio.jambonz.org``): a JSON metadata frame, then binary L16 both ways.

The first text frame holds the call's attributes (``callSid``, ``accountSid``, ``from``,
``to``...), ``sampleRate`` and ``mixType``, with the verb's custom ``metadata`` merged in at
the top: everything not mapped to a :class:`Start` field becomes a custom parameter. Caller
audio follows as binary PCM16 LE; the bot's audio goes back as binary frames when the verb
sets ``bidirectionalAudio.streaming``. The bridge's commands are JSON text: ``killAudio``
(clear) and ``mark``; a mark is echoed as ``{"type": "mark", "data": {"name": …, "event":
"playout"}}``, or with ``"event": "cleared"`` when a ``killAudio`` dropped the audio before
it. DTMF arrives as ``{"event": "dtmf", "dtmf": "2", "duration": "1600"}`` with ``passDtmf``.

Unsure: the frame length jambonz sends (20 ms taken); 48 and 64 kHz, which the verb allows,
are not carried; ``bidirectionalAudio.sampleRate`` must equal ``sampleRate`` (one format per
stream here). Jambonz sends no stop: the stream ends when the socket closes.
"""

from __future__ import annotations

import json
from typing import Any

from rtstream.frames import AudioFormat, Encoding

from .._json import load_object, member, optional_text, text
from ..errors import RemoteProtocolError
from .base import (
    BridgeSide,
    Command,
    Dtmf,
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

SUBPROTOCOL = "audio.jambonz.org"
_MAPPED = ("callSid", "accountSid", "from", "to", "sampleRate", "mixType")
_MARK_EVENTS = ("playout", "cleared")


class JambonzBridge(BridgeSide):
    def receive(self, message: str | bytes) -> Event:
        if isinstance(message, bytes):
            if self.stream_id is None:
                raise RemoteProtocolError("audio_before_start", "audio before the metadata frame")
            return Media(check_samples(message, self.format))
        data = load_object(message)
        if self.stream_id is None:
            return self._start(data)
        if data.get("event") == "dtmf":
            return Dtmf(text(data, "dtmf"))
        if data.get("type") == "mark":
            mark = member(data, "data")
            if (played := mark.get("event")) not in _MARK_EVENTS:
                raise RemoteProtocolError("bad_shape", f"a mark's event is playout or cleared, not {played!r}")
            return MarkEcho(text(mark, "name"))
        raise RemoteProtocolError("unknown_event", f"message {sorted(data)!r} is neither a dtmf nor a mark")

    def _start(self, data: dict[str, Any]) -> Event:
        sid = data.get("callSid")
        if not isinstance(sid, str):
            raise RemoteProtocolError("missing_stream_id", "the metadata names no callSid")
        rate, mix = data.get("sampleRate"), data.get("mixType", "mono")
        if rate not in JAMBONZ.carries[Encoding.PCM_S16LE] or mix != "mono":
            raise RemoteProtocolError("bad_media_format", f"sampleRate {rate!r}, mixType {mix!r}")
        custom = {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items() if k not in _MAPPED}
        self.stream_id = sid
        return Start(
            stream_id=sid,
            call_id=sid,
            account_id=optional_text(data, "accountSid"),
            format=AudioFormat(Encoding.PCM_S16LE, rate),
            custom_parameters=custom,
            caller=optional_text(data, "from"),
            called=optional_text(data, "to"),
        )

    def send(self, command: Command) -> str | bytes:
        match command:
            case SendMedia(payload):
                return payload
            case SendMark(name):
                return json.dumps({"type": "mark", "data": {"name": name}})
            case SendClear():
                return '{"type": "killAudio"}'
        raise unsupported(self, command)


class JambonzProvider(ProviderSide):
    example_account = "9351f46a-678c-43f5-b8a6-d4eb58d131af"

    def __init__(self, fmt: AudioFormat, stream_id: str | None) -> None:
        super().__init__(fmt, stream_id)
        self._pending: set[str] = set()
        self._cleared: set[str] = set()
        """Marks a killAudio reached before they played: echoed as ``cleared``."""

    def receive(self, message: str | bytes) -> Command | Metadata:
        if isinstance(message, bytes):
            return SendMedia(check_samples(message, self.format))
        data = load_object(message, "type")
        match data["type"]:
            case "killAudio":
                self._cleared |= self._pending
                self._pending.clear()
                return SendClear()
            case "mark":
                name = text(member(data, "data"), "name")
                self._pending.add(name)
                return SendMark(name)
        raise RemoteProtocolError("unknown_event", f"type {data['type']!r}")

    def send(self, event: Event) -> str | bytes:
        match event:
            case Start():
                start = {
                    "callSid": event.stream_id,
                    "accountSid": event.account_id,
                    "from": event.caller,
                    "to": event.called,
                    "sampleRate": self.format.sample_rate,
                    "mixType": "mono",
                }
                return json.dumps({**event.custom_parameters, **{k: v for k, v in start.items() if v is not None}})
            case Media(payload):
                return payload
            case Dtmf(digit):
                return json.dumps({"event": "dtmf", "dtmf": digit, "duration": "1600"})  # RTP units: 200 ms
            case MarkEcho(name):
                cleared = name in self._cleared
                self._cleared.discard(name)
                self._pending.discard(name)
                return json.dumps({"type": "mark", "data": {"name": name, "event": _MARK_EVENTS[cleared]}})
        raise unsupported(self, event)


JAMBONZ = Protocol(
    "jambonz",
    {Encoding.PCM_S16LE: (8000, 16000, 24000)},
    Encoding.PCM_S16LE,
    frame_ms=20.0,
    bridge=JambonzBridge,
    provider=JambonzProvider,
    subprotocol=SUBPROTOCOL,
)
