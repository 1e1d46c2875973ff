"""What the jitter buffer does with the next tick: the playout speed and the fate of a hole.

The two directions differ in their physics:

* **inbound** (telephony to bot): packets arrive in real time, late or lost. The controlled
  quantity is the playout delay measured against the earliest arrival of the last two
  seconds; it is steered to the target by speeding up (when more than a band above it) or
  slowing down (when below it; in pauses only, since a late packet's wait grows the delay
  too, and stretched words cost more than they save). A hole is waited for (concealed without moving on) while the
  playout delay is below the target, since the packet is then probably just late; once the
  delay reaches the target it is counted lost and skipped.
* **outbound** (TTS to telephony): the source bursts far ahead of real time, then stalls. A full
  buffer is welcome (it backs up into the TTS socket instead of growing), so there is no
  speeding up; below the target, while more of the utterance is still to come, playout slows
  down to stretch what is buffered over a possible stall. Audio arrives in order, so a hole
  is never waited for.

Speed changes are at least 50 ms apart, like NetEq's time-scale decisions. A delay change
inside a word is heard (and costs PESQ points), and so is one in a short gap between words (a
gap of 80-90 ms made shorter or longer costs as much as a stretched word, 0.2-0.3 MOS); one in
the middle of a long pause costs nothing. So, unless the delay is far above target
(:func:`urgent`), the stretcher only splices in pauses, and inbound it speeds up only in pauses
known to be long: the quiet seen so far plus the quiet audio already buffered ahead must reach
210 ms, and the pause keeps 120 ms at least (``rtstream.audio.stretch``). There it may take the
whole difference at once (up to the point where the change stops, :func:`stop_at`), in a few
large splices rather than many small ones. Until such a pause comes, speeding up waits: the
slack of a cautious start is held a second or two, not trimmed from words. Slowing down needs
only a pause of 80 ms (a buffer below its target has little audio ahead to judge a pause by,
and running dry costs more), and outbound keeps that rule for both: its slowing down spreads
what is buffered over a stall that may come, and the stricter rule measured worse there.
"""

from __future__ import annotations

MIN_INTERVAL = 0.050
URGENT_EXCESS = 0.100
"""Inbound delay this far above the band costs more (in latency) than splices inside words."""


def band(target: float, mature: bool = True) -> float:
    """How far above the target the inbound delay may drift before playout speeds up.

    Every change of delay costs a little (PESQ hears even a short gap between words made
    shorter), so the band is never narrower than a packet. While the histogram is young (see
    :attr:`~.delay.DelayEstimator.mature`) its target still underestimates the tail, and the band
    is a quarter of the target; once it has seen enough, an eighth, so the slack of a cautious
    start is taken back to within a sixteenth of the target. Speeding up goes down to half the band.
    """
    return max(0.020, target / (8 if mature else 4))


class SpeedControl:
    """Chooses 1, 1 + change or 1 - change for each tick, with hysteresis and a minimum interval."""

    def __init__(self, direction: str, change: float) -> None:
        self.direction = direction
        self.change = change
        self.speed = 1.0
        self._since: float | None = None

    def reset(self) -> None:
        self.speed = 1.0
        self._since = None

    def decide(self, now: float, delay: float, target: float, *, more_coming: bool, mature: bool = True) -> float:
        """The speed for the next tick, given the controlled delay and its target (seconds)."""
        wanted = self._wanted(delay, target, more_coming, mature)
        if wanted != self.speed and (self._since is None or now - self._since >= MIN_INTERVAL - 1e-9):
            self.speed = wanted
            self._since = now
        return self.speed

    def _wanted(self, delay: float, target: float, more_coming: bool, mature: bool) -> float:
        if not self.change:
            return 1.0
        if self.direction == "outbound":
            return 1 - self.change if more_coming and delay < target else 1.0
        if self.speed != 1:
            return self.speed if (delay - stop_at(target, self.speed, mature)) * (self.speed - 1) > 0 else 1.0
        if delay > target + band(target, mature):
            return 1 + self.change
        if delay < target:
            return 1 - self.change
        return 1.0


def stop_at(target: float, speed: float, mature: bool = True) -> float:
    """The delay at which a speed change has done its work: half the band above the target when
    speeding up, the target when slowing down."""
    return target + band(target, mature) / 2 if speed > 1 else target


def urgent(direction: str, delay: float, target: float, mature: bool = True) -> bool:
    """Whether the delay is far enough off target to stretch inside speech, not only in pauses."""
    if direction == "outbound":
        return delay < target / 2
    return delay > target + band(target, mature) + URGENT_EXCESS


def skip_hole(direction: str, delay: float, target: float, *, waited: float, max_wait: float) -> bool:
    """Whether a hole (audio missing while later audio is buffered) is given up as lost now.

    ``waited`` is how long the current concealment has run; waiting stops at ``max_wait`` so a
    late packet costs a short concealment, never an interruption.
    """
    return direction == "outbound" or delay >= target or waited >= max_wait
