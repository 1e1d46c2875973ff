"""``wav_source`` and ``wav_sink``: 16-bit PCM WAV files in and out."""

from __future__ import annotations

import random
import wave
from collections.abc import Iterator, Sequence

import attrs
import numpy as np
import trio

from rtstream.caps import ANY_SIZE, Caps, StreamFormat
from rtstream.frames import AudioChunk, AudioFormat, Encoding, Frame, UtteranceStart
from rtstream.params import ParamError, param
from rtstream.registry import register
from rtstream.stage import Core, ReceiveChannel, SendChannel, Sink, Source, run_core
from rtstream.stats import AudioCounter, Throughput, stat
from rtstream.wavfile import WavError, WavWriter, open_wav

from .null import Tally
from .playback import play


@attrs.frozen
class WavSourceStatistics:
    sent: Throughput = stat(help="Audio sent.")


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

    produces = Caps(encodings=(Encoding.PCM_S16LE,), frame_ms=(ANY_SIZE,))
    statistics_type = WavSourceStatistics
    frames_help = "makes chunks of any size"

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
    """The file's format, read when the config is made (so a bad file is a config error)."""

    def __attrs_post_init__(self) -> None:
        if self.min_bytes > self.max_bytes:
            raise ParamError("min_bytes", f"must not exceed max_bytes ({self.max_bytes}), got {self.min_bytes}")

    def output_caps(self, fmt_in: StreamFormat | None) -> Caps:
        return Caps.of(self.format, ANY_SIZE)

    def chunk_samples(self, rng: random.Random) -> int:
        size = self.chunk_bytes if self.chunking == "fixed" else rng.randint(self.min_bytes, self.max_bytes)
        return max(1, size // self.format.frame_bytes)

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> _WavReading:
        return _WavReading(self)


class _WavReading:
    """Reads the file in real time (or at ``speed``) and sends it as one utterance."""

    def __init__(self, config: WavSource) -> None:
        self.config = config
        self.sent = AudioCounter()

    async def run(self, tx: SendChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        config = self.config
        reader, _ = open_wav(config.path)
        with reader:
            pieces = self._pieces(reader, random.Random(config.seed))
            start = UtteranceStart(config.path)
            await play(tx, config.format, start, pieces, speed=config.speed, sent=self.sent, task_status=task_status)

    def _pieces(self, reader: wave.Wave_read, rng: random.Random) -> Iterator[np.ndarray]:
        fmt = self.config.format
        while raw := reader.readframes(self.config.chunk_samples(rng)):
            raw = raw[: len(raw) - len(raw) % fmt.frame_bytes]
            if not raw:
                return
            yield fmt.array(raw)

    def statistics(self) -> WavSourceStatistics:
        return WavSourceStatistics(self.sent.snapshot())


@attrs.frozen
class WavSinkStatistics:
    written: Throughput = stat(help="Audio written to the file.")
    events: dict[str, int] = stat(help="Events received (not written), by type.")


class _Recording(Core):
    """Writes the audio to the WAV file the element opened, counting it and the events as a null sink does."""

    def __init__(self) -> None:
        self.writer: WavWriter | None = None
        self.tally = Tally()

    def push(self, frame: Frame, now: float) -> Sequence[Frame]:
        if type(frame) is AudioChunk:
            assert self.writer is not None, "the element opens the file before the first frame"
            self.writer.write(frame.data)
        return self.tally.push(frame, now)

    def statistics(self) -> WavSinkStatistics:
        counted = self.tally.statistics()
        return WavSinkStatistics(counted.received, counted.events)


@register("wav_sink", klass="Sink/File")
@attrs.frozen(kw_only=True)
class WavSink(Sink):
    """Writes the audio it receives to a 16-bit PCM WAV file (events are counted, not written)."""

    accepts = Caps(encodings=(Encoding.PCM_S16LE,))
    statistics_type = WavSinkStatistics

    path: str = param(type=str, kind="output_path", help="The WAV file to write; its folder is created if needed.")

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> _WavWriting:
        assert fmt_in is not None
        return _WavWriting(self.path, fmt_in)


class _WavWriting:
    """Opens the file when the run starts, then runs a :class:`_Recording` core in the shared shell."""

    def __init__(self, path: str, fmt: AudioFormat) -> None:
        self.path, self.format = path, fmt
        self.core = _Recording()

    async def run(self, rx: ReceiveChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with WavWriter(self.path, self.format) as self.core.writer:
            await run_core(self.core, rx, task_status=task_status)

    def statistics(self) -> WavSinkStatistics:
        return self.core.statistics()
