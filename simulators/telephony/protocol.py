"""The simulated telephony side of a media stream, sans I/O.

A :class:`TelephonyCall` is one media-stream connection from the bridge. It speaks through
the protocol's provider side (:mod:`rtstream.wire.telephony`): it gives the opening messages
(Twilio's ``connected`` and ``start``, Plivo's ``start``...; nothing for raw binary streams),
counts every message the provider side refuses by its reason, checks frame sizes, hands back the decoded audio for
recording, echoes marks once the audio sent before them has played, and measures the timing:
inter-arrival deviation from each frame's duration, drift from the ideal grid, and gaps (the
far end's playout buffer running dry). It counts the damage to speech too: fill frames and
gaps inside a reply (:mod:`.underruns`).

Timing is measured per segment: a mark or a clear ends one (the audio after an utterance's
mark may rightly start later), so pauses between utterances are not counted as jitter.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from rtstream.audio.codec import to_int16
from rtstream.frames import AudioFormat, Encoding
from rtstream.params import ParamError, param, require_at_least
from rtstream.series import Marks, Series
from rtstream.stats import BoundedCounter, Quantiles
from rtstream.wire import RemoteProtocolError
from rtstream.wire.telephony import PROTOCOLS as WIRE
from rtstream.wire.telephony import ChunkRule, ClearEcho, MarkEcho, Metadata, SendClear, SendMark, SendMedia, Start

from ..netem import DISCONNECT
from .underruns import ReplyUnderruns

PROTOCOLS = tuple(WIRE)
MAX_PENDING_MARKS = 1000
"""Marks waiting for their audio to play; one beyond is dropped and counted (``too_many_marks``)."""


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
        help=(
            "Expected frame length; none takes the protocol's usual (raw 60, twilio and plivo 20)."
            " Exotel checks its chunk rule instead."
        ),
    )
    exotel_multiple: int = param(
        320, min=1, max=1 << 20, unit="bytes", help="Exotel: chunk sizes must be a multiple of this."
    )
    exotel_min_bytes: int = param(3200, min=0, max=1 << 20, unit="bytes", help="Exotel: smallest chunk allowed.")
    exotel_max_bytes: int = param(100_000, min=1, max=1 << 20, unit="bytes", help="Exotel: largest chunk allowed.")
    playout_delay: float = param(
        0.04, min=0, max=5, unit="s", help="Far-end buffering before a segment plays; a gap is that buffer running dry."
    )
    reply_idle_ms: float = param(
        300.0,
        gt=0,
        max=60_000,
        unit="ms",
        help="Until a mark comes (raw streams have none): fill this long is the line between replies, not a stall.",
    )
    comfort_noise_dbfs: float | None = param(
        -60.0,
        type=float,
        optional=True,
        min=-96,
        max=-20,
        unit="dBFS",
        help="The pacer's comfort noise level (its noise_level), whose frames count as fill; none: only silence.",
    )
    comfort_noise_seed: int = param(0, min=0, help="The seed of the pacer's comfort noise (its seed).")
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
        wire = WIRE[self.protocol]
        if self.sample_rate not in wire.rates:
            rates = "|".join(map(str, wire.rates))
            raise ParamError("sample_rate", f"{self.protocol} streams carry {rates} Hz, got {self.sample_rate}")
        enc = self.format.encoding
        if self.sample_rate not in wire.carries.get(enc, ()):
            raise ParamError("encoding", f"{self.protocol} streams do not carry {enc} at {self.sample_rate} Hz")
        if self.exotel_min_bytes > self.exotel_max_bytes:
            raise ParamError("exotel_min_bytes", f"must not exceed exotel_max_bytes ({self.exotel_max_bytes})")
        require_at_least("exotel_max_bytes", self.exotel_max_bytes, "exotel_multiple", self.exotel_multiple)
        try:
            ChunkRule(self.exotel_multiple, self.exotel_min_bytes, self.exotel_max_bytes)
        except ValueError as exc:
            raise ParamError("exotel_max_bytes", f"the chunk rule allows no chunk: {exc}") from None

    @property
    def format(self) -> AudioFormat:
        return AudioFormat(self.encoding or WIRE[self.protocol].default_encoding, self.sample_rate)

    @property
    def frame_bytes(self) -> int:
        """The expected size of one frame (where the protocol has no chunk rule, or frame_ms is set)."""
        return self.format.bytes_in(self.frame_ms or WIRE[self.protocol].frame_ms)

    @property
    def chunk_rule(self) -> ChunkRule | None:
        """The chunk rule checked in place of a frame size, unless frame_ms is set.

        Exotel's rule in bytes comes from the exotel_* settings; a rule in milliseconds
        (Telnyx, Vonage) is the protocol's own, in this stream's format.
        """
        wire = WIRE[self.protocol]
        if self.frame_ms is not None or wire.chunk_rule is None:
            return None
        if isinstance(wire.chunk_rule, ChunkRule):
            return ChunkRule(self.exotel_multiple, self.exotel_min_bytes, self.exotel_max_bytes)
        return wire.chunk_rule_for(self.format)


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
        provider = WIRE[settings.protocol].provider
        self.stream_id = provider.new_stream_id(digest)
        self.wire = provider(self.format, self.stream_id)
        """The protocol's provider side."""
        self._chunk_rule = settings.chunk_rule
        self._disconnect_after = disconnect_after
        self._all_deviations = all_deviations
        self.closed = "open"
        self._outbox: deque[tuple[float, Any]] = deque()
        self._pending_marks: deque[tuple[float, str]] = deque()
        self.frames = self.bytes = self.wrong_size = self.marks = self.marks_echoed = self.clears = 0
        self.errors = BoundedCounter()
        self.text_frames = 0
        self.deviation = Quantiles(resolution=1e-6)
        self.deviation_series = Series()
        """Each arrival's deviation over time, bounded, for plots."""
        self.gap_marks = Marks()
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
        self.underruns = ReplyUnderruns(
            self.format,
            reply_idle=settings.reply_idle_ms / 1000,
            noise_level=settings.comfort_noise_dbfs,
            noise_seed=settings.comfort_noise_seed,
        )
        """Fill and gaps inside replies: the in-utterance underruns the far end hears."""

    # -- opening -------------------------------------------------------------------------------

    def opening(self, custom_parameters: Mapping[str, str] | None = None) -> list[str | bytes]:
        """The messages the service sends when the stream opens, carrying ``custom_parameters``."""
        sid = self.stream_id or ""
        start = Start(
            stream_id=sid,
            call_id="CA" + hashlib.sha256(sid.encode()).hexdigest()[:32],
            account_id=self.wire.example_account,
            format=self.format,
            tracks=("inbound",),
            custom_parameters=dict(custom_parameters or {}),
            caller="+10000000000",
            called="+10000000001",
        )
        return self.wire.opening(start)

    # -- input ---------------------------------------------------------------------------------

    def receive(self, message: str | bytes, now: float) -> np.ndarray | None:
        """Check one message from the bridge; the PCM16 audio it carried (None if none)."""
        try:
            command = self.wire.receive(message)
        except RemoteProtocolError as exc:
            self.errors.add(exc.reason)
            return None
        match command:
            case SendMedia(payload):
                return self._media(payload, now)
            case SendMark(name):
                self.marks += 1
                if len(self._pending_marks) >= MAX_PENDING_MARKS:
                    self.errors.add("too_many_marks")
                else:
                    self._pending_marks.append((max(now, self._play_end), name))
                self._end_segment()
                self.underruns.end_reply(mark=True)
            case SendClear():
                self.clears += 1
                self._play_end = min(self._play_end, now)
                self._clear_reply(now)
                self._end_segment()
                self.underruns.end_reply(mark=False)
            case Metadata():
                self.text_frames += 1
        return None

    def _media(self, payload: bytes, now: float) -> np.ndarray | None:
        fmt = self.format
        if not self._size_ok(len(payload)):
            self.wrong_size += 1
        self.frames += 1
        self.bytes += len(payload)
        samples = fmt.array(payload)
        duration = len(samples) / fmt.sample_rate
        gap = self._time(now, duration)
        if duration:
            self.underruns.media(payload, duration, gap)
        if self._disconnect_after is not None and self.frames == self._disconnect_after:
            self._outbox.append((now, DISCONNECT))
        return to_int16(samples, fmt.encoding)

    def _size_ok(self, size: int) -> bool:
        if self._chunk_rule is not None:
            return self._chunk_rule.allows(size)
        return size == self.settings.frame_bytes

    def _time(self, now: float, duration: float) -> float:
        """Time a frame's arrival; how long the far end's playout ran dry before it (0 if it did not)."""
        gap = 0.0
        if self._last_arrival is None:
            self._grid_start, self._grid_offset = now, 0.0
            self._play_end = now + self.settings.playout_delay
        else:
            deviation = abs(now - self._last_arrival - self._last_duration)
            self.deviation.add(deviation)
            self.deviation_series.add(now, deviation)
            if self._all_deviations is not None:
                self._all_deviations.add(deviation)
            self._grid_offset += self._last_duration
            self.drift = now - (self._grid_start + self._grid_offset)
            self.max_drift = max(self.max_drift, abs(self.drift))
            if now > self._play_end:
                gap = now - self._play_end
                self.gap_marks.add(self._play_end)
                self.gaps += 1
                self.gap_seconds += gap
                self.max_gap = max(self.max_gap, gap)
                self._play_end = now
        self._play_end = max(self._play_end, now) + duration
        self._last_arrival, self._last_duration = now, duration
        return gap

    def _end_segment(self) -> None:
        self._last_arrival = None

    # -- output --------------------------------------------------------------------------------

    def _clear_reply(self, now: float) -> None:
        """A clear drops the audio buffered at the far end: pending marks are echoed at once."""
        if self.wire.clear_echo:
            self._pending_marks.clear()
            self._outbox.append((now, self.wire.send(ClearEcho())))
        else:
            self._pending_marks = deque((now, name) for _, name in self._pending_marks)

    def pop_due(self, now: float) -> list[Any]:
        """Messages for the bridge due by ``now`` (mark echoes; :data:`DISCONNECT` to drop it)."""
        out = []
        while self._pending_marks and self._pending_marks[0][0] <= now:
            out.append(self.wire.send(MarkEcho(self._pending_marks.popleft()[1])))
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
            "stream_id": self.stream_id,
            "closed": self.closed,
            "frames": self.frames,
            "seconds": self.bytes / fmt.frame_bytes / fmt.sample_rate,
            "wrong_size": self.wrong_size,
            "errors": self.errors.snapshot(),
            "marks": self.marks,
            "marks_echoed": self.marks_echoed,
            "clears": self.clears,
            "text_frames": self.text_frames,
            "deviation_ms": attrs.asdict(self.deviation.summary(scale=1000)),
            "drift_ms": {"final": self.drift * 1000, "max": self.max_drift * 1000},
            "gaps": {"count": self.gaps, "total_ms": self.gap_seconds * 1000, "max_ms": self.max_gap * 1000},
            "in_utterance_underruns": self.underruns.report(),
            "series": {"deviation": self.deviation_series.snapshot(), "gaps": self.gap_marks.snapshot()},
        }
