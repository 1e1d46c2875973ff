"""``jitter_buffer``: :class:`~rtstream.stages.jitter.core.JitterBuffer` on a playout clock, in the shared shell.

:class:`Playout` gives the buffer the shape of every core: frames are pushed in as they
arrive (outbound, the shell stops reading while the buffer holds its maximum, so the TTS
socket feels the backpressure), and ``poll`` takes a tick of output at a time:

* ``clock = "tick"`` (the default): on its own grid of ``tick_ms``, which suits any pipeline;
  put it where nothing downstream paces the audio (a file, a socket without a pacer).
* ``clock = "pull"``: as fast as the stage downstream takes it. Behind a pacer on a small
  channel, the moment a ``send`` returns is the moment the next block is wanted, so playout
  follows the pacer's clock and no second clock runs. A guard keeps the output from running
  more than a second ahead of real time if nothing paces it after all.

While idle or buffering nothing is sent; the pacer downstream decides what the line carries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs

from rtstream.frames import AudioChunk, AudioFormat, Frame
from rtstream.params import ParamError, param, whole_samples
from rtstream.registry import register
from rtstream.stage import NOTHING, Core, CoreElement, Filter

from .core import JitterBuffer, JitterSettings, JitterStatistics

PULL_AHEAD = 1.0
"""Pull mode never runs further than this ahead of real time."""


class Playout(Core):
    """A :class:`JitterBuffer` and the clock it is played out on: ``tick`` (real time) or ``pull``.

    While idle or buffering, every frame pushed wakes a poll at once (playing may start);
    while playing, polls come one tick of audio apart (pull: as soon as downstream takes
    them, at most ``PULL_AHEAD`` ahead of real time).
    """

    decoupled = True
    """Input keeps flowing in while a block waits on downstream, each chunk stamped as it arrives."""

    def __init__(self, buffer: JitterBuffer, *, pull: bool) -> None:
        self.buffer = buffer
        self.pull = pull
        self._since: float | None = None
        """When the current stretch of playing began."""
        self._sent = 0
        """Samples handed out since then."""
        self._wake = True

    @property
    def deadline(self) -> float:
        """At once after a push while not playing; else when the audio handed out has played.

        So the stream ends (after ``end``) once its last block has played, not when it was handed out.
        """
        if self._wake:
            return -math.inf
        if self._since is None:
            return math.inf
        due = self._since + self._sent / self.buffer.rate
        return due - PULL_AHEAD if self.pull else due

    @property
    def full(self) -> bool:
        return self.buffer.full

    def push(self, frame: Frame, now: float) -> Sequence[Frame]:
        if type(frame) is AudioChunk:
            self.buffer.put(frame, now)
        else:
            self.buffer.event(frame, now)  # type: ignore[arg-type]  # every other frame is an event
        self._wake = self._since is None
        return NOTHING

    def poll(self, now: float) -> Sequence[Frame]:
        self._wake = False
        frames = self.buffer.pull(now)
        samples = sum(f.samples for f in frames if type(f) is AudioChunk)
        if self.buffer.state != "playing" and not samples:
            self._since, self._sent = None, 0
        else:
            self._since = now if self._since is None else self._since
            self._sent += samples
        return frames

    def end(self) -> Sequence[Frame]:
        self.buffer.close()
        self._wake = self._since is None
        return NOTHING

    def series(self) -> dict[str, dict[str, Any]]:
        return self.buffer.series()

    def statistics(self) -> JitterStatistics:
        return self.buffer.statistics()


@register("jitter_buffer", klass="Filter/Timing")
@attrs.frozen(kw_only=True)
class JitterBufferStage(Filter):
    """Adaptive playout buffer: smooths jitter, conceals losses, stretches time within ±5 %."""

    statistics_type = JitterStatistics
    frames_help = "makes ticks of tick_ms (the last of a talk spurt may be shorter) out of chunks of any size"

    direction: str = param(
        "outbound",
        choices=("outbound", "inbound"),
        help="outbound: TTS bursts and stalls, backpressure when full; inbound: network packets, late and lost.",
    )
    clock: str = param(
        "tick", choices=("tick", "pull"), help="Hand out audio on its own tick, or when downstream pulls."
    )
    tick_ms: float = param(20.0, choices=(10.0, 20.0), unit="ms", help="Output block and decision interval.")
    min_delay_ms: float = param(20.0, min=0, max=2000, unit="ms", help="Lowest target delay.")
    max_delay_ms: float = param(
        500.0, min=20, max=5000, unit="ms", help="Highest target delay, and the most audio held."
    )
    start_delay_ms: float = param(
        150.0,
        min=0,
        max=5000,
        unit="ms",
        help="Audio gathered before playing starts (cautious: the jitter is not known yet).",
    )
    quantile: float = param(0.95, gt=0, max=1, help="Share of arrivals the target delay should cover.")
    forget_factor: float = param(0.983, gt=0, max=0.9999, help="How fast the delay histogram forgets, per half second.")
    max_stretch: float = param(0.05, min=0, max=0.05, help="Largest speed change of the time-stretch (0 turns it off).")

    def __attrs_post_init__(self) -> None:
        if self.min_delay_ms > self.max_delay_ms:
            raise ParamError(
                "min_delay_ms", f"must not exceed max_delay_ms ({self.max_delay_ms:g}), got {self.min_delay_ms:g}"
            )
        if self.start_delay_ms > self.max_delay_ms:
            raise ParamError(
                "start_delay_ms", f"must not exceed max_delay_ms ({self.max_delay_ms:g}), got {self.start_delay_ms:g}"
            )

    @property
    def settings(self) -> JitterSettings:
        return JitterSettings(
            direction=self.direction,
            tick=self.tick_ms / 1000,
            min_delay=self.min_delay_ms / 1000,
            max_delay=self.max_delay_ms / 1000,
            start_delay=self.start_delay_ms / 1000,
            quantile=self.quantile,
            forget=self.forget_factor,
            max_stretch=self.max_stretch,
        )

    def frames_out(self) -> float:
        """Ticks of ``tick_ms`` (the last of a talk spurt may be shorter)."""
        return self.tick_ms

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> CoreElement:
        assert fmt_in is not None
        whole_samples(fmt_in, self.tick_ms, "tick_ms")
        return CoreElement(Playout(JitterBuffer(fmt_in, self.settings), pull=self.clock == "pull"))
