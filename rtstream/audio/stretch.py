"""Pitch-synchronous time-stretch within ±5 %: speech a little faster or slower, pitch unchanged.

Speeding up removes one whole pitch period (2.5-15 ms) where the waveform repeats itself,
cross-fading the period before it into the period after it; slowing down repeats the last
period the same way. The speed sets a budget: at 1.05 the stretcher may remove 5 % of what it
outputs, so a 5 ms period goes every 100 ms; the budget never holds more than one longest
period, so splices do not bunch up. A splice is made only where the two periods match
(normalized correlation at least 0.9, as NetEq requires) or where the signal is near silence;
elsewhere the audio passes untouched and the budget waits for a better place. Cross-fades over
a full period of matching waveform leave no click.

A splice in a long pause costs nothing audible, one in a short gap between words or inside a
word a little (PESQ hears a gap of 80-90 ms made shorter or longer as it hears a stretched
word), so a caller that is in no hurry asks for ``quiet_only`` splices: the budget then waits
(up to one longest period) for a pause, which takes it whole and keeps taking while the pause
lasts. Slowing down needs only 80 ms of quiet (a buffer running low sees no audio ahead, and
running dry costs more than a longer gap); speeding up, with ``long_pauses``, a pause known to
last :data:`LONG_PAUSE` (210 ms) or more, and it leaves :data:`KEEP_PAUSE` (120 ms) of it. A
pause is known by the quiet seen so far (80 ms at least) plus the quiet input ahead: a caller
that holds audio beyond the block passes up to :attr:`TimeStretch.horizon` more of it, and a
pause whose end is not in sight yet counts only as far as it can see.
Quiet means 30 dB below the recent peak level (a peak that decays 6 dB/s) or below -60 dBFS.

In a pause (80 ms of quiet or more) the stretcher may go further than ±5 %, up to ``pause_change``
(75 %, one longest period per block at most): silence made a little longer or shorter between
phrases is not heard, so a buffer can reach its target there in a few blocks instead of
stretching words for seconds.

Nothing is held back: slowing down reuses the output already produced, speeding up reads at
most two periods plus 10 ms ahead in the input, which a jitter buffer that is above its target
already holds. Signals are float32 (n, channels); the search runs on the channel mean.
"""

from __future__ import annotations

import numpy as np

from .plc import crossfade
from .similarity import similarity

MAX_CHANGE = 0.05
PAUSE_CHANGE = 0.75
"""The largest speed change inside a pause (the budget still caps a splice at one longest period)."""
_MATCH = 0.9
_SILENCE_POWER = 1e-6
"""Mean power (full scale 1), -60 dBFS, below which a window is always quiet."""
_QUIET_RATIO = 10 ** (-30 / 10)
"""A window 30 dB below the recent peak level is quiet: a pause, where any splice is inaudible."""
_PEAK_DECAY_DB_PER_S = 6.0
_PAUSE = 0.080
"""A calm splice waits until the signal has been quiet this long: between sentences, not words."""
LONG_PAUSE = 0.210
"""A calm speed-up is made only in a pause at least this long, counting the quiet input ahead.
PESQ hears 5 ms taken out anywhere in a gap of 60-90 ms (up to 0.15 MOS), and in the last
60 ms of a 200 ms pause; in the middle of a pause of 300 ms or more, nothing. On the jitter
traces (benchmarks/quality.py) 180-200 ms measured a few hundredths worse; above 210 ms, a
speaker whose pauses all last about 220 ms gives no chance to drain a fast sender's clock."""
KEEP_PAUSE = 0.120
"""A calm splice leaves the pause it shortens at least this long."""
_WINDOW_AHEAD = 0.005
"""The input ahead is judged quiet or not in windows this long."""


class TimeStretch:
    """Renders output blocks from input at a speed in [1 - max_change, 1 + max_change]."""

    def __init__(
        self,
        rate: int,
        channels: int = 1,
        *,
        max_change: float = MAX_CHANGE,
        pause_change: float = PAUSE_CHANGE,
        long_pauses: bool = True,
    ) -> None:
        if not 0 <= max_change <= MAX_CHANGE:
            raise ValueError(f"max_change must be between 0 and {MAX_CHANGE}, got {max_change}")
        if not 0 <= pause_change < 1:
            raise ValueError(f"pause_change must be at least 0 and below 1, got {pause_change}")
        self.channels = channels
        self.max_change = max_change
        self.pause_change = max(pause_change, max_change) if max_change else 0.0
        self.lag_min = round(0.0025 * rate)
        self.lag_max = round(0.015 * rate)
        self.window = round(0.010 * rate)
        self.lookahead = 2 * self.lag_max + self.window
        """Input beyond the block that lets a speed-up find any period."""
        self.horizon = round(LONG_PAUSE * rate)
        """Input beyond the block (and :attr:`lookahead`) in which a calm splice looks for the pause's end."""
        self.budget = 0.0
        """Samples that may be removed (positive) or inserted (negative) at the next match."""
        self._peak = 0.0
        self._quiet_only = False
        self._quiet_run = 0
        self._pause = round(_PAUSE * rate)
        self.long_pauses = long_pauses
        """Calm speed-ups only in pauses known to be long (else in any pause, 80 ms of quiet)."""
        self._long = round(LONG_PAUSE * rate)
        self._keep = round(KEEP_PAUSE * rate)
        self._w_ahead = max(1, round(_WINDOW_AHEAD * rate))
        self._room = 0
        """Samples a calm speed-up may take out of the pause here."""
        self._decay = 10 ** (-_PEAK_DECAY_DB_PER_S / 10 / rate)

    def render(
        self,
        history: np.ndarray,
        x: np.ndarray,
        out: np.ndarray,
        speed: float,
        *,
        quiet_only: bool = False,
        at_most: int | None = None,
    ) -> int:
        """Fill ``out`` from ``x`` (the input that follows ``history``, the output so far).

        ``x`` must hold at least ``len(out)`` samples (and :attr:`lookahead` more to find any
        period); any more input in it, up to :attr:`horizon`, shows how long a pause lasts.
        Returns how many samples of ``x`` were used: ``len(out)`` plus the period removed, or
        minus the period inserted. With ``quiet_only`` a splice is made only in a pause (with
        :attr:`long_pauses`, a speed-up only in one known to last :data:`LONG_PAUSE`, which
        keeps :data:`KEEP_PAUSE`). Inside a pause ``speed`` may differ from 1 by up to
        ``pause_change``, elsewhere by ``max_change``; ``at_most`` caps what the budget may hold
        (samples), so a caller near its goal does not overshoot it.
        """
        n = len(out)
        self._quiet_only = quiet_only
        before = self._quiet_run
        self.observe(x[:n])
        if quiet_only:
            if not self.in_pause:
                self._room = 0
            else:
                self._room = self._pause_room(before, x) if self.long_pauses else self.lag_max
        limit = self.pause_change if self.in_pause else self.max_change
        speed = min(max(speed, 1 - limit), 1 + limit)
        change = (speed - 1) * n
        if change == 0 or change * self.budget < 0:
            self.budget = 0.0
        cap = self.lag_max if at_most is None else min(self.lag_max, at_most)
        self.budget = min(max(self.budget + change, -cap), cap)
        if self.budget >= self.lag_min:
            lag = self._remove(x, out)
            if lag:
                self.budget -= lag
                return n + lag
        elif -self.budget >= self.lag_min:
            lag = self._insert(history, x, out)
            if lag:
                self.budget += lag
                return n - lag
        out[:] = x[:n]
        return n

    def observe(self, x: np.ndarray) -> None:
        """Follow the signal's level (call with audio that passes without :meth:`render`, too)."""
        if len(x):
            power = float(np.vdot(x, x)) / x.size
            self._peak = max(power, self._peak * self._decay ** len(x))
            self._quiet_run = self._quiet_run + len(x) if self._quiet(power) else 0

    def _pause_room(self, before: int, x: np.ndarray) -> int:
        """How much a calm speed-up may take out of the pause that ``x`` starts in (0: none).

        ``before`` is the quiet output before ``x``; the quiet run at the head of ``x`` (judged
        in short windows against the same level) is what is known to follow. Only a pause
        known to last :data:`LONG_PAUSE` is touched, and it keeps :data:`KEEP_PAUSE`.
        """
        w = self._w_ahead
        m = len(x) // w
        if not m:
            return 0
        head = x[: m * w].reshape(m, -1)
        power = np.einsum("ij,ij->i", head, head) / head.shape[1]
        loud = power >= max(_SILENCE_POWER, self._peak * _QUIET_RATIO)
        ahead = (int(np.argmax(loud)) if loud.any() else m) * w
        total = before + ahead
        return total - self._keep if total >= self._long else 0

    @property
    def in_pause(self) -> bool:
        """The signal observed last has been quiet for a pause's length (80 ms) or more."""
        return self._quiet_run >= self._pause

    def _quiet(self, power: float) -> bool:
        return power < max(_SILENCE_POWER, self._peak * _QUIET_RATIO)

    def _mono(self, x: np.ndarray) -> np.ndarray:
        return x[:, 0] if self.channels == 1 else x.mean(axis=1)

    def _pick(
        self, span: np.ndarray, template: np.ndarray, region: np.ndarray, *, if_quiet: int, calm: bool
    ) -> int | None:
        """Index of the best-matching window of ``region`` (None if none matches).

        ``span`` is every sample the splice may touch; when it is all pause, ``if_quiet``.
        ``calm``: whether a calm splice may be made in this pause.
        """
        quiet = self._quiet(float(np.vdot(span, span)) / max(span.size, 1))
        if self._quiet_only:
            return if_quiet if quiet and self.in_pause and calm else None
        if quiet:
            return if_quiet
        score = similarity(template, region)
        best = int(np.argmax(score))
        return best if score[best] >= _MATCH else None

    def _remove(self, x: np.ndarray, out: np.ndarray) -> int:
        n, w = len(out), self.window
        hi = min(self.lag_max, int(self.budget), n, len(x) - n, len(x) - w)
        if self._quiet_only:
            hi = min(hi, self._room)
        if hi < self.lag_min:
            return 0
        mono = self._mono(x[: max(hi + w, 2 * hi)])
        k = self._pick(
            mono[: 2 * hi], mono[:w], mono[self.lag_min : hi + w], if_quiet=hi - self.lag_min, calm=self._room > 0
        )
        if k is None:
            return 0
        lag = self.lag_min + k
        crossfade(x[:lag], x[lag : 2 * lag], out[:lag])
        out[lag:] = x[2 * lag : n + lag]
        return lag

    def _insert(self, history: np.ndarray, x: np.ndarray, out: np.ndarray) -> int:
        n = len(out)
        w = min(self.window, len(x))
        hi = min(self.lag_max, int(-self.budget), n, len(history), len(x))
        if hi < self.lag_min or w < self.lag_min:
            return 0
        joined = self._mono(np.concatenate((history[len(history) - hi :], x[: max(w, hi)])))
        k = self._pick(joined[: 2 * hi], joined[hi : hi + w], joined[: hi - self.lag_min + w], if_quiet=0, calm=True)
        if k is None:
            return 0
        lag = hi - k
        crossfade(x[:lag], history[len(history) - lag :], out[:lag])
        out[lag:] = x[: n - lag]
        return lag
