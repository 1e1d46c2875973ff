"""What every TTS simulator shares, whatever its protocol: text in, timed pieces of audio out.

A :class:`Voice` is one stream of speech (a Cartesia or ElevenLabs context, a Deepgram
connection). It synthesizes the text it is given with :mod:`rtstream.simulators.speech` and
cuts the samples into chunks (:func:`chunk_sizes`), each ready when a generator running
``rtf`` times faster than real time, after a first-byte latency, would have made it. Each
:class:`Piece` says which words begin and end in it, so a protocol can attach its own word
timings (Cartesia's timestamps, ElevenLabs' character alignment). The protocol sessions turn
pieces into their messages and put those through :class:`rtstream.simulators.netem.NetEm`.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

import attrs
import numpy as np

from rtstream.audio.codec import from_float32
from rtstream.frames import Encoding

from ..speech import SpokenWord, synthesize
from .settings import TtsSettings

_TRANSPORT_WIDTHS = {"pcm_s32le": 4, "pcm_f16le": 2}


def sample_width(encoding: str) -> int:
    """Bytes per sample of a wire encoding (rtstream's encodings and Cartesia's pcm_s32le, pcm_f16le)."""
    return _TRANSPORT_WIDTHS.get(encoding) or Encoding(encoding).sample_width


def encode(audio: np.ndarray, encoding: str) -> bytes:
    """float32 samples as the little-endian bytes of a wire encoding."""
    if encoding == "pcm_s32le":
        return (np.clip(audio.astype(np.float64), -1.0, 1.0) * 2147483647).astype("<i4").tobytes()
    if encoding == "pcm_f16le":
        return audio.astype("<f2").tobytes()
    return from_float32(audio, Encoding(encoding)).tobytes()


def chunk_sizes(settings: TtsSettings, rng: random.Random) -> Iterator[int]:
    """The chunk sizes (bytes) of one stream, as ``settings.chunking`` says."""
    if settings.chunking == "fixed":
        return itertools.repeat(settings.chunk_bytes)
    if settings.chunking == "pattern":
        return itertools.cycle(settings.pattern)
    return (rng.randint(settings.min_bytes, settings.max_bytes) for _ in itertools.count())


@attrs.frozen
class Piece:
    """One chunk of a stream's audio and when it is ready; word positions in samples from the stream start."""

    ready: float
    audio: bytes
    number: int
    """The chunk's number in its stream, from 0."""
    start: int
    """The stream position (samples) of its first whole sample."""
    samples: int
    """Whole samples that end in this chunk."""
    started: tuple[SpokenWord, ...]
    """Words whose sound begins in this chunk."""
    completed: tuple[SpokenWord, ...]
    """Words whose sound ends in this chunk (all of their audio has now been sent)."""


class Voice:
    """One stream's generator: :meth:`speak` text at a time, get its audio as timed pieces."""

    def __init__(
        self, settings: TtsSettings, encoding: str, rate: int, sizes: Iterator[int], *, speed: float = 1.0
    ) -> None:
        self.settings = settings
        self.encoding = encoding
        self.rate = rate
        self.speed = speed
        self._sizes = sizes
        self._width = sample_width(encoding)
        self.samples = 0
        """Samples synthesized so far."""
        self.generated_until = -float("inf")
        """When the generator finishes what it was given."""
        self.pieces = 0

    def speak(self, text: str, now: float) -> list[Piece]:
        """The pieces of ``text`` (whole words), continuing the stream; none for blank text."""
        if not text.split():
            return []
        audio, words = synthesize(text, self.rate, self.speed)
        payload = encode(audio, self.encoding)
        s = self.settings
        start = now + s.first_byte_latency if self.generated_until <= now else self.generated_until
        bytes_per_second = self.rate * self._width
        base = self.samples
        pending = list(words)
        pieces = []
        offset = 0
        while offset < len(payload):
            piece = payload[offset : offset + next(self._sizes)]
            first = offset // self._width
            offset += len(piece)
            last = offset // self._width
            ready = start + (offset / bytes_per_second / s.rtf if s.rtf else 0.0)
            self.generated_until = ready
            started = tuple(_shift(w, base) for w in words if first <= w.start < last)
            done = [w for w in pending if w.end <= last]
            del pending[: len(done)]
            pieces.append(
                Piece(
                    ready, piece, self.pieces, base + first, last - first, started, tuple(_shift(w, base) for w in done)
                )
            )
            self.pieces += 1
        self.samples += len(audio)
        return pieces


def _shift(word: SpokenWord, base: int) -> SpokenWord:
    return SpokenWord(word.text, base + word.start, base + word.end)
