"""``converter``: any encoding, sample rate and channel layout to any other, as audio streams by.

The core, :class:`ConverterCore`, takes frames and returns frames with no I/O. Conversions
that keep the rate, the layout and the level are exact table lookups (PCM16 and G.711 in
both directions, bit-exact with ``audioop``). Everything else runs on float32: decode, mix
stereo to mono, apply the gain, resample (:class:`~rtstream.audio.resample.StreamResampler`),
copy mono to stereo, round and encode, counting clipped samples.

Resampling holds back a few tens of milliseconds of audio. A run of input that continues in
media time is one segment; the held audio is flushed when the segment ends: before an
:class:`UtteranceStart`, :class:`UtteranceEnd` or :class:`Gap` is passed on (so every event
keeps its place in the audio), after a chunk flagged LAST, when the input jumps in media time
or changes utterance or format, and at the end of the stream. A :class:`Clear` drops the held
audio (counted) and is passed on. Word timings are in seconds and pass unchanged.

Output media time is the input's, rescaled: a segment over input samples ``[a, b)`` comes out
exactly as output samples ``[rescale(a), rescale(b))``. When the input format changes the
chain restarts and output time carries on from where it stood.
"""

from __future__ import annotations

from collections import deque

import attrs
import numpy as np

from rtstream.audio import codec
from rtstream.audio.resample import QUALITIES, StreamResampler
from rtstream.caps import ANY_SIZE, Caps, StreamFormat
from rtstream.frames import (
    SAMPLE_RATES,
    AudioChunk,
    AudioFormat,
    ChunkFlags,
    Clear,
    Encoding,
    Frame,
    Gap,
    WordTimings,
)
from rtstream.params import param
from rtstream.registry import register
from rtstream.stage import Core, CoreElement, Filter
from rtstream.stats import DropCount, Drops, stat

_NO_CHUNKS: tuple[AudioChunk, ...] = ()
_HALF = np.float32(0.5)


@attrs.frozen
class ConverterStatistics:
    chunks_in: int = stat(help="Audio chunks taken in.")
    samples_in: int = stat(help="Samples per channel taken in.")
    chunks_out: int = stat(help="Audio chunks sent.")
    samples_out: int = stat(help="Samples per channel sent.")
    clipped: int = stat(help="Output samples clipped at full scale (after the gain).")
    nonfinite: int = stat(help="NaN or infinite float input samples, clamped (NaN to silence, ±inf to full scale).")
    format_changes: int = stat(help="Times the input format changed mid-stream (the chain restarted).")
    discontinuities: int = stat(help="Jumps in input media time that ended a resampling segment.")
    flushes: int = stat(help="Segments whose held-back audio was flushed out.")
    held_ms_max: float = stat(help="The most audio the resampler held back at once, in ms (its latency).")
    drops: dict[str, DropCount] = stat(help="Dropped audio by reason: cleared (held audio dropped at a barge-in).")


class ConverterCore(Core):
    """Frames in, frames out, converted to ``output``; no I/O, no clock (untimed)."""

    untimed = True

    def __init__(
        self, output: AudioFormat, *, gain_db: float = 0.0, quality: str = "HQ", input_format: AudioFormat | None = None
    ) -> None:
        self.output = output
        self.quality = quality
        self._gain = np.float32(10 ** (gain_db / 20)) if gain_db else None
        self._input: AudioFormat | None = None
        self._resampler: StreamResampler | None = None
        self._exact = False
        self._units = False
        """Integer encodings in and out: compute in PCM16 steps (:func:`~rtstream.audio.codec.to_pcm_units`)."""
        self._offset = 0  # output pts minus the rescaled input pts (moves on a format change)
        self._out_next = 0  # output pts just past the last sample given out
        self._utterance: str | None = None
        self._last: AudioChunk | None = None  # the latest chunk fed to the resampler
        self._carried = ChunkFlags.NONE  # FIRST, held until the resampler gives out audio
        self._arrivals: deque[tuple[int, float | None]] = deque()
        """Per input chunk in the resampler: (resampler output time just past its audio, its arrival)."""
        self.chunks_in = self.samples_in = self.chunks_out = self.samples_out = 0
        self.clipped = self.nonfinite = self.format_changes = self.discontinuities = self.flushes = 0
        self._held_max = 0
        self.drops = Drops()
        if input_format is not None:
            self._start(input_format)

    def _start(self, fmt: AudioFormat) -> None:
        """Set up the chain for input in ``fmt``."""
        self._input = fmt
        out = self.output
        if fmt.sample_rate == out.sample_rate:
            self._resampler = None
        else:
            channels = min(fmt.channels, out.channels)
            self._resampler = StreamResampler(fmt.sample_rate, out.sample_rate, channels, quality=self.quality)
        self._units = codec.is_integer(fmt.encoding) and codec.is_integer(out.encoding)
        self._exact = (
            self._resampler is None
            and self._gain is None
            and fmt.channels == out.channels
            and codec.is_integer(fmt.encoding)
            and codec.is_integer(out.encoding)
        )

    def rescale(self, pts: int) -> int:
        """Input media time in output samples (before the format-change offset)."""
        return pts if self._resampler is None else self._resampler.rescale(pts)

    def push(self, frame: Frame, now: float) -> tuple[Frame, ...]:
        """What ``frame`` turns into: converted audio, or the event after any audio it must follow."""
        kind = type(frame)
        if kind is AudioChunk:
            return self._audio(frame)  # type: ignore[arg-type]  # checked by type() above: isinstance is slower
        if kind is WordTimings:
            return (frame,)
        if kind is Clear:
            self._clear()
            return (frame,)
        if kind is Gap:
            return (*self._flush(), self._gap(frame))  # type: ignore[arg-type]  # as above
        return (*self._flush(), frame)

    def end(self) -> tuple[AudioChunk, ...]:
        """The end of the stream: the audio held back, if any."""
        return self._flush()

    # -- audio ------------------------------------------------------------------------------

    def _audio(self, chunk: AudioChunk) -> tuple[AudioChunk, ...]:
        """The converted audio ready after ``chunk``: none, one chunk, or a flushed tail and one."""
        self.chunks_in += 1
        self.samples_in += len(chunk.data)
        tail = _NO_CHUNKS
        if chunk.format is not self._input and chunk.format != self._input:
            tail = self._restart(chunk)
        if self._exact:
            data = codec.transcode(chunk.data, chunk.format.encoding, self.output.encoding)
            return (*tail, self._emit(data, chunk.pts + self._offset, chunk, chunk.flags, chunk.seq, chunk.arrival))
        samples = self._to_float(chunk)
        resampler = self._resampler
        if resampler is None:
            pts = chunk.pts + self._offset
            return (*tail, self._emit(self._from_float(samples), pts, chunk, chunk.flags, chunk.seq, chunk.arrival))
        if resampler.active and (chunk.pts != resampler.in_pts or chunk.utterance != self._utterance):
            if chunk.pts != resampler.in_pts:
                self.discontinuities += 1
            tail = self._flush()
        if not resampler.active:
            resampler.seek(chunk.pts)
            self._utterance = chunk.utterance
        start = resampler.out_pts
        out = resampler.process(samples)
        self._arrivals.append((resampler.rescale(resampler.in_pts), chunk.arrival))
        arrival = self._arrival_at(start)
        self._last = chunk
        flags = chunk.flags | self._carried if self._carried else chunk.flags  # enum operators are slow: skip them
        if flags and chunk.flags & ChunkFlags.LAST:
            out = np.concatenate((out, resampler.flush()))
            self._arrivals.clear()
            self.flushes += 1
        else:
            self._held_max = max(self._held_max, resampler.pending)
        if not len(out):
            self._carried = flags & ChunkFlags.FIRST if flags else ChunkFlags.NONE
            return tail
        self._carried = ChunkFlags.NONE
        return (*tail, self._emit(self._from_float(out), start + self._offset, chunk, flags, chunk.seq, arrival))

    def _arrival_at(self, out_pts: int) -> float | None:
        """The arrival of the input chunk whose audio is at resampler output time ``out_pts``."""
        arrivals = self._arrivals
        while arrivals and arrivals[0][0] <= out_pts:
            arrivals.popleft()
        return arrivals[0][1] if arrivals else None

    def _restart(self, chunk: AudioChunk) -> tuple[AudioChunk, ...]:
        """A new input format: flush the old chain, set up the new; output time carries on."""
        midstream = self.chunks_in > 1
        tail = self._flush()
        self._start(chunk.format)
        if midstream:
            self.format_changes += 1
            self._offset = self._out_next - self.rescale(chunk.pts)
        return tail

    def _flush(self) -> tuple[AudioChunk, ...]:
        """End the segment: the audio held back, if any, as one chunk."""
        resampler = self._resampler
        if resampler is None or not resampler.active:
            return _NO_CHUNKS
        start = resampler.out_pts
        out = resampler.flush()
        self.flushes += 1
        last, flags = self._last, self._carried
        self._carried = ChunkFlags.NONE
        arrival = self._arrival_at(start)
        self._arrivals.clear()
        if not len(out):
            return _NO_CHUNKS
        assert last is not None
        return (self._emit(self._from_float(out), start + self._offset, last, flags, None, arrival),)

    def _clear(self) -> None:
        """Barge-in: drop the audio held back, counted."""
        self._carried = ChunkFlags.NONE
        self._arrivals.clear()
        if self._resampler is not None and self._resampler.active:
            self.drops.add("cleared", samples=self._resampler.clear())

    def _emit(
        self, data: np.ndarray, pts: int, source: AudioChunk, flags: ChunkFlags, seq: int | None, arrival: float | None
    ) -> AudioChunk:
        """An output chunk with the utterance of the input chunk ``source`` and the arrival of its earliest audio."""
        self.chunks_out += 1
        self.samples_out += len(data)
        self._out_next = pts + len(data)
        return AudioChunk(data, self.output, pts=pts, seq=seq, arrival=arrival, utterance=source.utterance, flags=flags)

    def _to_float(self, chunk: AudioChunk) -> np.ndarray:
        """Decoded, finite, mixed down if the output has fewer channels, with the gain applied.

        In PCM16 steps between integer encodings (no scaling either way), in [-1, 1) otherwise.
        """
        encoding = chunk.format.encoding
        decode = codec.to_pcm_units if self._units else codec.to_float32
        samples = decode(chunk.data, encoding)
        if encoding is Encoding.PCM_F32LE:
            samples, bad = codec.clamp_nonfinite(samples)
            self.nonfinite += bad
        if chunk.format.channels > self.output.channels:
            samples = (samples[:, 0] + samples[:, 1]) * _HALF
        if self._gain is not None:
            samples = samples * self._gain
        return samples

    def _from_float(self, samples: np.ndarray) -> np.ndarray:
        """Copied to stereo if the output has more channels, then encoded, clips counted."""
        if self.output.channels == 2 and samples.ndim == 1:
            samples = np.repeat(samples[:, None], self.output.channels, axis=1)
        if self._units:
            pcm, clipped = codec.quantize_pcm_units(samples)
            data = codec.from_int16(pcm, self.output.encoding)
        else:
            data, clipped = codec.from_float32_counted(samples, self.output.encoding)
        self.clipped += clipped
        return data

    # -- events -----------------------------------------------------------------------------

    def _gap(self, gap: Gap) -> Gap:
        """``gap`` in output media time (its sequence numbers are left alone)."""
        pts, samples = gap.pts, gap.samples
        if pts is not None:
            start = self.rescale(pts)
            if samples is not None:
                samples = self.rescale(pts + samples) - start
            pts = start + self._offset
        elif samples is not None:
            samples = self.rescale(samples)
        if pts == gap.pts and samples == gap.samples:
            return gap
        return attrs.evolve(gap, pts=pts, samples=samples)

    def statistics(self) -> ConverterStatistics:
        rate = self.output.sample_rate
        return ConverterStatistics(
            chunks_in=self.chunks_in,
            samples_in=self.samples_in,
            chunks_out=self.chunks_out,
            samples_out=self.samples_out,
            clipped=self.clipped,
            nonfinite=self.nonfinite,
            format_changes=self.format_changes,
            discontinuities=self.discontinuities,
            flushes=self.flushes,
            held_ms_max=1000 * self._held_max / rate,
            drops=self.drops.snapshot(),
        )


def _fixed(value: object) -> tuple | None:
    return None if value is None else (value,)


@register("converter", klass="Filter/Converter")
@attrs.frozen(kw_only=True)
class Converter(Filter):
    """Converts encoding (PCM16, float32, μ-law, A-law), sample rate (8–48 kHz) and channels.

    A parameter left unset takes what the stages downstream accept, else keeps the input's.
    Frames keep their duration unless the rate changes: resampling holds audio back, so its
    output comes in chunks of any size (put a chunker after it where fixed frames are needed).
    """

    produces = Caps(tuple(Encoding), SAMPLE_RATES, (1, 2))
    statistics_type = ConverterStatistics
    frames_help = "keeps the frame duration unless it resamples; resampled audio comes in chunks of any size"

    encoding: Encoding | None = param(
        type=Encoding, optional=True, help="Output encoding; unset: what downstream accepts, else the input's."
    )
    sample_rate: int | None = param(
        type=int,
        optional=True,
        choices=SAMPLE_RATES,
        unit="Hz",
        help="Output sample rate; unset: what downstream accepts, else the input's.",
    )
    channels: int | None = param(
        type=int,
        optional=True,
        choices=(1, 2),
        help="Output channels (2 to 1 averages, 1 to 2 copies); unset: as negotiated.",
    )
    gain_db: float = param(
        0.0, min=-60, max=40, unit="dB", help="Gain applied to every sample; clipped samples are counted."
    )
    quality: str = param(
        "HQ",
        choices=QUALITIES,
        help="soxr resampling recipe: LQ halves the latency but dulls the top of the band; VHQ adds latency.",
    )

    def output_caps(self, fmt_in: StreamFormat | None) -> Caps:
        encodings, channels = _fixed(self.encoding), _fixed(self.channels)
        if fmt_in is None or fmt_in.frame_ms == ANY_SIZE:
            return Caps(encodings, _fixed(self.sample_rate), channels, (ANY_SIZE,))
        rate = fmt_in.format.sample_rate
        same = Caps(encodings, (rate,), channels, (fmt_in.frame_ms,))
        others = tuple(r for r in SAMPLE_RATES if r != rate and self.sample_rate in (None, r))
        return (same if self.sample_rate in (None, rate) else Caps.union(())) | Caps(
            encodings, others, channels, (ANY_SIZE,)
        )

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> CoreElement:
        assert fmt_out is not None
        return CoreElement(ConverterCore(fmt_out, gain_db=self.gain_db, quality=self.quality, input_format=fmt_in))
