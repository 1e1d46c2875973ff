"""Twilio Media Streams (bidirectional): JSON text frames only, base64 μ-law 8 kHz both ways.

Twilio numbers its messages with strings (``"sequenceNumber": "3"``) and names the stream in
every message (``streamSid``); a binary frame, bad JSON, an unknown event or a wrong stream id
is an error. :mod:`.exotel` reuses these classes with its snake_case names.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, ClassVar

from rtstream.frames import AudioFormat, Encoding

from .._json import base64_payload, load_object, member, optional_int, optional_text, text
from ..errors import RemoteProtocolError
from .base import (
    BridgeSide,
    Command,
    Connected,
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
    Stop,
    check_samples,
    unsupported,
)

_MULAW = "audio/x-mulaw"


class _Names:
    """The envelope's field names, and how its numbers are written."""

    STREAM: ClassVar[str] = "streamSid"
    SEQUENCE: ClassVar[str] = "sequenceNumber"
    CALL: ClassVar[str] = "callSid"
    ACCOUNT: ClassVar[str] = "accountSid"
    CUSTOM: ClassVar[str] = "customParameters"
    FORMAT: ClassVar[str] = "mediaFormat"
    NUMBERS_AS_TEXT: ClassVar[bool] = True

    def _written(self, number: int) -> int | str:
        return str(number) if self.NUMBERS_AS_TEXT else number


class TwilioBridge(_Names, BridgeSide):
    def __init__(self, fmt: AudioFormat) -> None:
        super().__init__(fmt)
        self._media_head = ""
        self._frame_bytes = fmt.frame_bytes

    def receive(self, message: str | bytes) -> Event:
        data = load_object(message, "event")
        parse = self._PARSERS.get(data["event"])
        if parse is None:
            raise RemoteProtocolError("unknown_event", f"event {data['event']!r}")
        return parse(self, data)

    def _stream_of(self, data: dict[str, Any]) -> None:
        """A message of the stream: a stream id it names must be this one's."""
        sid = data.get(self.STREAM)
        if sid is not None and sid != self.stream_id:
            raise RemoteProtocolError("wrong_stream_id", f"{self.STREAM} {sid!r} is not {self.stream_id!r}")

    def _connected(self, data: dict[str, Any]) -> Event:
        return Connected()

    def _start(self, data: dict[str, Any]) -> Event:
        start = member(data, "start")
        sid = start.get(self.STREAM)
        sid = sid if isinstance(sid, str) else data.get(self.STREAM)
        if not isinstance(sid, str):
            raise RemoteProtocolError("missing_stream_id", f"start names no {self.STREAM}")
        custom = start.get(self.CUSTOM) or {}
        if not isinstance(custom, dict) or not all(isinstance(v, str) for v in custom.values()):
            raise RemoteProtocolError("bad_shape", f"{self.CUSTOM} must map names to strings")
        tracks = start.get("tracks") or []
        if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
            raise RemoteProtocolError("bad_shape", "tracks must be a list of strings")
        fmt = start.get(self.FORMAT)
        event = self._start_event(
            start,
            stream_id=sid,
            call_id=optional_text(start, self.CALL),
            account_id=optional_text(start, self.ACCOUNT),
            format=None if fmt is None else self._format_of(member(start, self.FORMAT)),
            tracks=tuple(tracks),
            custom_parameters=dict(custom),
        )
        self._started(sid)
        return event

    def _start_event(self, start: dict[str, Any], **fields: Any) -> Start:
        return Start(**fields)

    def _format_of(self, fmt: dict[str, Any]) -> AudioFormat:
        if fmt.get("encoding") != _MULAW or fmt.get("sampleRate") != 8000 or fmt.get("channels", 1) != 1:
            raise RemoteProtocolError("bad_media_format", f"{self.FORMAT} {fmt!r}")
        return AudioFormat(Encoding.PCM_MULAW, 8000)

    def _started(self, sid: str) -> None:
        """Take the stream id; build the start of every media message once, not per frame."""
        self.stream_id = sid
        self._media_head = f'{{"event":"media","{self.STREAM}":{json.dumps(sid)},"media":{{"payload":"'

    def _media(self, data: dict[str, Any]) -> Event:
        if self.stream_id is None:
            raise RemoteProtocolError("audio_before_start", "media before the stream's start")
        self._stream_of(data)
        media = member(data, "media")
        payload = base64_payload(media, "payload")
        if not payload or len(payload) % self._frame_bytes:
            check_samples(payload, self.format)  # raises, naming the sizes
        return Media(
            payload, optional_int(data, self.SEQUENCE), optional_int(media, "timestamp"), optional_int(media, "chunk")
        )

    def _dtmf(self, data: dict[str, Any]) -> Event:
        self._stream_of(data)
        return Dtmf(text(member(data, "dtmf"), "digit"))

    def _mark(self, data: dict[str, Any]) -> Event:
        self._stream_of(data)
        return MarkEcho(text(member(data, "mark"), "name"))

    def _stop(self, data: dict[str, Any]) -> Event:
        self._stream_of(data)
        stop = data.get("stop")
        return Stop(optional_text(stop, "reason") if isinstance(stop, dict) else None)

    _PARSERS: ClassVar[dict[str, Callable[[TwilioBridge, dict[str, Any]], Event]]] = {
        "connected": _connected,
        "start": _start,
        "media": _media,
        "dtmf": _dtmf,
        "mark": _mark,
        "stop": _stop,
    }

    def send(self, command: Command) -> str | bytes:
        if self.stream_id is None:
            raise RuntimeError("the stream has not started: no stream id to send to")
        match command:
            case SendMedia(payload):
                return self._media_head + binascii.b2a_base64(payload, newline=False).decode("ascii") + '"}}'
            case SendMark(name):
                return json.dumps({"event": "mark", self.STREAM: self.stream_id, "mark": {"name": name}})
            case SendClear():
                return json.dumps({"event": "clear", self.STREAM: self.stream_id})
        raise unsupported(self, command)


class TwilioProvider(_Names, ProviderSide):
    example_account = "AC" + "0" * 32

    def __init__(self, fmt: AudioFormat, stream_id: str | None) -> None:
        super().__init__(fmt, stream_id)
        self._sequence = 1
        self._call_id: str | None = None

    @staticmethod
    def new_stream_id(digest: str) -> str | None:
        return "MZ" + digest[:32]

    def opening(self, start: Start) -> list[str | bytes]:
        return [self.send(Connected()), self.send(start)]

    def receive(self, message: str | bytes) -> Command | Metadata:
        data = load_object(message, "event")
        event = data["event"]
        if event not in ("media", "mark", "clear"):
            raise RemoteProtocolError("unknown_event", f"event {event!r}")
        self._check_stream(data, self.STREAM)
        if event == "media":
            return SendMedia(check_samples(base64_payload(member(data, "media"), "payload"), self.format))
        if event == "mark":
            return SendMark(text(member(data, "mark"), "name"))
        return SendClear()

    def _numbered(self, event: str, body: dict[str, Any]) -> str:
        """A message of the stream, numbered in turn."""
        number, self._sequence = self._sequence, self._sequence + 1
        return json.dumps({"event": event, self.SEQUENCE: self._written(number), self.STREAM: self.stream_id, **body})

    def send(self, event: Event) -> str | bytes:
        match event:
            case Connected():
                return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            case Start():
                self._call_id = event.call_id
                return self._numbered("start", {"start": self._start_body(event)})
            case Media():
                media: dict[str, Any] = {"track": "inbound"}
                if event.chunk is not None:
                    media["chunk"] = self._written(event.chunk)
                if event.timestamp is not None:
                    media["timestamp"] = self._written(event.timestamp)
                media["payload"] = base64.b64encode(event.payload).decode("ascii")
                return self._numbered("media", {"media": media})
            case MarkEcho(name):
                return self._numbered("mark", {"mark": {"name": name}})
            case Dtmf(digit):
                return self._numbered("dtmf", {"dtmf": {"track": "inbound_track", "digit": digit}})
            case Stop(reason):
                stop = {self.CALL: self._call_id}
                if reason is not None:
                    stop["reason"] = reason
                return self._numbered("stop", {"stop": stop})
        raise unsupported(self, event)

    def _start_body(self, start: Start) -> dict[str, Any]:
        return {
            self.STREAM: start.stream_id,
            self.CALL: start.call_id,
            self.ACCOUNT: start.account_id,
            "tracks": list(start.tracks),
            self.CUSTOM: dict(start.custom_parameters),
            self.FORMAT: {"encoding": _MULAW, "sampleRate": self.format.sample_rate, "channels": 1},
        }


TWILIO = Protocol(
    "twilio",
    {Encoding.PCM_MULAW: (8000,)},
    Encoding.PCM_MULAW,
    frame_ms=20.0,
    bridge=TwilioBridge,
    provider=TwilioProvider,
)
