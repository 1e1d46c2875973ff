"""The adaptive jitter buffer: chunks with media time and arrival time in, a steady stream out.

A pure core (no I/O, time passed in): :meth:`JitterBuffer.put` and :meth:`~JitterBuffer.event`
take frames as they arrive, :meth:`~JitterBuffer.pull` hands out the next tick of audio with
the events that fall in it. Audio is placed on the buffer's own timeline by ``pts``; holes are
concealed when their time comes (``rtstream.audio.plc``), the level is steered toward the
target delay by time-stretch within ±5 % (``rtstream.audio.stretch``), and the first good
audio after a concealment or a skip is merged in with a cross-fade.

Life of a stream: *idle* (nothing to play) → *buffering* (until ``start_delay`` of audio is in,
or the target when that is larger; inbound, until the first sample has waited 1.5 times the
target, see :data:`START_MARGIN`) → *playing* → back to idle when the input ends or, outbound,
when an utterance has been played to its ``UtteranceEnd``. Events keep their place: each is
pinned to the timeline position where it arrived, then to the output sample where that
position is played. ``Clear`` (barge-in) flushes the audio at once and goes out ahead of
everything; ``Gap`` marks audio as lost so it is concealed without waiting for it (unless its
reason is ``"missing"``: then it may yet come, and its hole is decided at playout like any other).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import Any

import attrs
import numpy as np

from rtstream.audio.codec import from_float32, to_float32
from rtstream.audio.plc import Concealer
from rtstream.audio.stretch import TimeStretch
from rtstream.frames import AudioChunk, AudioFormat, Clear, Event, Frame, Gap, UtteranceEnd, UtteranceStart
from rtstream.series import Marks, Series
from rtstream.stats import DropCount, Drops, Quantiles, Summary, stat

from .decision import URGENT_EXCESS, SpeedControl, band, skip_hole, stop_at, urgent
from .delay import DelayEstimator
from .output import OutputQueue
from .timeline import Timeline

INTERRUPTION = 0.150
"""A concealment at least this long is an interruption (NetEq's and WebRTC's threshold)."""
MAX_WAIT = 0.120
"""The longest a hole is waited for inbound before it is given up: with the last tick of
concealment that may follow, the run stays below an interruption."""
START_MARGIN = 1.5
"""Inbound playout starts once the first sample has waited this many times the target (with at
least ``start_delay`` of audio in), or once that much audio is in: the first packets show only
part of the jitter, and growing the delay later costs concealment or stretched speech. The
wait, not the audio in, is what covers the jitter: when the newest packets are the late ones,
the audio in falls short of the wait, and waiting for it would start far above the target."""
RESTART_RUN = 5
"""This many chunks in a row from further back than the maximum delay: the sender restarted."""
_MAX_PENDING_LEVELS = 4
"""Outbound audio held beyond the ring, in maximum levels, for a caller that ignores ``full``."""
_MAX_EVENTS = 1024
_MAX_LOST_RANGES = 64
_MAX_ARRIVALS = 4096


@attrs.frozen(kw_only=True)
class JitterSettings:
    """How a :class:`JitterBuffer` behaves; times in seconds."""

    direction: str = "outbound"
    tick: float = 0.020
    min_delay: float = 0.020
    max_delay: float = 0.500
    start_delay: float = 0.150
    quantile: float = 0.95
    forget: float = 0.983
    max_stretch: float = 0.05


@attrs.frozen
class JitterStatistics:
    """NetEq-style figures (delays in ms, rates as fractions of the audio handed out), then the
    W3C webrtc-stats counters of RTCInboundRtpStreamStats under their own (camelCase) names."""

    direction: str = stat(help="outbound (TTS bursts, backpressure) or inbound (network packets).")
    state: str = stat(help="idle, buffering or playing.")
    chunks_in: int = stat(help="Audio chunks taken in.")
    samples_in: int = stat(help="Samples per channel taken in.")
    chunks_out: int = stat(help="Audio chunks handed out.")
    samples_out: int = stat(help="Samples handed out: played audio, stretched audio and concealment.")
    seconds_out: float = stat(help="Seconds of audio handed out.")
    current_delay_ms: float = stat(
        help="Audio buffered ahead of the play position (holes included) and produced but not handed out, in ms."
    )
    target_delay_ms: float = stat(
        help="The target now, in ms: the delay histogram's quantile, raised while delay peaks recur."
    )
    max_delay_ms: float = stat(help="The largest target allowed (max_delay_ms), in ms: a target there is capped.")
    delay_ms: Summary = stat(
        help="Time from arrival of each chunk played to the handing out of its first sample, in ms."
    )
    concealment_rate: float = stat(help="Share of the output that was concealment (NetEq expand rate).")
    accelerate_rate: float = stat(help="Share of the output removed by time-compression.")
    decelerate_rate: float = stat(help="Share of the output added by time-stretching.")
    concealment_events: int = stat(help="Runs of concealment started.")
    interruptions: int = stat(help="Concealments of 150 ms or more.")
    interruption_seconds: float = stat(help="Total length of those interruptions, in seconds.")
    late_losses: int = stat(help="Chunks that came after their place had been played (or given up), dropped.")
    lost_samples: int = stat(
        help="Samples of the timeline given up: concealed in place of audio that never came in time."
    )
    merges: int = stat(help="Concealments and skips joined to the audio after them with a cross-fade.")
    prebuffers: int = stat(help="Times playout had to gather audio before starting (the stream's start, after idle).")
    resyncs: int = stat(help="Jumps in pts that re-anchored the timeline (a restarted sender).")
    catch_ups: int = stat(
        help="Inbound: stale audio dropped at once after a stall, rather than drained (drops.catch_up)."
    )
    delay_peaks: int = stat(help="Delay peaks seen by the peak detector (kept out of the histogram).")
    gaps_in: int = stat(help="Gap frames taken in (losses reported upstream).")
    clears: int = stat(help="Clears (barge-ins) taken in.")
    drops: dict[str, DropCount] = stat(
        help="Audio dropped, by reason: late, duplicate, overflow, catch_up, clear, wrong_format, event_overflow."
    )
    jitterBufferDelay: float = stat(
        help="Seconds each sample taken from the buffer spent in it (from its arrival), summed over samples."
    )
    jitterBufferTargetDelay: float = stat(
        help="The target delay (seconds) at the moment each sample was taken out, summed over samples."
    )
    jitterBufferEmittedCount: int = stat(
        help="Received samples taken out of the buffer (speeding up takes more than it plays, slowing down fewer)."
    )
    totalSamplesReceived: int = stat(help="Samples taken in (W3C webrtc-stats totalSamplesReceived).")
    concealedSamples: int = stat(help="Samples of concealment handed out, silent ones included.")
    silentConcealedSamples: int = stat(help="Concealment handed out as silence (after 60 ms the replay has faded out).")
    concealmentEvents: int = stat(help="Times concealment began after real audio.")
    insertedSamplesForDeceleration: int = stat(help="Samples added by slowing down (time-stretching).")
    removedSamplesForAcceleration: int = stat(help="Samples removed by speeding up (time-compression).")


class JitterBuffer:
    """One stream's adaptive playout buffer in one audio format."""

    def __init__(self, fmt: AudioFormat, settings: JitterSettings | None = None) -> None:
        s = settings or JitterSettings()
        if s.direction not in ("inbound", "outbound"):
            raise ValueError(f"direction must be 'inbound' or 'outbound', got {s.direction!r}")
        self.fmt = fmt
        self.settings = s
        self.rate = rate = fmt.sample_rate
        self.tick = fmt.samples_in(s.tick * 1000)
        self.plc = Concealer(rate, fmt.channels)
        self._back = Concealer(rate, fmt.channels)
        self._bridge_buf = np.zeros((6 * self.plc.frame, fmt.channels), dtype=np.float32)
        self._bridge: tuple[int, int, int] | None = None
        """A hole being concealed from both sides: its start, its end and the backward part's length."""
        self.stretch = TimeStretch(rate, fmt.channels, max_change=s.max_stretch, long_pauses=s.direction == "inbound")
        self.hold = self.plc.hold
        self.max_level = round(s.max_delay * rate)
        room = self.tick + self.hold + self.stretch.lag_max
        self.timeline = Timeline(self.max_level + room + self.stretch.lookahead, fmt.channels)
        self.out = OutputQueue(max(self.plc.history_len, self.stretch.lag_max), room, fmt.channels)
        self._scratch = np.zeros(
            (max(room + self.stretch.lookahead + self.stretch.horizon, self.plc.history_len), fmt.channels),
            dtype=np.float32,
        )
        self.estimator = DelayEstimator(
            max_delay=s.max_delay,
            reference="window" if s.direction == "inbound" else "first",
            forget=s.forget,
            quantile=s.quantile,
        )
        self.speed = SpeedControl(s.direction, s.max_stretch)
        self.state = "idle"
        self.closed = False
        self._offset: int | None = None
        self._origin = 0
        """Where the current stream's first chunk was placed on the timeline."""
        self._anchor_next = False
        self._pending: deque[tuple[int, np.ndarray, float]] = deque()
        """Outbound audio beyond the ring's room, in order; the stage stops reading meanwhile."""
        self._pending_samples = 0
        self._write_end = 0
        self._final: int | None = None
        self._events: deque[tuple[int, Event]] = deque()
        self._pinned: deque[tuple[int, Event]] = deque()
        self._urgent: list[Frame] = []
        self._lost: list[tuple[int, int]] = []
        self._given_up: deque[tuple[int, int]] = deque(maxlen=_MAX_LOST_RANGES)
        """The latest timeline ranges passed without their audio: a chunk for one of them is a late loss."""
        self._last_chunk = 0
        self._stale_run = 0
        self._wait = 0
        self._splice = False
        self._run = 0
        self._utterance: str | None = None
        self._arrivals: list[tuple[int, float, int]] = []
        """A heap of (timeline end, arrival, length) of the chunks not yet played: by position,
        since reordered chunks come out of order and each is timed when its own audio plays."""
        self._out_arrivals: deque[tuple[int, float | None]] = deque()
        """(output position, arrival of the audio played from there; None for concealment)."""
        self._delays = Quantiles()
        self.delay_series = Series()
        """The controlled delay at each tick played, bounded, for plots (as :attr:`target_series`)."""
        self.target_series = Series()
        self.clear_marks = Marks()
        self.drops = Drops()
        self._c = _Counters()

    # ------------------------------------------------------------------ input

    @property
    def full(self) -> bool:
        """Outbound: the buffer holds its maximum, so the stage stops reading (backpressure).

        Inbound it is never full: real-time packets cannot wait, the oldest audio is dropped.
        """
        if self.settings.direction == "inbound":
            return False
        return bool(self._pending) or self._write_end - self.timeline.start >= self.max_level

    @property
    def finished(self) -> bool:
        """The input has ended and everything has been handed out."""
        return self.closed and self.state == "idle" and not self._urgent and not self._events and not self._pinned

    def put(self, chunk: AudioChunk, now: float) -> None:
        """Take a chunk that arrived at ``chunk.arrival`` (or ``now``)."""
        c = self._c
        c.chunks_in += 1
        c.samples_in += chunk.samples
        if chunk.format != self.fmt:
            self.drops.add("wrong_format", samples=chunk.samples)
            return
        if not chunk.samples:
            return
        arrival = now if chunk.arrival is None else chunk.arrival
        data = to_float32(chunk.data, self.fmt.encoding).reshape(chunk.samples, self.fmt.channels)
        n = chunk.samples
        start = self.timeline.start
        offset = self._offset
        if offset is None or self._anchor_next:
            offset = self._anchor(chunk.pts)
        pos = chunk.pts + offset
        stale = pos + n < start - self.max_level
        self._stale_run = self._stale_run + 1 if stale else 0
        if pos - self._write_end > self.max_level or self._stale_run >= RESTART_RUN:
            self._c.resyncs += 1
            self._stale_run = 0
            pos = chunk.pts + self._anchor(chunk.pts)
        self._last_chunk = n
        if not self._duplicate(pos, n):  # a copy's arrival says nothing about the network's delay
            self.estimator.arrival(arrival, pos / self.rate)
        if pos < start and self.state == "buffering" and not self.out.produced and self.timeline.rewind(pos):
            start = self._origin = pos  # nothing played yet: an earlier chunk that arrived second still counts
        if pos < start:
            if pos + n <= start:
                if self._duplicate(pos, n):
                    self.drops.add("duplicate", samples=n)  # its audio has just been played
                else:
                    c.late_losses += 1
                    self.drops.add("late", samples=n)
                return
            self.drops.add("late", samples=start - pos, frames=0)
            data, pos = data[start - pos :], start
        self._final = None
        self._write_end = max(self._write_end, pos + len(data))
        if len(self._arrivals) == _MAX_ARRIVALS:
            heapq.heappop(self._arrivals)
        heapq.heappush(self._arrivals, (pos + len(data), arrival, len(data)))
        if self.settings.direction == "inbound":
            excess = pos + len(data) - start - self.max_level
            if excess > 0:
                self._skip(excess, "overflow")
                start = self.timeline.start
                if pos < start:
                    data, pos = data[start - pos :], start
            self._store(pos, data, arrival)
        elif self._pending and self._pending_samples + len(data) > _MAX_PENDING_LEVELS * self.max_level:
            self.drops.add("overflow", samples=len(data))  # the caller ignored ``full``
        else:
            self._pending.append((pos, data, arrival))
            self._pending_samples += len(data)
            self._refill()
        if self.state == "idle":
            self.state = "buffering"
            c.prebuffers += 1

    def _duplicate(self, pos: int, n: int) -> bool:
        """All of ``[pos, pos + n)`` was just played (not concealed) or is buffered already."""
        start, end = self.timeline.start, pos + n
        played = min(end, start) - pos
        floor = max(self._origin, start - self.max_level)  # before the stream's first sample nothing was played
        if played > 0 and (pos < floor or self._was_given_up(pos, min(end, start))):
            return False
        return end <= start or self.timeline.covered(max(pos, start), end) == end - max(pos, start)

    def _anchor(self, pts: int) -> int:
        """Place the next chunk right after what is buffered, whatever its pts says; the new offset."""
        self._origin = max(self._write_end, self.timeline.start)
        offset = self._offset = self._origin - pts
        self._anchor_next = False
        self.estimator.restart()
        return offset

    def _store(self, pos: int, data: np.ndarray, arrival: float) -> None:
        duplicate = self.timeline.write(pos, data, arrival)
        if duplicate:
            self.drops.add("duplicate", samples=duplicate)

    def _refill(self) -> None:
        """Outbound: move what waits outside the ring into it, as far as there is room."""
        pending = self._pending
        while pending:
            pos, data, arrival = pending.popleft()
            start = self.timeline.start
            if pos < start:
                data, pos = data[start - pos :], start
            room = start + self.timeline.capacity - pos
            if room < len(data):
                if room > 0:
                    self._store(pos, data[:room], arrival)
                    data, pos = data[room:], pos + room
                pending.appendleft((pos, data, arrival))
                break
            self._store(pos, data, arrival)
        self._pending_samples = sum(len(d) for _, d, _ in pending)

    def event(self, frame: Event, now: float) -> None:
        """Take an event; it keeps its place after the audio that came before it."""
        if isinstance(frame, Clear):
            self.clear_marks.add(now)
            self._clear(frame)
            return
        pos = max(self._write_end, self.timeline.start)
        if isinstance(frame, Gap):
            self._gap(frame, pos)
            return
        if isinstance(frame, UtteranceStart) and self.settings.direction == "outbound":
            self._anchor_next = True
        if isinstance(frame, UtteranceEnd):
            self._final = pos
        if len(self._events) == _MAX_EVENTS:
            self._events.popleft()
            self.drops.add("event_overflow")
        self._events.append((pos, frame))

    def close(self) -> None:
        """The input has ended: play out what is buffered, then finish."""
        self.closed = True

    def _gap(self, gap: Gap, pos: int) -> None:
        """Audio reported lost is concealed without waiting; audio only ``"missing"`` may yet come.

        A receiving sequencer reports numbers missing after its window, but the packet may be
        late rather than lost: the hole is decided at playout time, like any other.
        """
        self._c.gaps_in += 1
        if gap.reason == "missing":
            return
        samples = gap.samples if gap.samples is not None else gap.count * self._last_chunk
        if gap.pts is not None and self._offset is not None:
            pos = gap.pts + self._offset
        end = pos + samples
        if samples <= 0 or end <= self.timeline.start:
            return
        if len(self._lost) == _MAX_LOST_RANGES:
            self._lost.pop(0)
        self._lost.append((pos, end))
        self._lost.sort()

    def _clear(self, frame: Clear) -> None:
        """Barge-in: drop all audio now; the events waiting go out at once, then the Clear."""
        self._c.clears += 1
        dropped = self.timeline.reset(self.timeline.start) + self.out.drop_pending()
        dropped += sum(len(d) for _, d, _ in self._pending)
        self._pending.clear()
        self._pending_samples = 0
        if dropped:
            self.drops.add("clear", samples=dropped)
        self._urgent.extend(e for _, e in self._pinned)
        self._urgent.extend(e for _, e in self._events)
        self._urgent.append(frame)
        self._pinned.clear()
        self._events.clear()
        self._lost.clear()
        self._given_up.clear()
        self._arrivals.clear()
        self._out_arrivals.clear()
        self._write_end = self.timeline.start
        self._offset = None
        self._final = None
        self._reset_playout()

    def _reset_playout(self) -> None:
        self.state = "idle"
        self.plc.active = False
        self._bridge = None
        self.speed.reset()
        self.stretch.budget = 0.0
        self._wait = 0
        self._splice = False
        self._end_run()

    # ------------------------------------------------------------------ output

    def target(self) -> float:
        """The target delay (seconds): the estimate within [min_delay, max_delay]."""
        s = self.settings
        estimate = self.estimator.target if self.estimator.target is not None else s.start_delay
        return min(max(estimate, s.min_delay), s.max_delay)

    def level(self) -> int:
        """Samples buffered ahead of the play position (holes included) plus those not yet handed out."""
        return max(self._write_end - self.timeline.start, 0) + self.out.pending

    def _delay(self, now: float) -> float:
        """The controlled delay: inbound, playout delay over the earliest recent arrival; outbound, the level."""
        if self.settings.direction == "outbound":
            return self.level() / self.rate
        base = self.estimator.base
        return 0.0 if base is None else now - self.timeline.start / self.rate - base

    def _more_coming(self) -> bool:
        return not self.closed and self._final is None

    def _exhausted(self) -> bool:
        """Nothing more will be played before the input says more."""
        start = self.timeline.start
        if self._final is not None and start >= self._final:
            return True
        return self.closed and not self._pending and self.timeline.end <= start

    def pull(self, now: float) -> list[Frame]:
        """The next tick of output: audio (and the events within it), or nothing while idle or buffering."""
        frames, self._urgent = self._urgent, []
        if self.state == "idle":
            frames.extend(e for _, e in self._events)
            self._events.clear()
        block = self.tick
        if self.state == "buffering" and self._ready_to_start(now):
            self.state = "playing"
            if self.settings.direction == "inbound":
                # Playout starts as a packet arrives, so a clock pulling every tick from here
                # would pull at the very moments the next packets arrive: each just in time or
                # a tick late by a coin toss. Half a block first puts the pulls between arrivals.
                block //= 2
        if self.state != "playing":
            return frames
        self.delay_series.add(now, self._delay(now))
        self.target_series.add(now, self.target())
        self._produce(now)
        n = min(block, self.out.pending)
        if self._exhausted() and self.out.pending <= self.tick:
            self._pin_due(self.timeline.start + 1, self.out.produced)
        self._emit(n, frames)
        if self._exhausted() and not self.out.pending:
            frames.extend(e for _, e in self._pinned)
            self._pinned.clear()
            self._final = None
            self._reset_playout()
        return frames

    def _ready_to_start(self, now: float) -> bool:
        s = self.settings
        margin = START_MARGIN if s.direction == "inbound" else 1.0
        wanted = max(s.start_delay, margin * self.target())
        level = self._write_end - self.timeline.start
        if s.direction == "inbound" and level >= round(s.start_delay * self.rate) and self._delay(now) >= wanted:
            return True  # the first sample has waited long enough, though later audio is still missing
        return level >= min(round(wanted * self.rate), self.max_level) or self.full or not self._more_coming()

    def _produce(self, now: float) -> None:
        """Run operations until a tick plus the hold is ready (or nothing more is to come)."""
        want = self.tick + self.hold
        while self.out.pending < want:
            need = want - self.out.pending
            self._refill()
            if self.timeline.available():
                if self._catch_up(now):
                    continue
                if not self._rebuffering():
                    self._play(now, need)
                    continue
            elif self._exhausted() or self.out.pending >= self.tick:
                return  # a tick is ready: the hold is only kept while audio is there to keep it
            else:
                self._fill_hole(now, need)
                continue
            self._conceal(need, advance=False)

    def _catch_up(self, now: float) -> bool:
        """Inbound, after a concealment gone silent (a stall, then a burst): drop what is stale.

        The burst would put the delay far above target, and draining it takes seconds of
        stretched speech; a static buffer would have lost those packets late. So, once the
        delay is more than URGENT_EXCESS above the band, the oldest audio goes at once (counted
        ``catch_up``) and playout resumes near the target, merged in from the silence.
        """
        if self.settings.direction != "inbound" or not self.plc.active or self.plc.elapsed < self.plc.silent_after:
            return False
        target = self.target()
        excess = self._delay(now) - target
        if excess < band(target, self.estimator.mature) + URGENT_EXCESS:
            return False
        n = min(round(excess * self.rate), self.timeline.end - self.timeline.start - self.tick)
        if n <= 0:
            return False
        self._skip(n, "catch_up")
        self._c.catch_ups += 1
        return True

    def _rebuffering(self) -> bool:
        """Outbound, after a stall went silent: keep silent until the target is buffered again."""
        if self.settings.direction != "outbound" or not self.plc.active or self.plc.elapsed < self.plc.silent_after:
            return False
        return self._more_coming() and not self.full and self.level() < round(self.target() * self.rate)

    def _fill_hole(self, now: float, need: int) -> None:
        start = self.timeline.start
        lost_end = self._lost_at(start)
        resume = self.timeline.next_present()
        if lost_end is not None:
            skip = lost_end - start if resume is None else min(lost_end, resume) - start
            self._conceal(min(need, skip), advance=True, resume=resume if resume == start + skip else None)
        elif resume is not None and skip_hole(
            self.settings.direction,
            self._delay(now),
            self.target(),
            waited=self._run / self.rate,
            max_wait=MAX_WAIT,
        ):
            hole = resume - start
            repaid = min(self._wait, hole)
            if repaid:
                self._give_up(repaid)
                self._wait -= repaid
            if hole > repaid:
                self._conceal(min(need, hole - repaid), advance=True, resume=resume)
        else:
            self._conceal(need, advance=False)

    def _open_bridge(self, resume: int) -> None:
        """Conceal backward from the audio after the hole (time reversed), to fade into across it.

        With a period and a quarter of audio after the hole this works; the backward pitch is
        searched when there is enough for it, else the forward one is used.
        """
        self._bridge = None
        back = self._back
        future = self.timeline.read_at(resume, back.history_len, self._scratch)
        pitch = self.plc.pitch  # the voice hardly changes pitch across a short hole
        if len(future) < pitch + pitch // 4:
            return
        back.start(future[::-1], pitch=pitch if len(future) < back.corr_len + back.pitch_max else None)
        # (that blended the head of the future into the backward replay)
        self.timeline.patch(resume, future[: back.hold])
        length = min(resume - self.timeline.start, len(self._bridge_buf))
        part = self._bridge_buf[:length]
        back.fill(part)
        part[:] = part[::-1].copy()
        back.active = False
        self._bridge = (self.timeline.start, resume, length)

    def _blend_bridge(self, out: np.ndarray, bridge: tuple[int, int, int]) -> None:
        """Cross-fade this stretch of the hole from the forward concealment to the backward one (``bridge``)."""
        hole_start, resume, length = bridge
        a = self.timeline.start
        positions = np.arange(a, a + len(out))
        w = (0.5 - 0.5 * np.cos(np.pi * (positions - hole_start + 0.5) / (resume - hole_start)))[:, None]
        back = np.zeros_like(out)
        offset = positions - (resume - length)
        inside = offset >= 0
        back[inside] = self._bridge_buf[offset[inside]]
        out *= (1 - w).astype(np.float32)
        out += back * w.astype(np.float32)
        if a + len(out) >= resume:
            self.plc.active = False  # the backward side already joins the audio that follows
            self._bridge = None
            self._c.merges += 1

    def _lost_at(self, pos: int) -> int | None:
        while self._lost and self._lost[0][1] <= pos:
            self._lost.pop(0)
        if self._lost and self._lost[0][0] <= pos:
            return self._lost[0][1]
        return None

    def _conceal(self, n: int, *, advance: bool, resume: int | None = None) -> None:
        """Produce ``n`` samples of concealment; ``advance`` moves past lost audio, else it waits.

        When the audio after the hole is here (``resume``), the hole is bridged from both sides.
        """
        c = self._c
        if not self.plc.active:
            self.plc.start(self.out.history(self.plc.history_len))
            c.concealment_events += 1
        start = self.out.produced
        self._out_arrivals.append((start, None))
        out = self.out.reserve(n)
        before = self.plc.elapsed
        self.plc.fill(out)
        if advance and resume is not None:
            if self._bridge is None or self._bridge[1] != resume:
                self._open_bridge(resume)
            bridge = self._bridge
            if bridge is not None:
                self._blend_bridge(out, bridge)
                before = self.plc.elapsed  # faded into the audio after the hole: not silent
        self.out.commit(n)
        c.concealed += n
        c.silent_concealed += max(0, self.plc.elapsed - max(before, self.plc.silent_after))
        self._run += n
        self._pin_due(self.timeline.start + (n if advance else 1), start)
        if advance:
            self._give_up(n)
            self._lost_at(self.timeline.start)
        else:
            self._wait += n

    def _play(self, now: float, need: int) -> None:
        """Produce from the audio at the play position: merged, stretched or as it is."""
        c = self._c
        avail = self.timeline.available()
        x = self.timeline.read(need + self.stretch.lookahead + self.stretch.horizon, self._scratch)
        start = self.out.produced
        self._out_arrivals.append((start, self._arrivals[0][1] if self._arrivals else None))
        merging = self.plc.active or self._splice
        speed = 1.0
        if not merging and avail >= need and self.estimator.settled:
            delay, target, mature = self._delay(now), self.target(), self.estimator.mature
            speed = self.speed.decide(now, delay, target, more_coming=self._more_coming(), mature=mature)
            at_most = max(0, round((delay - stop_at(target, speed, mature)) * (1 if speed > 1 else -1) * self.rate))
            if speed != 1.0 and self.stretch.in_pause:  # a pause may take the whole difference at once
                change = max(abs(speed - 1), min(at_most / need, self.stretch.pause_change))
                speed = 1 + math.copysign(change, speed - 1)
        if speed != 1.0 and len(x) >= need + (self.stretch.lag_min if speed > 1 else 0):
            out = self.out.reserve(need)
            quiet_only = not urgent(self.settings.direction, delay, target, mature)
            history = self.out.history(self.stretch.lag_max)
            used = self.stretch.render(history, x, out, speed, quiet_only=quiet_only, at_most=at_most)
            n = need
            if used > need:
                c.accelerated += used - need
            elif used < need:
                c.decelerated += need - used
        else:
            n = used = min(len(x), need)
            out = self.out.reserve(n)
            out[:] = x[:n]
            self.stretch.observe(out)
            if merging:
                if not self.plc.active:
                    self.plc.start(self.out.history(self.plc.history_len))
                self.plc.finish(out)
                c.merges += 1
                self._splice = False
        self.out.commit(n)
        self._end_run()
        self._wait = 0
        a = self.timeline.start
        c.emitted += used
        c.delay_sum += used * now - self.timeline.stamp_sum(a, used)
        c.target_sum += used * self.target()
        self._pin_due(a + used, start, a, n)
        self._played_until(a, used, start, n, now)
        self.timeline.advance(used)

    def _give_up(self, n: int) -> None:
        """Move past ``n`` samples that were concealed in place of audio that did not come."""
        self._mark_given_up(n)
        self.timeline.advance(n)
        self._c.lost_samples += n

    def _mark_given_up(self, n: int) -> None:
        start, given_up = self.timeline.start, self._given_up
        if given_up and given_up[-1][1] == start:
            given_up[-1] = (given_up[-1][0], start + n)
        else:
            given_up.append((start, start + n))

    def _was_given_up(self, pos: int, end: int) -> bool:
        return any(s < end and pos < e for s, e in self._given_up)

    def _skip(self, n: int, reason: str) -> None:
        """Drop the oldest ``n`` samples unplayed (counted); the next audio is merged in."""
        self._mark_given_up(n)
        passed = self.timeline.advance(n)
        if passed:
            self.drops.add(reason, samples=passed)
        self._splice = self.out.produced > 0

    def _end_run(self) -> None:
        """Real audio resumes: a concealment that lasted long enough was an interruption."""
        if self._run >= INTERRUPTION * self.rate:
            self._c.interruptions += 1
            self._c.interruption_samples += self._run
        self._run = 0

    def _played_until(self, a: int, used: int, out_start: int, n: int, now: float) -> None:
        """Time the chunks whose end is among the ``used`` samples from ``a``, played into ``n`` from ``out_start``.

        A chunk's delay runs from its arrival to the moment its first sample is handed out
        (what a listener hears, and how a static buffer's delay is measured): the output ahead
        of this tick's goes out first, one sample per sample period.
        """
        arrivals, rate, emitted = self._arrivals, self.rate, self.out.emitted
        while arrivals and arrivals[0][0] <= a + used:
            end, arrival, length = heapq.heappop(arrivals)
            out_end = out_start + (end - a) * n / used
            self._delays.add(now + (out_end - length * n / used - emitted) / rate - arrival)

    def _pin_due(self, before: int, out_pos: int, in_start: int | None = None, out_len: int = 0) -> None:
        """Pin the events placed before ``before`` to output positions from ``out_pos``.

        With an input span (``in_start``, played into ``out_len`` samples), an event lands at
        its proportional place in it.
        """
        events = self._events
        while events and events[0][0] < before:
            pos, event = events.popleft()
            at = out_pos
            if in_start is not None and pos > in_start:
                at += min(out_len, round((pos - in_start) * out_len / max(1, before - in_start)))
            self._pinned.append((at, event))

    def _emit(self, n: int, frames: list[Frame]) -> None:
        """Hand out ``n`` samples, split around the events pinned inside them."""
        first = self.out.emitted
        data = self.out.take(n)
        cut = 0
        pinned = self._pinned
        while pinned and pinned[0][0] < first + n:
            at, event = pinned.popleft()
            if at - first > cut:
                frames.append(self._chunk(data[cut : at - first], first + cut))
                cut = at - first
            frames.append(event)
            if isinstance(event, UtteranceStart):
                self._utterance = event.utterance
            elif isinstance(event, UtteranceEnd):
                self._utterance = None
        if cut < n:
            frames.append(self._chunk(data[cut:], first + cut))

    def _chunk(self, data: np.ndarray, pts: int) -> AudioChunk:
        """Output at position ``pts``, with the arrival of the audio played there (None if concealed)."""
        self._c.chunks_out += 1
        samples = data if self.fmt.channels > 1 else data[:, 0]
        encoded = from_float32(samples, self.fmt.encoding)
        if np.shares_memory(encoded, data):  # float32 output would be a view of the reused buffer
            encoded = encoded.copy()
        arrivals = self._out_arrivals
        while len(arrivals) > 1 and arrivals[1][0] <= pts:
            arrivals.popleft()
        arrival = arrivals[0][1] if arrivals and arrivals[0][0] <= pts else None
        return AudioChunk(encoded, self.fmt, pts=pts, arrival=arrival, utterance=self._utterance)

    # ------------------------------------------------------------------ statistics

    def series(self) -> dict[str, dict[str, Any]]:
        """The timing series for plots: delay and target over time, clear times."""
        return {
            "delay": self.delay_series.snapshot(),
            "target": self.target_series.snapshot(),
            "clears": self.clear_marks.snapshot(),
        }

    def statistics(self) -> JitterStatistics:
        c = self._c
        out = max(self.out.emitted, 1)
        return JitterStatistics(
            direction=self.settings.direction,
            state=self.state,
            chunks_in=c.chunks_in,
            samples_in=c.samples_in,
            chunks_out=c.chunks_out,
            samples_out=self.out.emitted,
            seconds_out=self.out.emitted / self.rate,
            current_delay_ms=self.level() / self.rate * 1000,
            target_delay_ms=self.target() * 1000,
            max_delay_ms=self.settings.max_delay * 1000,
            delay_ms=self._delays.summary(1000),
            concealment_rate=c.concealed / out,
            accelerate_rate=c.accelerated / out,
            decelerate_rate=c.decelerated / out,
            concealment_events=c.concealment_events,
            interruptions=c.interruptions,
            interruption_seconds=c.interruption_samples / self.rate,
            late_losses=c.late_losses,
            lost_samples=c.lost_samples,
            merges=c.merges,
            prebuffers=c.prebuffers,
            resyncs=c.resyncs,
            catch_ups=c.catch_ups,
            delay_peaks=self.estimator.peaks,
            gaps_in=c.gaps_in,
            clears=c.clears,
            drops=self.drops.snapshot(),
            jitterBufferDelay=c.delay_sum,
            jitterBufferTargetDelay=c.target_sum,
            jitterBufferEmittedCount=c.emitted,
            totalSamplesReceived=c.samples_in,
            concealedSamples=c.concealed,
            silentConcealedSamples=c.silent_concealed,
            concealmentEvents=c.concealment_events,
            insertedSamplesForDeceleration=c.decelerated,
            removedSamplesForAcceleration=c.accelerated,
        )


@attrs.define
class _Counters:
    chunks_in: int = 0
    samples_in: int = 0
    chunks_out: int = 0
    concealed: int = 0
    accelerated: int = 0
    decelerated: int = 0
    concealment_events: int = 0
    interruptions: int = 0
    interruption_samples: int = 0
    late_losses: int = 0
    lost_samples: int = 0
    merges: int = 0
    prebuffers: int = 0
    resyncs: int = 0
    catch_ups: int = 0
    gaps_in: int = 0
    clears: int = 0
    emitted: int = 0
    delay_sum: float = 0.0
    target_sum: float = 0.0
    silent_concealed: int = 0
