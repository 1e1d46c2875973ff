"""Exotel Voicebot / AgentStream: Twilio's envelope in snake_case, audio base64 PCM16 LE ("slin").

Exotel numbers its messages with integers and announces ``"encoding": "base64"`` for PCM16 at
8, 16 or 24 kHz. Outbound audio must come in chunks of a multiple of 320 bytes, at least
3.2 kB (100 ms at 8 kHz) and at most 100 kB, or the caller hears gaps: :data:`CHUNK_RULE`,
applied by a :class:`~rtstream.wire.telephony.base.Regrouper`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rtstream.frames import AudioFormat, Encoding

from ..errors import RemoteProtocolError
from .base import ChunkRule, Connected, Event, Protocol, Start
from .twilio import TwilioBridge, TwilioProvider, _Names

CHUNK_RULE = ChunkRule(320, 3200, 100_000)
_ENCODINGS = {"base64": Encoding.PCM_S16LE, "audio/x-mulaw": Encoding.PCM_MULAW}


class _SnakeCase(_Names):
    STREAM: ClassVar[str] = "stream_sid"
    SEQUENCE: ClassVar[str] = "sequence_number"
    CALL: ClassVar[str] = "call_sid"
    ACCOUNT: ClassVar[str] = "account_sid"
    CUSTOM: ClassVar[str] = "custom_parameters"
    FORMAT: ClassVar[str] = "media_format"
    NUMBERS_AS_TEXT: ClassVar[bool] = False


class ExotelBridge(_SnakeCase, TwilioBridge):
    def _format_of(self, fmt: dict[str, Any]) -> AudioFormat:
        encoding: Any = fmt.get("encoding")
        rate: Any = fmt.get("sample_rate")
        try:
            return AudioFormat(_ENCODINGS[encoding], int(rate))
        except (KeyError, TypeError, ValueError):
            raise RemoteProtocolError("bad_media_format", f"{self.FORMAT} {fmt!r}") from None

    def _start_event(self, start: dict[str, Any], **fields: Any) -> Start:
        caller, called = start.get("from"), start.get("to")
        return Start(
            **fields,
            caller=caller if isinstance(caller, str) else None,
            called=called if isinstance(called, str) else None,
        )


class ExotelProvider(_SnakeCase, TwilioProvider):
    example_account = "exotel"

    @staticmethod
    def new_stream_id(digest: str) -> str | None:
        return digest[:32]

    def send(self, event: Event) -> str | bytes:
        if isinstance(event, Connected):
            return '{"event": "connected"}'
        return super().send(event)

    def _start_body(self, start: Start) -> dict[str, Any]:
        encoding = "audio/x-mulaw" if self.format.encoding is Encoding.PCM_MULAW else "base64"
        return {
            self.STREAM: start.stream_id,
            self.CALL: start.call_id,
            self.ACCOUNT: start.account_id,
            "from": start.caller,
            "to": start.called,
            self.CUSTOM: dict(start.custom_parameters),
            self.FORMAT: {"encoding": encoding, "sample_rate": str(self.format.sample_rate), "bit_rate": "128kbps"},
        }


EXOTEL = Protocol(
    "exotel",
    {Encoding.PCM_S16LE: (8000, 16000, 24000), Encoding.PCM_MULAW: (8000,)},
    Encoding.PCM_S16LE,
    frame_ms=100.0,
    bridge=ExotelBridge,
    provider=ExotelProvider,
    chunk_rule=CHUNK_RULE,
)
