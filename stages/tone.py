"""``tone``: a sine test signal in any supported format."""

from __future__ import annotations

import math
from collections.abc import Iterator

import attrs
import numpy as np
import trio

from rtstream.audio.codec import from_float32
from rtstream.caps import ANY_SIZE, Caps, StreamFormat
from rtstream.frames import SAMPLE_RATES, AudioFormat, Encoding, UtteranceStart
from rtstream.params import ParamError, param
from rtstream.registry import register
from rtstream.stage import SendChannel, Source
from rtstream.stats import AudioCounter, Throughput, stat

from .playback import play


@attrs.frozen
class ToneStatistics:
    sent: Throughput = stat(help="Audio sent.")


@register("tone", klass="Source/Audio")
@attrs.frozen(kw_only=True)
class Tone(Source):
    """A sine test tone in any supported format, in real time or as fast as possible."""

    produces = Caps(tuple(Encoding), SAMPLE_RATES, (1, 2))
    statistics_type = ToneStatistics
    frames_help = "makes frames of chunk_ms when that is whole samples (the last may be shorter)"

    frequency: float = param(440.0, gt=0, max=20000, unit="Hz", help="Frequency of the sine.")
    level: float = param(-12.0, min=-96, max=0, unit="dBFS", help="Peak level.")
    duration: float | None = param(
        3.0, type=float, optional=True, gt=0, max=1e6, unit="s", help="Length of the tone; none plays until stopped."
    )
    encoding: Encoding = param(Encoding.PCM_S16LE, help="Sample encoding.")
    sample_rate: int = param(16000, choices=SAMPLE_RATES, unit="Hz", help="Sample rate.")
    channels: int = param(1, min=1, max=2, help="1 for mono, 2 for the same tone on both channels.")
    chunk_ms: float = param(20.0, gt=0, max=1000, unit="ms", help="Duration of each chunk sent.")
    speed: float = param(1.0, min=0, max=1000, help="Times real time; 0 sends as fast as the pipeline takes it.")

    def __attrs_post_init__(self) -> None:
        if self.duration is not None and round(self.duration * self.sample_rate) < 1:
            raise ParamError(
                "duration", f"must be at least one sample ({1 / self.sample_rate:g} s), got {self.duration:g}"
            )
        if self.frequency >= self.sample_rate / 2:
            raise ParamError(
                "frequency", f"must be below half the sample rate ({self.sample_rate / 2:g} Hz), got {self.frequency:g}"
            )

    @property
    def format(self) -> AudioFormat:
        return AudioFormat(self.encoding, self.sample_rate, self.channels)

    @property
    def chunk_samples(self) -> int:
        return max(1, round(self.sample_rate * self.chunk_ms / 1000))

    def output_caps(self, fmt_in: StreamFormat | None) -> Caps:
        """Frames of ``chunk_ms`` when that is whole samples (the last may be shorter); else any size."""
        whole = self.chunk_samples * 1000 / self.sample_rate == self.chunk_ms
        return Caps.of(self.format, self.chunk_ms if whole else ANY_SIZE)

    def render(self, pts: int, samples: int) -> np.ndarray:
        """Samples ``pts`` to ``pts + samples`` of the tone, encoded."""
        n = np.arange(pts, pts + samples, dtype=np.float64)
        peak = 10 ** (self.level / 20)
        wave = (peak * np.sin(2 * math.pi * self.frequency / self.sample_rate * n)).astype(np.float32)
        if self.channels == 2:
            wave = np.repeat(wave[:, None], 2, axis=1)
        return from_float32(wave, self.encoding)

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> _ToneSending:
        return _ToneSending(self)


class _ToneSending:
    """Sends the tone on its own clock (``speed`` times real time)."""

    def __init__(self, config: Tone) -> None:
        self.config = config
        self.sent = AudioCounter()

    async def run(self, tx: SendChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        config = self.config
        start = UtteranceStart("tone", f"{config.frequency:g} Hz tone")
        await play(
            tx, config.format, start, self._pieces(), speed=config.speed, sent=self.sent, task_status=task_status
        )

    def _pieces(self) -> Iterator[np.ndarray]:
        config = self.config
        step = config.chunk_samples
        total = None if config.duration is None else round(config.duration * config.sample_rate)
        pts = 0
        while total is None or pts < total:
            size = step if total is None else min(step, total - pts)
            yield config.render(pts, size)
            pts += size

    def statistics(self) -> ToneStatistics:
        return ToneStatistics(self.sent.snapshot())
