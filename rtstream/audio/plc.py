"""Pitch-based loss concealment in the manner of ITU-T G.711 Appendix I, at any sample rate.

When audio goes missing, the concealer replays pitch periods of the signal just before the
loss: one period for the first 10 ms, then two, then three (so a long loss does not buzz), with
a quarter-period overlap-add at every seam. The level holds for 10 ms, then falls 20 % per
10 ms, reaching silence at 60 ms. The first good audio after the loss is cross-faded from the
continued replay, over a quarter period plus 4 ms per extra 10 ms lost (at most 10 ms).

The Appendix's lengths are for 8 kHz (pitch 40-120 samples, 390 samples of history, a 160-sample
correlation window); they scale with the rate. Like the Appendix, the owner keeps ``hold``
samples (a quarter of the longest period, 3.75 ms) produced but not yet played, so that the
start of a concealment can smooth the last quarter period into the replay.

Signals are float32 arrays of shape (n, channels); the pitch is found on the channel mean.
"""

from __future__ import annotations

import numpy as np

from .similarity import similarity

_ATTENUATION_PER_10MS = 0.2
_MIN_POWER = 1e-7
"""Mean power (full scale 1) below which a window counts as silence in the pitch search."""


def ramp(n: int) -> np.ndarray:
    """Fade-in weights of an n-sample linear cross-fade, as a column: 1/n, 2/n, ... n/n."""
    return (np.arange(1, n + 1, dtype=np.float32) / np.float32(n))[:, None]


def crossfade(fade_out: np.ndarray, fade_in: np.ndarray, out: np.ndarray) -> None:
    """``out = fade_out * (1 - w) + fade_in * w`` with a linear w over the length of ``out``."""
    w = ramp(len(out))
    np.multiply(fade_out - fade_in, 1 - w, out=out)
    out += fade_in


class Concealer:
    """Conceals one loss at a time: :meth:`start`, then :meth:`fill` as often as needed, then :meth:`finish`.

    ``history_len`` samples of the signal before the loss are needed (shorter histories are
    treated as preceded by silence), the last ``hold`` of them not yet played.
    """

    def __init__(self, rate: int, channels: int = 1) -> None:
        scale = rate / 8000
        self.channels = channels
        self.pitch_min = round(40 * scale)
        self.pitch_max = round(120 * scale)
        self.hold = self.pitch_max // 4
        self.history_len = 3 * self.pitch_max + self.hold
        self.corr_len = round(160 * scale)
        self.frame = round(rate / 100)
        self.silent_after = 6 * self.frame
        """Samples of concealment after which it is silence (60 ms: the gain has reached zero)."""
        self._seam_growth = round(32 * scale)
        self._buffer = np.zeros((self.history_len, channels), dtype=np.float32)
        self._original_tail = np.zeros((self.hold, channels), dtype=np.float32)
        self._scratch = np.zeros((self.hold, channels), dtype=np.float32)
        self.active = False
        self.pitch = self.pitch_min
        self.elapsed = 0
        """Samples concealed since :meth:`start`."""
        self._periods = 1
        self._offset = 0
        self._overlap = 0
        self._seam_left = 0

    def start(self, history: np.ndarray, *, pitch: int | None = None) -> None:
        """Begin concealing after ``history`` (the signal so far, newest last).

        The last quarter period of ``history`` is rewritten in place to blend into the replay,
        so it must not have been played yet (``hold`` samples are enough). A known ``pitch``
        (in samples) skips the search, which needs ``corr_len + pitch_max`` samples of history.
        """
        have = min(len(history), self.history_len)
        buf = self._buffer
        buf[: self.history_len - have] = 0
        buf[self.history_len - have :] = history[len(history) - have :]
        if pitch is None:
            mono = buf.mean(axis=1) if self.channels > 1 else buf[:, 0]
            template = mono[-self.corr_len :]
            region = mono[-self.corr_len - self.pitch_max : len(mono) - self.pitch_min]
            score = similarity(template, region, floor=_MIN_POWER * self.corr_len)
            pitch = self.pitch_max - int(np.argmax(score))
        self.pitch = min(max(pitch, self.pitch_min), self.pitch_max)
        self._overlap = self.pitch // 4
        self._original_tail[: self._overlap] = buf[self.history_len - self._overlap :]
        self._periods = 1
        self._offset = 0
        self._seam_left = 0
        self.elapsed = 0
        self.active = True
        self._smooth_tail()
        if self._overlap and have >= self._overlap:
            history[len(history) - self._overlap :] = buf[self.history_len - self._overlap :]

    def _smooth_tail(self) -> None:
        """Blend the end of the replayed span into the signal just before it, so the loop has no seam."""
        ov, length, end = self._overlap, self._periods * self.pitch, self.history_len
        if ov:
            crossfade(
                self._original_tail[:ov], self._buffer[end - length - ov : end - length], self._buffer[end - ov :]
            )

    def fill(self, out: np.ndarray) -> None:
        """Write the next ``len(out)`` concealment samples into ``out``."""
        done = 0
        while done < len(out):
            if self.elapsed >= self.silent_after:
                out[done:] = 0
                self.elapsed += len(out) - done
                return
            boundary = (self.elapsed // self.frame + 1) * self.frame
            if self.elapsed % self.frame == 0 and self.elapsed in (self.frame, 2 * self.frame):
                self._add_period(out[done:])
            n = min(len(out) - done, boundary - self.elapsed)
            self._replay(out[done : done + n])
            done += n

    def _add_period(self, upcoming: np.ndarray) -> None:
        """Lengthen the replayed span by one period, fading from the old loop into the new one."""
        ov = self._overlap
        old = self._scratch[:ov]
        self._read(old)
        self._offset -= ov
        self._offset %= self._periods * self.pitch
        while self._offset > self.pitch:
            self._offset -= self.pitch
        self._periods += 1
        self._smooth_tail()
        self._seam_left = ov

    def _read(self, out: np.ndarray) -> None:
        """Copy the next samples of the replay loop (before gain) into ``out``."""
        length = self._periods * self.pitch
        index = (self._offset + np.arange(len(out))) % length + (self.history_len - length)
        np.take(self._buffer, index, axis=0, out=out)
        self._offset = (self._offset + len(out)) % length

    def _gain(self, start: int, n: int) -> np.ndarray:
        t = np.arange(start, start + n, dtype=np.float32)
        g = 1 - _ATTENUATION_PER_10MS * (t - self.frame) / self.frame
        return np.clip(g, 0, 1)[:, None]

    def _replay(self, out: np.ndarray) -> None:
        self._read(out)
        if self._seam_left:
            # fade from the old loop's continuation (kept in the scratch) into the new loop
            ov = self._overlap
            done = ov - self._seam_left
            k = min(self._seam_left, len(out))
            w = ramp(ov)[done : done + k]
            out[:k] += (self._scratch[done : done + k] - out[:k]) * (1 - w)
            self._seam_left -= k
        if self.elapsed + len(out) > self.frame:
            out *= self._gain(self.elapsed, len(out))
        self.elapsed += len(out)

    def finish(self, good: np.ndarray) -> int:
        """End the concealment: cross-fade the continued replay into ``good`` (in place).

        Returns the number of samples of ``good`` that were blended.
        """
        if not self.active:
            return 0
        self.active = False
        lost_frames = max(1, -(-self.elapsed // self.frame))
        n = min(len(good), self._overlap + (lost_frames - 1) * self._seam_growth, self.frame)
        if n == 0:
            return 0
        tail = np.zeros((n, self.channels), dtype=np.float32)
        if self.elapsed < self.silent_after:
            self._read(tail)
            tail *= self._gain(self.elapsed, n)
        crossfade(tail, good[:n].copy(), good[:n])
        return n
