"""``pacer``: fixed frames out on an absolute clock — frame n leaves at t0 + n × period.

The pacer is the pull clock of a pipeline. It takes a frame from its input only when one is
due, so the bounded channels hold everything upstream back (backpressure), and it computes
every deadline from the anchor ``t0`` (the arrival of the first frame, snapped to a clock grid
shared by the pacers of the process): a late wake-up never shifts the frames after it, and
nothing accumulates over an hour-long call.

:class:`FramePacer` is the synchronous core: the grid, the policies and the counters, with
the time and a non-blocking ``take`` passed in. The stage is the loop that sleeps until the
core's next wake-up and sends what the core returns.

Slots and policies (every case counted in :class:`PacerStatistics`):

- **lead**: at the start of a talk spurt (the first frame, after a Clear, and on resuming
  after ``idle = "stop"``) up to ``lead`` further frames leave at once, as soon as upstream
  has them and before the next slot: a prebuffer for peers that want one.
- **underrun** (inside an utterance, no frame ready at a slot): send ``silence`` or
  ``comfort_noise`` to keep the cadence, or ``skip`` the slot. The frame that comes later
  takes the next slot; the grid never moves. Only the slots between two frames of one
  utterance split its speech (``in_utterance_underruns``): those before its first frame are
  its latency, and those after its last frame (before its end, a Clear or a cut) are heard
  as the reply's end, so each gap is counted once audio of its utterance follows it.
- **idle** (between utterances: after an UtteranceEnd or a Clear): keep the cadence with
  ``silence`` or ``comfort_noise``, or ``stop`` sending until the next audio, which resumes
  on the same grid at the first slot not yet passed.
- **late** (the pacer woke up one or more whole periods after a deadline — the machine or the
  sink stalled): ``burst`` sends up to ``max_burst`` overdue frames at once with the current
  one; ``drop`` drops every overdue frame and sends the current one on time. Overdue frames
  beyond what a burst may send are dropped oldest first (reason ``late``), so the audio jumps
  where the listener already heard the stall, and the pacer is back on its grid at once.
  Never a re-anchor. Upstream stalled too and needs a turn to hand frames over, so while
  catching up a missing frame is waited for, until the next slot at most.
- **margin**: the pacer wakes ``margin_ms`` before each deadline and sends at once. epoll
  rounds timeouts up to the next millisecond, so a plain sleep wakes 0–1 ms late; waking half
  a millisecond early centres that error on the deadline at no CPU cost (see
  ``benchmarks/pacing.py``). The pacers of a process share one timer
  (:func:`rtstream.timers.sleep_until`).
- **align**: ``t0`` snaps up to the next multiple of ``align_ms`` (or of the largest step that
  divides both it and the period), so calls whose clocks fall on the same phase wake together: one
  timer wake-up for all of them (:func:`shared_grid`).
- A frame whose size is not ``frame_ms`` (no chunker upstream?) is dropped, reason
  ``frame_size`` (``format`` for another format), with one warning; events pass through at
  once, in order.

A Clear passes through as soon as the pacer reads it. The pacer holds no audio between slots
(at most the frame it is about to send), so there is nothing of its own to drop; the Clear
ends the talk spurt, so the next audio gets the lead again (the peer flushed its buffer).
In-band, audio queued in the channels ahead of the Clear is read, and sent, before it. In a
call, a barge-in comes on the control path instead (:mod:`rtstream.control`): the spurt ends
at once, the frame about to go out fades to silence, and queued frames of the cleared reply
are dropped as they are read, so the caller hears the bot stop within one frame.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import attrs
import trio

from rtstream.audio.fade import fade_out
from rtstream.audio.noise import comfort_noise
from rtstream.caps import Caps
from rtstream.control import CURRENT_CONTROL, listening
from rtstream.frames import AudioChunk, AudioFormat, Clear, Frame, UtteranceEnd, UtteranceStart
from rtstream.params import param, whole_samples
from rtstream.registry import register
from rtstream.series import Marks, Series
from rtstream.stage import Filter, ReceiveChannel, SendChannel
from rtstream.stats import DropCount, Drops, Quantiles, Summary, stat
from rtstream.timers import sleep_until

log = logging.getLogger(__name__)

UNDERRUN_POLICIES = ("silence", "comfort_noise", "skip")
IDLE_POLICIES = ("silence", "comfort_noise", "stop")
LATE_POLICIES = ("burst", "drop")

END = object()
"""What ``take`` returns when the input has ended."""

Take = Callable[[], "Frame | object | None"]
"""A non-blocking read of the pacer's input: a frame, None when nothing is ready, or END."""


class FramePacer:
    """The grid, policies and counters of one paced stream; time and input are passed in.

    The names are those of :class:`rtstream.stage.Core`, but the pacer pulls its input
    rather than being pushed it: the shell asks :attr:`waiting` first. While waiting (before
    the first frame, stopped between utterances, or filling the lead) it blocks on its input
    until :attr:`wait_until` and gives each frame to :meth:`push` (or calls :meth:`lead_over`
    then). Otherwise it sleeps until :attr:`deadline` and calls :meth:`poll` with a
    non-blocking ``take``, so a frame leaves the channel only when its slot has come. Both
    return the frames to send now, in order, in a list reused by the next call.
    """

    def __init__(
        self,
        fmt: AudioFormat,
        frame_samples: int,
        *,
        lead: int = 0,
        margin: float = 0.0,
        underrun: str = "silence",
        idle: str = "silence",
        late: str = "burst",
        max_burst: int = 5,
        late_after: float = 0.01,
        noise_level: float = -60.0,
        seed: int = 0,
        grid: float = 0.0,
    ) -> None:
        for name, value, allowed in (
            ("underrun", underrun, UNDERRUN_POLICIES),
            ("idle", idle, IDLE_POLICIES),
            ("late", late, LATE_POLICIES),
        ):
            if value not in allowed:
                raise ValueError(f"{name} policy must be one of {', '.join(allowed)}, got {value!r}")
        self.format = fmt
        self.frame_samples = frame_samples
        self.period = frame_samples / fmt.sample_rate
        self.lead = lead
        self.margin = margin
        self.underrun = underrun
        self.idle = idle
        self.max_burst = max_burst if late == "burst" else 0
        self.late_after = late_after
        self.grid = grid
        self._silence = fmt.silence(frame_samples)
        self._silence.flags.writeable = False
        needs_noise = "comfort_noise" in (underrun, idle)
        self._noise = comfort_noise(fmt, frame_samples, noise_level, seed) if needs_noise else ()
        self._noise_next = 0

        self.anchor: float | None = None
        """t0: when the first frame arrived, snapped up to ``grid``; slot k is due at anchor + k × period."""
        self.slot = 0
        """The next slot to fill."""
        self.waiting = True
        self.ended = False
        self._lead_left = 0
        self._spurt = True
        """The next audio frame sent starts a talk spurt (and gets the lead)."""
        self._pending: AudioChunk | None = None
        """The first frame of a spurt resumed after idle, waiting for its slot."""
        self._speaking = False
        self._heard = False
        """Audio of the current utterance has been sent (underruns before it are its start's latency)."""
        self._gap = 0
        """Underrun slots since the last frame sent of utterance ``_gap_utterance``, not yet followed by audio."""
        self._gap_utterance: str | None = None
        self._utterance: str | None = None
        self._pts = 0
        self._out: list[Frame] = []
        self._stalled = False
        self._starved = False
        self._unread: Frame | object | None = None
        """An item the stage read for a hungry :meth:`poll`, not yet processed."""
        self.hungry = False
        self.hungry_until = math.inf
        self._warned = False

        self.frames_in = 0
        self.frames_sent = 0
        self.fill_frames = 0
        self.underruns = 0
        self.starting_underruns = 0
        self.in_utterance_underruns = 0
        self.idle_slots = 0
        self.late_frames = 0
        self.stalls = 0
        self.spurts = 0
        self.events = 0
        self.clears = 0
        self.drops = Drops()
        self.lateness = Quantiles()
        """Send time minus deadline, in seconds, of every frame sent in its slot (fills too)."""
        self.lateness_series = Series()
        """The same over time (at each deadline), bounded, for plots."""
        self.underrun_marks = Marks()
        self.clear_marks = Marks()

    @property
    def slot_time(self) -> float:
        """When the next slot is due."""
        assert self.anchor is not None
        return self.anchor + self.slot * self.period

    @property
    def deadline(self) -> float:
        """When to wake up and :meth:`poll` for the next slot (``margin`` before it)."""
        return self.slot_time - self.margin

    @property
    def wait_until(self) -> float:
        """How long to wait for input while :attr:`waiting`: to the next slot while filling the lead."""
        return self.deadline if self._lead_left else math.inf

    def push(self, frame: Frame, now: float) -> list[Frame]:
        """A frame read while waiting; returns what to send now."""
        out = self._out
        out.clear()
        if type(frame) is not AudioChunk:
            self._event(frame, out)
            if type(frame) is Clear and self.anchor is not None:
                self.waiting = self.idle == "stop"
            return out
        if not self._accept(frame):
            return out
        self._speaking = True
        self._utterance = frame.utterance
        if self._lead_left:
            self._lead_left -= 1
            self.waiting = self._lead_left > 0
            self._send(frame, out, None)
        else:
            self._resume(now)
            self._pending = frame
            self.waiting = False
        return out

    def cut(self) -> bool:
        """Barge-in on the call's control path: end the talk spurt now, as an in-band Clear would.

        The frame about to go out becomes a fade to silence over its own length, so the caller
        hears the bot stop within one frame and without a click; False when no frame was about
        to go out (the shell then fades the next one it reads).
        """
        self.clears += 1
        self.end_spurt()
        frame = self._pending
        if frame is None:
            return False
        self._pending = faded(frame)
        return True

    def end_spurt(self) -> None:
        """The talk spurt is over (a cut, or the fade that ends one went out): idle from the next slot."""
        self._speaking = False
        self._utterance = None
        self._gap = 0
        self._spurt = True
        self._lead_left = 0
        if self.anchor is not None:
            self.waiting = self.idle == "stop"

    def lead_over(self) -> None:
        """The next slot came before the lead was filled: go on with the cadence."""
        self._lead_left = 0
        self.waiting = False

    def poll(self, now: float, take: Take) -> list[Frame]:
        """The next slot has come; returns what to send now.

        After a stall, the overdue slots a burst may not send are dropped at once, then the
        burst goes out one slot per call. While catching up, a frame that is not ready yet
        may only be waiting for upstream to be scheduled: ``poll`` then sets :attr:`hungry`
        and the stage waits for its input until :attr:`hungry_until`, handing what comes
        (or None) to :meth:`fed` before calling again.
        """
        out = self._out
        out.clear()
        self.hungry = False
        slot = self.slot
        lateness = now - self.slot_time
        behind = int(lateness / self.period) if lateness >= self.period else 0
        if behind:
            if not self._stalled:
                self.stalls += 1
                self._stalled = True
            if not self._speaking and self._pending is None:  # idle: nothing to catch up
                self.idle_slots += behind
                self.slot += behind
                behind = 0
            elif behind > self.max_burst:  # too late to send: drop to the burst's first slot
                if not self._drop_late(behind - self.max_burst, now, take, out):
                    return out
                behind = self._behind(now)
        frame = self._next(take, out, current=not behind)
        if frame is None and self._stalled and self._wait_for_upstream(now):
            return out
        self._stalled = behind > 0
        self._starved = False
        if self.slot != slot:  # moved on while catching up
            lateness = now - self.slot_time
        self.slot += 1
        if frame is not None:
            self._send(frame, out, lateness)
        elif not self.ended:
            policy = self.underrun if self._speaking else self.idle
            if self._speaking:
                self._underrun(1)
                self.underrun_marks.add(now)
            else:
                self.idle_slots += 1
            if behind:
                pass  # a slot already past gets no fill
            elif policy == "stop":
                self.waiting = True
                self._spurt = True  # the peer's buffer drains while nothing is sent
            elif policy != "skip":
                self._fill(policy, out, lateness)
        return out

    def fed(self, item: Frame | object | None) -> None:
        """What the stage's wait while :attr:`hungry` brought: a frame, END, or None (nothing came)."""
        if item is None:
            self._starved = True
        else:
            self._unread = item

    def _underrun(self, slots: int) -> None:
        """``slots`` of the current utterance had no frame: its start's latency, or a gap once audio follows."""
        self.underruns += slots
        if not self._heard:
            self.starting_underruns += slots
            return
        if self._gap_utterance != self._utterance:
            self._gap = 0
            self._gap_utterance = self._utterance
        self._gap += slots

    def _behind(self, now: float) -> int:
        """Whole slots past since the next slot's deadline."""
        lateness = now - self.slot_time
        return int(lateness / self.period) if lateness >= self.period else 0

    def _wait_for_upstream(self, now: float) -> bool:
        """A frame is missing while catching up: wait for upstream, unless that was just done."""
        if self.ended or not self._speaking or self._starved:
            return False
        assert self.anchor is not None
        self.hungry = True
        self.hungry_until = (
            self.anchor + (math.floor((now - self.anchor) / self.period) + 1) * self.period - self.margin
        )
        return True

    def _drop_late(self, slots: int, now: float, take: Take, out: list[Frame]) -> bool:
        """Drop the frames of ``slots`` overdue slots, oldest first; False while waiting for upstream."""
        while slots:
            frame = self._next(take, out, current=False)
            if frame is None:
                if self._wait_for_upstream(now):
                    return False
                if not self.ended:  # upstream has nothing, or the utterance ended
                    if self._speaking:
                        self.underrun_marks.add(now)
                        self._underrun(slots)
                    else:
                        self.idle_slots += slots
                self.slot += slots
                return True
            self.drops.add("late", samples=self.frame_samples)
            self.slot += 1
            slots -= 1
        return True

    def _next(self, take: Take, out: list[Frame], current: bool) -> AudioChunk | None:
        """The next audio frame for a slot, passing events on; None when there is none."""
        frame = self._pending
        if frame is not None:
            self._pending = None
            return frame
        while self._speaking or current:
            item = self._unread
            if item is None:
                item = take()
            else:
                self._unread = None
            if item is None:
                return None
            if item is END:
                self.ended = True
                return None
            if type(item) is AudioChunk:
                if self._accept(item):
                    self._speaking = True
                    self._utterance = item.utterance
                    return item
            else:
                self._event(item, out)  # type: ignore[arg-type]  # not audio and not END: an event frame
        return None

    def _accept(self, frame: AudioChunk) -> bool:
        self.frames_in += 1
        same_format = frame.format is self.format or frame.format == self.format
        if same_format and len(frame.data) == self.frame_samples:
            return True
        self.drops.add("frame_size" if same_format else "format", samples=len(frame.data))
        if not self._warned:
            self._warned = True
            log.warning(
                "pacer: dropping a frame of %d samples of %s; it paces frames of %d samples of %s "
                "(put a chunker with the same frame_ms before it)",
                len(frame.data), frame.format, self.frame_samples, self.format,
            )  # fmt: skip
        return False

    def _event(self, event: Frame, out: list[Frame]) -> None:
        self.events += 1
        kind = type(event)
        if kind is UtteranceStart:
            self._speaking = True
            self._heard = False
            self._gap = 0
            self._utterance = event.utterance  # type: ignore[union-attr]  # an UtteranceStart (type() is checked, on the hot path)
        elif kind is UtteranceEnd:
            self._speaking = False
            self._utterance = None
            self._gap = 0  # the slots after its last frame were its end, not a gap in it
        elif kind is Clear:
            self.clears += 1
            if self.anchor is not None:
                self.clear_marks.add(self.slot_time)
            self._speaking = False
            self._utterance = None
            self._gap = 0
            self._spurt = True
            self._lead_left = 0
        out.append(event)

    def _resume(self, now: float) -> None:
        """Audio after idle: t0 for the first frame, else the first slot not yet passed."""
        if self.anchor is None:
            self.anchor = math.ceil(now / self.grid - 1e-9) * self.grid if self.grid else now
            return
        slot = math.ceil((now - self.anchor) / self.period - 1e-9)
        if slot > self.slot:
            self.idle_slots += slot - self.slot
            self.slot = slot

    def _send(self, frame: AudioChunk, out: list[Frame], lateness: float | None) -> None:
        if frame.pts != self._pts:
            frame = AudioChunk(
                frame.data, frame.format, self._pts, frame.seq, frame.arrival, frame.utterance, frame.flags
            )
        self._pts += self.frame_samples
        out.append(frame)
        self.frames_sent += 1
        self._heard = True
        if self._gap:
            if frame.utterance == self._gap_utterance:
                self.in_utterance_underruns += self._gap
            self._gap = 0
        if lateness is not None:
            self._timed(lateness)
        if self._spurt:
            self._spurt = False
            self.spurts += 1
            self._lead_left = self.lead
            self.waiting = self.lead > 0

    def _fill(self, kind: str, out: list[Frame], lateness: float) -> None:
        if kind == "silence":
            data = self._silence
        else:
            data = self._noise[self._noise_next]
            self._noise_next = (self._noise_next + 1) % len(self._noise)
        out.append(AudioChunk(data, self.format, self._pts, utterance=self._utterance))
        self._pts += self.frame_samples
        self.fill_frames += 1
        self._timed(lateness)

    def _timed(self, lateness: float) -> None:
        self.lateness.add(lateness)
        assert self.anchor is not None
        self.lateness_series.add(self.anchor + (self.slot - 1) * self.period, lateness)
        if lateness > self.late_after:
            self.late_frames += 1

    def series(self) -> dict[str, dict[str, Any]]:
        """The timing series for plots: lateness over time, underrun and clear times."""
        return {
            "lateness": self.lateness_series.snapshot(),
            "underruns": self.underrun_marks.snapshot(),
            "clears": self.clear_marks.snapshot(),
        }

    def statistics(self) -> PacerStatistics:
        return PacerStatistics(
            frames_in=self.frames_in,
            frames_sent=self.frames_sent,
            fill_frames=self.fill_frames,
            underruns=self.underruns,
            starting_underruns=self.starting_underruns,
            in_utterance_underruns=self.in_utterance_underruns,
            in_utterance_underrun_ms=self.in_utterance_underruns * self.period * 1000,
            idle_slots=self.idle_slots,
            late_frames=self.late_frames,
            stalls=self.stalls,
            spurts=self.spurts,
            events=self.events,
            clears=self.clears,
            drops=self.drops.snapshot(),
            lateness_ms=self.lateness.summary(scale=1000),
        )


@attrs.frozen
class PacerStatistics:
    frames_in: int = stat(help="Audio frames taken in.")
    frames_sent: int = stat(help="Audio frames sent (fills not included).")
    fill_frames: int = stat(help="Silence or comfort-noise frames sent on underrun or while idle.")
    underruns: int = stat(help="Slots inside an utterance with no frame ready.")
    starting_underruns: int = stat(
        help="Of those, the slots before the utterance's first frame: its source's latency, not a gap in speech."
    )
    in_utterance_underruns: int = stat(
        help="Of the underruns, the slots between two frames of one utterance: silence heard inside its speech "
        "(not the wait for its first frame, nor the slots after its last one before its end, a Clear or a cut)."
    )
    in_utterance_underrun_ms: float = stat(help="The in-utterance underruns as audio, in ms.")
    idle_slots: int = stat(help="Slots between utterances (filled, or skipped with idle = stop).")
    late_frames: int = stat(help="Frames sent more than late_ms after their deadline.")
    stalls: int = stat(help="Times the pacer found itself one or more whole periods behind its grid.")
    spurts: int = stat(help="Talk spurts started (each gets the lead).")
    events: int = stat(help="Events passed through.")
    clears: int = stat(help="Clears (barge-ins) passed through.")
    drops: dict[str, DropCount] = stat(
        help="Dropped audio by reason: late (overdue beyond a burst), frame_size and format (not what was negotiated)."
    )
    lateness_ms: Summary = stat(help="Send time minus deadline of every frame sent in its slot, fills too, in ms.")


@register("pacer", klass="Filter/Timing")
@attrs.frozen(kw_only=True)
class Pacer(Filter):
    """Sends fixed frames on an absolute clock: frame n at t0 + n x period, never drifting."""

    statistics_type = PacerStatistics
    frames_help = "takes only frames of frame_ms (a chunker with the same frame_ms before it makes them)"

    frame_ms: float = param(
        60.0, gt=0, max=1000, unit="ms", help="Duration of each frame (the period); as the chunker's."
    )
    lead: int = param(
        0, min=0, max=100, unit="frames", help="Frames sent at once at the start of each talk spurt (a prebuffer)."
    )
    margin_ms: float = param(
        0.5, min=0, max=10, unit="ms", help="Wake and send this much before each deadline (timer rounding)."
    )
    align_ms: float = param(
        5.0,
        min=0,
        max=100,
        unit="ms",
        help="Put t0 on a clock grid this fine (finer where frame_ms is no multiple of it), so the pacers "
        "of a process share their wake-ups; 0: t0 is the first frame's arrival.",
    )
    underrun: str = param(
        "silence",
        choices=UNDERRUN_POLICIES,
        help="No frame ready inside an utterance: send silence or comfort noise, or skip the slot.",
    )
    idle: str = param(
        "silence",
        choices=IDLE_POLICIES,
        help="Between utterances: keep the cadence with silence or comfort noise, "
        "or stop until the next audio (same grid).",
    )
    late: str = param(
        "burst",
        choices=LATE_POLICIES,
        help="Woke whole periods late: send overdue frames in a burst of at most max_burst, or drop them.",
    )
    max_burst: int = param(
        5, min=1, max=1000, unit="frames", help="Most overdue frames a burst sends at once; older ones are dropped."
    )
    late_ms: float = param(
        10.0, min=0, max=60_000, unit="ms", help="A frame sent more than this after its deadline counts as late."
    )
    noise_level: float = param(-60.0, min=-96, max=-20, unit="dBFS", help="RMS level of comfort noise.")
    seed: int = param(0, min=0, help="Seed of the comfort noise.")

    def input_caps(self) -> Caps:
        return self.accepts.with_frames((self.frame_ms,))

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> Pacing:
        assert fmt_in is not None
        return Pacing(
            FramePacer(
                fmt_in,
                whole_samples(fmt_in, self.frame_ms, "frame_ms"),
                lead=self.lead,
                margin=self.margin_ms / 1000,
                underrun=self.underrun,
                idle=self.idle,
                late=self.late,
                max_burst=self.max_burst,
                late_after=self.late_ms / 1000,
                noise_level=self.noise_level,
                seed=self.seed,
                grid=shared_grid(self.frame_ms, self.align_ms),
            )
        )


def shared_grid(frame_ms: float, align_ms: float) -> float:
    """The grid (seconds) that t0 snaps to: the largest step that divides both ``align_ms`` and the period.

    Slots then fall on that grid for the whole call, so every pacer of the process whose t0 fell
    on the same phase wakes at the same instant: one timer wake-up serves them all, where
    anchors at arbitrary arrival times would each cost one (at a hundred calls, a bare paced
    write costs 56 µs a frame so, 24 on a 5 ms grid). It costs the first frame of a call at most
    ``align_ms`` of latency, and nothing after: every slot stays on the grid.
    """
    if not align_ms:
        return 0.0
    return math.gcd(round(frame_ms * 1000), round(align_ms * 1000)) / 1_000_000


def faded(frame: AudioChunk) -> AudioChunk:
    """``frame`` fading to silence, as no reply's audio (so nothing downstream drops it as cleared)."""
    return attrs.evolve(frame, data=fade_out(frame.data, frame.format.encoding), utterance=None)


class Pacing:
    """The pacer's own shell: it reads its input only when its clock wants a frame.

    The shared shell pushes every frame as it comes; the pacer must instead leave frames in
    the channel until their slot, so that the moment its ``take`` empties a slot of the channel
    is the moment upstream may send the next frame (the pull clock of the pipeline).
    """

    def __init__(self, core: FramePacer) -> None:
        self.core = core

    @property
    def lateness(self) -> Quantiles:
        """Every send's lateness (seconds), for merging across calls."""
        return self.core.lateness

    async def run(
        self,
        rx: ReceiveChannel,
        tx: SendChannel,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        core = self.core

        def take() -> Frame | object | None:
            try:
                return rx.receive_nowait()
            except trio.WouldBlock:
                return None
            except trio.EndOfChannel:
                return END

        control = CURRENT_CONTROL.get()
        fade_next = fading = False

        def cut(reason: str) -> None:
            nonlocal fade_next
            fade_next = not core.cut()

        def fresh(item: Frame | object | None) -> Frame | object | None:
            """``item``, unless it is queued audio of a reply the call cleared (then None, or faded once)."""
            nonlocal fade_next, fading
            if control is None or not isinstance(item, AudioChunk) or not control.stale(item):
                return item
            if fade_next:
                fade_next, fading = False, True
                return faded(item)
            return None

        def take_fresh() -> Frame | object | None:
            while (item := take()) is not None:
                kept = fresh(item)
                if kept is not None:
                    return kept
            return None

        async with rx, tx:
            task_status.started()
            with listening(cut):
                while not core.ended:
                    if core.waiting:
                        frame = None
                        with trio.move_on_at(core.wait_until):
                            try:
                                frame = fresh(await rx.receive())
                            except trio.EndOfChannel:
                                break
                        if frame is None:
                            core.lead_over()
                            continue
                        sends = core.push(frame, trio.current_time())  # type: ignore[arg-type]  # a frame, read from rx
                    else:
                        await sleep_until(core.deadline)
                        sends = core.poll(trio.current_time(), take_fresh)
                        if fading:  # the fade went out: what follows is idle, not an underrun
                            fading = False
                            core.end_spurt()
                    for out in sends:
                        await tx.send(out)
                    if core.hungry:
                        item = None
                        with trio.move_on_at(core.hungry_until):
                            try:
                                item = fresh(await rx.receive())
                            except trio.EndOfChannel:
                                item = END
                        core.fed(item)

    def series(self) -> dict[str, dict[str, Any]]:
        return self.core.series()

    def statistics(self) -> PacerStatistics:
        return self.core.statistics()
