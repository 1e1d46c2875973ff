"""``wav_source`` and ``wav_sink``: 16-bit PCM WAV files in and out."""

from __future__ import annotations

import random
from collections import Counter

import attrs
import trio

from rtstream.caps import Caps
from rtstream.frames import AudioChunk, AudioFormat, Encoding, UtteranceEnd, UtteranceStart
from rtstream.params import ParamError, param
from rtstream.registry import register
from rtstream.stage import ReceiveChannel, SendChannel, Sink, Source
from rtstream.stats import AudioCounter, Throughput
from rtstream.wavfile import WavError, WavWriter, open_wav


@attrs.frozen
class WavSourceStatistics:
    sent: Throughput


def _checked_format(source: WavSource) -> AudioFormat:
    try:
        reader, fmt = open_wav(source.path)
    except WavError as exc:
        raise ParamError("path", str(exc)) from None
    reader.close()
    return fmt


@register("wav_source", klass="Source/File")
@attrs.frozen(kw_only=True)
class WavSource(Source):
    """A 16-bit PCM WAV file sent in fixed or random chunk sizes, as one utterance."""

    produces = Caps(encodings=(Encoding.PCM_S16LE,))

    path: str = param(type=str, kind="input_file", max_size=4 << 30, help="The WAV file (16-bit PCM, mono or stereo).")
    chunking: str = param(
        "fixed", choices=("fixed", "random"), help="Fixed chunk sizes, or random ones between min_bytes and max_bytes."
    )
    chunk_bytes: int = param(
        960, min=1, max=1 << 20, unit="bytes", help="Chunk size for fixed chunking (rounded down to whole samples)."
    )
    min_bytes: int = param(200, min=1, max=1 << 20, unit="bytes", help="Smallest chunk for random chunking.")
    max_bytes: int = param(2000, min=1, max=1 << 20, unit="bytes", help="Largest chunk for random chunking.")
    seed: int = param(0, min=0, help="Seed of the random chunk sizes.")
    speed: float = param(1.0, min=0, max=1000, help="Times real time; 0 sends as fast as the pipeline takes it.")
    format: AudioFormat = attrs.field(init=False, default=attrs.Factory(_checked_format, takes_self=True))
    _sent: AudioCounter = attrs.field(init=False, factory=AudioCounter, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.min_bytes > self.max_bytes:
            raise ParamError("min_bytes", f"must not exceed max_bytes ({self.max_bytes}), got {self.min_bytes}")

    def output_caps(self, fmt_in: AudioFormat | None) -> Caps:
        return Caps.of(self.format)

    def _chunk_samples(self, rng: random.Random) -> int:
        size = self.chunk_bytes if self.chunking == "fixed" else rng.randint(self.min_bytes, self.max_bytes)
        return max(1, size // self.format.frame_bytes)

    async def run(self, tx: SendChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        fmt = self.format
        utterance = self.path
        rng = random.Random(self.seed)
        reader, _ = open_wav(self.path)
        with reader:
            async with tx:
                task_status.started()
                start = trio.current_time()
                await tx.send(UtteranceStart(utterance))
                pts = 0
                while True:
                    if self.speed:
                        await trio.sleep_until(start + pts / fmt.sample_rate / self.speed)
                    raw = reader.readframes(self._chunk_samples(rng))
                    raw = raw[: len(raw) - len(raw) % fmt.frame_bytes]
                    if not raw:
                        break
                    chunk = AudioChunk(fmt.array(raw), fmt, pts=pts, utterance=utterance)
                    await tx.send(chunk)
                    self._sent.add(chunk)
                    pts += chunk.samples
                await tx.send(UtteranceEnd(utterance))

    def statistics(self) -> WavSourceStatistics:
        return WavSourceStatistics(self._sent.snapshot())


@attrs.frozen
class WavSinkStatistics:
    written: Throughput
    events: dict[str, int]


@register("wav_sink", klass="Sink/File")
@attrs.frozen(kw_only=True)
class WavSink(Sink):
    """Writes the audio it receives to a 16-bit PCM WAV file (events are counted, not written)."""

    accepts = Caps(encodings=(Encoding.PCM_S16LE,))

    path: str = param(type=str, kind="output_path", help="The WAV file to write; its folder is created if needed.")
    format: AudioFormat | None = None
    """The negotiated input format, filled in by :meth:`resolve`."""
    _written: AudioCounter = attrs.field(init=False, factory=AudioCounter, eq=False, repr=False)
    _events: Counter[str] = attrs.field(init=False, factory=Counter, eq=False, repr=False)

    def resolve(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> WavSink:
        return attrs.evolve(self, format=fmt_in)

    async def run(self, rx: ReceiveChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        assert self.format is not None, "wav_sink runs after negotiation"
        with WavWriter(self.path, self.format) as writer:
            async with rx:
                task_status.started()
                async for frame in rx:
                    if type(frame) is AudioChunk:
                        writer.write(frame.data)
                        self._written.add(frame)
                    else:
                        self._events[type(frame).__name__] += 1

    def statistics(self) -> WavSinkStatistics:
        return WavSinkStatistics(self._written.snapshot(), dict(sorted(self._events.items())))
