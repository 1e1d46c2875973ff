"""``tone``: a sine test signal in any supported format."""

from __future__ import annotations

import math

import attrs
import numpy as np
import trio

from rtstream.audio.codec import from_float32
from rtstream.caps import Caps
from rtstream.frames import SAMPLE_RATES, AudioChunk, AudioFormat, Encoding, UtteranceEnd, UtteranceStart
from rtstream.params import ParamError, param
from rtstream.registry import register
from rtstream.stage import SendChannel, Source
from rtstream.stats import AudioCounter, Throughput


@attrs.frozen
class ToneStatistics:
    sent: Throughput


@register("tone", klass="Source/Audio")
@attrs.frozen(kw_only=True)
class Tone(Source):
    """A sine test tone in any supported format, in real time or as fast as possible."""

    produces = Caps(tuple(Encoding), SAMPLE_RATES, (1, 2))

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
    _sent: AudioCounter = attrs.field(init=False, factory=AudioCounter, eq=False, repr=False)

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

    def output_caps(self, fmt_in: AudioFormat | None) -> Caps:
        return Caps.of(self.format)

    def render(self, pts: int, samples: int) -> np.ndarray:
        """Samples ``pts`` to ``pts + samples`` of the tone, encoded."""
        n = np.arange(pts, pts + samples, dtype=np.float64)
        peak = 10 ** (self.level / 20)
        wave = (peak * np.sin(2 * math.pi * self.frequency / self.sample_rate * n)).astype(np.float32)
        if self.channels == 2:
            wave = np.repeat(wave[:, None], 2, axis=1)
        return from_float32(wave, self.encoding)

    async def run(self, tx: SendChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        fmt = self.format
        step = max(1, round(self.sample_rate * self.chunk_ms / 1000))
        total = None if self.duration is None else round(self.duration * self.sample_rate)
        async with tx:
            task_status.started()
            start = trio.current_time()
            await tx.send(UtteranceStart("tone", f"{self.frequency:g} Hz tone"))
            pts = 0
            while total is None or pts < total:
                if self.speed:
                    await trio.sleep_until(start + pts / self.sample_rate / self.speed)
                size = step if total is None else min(step, total - pts)
                chunk = AudioChunk(self.render(pts, size), fmt, pts=pts, utterance="tone")
                await tx.send(chunk)
                self._sent.add(chunk)
                pts += size
            await tx.send(UtteranceEnd("tone"))

    def statistics(self) -> ToneStatistics:
        return ToneStatistics(self._sent.snapshot())
