"""The telephony media-stream protocols, sans I/O, as the telephony side speaks them.

A :class:`TelephonyCall` is one media-stream connection from the bridge. It gives the
opening messages the service sends (Twilio's ``connected`` and ``start``, Plivo's ``start``,
Exotel's ``connected`` and ``start``; nothing for raw binary streams), checks every message
it is fed (frame size and encoding, JSON shape, stream id), hands back the decoded audio for
recording, echoes marks once the audio sent before them has played, and measures the timing:
inter-arrival deviation from each frame's duration, drift from the ideal grid, and gaps (the
far end's playout buffer running dry).

Timing is measured per segment: a mark or a clear ends one (the audio after an utterance's
mark may rightly start later), so pauses between utterances are not counted as jitter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections import Counter, deque
from typing import Any

import attrs
import numpy as np

from rtstream.audio.codec import to_int16
from rtstream.frames import AudioFormat, Encoding
from rtstream.params import ParamError, param, require_at_least
from rtstream.stats import Quantiles

from ..netem import DISCONNECT

PROTOCOLS = ("raw", "twilio", "plivo", "exotel")
_RATES = {"raw": (8000, 16000), "twilio": (8000,), "plivo": (8000, 16000), "exotel": (8000, 16000, 24000)}
_DEFAULT_FRAME_MS = {"raw": 60.0, "twilio": 20.0, "plivo": 20.0, "exotel": 100.0}
_PLIVO_TYPES = {"audio/x-mulaw": Encoding.PCM_MULAW, "audio/x-l16": Encoding.PCM_S16LE}


@attrs.frozen(kw_only=True)
class TelephonySettings:
    """What the simulated telephony side expects and how it measures."""

    protocol: str = param("raw", choices=PROTOCOLS, help="Media-stream protocol the bridge must speak.")
    sample_rate: int = param(
        8000,
        choices=(8000, 16000, 24000),
        unit="Hz",
        help="Audio rate: raw 8000|16000, twilio 8000, plivo 8000|16000 (x-l16), exotel 8000|16000|24000.",
    )
    encoding: Encoding | None = param(
        type=Encoding,
        optional=True,
        help="Audio encoding; none takes the protocol's (raw and exotel pcm_s16le, twilio and plivo pcm_mulaw).",
    )
    frame_ms: float | None = param(
        type=float,
        optional=True,
        gt=0,
        max=1000,
        unit="ms",
        help="Expected frame length; none takes the protocol's usual (raw 60, twilio and plivo 20). Exotel checks its chunk rule instead.",
    )
    exotel_multiple: int = param(
        320, min=1, max=1 << 20, unit="bytes", help="Exotel: chunk sizes must be a multiple of this."
    )
    exotel_min_bytes: int = param(3200, min=0, max=1 << 20, unit="bytes", help="Exotel: smallest chunk allowed.")
    exotel_max_bytes: int = param(100_000, min=1, max=1 << 20, unit="bytes", help="Exotel: largest chunk allowed.")
    playout_delay: float = param(
        0.04, min=0, max=5, unit="s", help="Far-end buffering before a segment plays; a gap is that buffer running dry."
    )
    disconnect_after: int | None = param(
        type=int,
        optional=True,
        min=1,
        max=1 << 31,
        help="Drop a connection after this many media frames; none never does.",
    )
    disconnects: int = param(1, min=0, max=1 << 31, help="How many connections disconnect_after drops (0: every one).")
    seed: int = param(0, min=0, help="Seed of the stream and call ids.")

    def __attrs_post_init__(self) -> None:
        if self.exotel_min_bytes > self.exotel_max_bytes:
            raise ParamError("exotel_min_bytes", f"must not exceed exotel_max_bytes ({self.exotel_max_bytes})")
        require_at_least("exotel_max_bytes", self.exotel_max_bytes, "exotel_multiple", self.exotel_multiple)
        if self.sample_rate not in _RATES[self.protocol]:
            rates = "|".join(map(str, _RATES[self.protocol]))
            raise ParamError("sample_rate", f"{self.protocol} streams carry {rates} Hz, got {self.sample_rate}")
        enc = self.format.encoding
        allowed = {
            "raw": (Encoding.PCM_S16LE,),
            "twilio": (Encoding.PCM_MULAW,),
            "plivo": (Encoding.PCM_MULAW, Encoding.PCM_S16LE),
            "exotel": (Encoding.PCM_S16LE, Encoding.PCM_MULAW),
        }[self.protocol]
        if enc not in allowed or (enc is Encoding.PCM_MULAW and self.sample_rate != 8000):
            raise ParamError("encoding", f"{self.protocol} streams do not carry {enc} at {self.sample_rate} Hz")

    @property
    def format(self) -> AudioFormat:
        default = Encoding.PCM_MULAW if self.protocol in ("twilio", "plivo") else Encoding.PCM_S16LE
        return AudioFormat(self.encoding or default, self.sample_rate)

    @property
    def frame_bytes(self) -> int:
        """The expected size of one frame (raw, twilio, plivo)."""
        return self.format.bytes_in(self.frame_ms or _DEFAULT_FRAME_MS[self.protocol])


class _BadMessage(Exception):
    """A message the service rejects; the argument is the reason counted."""


@attrs.frozen
class _Media:
    payload: bytes


@attrs.frozen
class _Mark:
    name: str


@attrs.frozen
class _Clear:
    pass


class TelephonyCall:
    """One media stream: :meth:`opening`, then :meth:`receive` each message; :meth:`report` at the end."""

    def __init__(
        self,
        settings: TelephonySettings,
        number: int,
        *,
        disconnect_after: int | None = None,
        all_deviations: Quantiles | None = None,
    ) -> None:
        self.settings = settings
        self.number = number
        self.format = settings.format
        digest = hashlib.sha256(f"{settings.seed}:{number}".encode()).hexdigest()
        self.stream_id = {"twilio": "MZ" + digest[:32], "exotel": digest[:32]}.get(
            settings.protocol, f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
        )
        self._parse = {
            "raw": self._parse_raw,
            "twilio": self._parse_twilio,
            "plivo": self._parse_plivo,
            "exotel": self._parse_exotel,
        }[settings.protocol]
        self._disconnect_after = disconnect_after
        self._all_deviations = all_deviations
        self.closed = "open"
        self._outbox: deque[tuple[float, Any]] = deque()
        self._pending_marks: deque[tuple[float, str]] = deque()
        self.frames = self.bytes = self.wrong_size = self.marks = self.marks_echoed = self.clears = 0
        self.errors: Counter[str] = Counter()
        self.text_frames = 0
        self.deviation = Quantiles(resolution=1e-6)
        self._last_arrival: float | None = None
        self._last_duration = 0.0
        self._grid_start = 0.0
        self._grid_offset = 0.0
        self.drift = 0.0
        self.max_drift = 0.0
        self._play_end = -float("inf")
        self.gaps = 0
        self.gap_seconds = 0.0
        self.max_gap = 0.0

    # -- opening -------------------------------------------------------------------------------

    def opening(self) -> list[str]:
        """The messages the service sends when the stream opens."""
        s, sid = self.settings, self.stream_id
        call_sid = "CA" + hashlib.sha256(sid.encode()).hexdigest()[:32]
        if s.protocol == "twilio":
            start = {
                "streamSid": sid,
                "callSid": call_sid,
                "accountSid": "AC" + "0" * 32,
                "tracks": ["inbound"],
                "customParameters": {},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            }
            return [
                json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
                json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": sid, "start": start}),
            ]
        if s.protocol == "plivo":
            kind = "audio/x-mulaw" if self.format.encoding is Encoding.PCM_MULAW else "audio/x-l16"
            start = {
                "callId": call_sid,
                "streamId": sid,
                "accountId": "MA0000",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": kind, "sampleRate": self.format.sample_rate},
            }
            return [json.dumps({"event": "start", "sequenceNumber": 0, "start": start, "extra_headers": "{}"})]
        if s.protocol == "exotel":
            start = {
                "stream_sid": sid,
                "call_sid": call_sid,
                "account_sid": "exotel",
                "from": "+10000000000",
                "to": "+10000000001",
                "custom_parameters": {},
                "media_format": {
                    "encoding": "base64",
                    "sample_rate": str(self.format.sample_rate),
                    "bit_rate": "128kbps",
                },
            }
            return [
                json.dumps({"event": "connected"}),
                json.dumps({"event": "start", "sequence_number": 1, "stream_sid": sid, "start": start}),
            ]
        return []

    # -- input ---------------------------------------------------------------------------------

    def receive(self, message: str | bytes, now: float) -> np.ndarray | None:
        """Check one message from the bridge; the PCM16 audio it carried (None if none)."""
        try:
            event = self._parse(message)
        except _BadMessage as exc:
            self.errors[str(exc)] += 1
            return None
        if type(event) is _Media:
            return self._media(event.payload, now)
        if type(event) is _Mark:
            self.marks += 1
            self._pending_marks.append((max(now, self._play_end), event.name))
            self._end_segment()
        elif type(event) is _Clear:
            self.clears += 1
            self._play_end = min(self._play_end, now)
            self._clear_reply(now)
            self._end_segment()
        return None

    def _media(self, payload: bytes, now: float) -> np.ndarray | None:
        fmt = self.format
        if len(payload) % fmt.frame_bytes or not payload:
            self.errors["partial_sample"] += 1
            return None
        if not self._size_ok(len(payload)):
            self.wrong_size += 1
        self.frames += 1
        self.bytes += len(payload)
        samples = fmt.array(payload)
        duration = len(samples) / fmt.sample_rate
        self._time(now, duration)
        if self._disconnect_after is not None and self.frames == self._disconnect_after:
            self._outbox.append((now, DISCONNECT))
        return to_int16(samples, fmt.encoding)

    def _size_ok(self, size: int) -> bool:
        s = self.settings
        if s.protocol == "exotel" and s.frame_ms is None:
            return size % s.exotel_multiple == 0 and s.exotel_min_bytes <= size <= s.exotel_max_bytes
        return size == s.frame_bytes

    def _time(self, now: float, duration: float) -> None:
        if self._last_arrival is None:
            self._grid_start, self._grid_offset = now, 0.0
            self._play_end = now + self.settings.playout_delay
        else:
            deviation = abs(now - self._last_arrival - self._last_duration)
            self.deviation.add(deviation)
            if self._all_deviations is not None:
                self._all_deviations.add(deviation)
            self._grid_offset += self._last_duration
            self.drift = now - (self._grid_start + self._grid_offset)
            self.max_drift = max(self.max_drift, abs(self.drift))
            if now > self._play_end:
                gap = now - self._play_end
                self.gaps += 1
                self.gap_seconds += gap
                self.max_gap = max(self.max_gap, gap)
                self._play_end = now
        self._play_end = max(self._play_end, now) + duration
        self._last_arrival, self._last_duration = now, duration

    def _end_segment(self) -> None:
        self._last_arrival = None

    # -- protocols -----------------------------------------------------------------------------

    @staticmethod
    def _json(message: str | bytes) -> dict[str, Any]:
        if isinstance(message, bytes):
            raise _BadMessage("binary_frame")
        try:
            data = json.loads(message)
        except json.JSONDecodeError:
            raise _BadMessage("bad_json") from None
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            raise _BadMessage("bad_shape")
        return data

    @staticmethod
    def _payload(media: Any) -> bytes:
        if not isinstance(media, dict) or not isinstance(media.get("payload"), str):
            raise _BadMessage("bad_shape")
        try:
            return base64.b64decode(media["payload"], validate=True)
        except binascii.Error:
            raise _BadMessage("bad_base64") from None

    def _check_id(self, data: dict[str, Any], key: str) -> None:
        if data.get(key) != self.stream_id:
            raise _BadMessage("wrong_stream_id")

    @staticmethod
    def _name(mark: Any) -> str:
        if not isinstance(mark, dict) or not isinstance(mark.get("name"), str):
            raise _BadMessage("bad_shape")
        return mark["name"]

    def _parse_raw(self, message: str | bytes) -> Any:
        if isinstance(message, bytes):
            return _Media(message)
        try:
            json.loads(message)
        except json.JSONDecodeError:
            raise _BadMessage("bad_json") from None
        self.text_frames += 1
        return None

    def _parse_twilio(self, message: str | bytes) -> Any:
        data = self._json(message)
        event = data["event"]
        if event not in ("media", "mark", "clear"):
            raise _BadMessage("unknown_event")
        self._check_id(data, "streamSid")
        if event == "media":
            return _Media(self._payload(data.get("media")))
        return _Mark(self._name(data.get("mark"))) if event == "mark" else _Clear()

    def _parse_exotel(self, message: str | bytes) -> Any:
        data = self._json(message)
        event = data["event"]
        if event not in ("media", "mark", "clear"):
            raise _BadMessage("unknown_event")
        self._check_id(data, "stream_sid")
        if event == "media":
            return _Media(self._payload(data.get("media")))
        return _Mark(self._name(data.get("mark"))) if event == "mark" else _Clear()

    def _parse_plivo(self, message: str | bytes) -> Any:
        data = self._json(message)
        event = data["event"]
        if event == "playAudio":
            media = data.get("media")
            payload = self._payload(media)
            if _PLIVO_TYPES.get(media.get("contentType")) is not self.format.encoding:
                raise _BadMessage("wrong_content_type")
            if media.get("sampleRate") != self.format.sample_rate:
                raise _BadMessage("wrong_sample_rate")
            return _Media(payload)
        if event == "checkpoint":
            self._check_id(data, "streamId")
            if not isinstance(data.get("name"), str):
                raise _BadMessage("bad_shape")
            return _Mark(data["name"])
        if event == "clearAudio":
            self._check_id(data, "streamId")
            return _Clear()
        raise _BadMessage("unknown_event")

    # -- output --------------------------------------------------------------------------------

    def _echo(self, name: str) -> str:
        p, sid = self.settings.protocol, self.stream_id
        if p == "plivo":
            return json.dumps({"event": "playedStream", "streamId": sid, "name": name})
        if p == "exotel":
            return json.dumps({"event": "mark", "stream_sid": sid, "mark": {"name": name}})
        return json.dumps(
            {"event": "mark", "sequenceNumber": str(self.marks_echoed + 2), "streamSid": sid, "mark": {"name": name}}
        )

    def _clear_reply(self, now: float) -> None:
        """A clear drops the audio buffered at the far end: pending marks are echoed at once."""
        if self.settings.protocol == "plivo":
            self._pending_marks.clear()
            self._outbox.append((now, json.dumps({"event": "clearedAudio", "streamId": self.stream_id})))
        else:
            self._pending_marks = deque((now, name) for _, name in self._pending_marks)

    def pop_due(self, now: float) -> list[Any]:
        """Messages for the bridge due by ``now`` (mark echoes; :data:`DISCONNECT` to drop it)."""
        out = []
        while self._pending_marks and self._pending_marks[0][0] <= now:
            out.append(self._echo(self._pending_marks.popleft()[1]))
            self.marks_echoed += 1
        while self._outbox and self._outbox[0][0] <= now:
            out.append(self._outbox.popleft()[1])
        return out

    def next_due(self) -> float | None:
        times = [q[0][0] for q in (self._pending_marks, self._outbox) if q]
        return min(times) if times else None

    # -- report --------------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        fmt = self.format
        return {
            "call": self.number,
            "protocol": self.settings.protocol,
            "format": str(fmt),
            "stream_id": self.stream_id if self.settings.protocol != "raw" else None,
            "closed": self.closed,
            "frames": self.frames,
            "seconds": self.bytes / fmt.frame_bytes / fmt.sample_rate,
            "wrong_size": self.wrong_size,
            "errors": dict(sorted(self.errors.items())),
            "marks": self.marks,
            "marks_echoed": self.marks_echoed,
            "clears": self.clears,
            "text_frames": self.text_frames,
            "deviation_ms": attrs.asdict(self.deviation.summary(scale=1000)),
            "drift_ms": {"final": self.drift * 1000, "max": self.max_drift * 1000},
            "gaps": {"count": self.gaps, "total_ms": self.gap_seconds * 1000, "max_ms": self.max_gap * 1000},
        }
