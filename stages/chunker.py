"""``chunker``: audio of any chunk size re-cut into frames of exactly ``frame_ms``.

Telephony peers want fixed frames (60 ms: 960 bytes of 8 kHz PCM16, 480 of μ-law); TTS
services push chunks of any size. :class:`FrameCutter` is the synchronous core: it cuts
frames straight out of each input array (views, no copy) and copies only the samples of a
frame that straddles two inputs, into a frame buffer that then becomes that frame's data.

Event order: an event never overtakes audio that came before it. An event that arrives while
a partial frame is pending waits and leaves right after that frame, so it may trail by less
than one frame the audio that came after it. A frame is labelled with the utterance of its
first sample.

At an :class:`UtteranceEnd` the remainder (less than a frame) is, by ``remainder``:

- ``pad``: filled with the encoding's silence code (0 for PCM, 0xFF μ-law, 0xD5 A-law) and sent;
- ``hold``: kept and joined to the next utterance's first samples; the UtteranceEnd (and the
  next UtteranceStart) wait behind that joint frame. At the end of the stream a held remainder
  is padded, since there is nothing left to join it to;
- ``drop``: discarded and counted (reason ``remainder``).

A :class:`Clear` (barge-in) discards the partial frame, held or not (counted, reason ``clear``):
the audio before a barge-in must not leak into what follows it.
"""

from __future__ import annotations

import attrs
import numpy as np

from rtstream.frames import AudioChunk, AudioFormat, Clear, Frame, UtteranceEnd
from rtstream.params import param, whole_samples
from rtstream.registry import register
from rtstream.stage import Core, CoreElement, Filter
from rtstream.stats import DropCount, Drops, stat

REMAINDER_POLICIES = ("pad", "hold", "drop")


class FrameCutter(Core):
    """Cuts a stream of chunks and events into frames of ``frame_samples`` samples each.

    ``push`` takes one frame of the pipeline (audio or event) and returns what to send on,
    in order; ``end`` flushes at the end of the stream. Output pts count the samples sent
    from 0, continuously; seq numbers the frames from 0. Untimed: ``poll`` never has anything.
    """

    untimed = True

    __slots__ = (
        "_deferred",
        "_fill",
        "_first",
        "_held",
        "_partial",
        "_pts",
        "_shape",
        "chunks_in",
        "drops",
        "format",
        "frame_samples",
        "frames_out",
        "padded_samples",
        "remainder",
        "samples_in",
    )  # fmt: skip

    def __init__(self, fmt: AudioFormat, frame_samples: int, remainder: str = "pad") -> None:
        if remainder not in REMAINDER_POLICIES:
            raise ValueError(f"remainder policy must be one of {', '.join(REMAINDER_POLICIES)}, got {remainder!r}")
        self.format = fmt
        self.frame_samples = frame_samples
        self.remainder = remainder
        self.drops = Drops()
        self.chunks_in = 0
        self.samples_in = 0
        self.frames_out = 0
        self.padded_samples = 0
        self._shape = (frame_samples,) if fmt.channels == 1 else (frame_samples, fmt.channels)
        self._partial: np.ndarray | None = None
        """The frame being filled across inputs; it becomes that frame's data when full."""
        self._fill = 0
        self._first: AudioChunk | None = None
        """The chunk that gave the partial frame its first sample (for utterance and arrival)."""
        self._held = False
        """The partial frame is the held remainder of an ended utterance."""
        self._deferred: list[Frame] = []
        """Events waiting for the partial frame to be complete."""
        self._pts = 0

    @property
    def pending(self) -> int:
        """Samples waiting in the partial frame."""
        return self._fill

    def push(self, frame: Frame, now: float) -> list[Frame]:
        """What to send on after ``frame``, in order (``now`` is not used: the cutter has no clock)."""
        if type(frame) is AudioChunk:
            return self._cut(frame)
        out: list[Frame] = []
        if self._partial is None:
            out.append(frame)
        elif type(frame) is UtteranceEnd and not self._held:
            self._end_utterance(out, frame)
        elif type(frame) is Clear:
            self.drops.add("clear", samples=self._fill)
            self._discard()
            out.extend(self._deferred)
            self._deferred.clear()
            out.append(frame)
        else:
            self._deferred.append(frame)
        return out

    def end(self) -> list[Frame]:
        """What is left to send at the end of the stream."""
        out: list[Frame] = []
        if self._partial is not None:
            if self.remainder == "drop":
                self.drops.add("remainder", samples=self._fill)
                self._discard()
            else:
                self._pad(out)
        out.extend(self._deferred)
        self._deferred.clear()
        return out

    def _end_utterance(self, out: list[Frame], end: UtteranceEnd) -> None:
        if self.remainder == "pad":
            self._pad(out)
        elif self.remainder == "drop":
            self.drops.add("remainder", samples=self._fill)
            self._discard()
        else:
            self._held = True
            self._deferred.append(end)
            return
        out.extend(self._deferred)
        self._deferred.clear()
        out.append(end)

    def _cut(self, chunk: AudioChunk) -> list[Frame]:
        if chunk.format is not self.format and chunk.format != self.format:
            self.drops.add("format", samples=len(chunk.data))
            return []
        data = chunk.data
        n = len(data)
        self.chunks_in += 1
        self.samples_in += n
        out: list[Frame] = []
        pos = 0
        size = self.frame_samples
        if self._partial is not None:
            pos = min(size - self._fill, n)
            self._partial[self._fill : self._fill + pos] = data[:pos]
            self._fill += pos
            if self._fill == size:
                self._emit_partial(out)
        whole = (n - pos) // size
        for start in range(pos, pos + whole * size, size):
            out.append(self._frame(data[start : start + size], chunk))
        pos += whole * size
        if pos < n:
            self._partial = np.empty(self._shape, dtype=data.dtype)
            self._fill = n - pos
            self._partial[: self._fill] = data[pos:]
            self._first = chunk
        return out

    def _frame(self, data: np.ndarray, origin: AudioChunk) -> AudioChunk:
        frame = AudioChunk(
            data, self.format, pts=self._pts, seq=self.frames_out, arrival=origin.arrival, utterance=origin.utterance
        )
        self._pts += self.frame_samples
        self.frames_out += 1
        return frame

    def _emit_partial(self, out: list[Frame]) -> None:
        assert self._partial is not None and self._first is not None
        out.append(self._frame(self._partial, self._first))
        self._discard()
        out.extend(self._deferred)
        self._deferred.clear()

    def _pad(self, out: list[Frame]) -> None:
        assert self._partial is not None
        self._partial[self._fill :] = self.format.encoding.silence
        self.padded_samples += self.frame_samples - self._fill
        self._emit_partial(out)

    def _discard(self) -> None:
        self._partial = None
        self._first = None
        self._fill = 0
        self._held = False

    def statistics(self) -> ChunkerStatistics:
        return ChunkerStatistics(
            chunks_in=self.chunks_in,
            samples_in=self.samples_in,
            frames_out=self.frames_out,
            samples_out=self.frames_out * self.frame_samples,
            padded_samples=self.padded_samples,
            pending_samples=self._fill,
            drops=self.drops.snapshot(),
        )


@attrs.frozen
class ChunkerStatistics:
    chunks_in: int = stat(help="Audio chunks taken in.")
    samples_in: int = stat(help="Samples per channel taken in.")
    frames_out: int = stat(help="Frames sent, each exactly frame_ms long.")
    samples_out: int = stat(help="Samples per channel sent (padding included).")
    padded_samples: int = stat(help="Silence samples added to complete a frame at an utterance or stream end.")
    pending_samples: int = stat(help="Samples waiting in the part-filled frame.")
    drops: dict[str, DropCount] = stat(
        help="Dropped audio by reason: remainder (policy drop), clear (barge-in), format (not the negotiated one)."
    )


@register("chunker", klass="Filter/Audio")
@attrs.frozen(kw_only=True)
class Chunker(Filter):
    """Re-cuts audio of any chunk size into frames of exactly frame_ms, in any format."""

    statistics_type = ChunkerStatistics
    frames_help = "makes frames of frame_ms out of chunks of any size"

    frame_ms: float = param(
        60.0, gt=0, max=1000, unit="ms", help="Frame duration; must be a whole number of samples at the edge's rate."
    )
    remainder: str = param(
        "pad",
        choices=REMAINDER_POLICIES,
        help="At the end of an utterance, the part-frame left over is padded with silence, "
        "held and joined to the next utterance, or dropped (counted).",
    )

    def frames_out(self) -> float:
        return self.frame_ms

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> CoreElement:
        assert fmt_in is not None
        return CoreElement(FrameCutter(fmt_in, whole_samples(fmt_in, self.frame_ms, "frame_ms"), self.remainder))
