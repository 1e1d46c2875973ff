"""Pitch-synchronous time-stretch within ±5 %: speech a little faster or slower, pitch unchanged.

Speeding up removes one whole pitch period (2.5-15 ms) where the waveform repeats itself,
cross-fading the period before it into the period after it; slowing down repeats the last
period the same way. The speed sets a budget: at 1.05 the stretcher may remove 5 % of what it
outputs, so a 5 ms period goes every 100 ms; the budget never holds more than one longest
period, so splices do not bunch up. A splice is made only where the two periods match
(normalized correlation at least 0.9, as NetEq requires) or where the signal is near silence;
elsewhere the audio passes untouched and the budget waits for a better place. Cross-fades over
a full period of matching waveform leave no click.

A splice in a pause costs nothing audible, one inside a word a little, so a caller that is in
no hurry asks for ``quiet_only`` splices: the budget then waits (up to one longest period) for
a pause of 80 ms or more (between phrases, not between words), which takes it whole and keeps
taking 5 % while the pause lasts. Quiet means
30 dB below the recent peak level (a peak that decays 6 dB/s) or below -60 dBFS.

In a pause of 80 ms or more the stretcher may go further than ±5 %, up to ``pause_change``
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


class TimeStretch:
    """Renders output blocks from input at a speed in [1 - max_change, 1 + max_change]."""

    def __init__(
        self, rate: int, channels: int = 1, *, max_change: float = MAX_CHANGE, pause_change: float = PAUSE_CHANGE
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
        self.budget = 0.0
        """Samples that may be removed (positive) or inserted (negative) at the next match."""
        self._peak = 0.0
        self._quiet_only = False
        self._quiet_run = 0
        self._pause = round(_PAUSE * rate)
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

        ``x`` must hold at least ``len(out)`` samples. Returns how many samples of ``x`` were
        used: ``len(out)`` plus the period removed, or minus the period inserted. With
        ``quiet_only`` a splice is made only in a pause. Inside a pause ``speed`` may differ from
        1 by up to ``pause_change``, elsewhere by ``max_change``; ``at_most`` caps what the
        budget may hold (samples), so a caller near its goal does not overshoot it.
        """
        n = len(out)
        self._quiet_only = quiet_only
        self.observe(x[:n])
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

    @property
    def in_pause(self) -> bool:
        """The signal observed last has been quiet for a pause's length (80 ms) or more."""
        return self._quiet_run >= self._pause

    def _quiet(self, power: float) -> bool:
        return power < max(_SILENCE_POWER, self._peak * _QUIET_RATIO)

    def _mono(self, x: np.ndarray) -> np.ndarray:
        return x[:, 0] if self.channels == 1 else x.mean(axis=1)

    def _pick(self, span: np.ndarray, template: np.ndarray, region: np.ndarray, *, if_quiet: int) -> int | None:
        """Index of the best-matching window of ``region`` (None if none matches).

        ``span`` is every sample the splice may touch; when it is all pause, ``if_quiet``.
        """
        quiet = self._quiet(float(np.vdot(span, span)) / max(span.size, 1))
        if self._quiet_only:
            return if_quiet if quiet and self.in_pause else None
        if quiet:
            return if_quiet
        score = similarity(template, region)
        best = int(np.argmax(score))
        return best if score[best] >= _MATCH else None

    def _remove(self, x: np.ndarray, out: np.ndarray) -> int:
        n, w = len(out), self.window
        hi = min(self.lag_max, int(self.budget), n, len(x) - n, len(x) - w)
        if hi < self.lag_min:
            return 0
        mono = self._mono(x[: max(hi + w, 2 * hi)])
        k = self._pick(mono[: 2 * hi], mono[:w], mono[self.lag_min : hi + w], if_quiet=hi - self.lag_min)
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
        k = self._pick(joined[: 2 * hi], joined[hi : hi + w], joined[: hi - self.lag_min + w], if_quiet=0)
        if k is None:
            return 0
        lag = hi - k
        crossfade(x[:lag], history[len(history) - lag :], out[:lag])
        out[lag:] = x[: n - lag]
        return lag
