"""Streaming sample-rate conversion on soxr, with exact lengths and media time.

A :class:`StreamResampler` turns a stream of float32 chunks of any size at one rate into a
stream at another. The filter state is kept across chunks, so the output is the same as
resampling the whole signal at once (soxr's one-shot result) no matter how the input was cut.
soxr holds back some output (its filter delay: 20 to 175 ms at HQ, by rates); :meth:`flush` releases
it at the end of a segment (an utterance), :meth:`clear` drops it (barge-in). Nothing else
resets the state: not time, not a pause in the input.

Between segments the soxr stream is let go (about 85 KB of C memory at HQ, unseen by
tracemalloc) and made anew by the next segment's first chunk: a call holds it only while a
reply is being converted, not through the caller's turns. A fresh stream is what soxr's own
``clear()`` gives (and costs the same), so the output does not change.

Exact lengths: media time maps between the rates by ``rescale(p) = floor(p * out / in + 1/2)``
(integer arithmetic). A segment that takes input samples ``[a, b)`` gives exactly
``rescale(b) - rescale(a)`` output samples, starting at output sample ``rescale(a)``. From
``a = 0`` that is ``n * out / in`` rounded half up; across consecutive segments the lengths
add up, so output time never drifts from input time. soxr's own length for a segment can
differ from this by one sample; the flush feeds a few samples of silence and cuts the result
to the exact length, so the extra sample, when one is needed, is the true continuation of
the signal into silence.

Processing is in float32: it is the fastest soxr path here, its streamed output is identical
to the one-shot output, and it leaves rounding (and clip counting) to the caller. soxr's int16
path adds dither, so its streamed and one-shot outputs differ by up to 2 LSB.
"""

from __future__ import annotations

import numpy as np
import soxr

QUALITIES = ("LQ", "MQ", "HQ", "VHQ")
"""soxr's quality recipes offered here; see ``benchmarks/resample_quality.py`` for the trade."""


class StreamResampler:
    """One stream's resampler: float32 chunks (shape (n,) or (n, channels)) in and out.

    ``pts`` is the input media time of the first sample to come. :meth:`process` may return
    fewer samples than the input maps to (soxr holds some back), even none.
    """

    __slots__ = (
        "_active",
        "_channels",
        "_in_pts",
        "_out_pts",
        "_quality",
        "_silence",
        "_stream",
        "in_rate",
        "out_rate",
    )

    def __init__(self, in_rate: int, out_rate: int, channels: int = 1, *, quality: str = "HQ", pts: int = 0) -> None:
        if quality not in QUALITIES:
            raise ValueError(f"resampling quality {quality!r} is not supported; use one of {', '.join(QUALITIES)}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._channels = channels
        self._quality = quality
        self._stream: soxr.ResampleStream | None = self._open()  # opened now, so bad settings fail here
        # enough silence for soxr's flush to reach at least one sample past the exact length
        pad = 2 * -(-in_rate // out_rate) + 1
        self._silence = np.zeros(pad if channels == 1 else (pad, channels), dtype=np.float32)
        self._in_pts = pts
        self._out_pts = self.rescale(pts)
        self._active = False

    def _open(self) -> soxr.ResampleStream:
        return soxr.ResampleStream(self.in_rate, self.out_rate, self._channels, np.float32, self._quality)

    def rescale(self, pts: int) -> int:
        """Input media time ``pts`` in output samples, rounded half up."""
        return (2 * pts * self.out_rate + self.in_rate) // (2 * self.in_rate)

    @property
    def in_pts(self) -> int:
        """Input media time of the next sample :meth:`process` takes."""
        return self._in_pts

    @property
    def out_pts(self) -> int:
        """Output media time of the next sample returned."""
        return self._out_pts

    @property
    def active(self) -> bool:
        """In the middle of a segment: input taken since the last flush or clear."""
        return self._active

    @property
    def pending(self) -> int:
        """Output samples owed for input already taken: what :meth:`flush` will return."""
        return self.rescale(self._in_pts) - self._out_pts

    def seek(self, pts: int) -> None:
        """Start the next segment at input media time ``pts``; only between segments."""
        if self._active:
            raise RuntimeError("seek() in the middle of a segment; flush() or clear() first")
        self._in_pts = pts
        self._out_pts = self.rescale(pts)

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Take float32 samples; return the output samples ready so far (starting at :attr:`out_pts`)."""
        stream = self._stream
        if stream is None:
            stream = self._stream = self._open()
        out = stream.resample_chunk(samples)
        self._active = True
        self._in_pts += len(samples)
        self._out_pts += len(out)
        return out

    def flush(self) -> np.ndarray:
        """End the segment: the rest of its output, to the exact length; then ready for the next."""
        if not self._active:
            return self._silence[:0]
        assert self._stream is not None  # active: process() opened it
        tail = self._stream.resample_chunk(self._silence, last=True)[: self.pending]
        self._stream = None
        self._active = False
        self._out_pts += len(tail)
        return tail

    def clear(self) -> int:
        """Drop what is held back (barge-in); return how many output samples that was."""
        dropped = self.pending
        if self._active:
            self._stream = None
            self._active = False
        self._out_pts += dropped
        return dropped
