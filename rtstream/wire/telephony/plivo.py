"""Plivo audio streams (bidirectional): JSON text frames, μ-law 8 kHz or L16 8/16 kHz.

Plivo's ``start`` names the stream inside ``start`` (``streamId``); its numbers are numbers.
Audio goes out as ``playAudio`` with its content type and rate (and no stream id); a
``checkpoint`` is echoed as ``playedStream`` once played, ``clearAudio`` is answered with
``clearedAudio``. Custom parameters ride in ``extra_headers``, a JSON object in a string.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, ClassVar

from rtstream.frames import AudioFormat, Encoding

from .._json import base64_payload, load_object, member, optional_int, optional_text, text
from ..errors import RemoteProtocolError
from .base import (
    BridgeSide,
    ClearEcho,
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
    Stop,
    check_samples,
    unsupported,
)

_TYPES = {Encoding.PCM_MULAW: "audio/x-mulaw", Encoding.PCM_S16LE: "audio/x-l16"}
_ENCODINGS = {name: encoding for encoding, name in _TYPES.items()}
_STREAM = "streamId"


class PlivoBridge(BridgeSide):
    def __init__(self, fmt: AudioFormat) -> None:
        super().__init__(fmt)
        content = f'"contentType":"{_TYPES[fmt.encoding]}","sampleRate":{fmt.sample_rate}'
        self._media_head = '{"event":"playAudio","media":{' + content + ',"payload":"'

    def receive(self, message: str | bytes) -> Event:
        data = load_object(message, "event")
        parse = self._PARSERS.get(data["event"])
        if parse is None:
            raise RemoteProtocolError("unknown_event", f"event {data['event']!r}")
        if parse is not PlivoBridge._start:
            sid = data.get(_STREAM)
            if sid is not None and sid != self.stream_id:
                raise RemoteProtocolError("wrong_stream_id", f"{_STREAM} {sid!r} is not {self.stream_id!r}")
        return parse(self, data)

    def _start(self, data: dict[str, Any]) -> Event:
        start = member(data, "start")
        sid = start.get(_STREAM)
        sid = sid if isinstance(sid, str) else data.get(_STREAM)
        if not isinstance(sid, str):
            raise RemoteProtocolError("missing_stream_id", f"start names no {_STREAM}")
        headers = data.get("extra_headers") or "{}"
        try:
            custom = json.loads(headers) if isinstance(headers, str) else None
        except json.JSONDecodeError:
            custom = None
        if not isinstance(custom, dict) or not all(isinstance(v, str) for v in custom.values()):
            raise RemoteProtocolError("bad_shape", "extra_headers must be a JSON object of strings, in a string")
        tracks = start.get("tracks") or []
        if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
            raise RemoteProtocolError("bad_shape", "tracks must be a list of strings")
        fmt = start.get("mediaFormat")
        self.stream_id = sid
        return Start(
            stream_id=sid,
            call_id=optional_text(start, "callId"),
            account_id=optional_text(start, "accountId"),
            format=None if fmt is None else _format_of(member(start, "mediaFormat")),
            tracks=tuple(tracks),
            custom_parameters=custom,
        )

    def _media(self, data: dict[str, Any]) -> Event:
        media = member(data, "media")
        return Media(
            check_samples(base64_payload(media, "payload"), self.format),
            sequence_number=optional_int(data, "sequenceNumber"),
            timestamp=optional_int(media, "timestamp"),
            chunk=optional_int(media, "chunk"),
        )

    def _dtmf(self, data: dict[str, Any]) -> Event:
        return Dtmf(text(member(data, "dtmf"), "digit"))

    def _played(self, data: dict[str, Any]) -> Event:
        return MarkEcho(text(data, "name"))

    def _cleared(self, data: dict[str, Any]) -> Event:
        return ClearEcho()

    def _stop(self, data: dict[str, Any]) -> Event:
        return Stop(optional_text(data, "reason"))

    _PARSERS: ClassVar[dict[str, Callable[[PlivoBridge, dict[str, Any]], Event]]] = {
        "start": _start,
        "media": _media,
        "dtmf": _dtmf,
        "playedStream": _played,
        "clearedAudio": _cleared,
        "stop": _stop,
    }

    def send(self, command: Command) -> str | bytes:
        if isinstance(command, SendMedia):
            return self._media_head + base64.b64encode(command.payload).decode("ascii") + '"}}'
        if self.stream_id is None:
            raise RuntimeError("the stream has not started: no stream id to send to")
        match command:
            case SendMark(name):
                return json.dumps({"event": "checkpoint", _STREAM: self.stream_id, "name": name})
            case SendClear():
                return json.dumps({"event": "clearAudio", _STREAM: self.stream_id})
        raise unsupported(self, command)


def _format_of(fmt: dict[str, Any]) -> AudioFormat:
    name, rate = fmt.get("encoding"), fmt.get("sampleRate")
    encoding = _ENCODINGS.get(name) if isinstance(name, str) else None
    if encoding is None or rate not in PLIVO.carries[encoding]:
        raise RemoteProtocolError("bad_media_format", f"mediaFormat {fmt!r}")
    return AudioFormat(encoding, rate)


class PlivoProvider(ProviderSide):
    clear_echo = True
    example_account = "MA0000"

    def __init__(self, fmt: AudioFormat, stream_id: str | None) -> None:
        super().__init__(fmt, stream_id)
        self._sequence = 0

    def receive(self, message: str | bytes) -> Command | Metadata:
        data = load_object(message, "event")
        event = data["event"]
        if event == "playAudio":
            media = member(data, "media")
            payload = base64_payload(media, "payload")
            content = media.get("contentType")
            if not isinstance(content, str) or _ENCODINGS.get(content) is not self.format.encoding:
                raise RemoteProtocolError("wrong_content_type", f"contentType {media.get('contentType')!r}")
            if media.get("sampleRate") != self.format.sample_rate:
                raise RemoteProtocolError("wrong_sample_rate", f"sampleRate {media.get('sampleRate')!r}")
            return SendMedia(check_samples(payload, self.format))
        if event == "checkpoint":
            self._check_stream(data, _STREAM)
            return SendMark(text(data, "name"))
        if event == "clearAudio":
            self._check_stream(data, _STREAM)
            return SendClear()
        raise RemoteProtocolError("unknown_event", f"event {event!r}")

    def _number(self) -> int:
        number, self._sequence = self._sequence, self._sequence + 1
        return number

    def send(self, event: Event) -> str | bytes:
        sid = self.stream_id
        match event:
            case Start():
                start = {
                    "callId": event.call_id,
                    _STREAM: event.stream_id,
                    "accountId": event.account_id,
                    "tracks": list(event.tracks),
                    "mediaFormat": {"encoding": _TYPES[self.format.encoding], "sampleRate": self.format.sample_rate},
                }
                return json.dumps(
                    {
                        "event": "start",
                        "sequenceNumber": self._number(),
                        "start": start,
                        "extra_headers": json.dumps(dict(event.custom_parameters)),
                    }
                )
            case Media():
                media: dict[str, Any] = {"track": "inbound"}
                if event.timestamp is not None:
                    media["timestamp"] = str(event.timestamp)
                if event.chunk is not None:
                    media["chunk"] = event.chunk
                media["payload"] = base64.b64encode(event.payload).decode("ascii")
                return json.dumps({"event": "media", "sequenceNumber": self._number(), _STREAM: sid, "media": media})
            case MarkEcho(name):
                return json.dumps({"event": "playedStream", _STREAM: sid, "name": name})
            case ClearEcho():
                return json.dumps({"event": "clearedAudio", _STREAM: sid})
            case Dtmf(digit):
                return json.dumps({"event": "dtmf", _STREAM: sid, "dtmf": {"track": "inbound", "digit": digit}})
            case Stop(reason):
                body = {"event": "stop", _STREAM: sid}
                return json.dumps(body if reason is None else {**body, "reason": reason})
        raise unsupported(self, event)


PLIVO = Protocol(
    "plivo",
    {Encoding.PCM_MULAW: (8000,), Encoding.PCM_S16LE: (8000, 16000)},
    Encoding.PCM_MULAW,
    frame_ms=20.0,
    bridge=PlivoBridge,
    provider=PlivoProvider,
)
