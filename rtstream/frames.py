"""Formats and frames: everything that travels on a pipeline's channels.

A pipeline carries a stream of frames. Audio comes in :class:`AudioChunk` values of any size;
the few event frames mark where utterances begin and end, when words are spoken, where audio
was lost, when the listener barged in, and which keys the caller pressed; :class:`TextToken`
carries text to be spoken (an LLM's reply as it is generated) to a TTS stage. Stages forward
the events they do not handle.

Time inside a stream is media time: ``pts`` counts samples (per channel) at the chunk's own
rate from the start of the stream. Word timings are seconds from the start of their utterance,
so they survive a change of sample rate untouched. The position of an event in the stream is
its position among the audio chunks: an :class:`UtteranceStart` sits just before the first
chunk of its utterance, an :class:`UtteranceEnd` just after the last.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from fractions import Fraction
from typing import TypeAlias

import attrs
import numpy as np

SAMPLE_RATES: tuple[int, ...] = (8000, 16000, 22050, 24000, 44100, 48000)
"""The sample rates rtstream handles: those of the TTS and telephony services it bridges."""

MAX_CHANNELS = 2


class Encoding(enum.Enum):
    """A sample encoding, named as the TTS services name it."""

    PCM_S16LE = "pcm_s16le"
    PCM_F32LE = "pcm_f32le"
    PCM_MULAW = "pcm_mulaw"
    PCM_ALAW = "pcm_alaw"

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype of a chunk's samples in this encoding."""
        return _DTYPES[self]

    @property
    def sample_width(self) -> int:
        """Bytes per sample."""
        return _DTYPES[self].itemsize

    @property
    def silence(self) -> int | float:
        """The code of a zero sample: 0 for PCM, 0xFF for μ-law, 0xD5 for A-law."""
        return _SILENCE[self]

    def __str__(self) -> str:
        return self.value

    @classmethod
    def _missing_(cls, value: object) -> Encoding:
        listed = ", ".join(e.value for e in cls)
        raise ValueError(f"encoding {value!r} is not supported; use one of {listed}")


_DTYPES: dict[Encoding, np.dtype] = {
    Encoding.PCM_S16LE: np.dtype("<i2"),
    Encoding.PCM_F32LE: np.dtype("<f4"),
    Encoding.PCM_MULAW: np.dtype("u1"),
    Encoding.PCM_ALAW: np.dtype("u1"),
}
_SILENCE = {
    Encoding.PCM_S16LE: 0,
    Encoding.PCM_F32LE: 0.0,
    Encoding.PCM_MULAW: 0xFF,
    Encoding.PCM_ALAW: 0xD5,
}


def _check_rate(_instance: object, _attribute: attrs.Attribute, value: int) -> None:
    if value not in SAMPLE_RATES:
        raise ValueError(f"sample rate {value!r} is not supported; use one of {', '.join(map(str, SAMPLE_RATES))}")


def _check_channels(_instance: object, _attribute: attrs.Attribute, value: int) -> None:
    if not 1 <= value <= MAX_CHANNELS:
        raise ValueError(f"{value!r} channels is not supported; use 1 (mono) or 2 (stereo)")


@attrs.frozen
class AudioFormat:
    """An encoding, a sample rate and a channel count: what one pipeline edge carries."""

    encoding: Encoding = attrs.field(converter=Encoding)
    sample_rate: int = attrs.field(validator=_check_rate)
    channels: int = attrs.field(default=1, validator=_check_channels)

    @property
    def frame_bytes(self) -> int:
        """Bytes per sample frame (one sample of every channel)."""
        return self.encoding.sample_width * self.channels

    def samples_in(self, ms: float) -> int:
        """Samples per channel in ``ms`` milliseconds; a clear error unless it is a whole number.

        >>> AudioFormat("pcm_s16le", 8000).samples_in(60)
        480
        """
        exact = Fraction(self.sample_rate) * Fraction(ms).limit_denominator(10**6) / 1000
        if exact.denominator != 1:
            raise ValueError(f"{ms:g} ms at {self.sample_rate} Hz is {float(exact):g} samples, not a whole number")
        return int(exact)

    def bytes_in(self, ms: float) -> int:
        """Bytes in ``ms`` milliseconds: 960 for 60 ms of 8 kHz PCM16, 1920 at 16 kHz, 480 for μ-law."""
        return self.samples_in(ms) * self.frame_bytes

    def duration(self, samples: int) -> float:
        """Seconds spanned by ``samples`` samples per channel."""
        return samples / self.sample_rate

    def array(self, buffer: bytes | bytearray | memoryview) -> np.ndarray:
        """View little-endian wire bytes as a sample array (shape (n,) mono, (n, channels) else).

        The byte count must be a whole number of sample frames.
        """
        data = np.frombuffer(buffer, dtype=self.encoding.dtype)
        return data if self.channels == 1 else data.reshape(-1, self.channels)

    def silence(self, samples: int) -> np.ndarray:
        """A new array of ``samples`` silent sample frames."""
        shape = samples if self.channels == 1 else (samples, self.channels)
        return np.full(shape, self.encoding.silence, dtype=self.encoding.dtype)

    def __str__(self) -> str:
        layout = "mono" if self.channels == 1 else "stereo"
        return f"{self.encoding.value} {self.sample_rate} Hz {layout}"


class ChunkFlags(enum.Flag):
    """Where a chunk sits in its utterance, as a sender stamps it."""

    NONE = 0
    FIRST = enum.auto()
    LAST = enum.auto()
    CONTINUATION = enum.auto()
    RETRANSMIT = enum.auto()


def _arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and np.array_equal(a, b)


@attrs.frozen
class AudioChunk:
    """A run of samples of any length.

    ``data`` is a numpy array in the format's dtype: shape (n,) for mono, (n, channels) for
    interleaved multichannel. Producers must not mutate an array once it is sent.
    """

    data: np.ndarray = attrs.field(eq=attrs.cmp_using(eq=_arrays_equal))
    format: AudioFormat
    pts: int = 0
    """Media time of the first sample, in samples at ``format.sample_rate``."""
    seq: int | None = None
    """Sequence number: 64-bit in the pipeline, whatever the wire width was."""
    arrival: float | None = None
    """``trio.current_time()`` when the bytes arrived from a peer, if they did."""
    utterance: str | None = None
    flags: ChunkFlags = ChunkFlags.NONE

    @property
    def samples(self) -> int:
        """Samples per channel."""
        return len(self.data)

    @property
    def end_pts(self) -> int:
        """The pts just past the last sample."""
        return self.pts + len(self.data)

    @property
    def duration(self) -> float:
        """Seconds of audio in the chunk."""
        return len(self.data) / self.format.sample_rate

    def tobytes(self) -> bytes:
        """The samples as little-endian wire bytes."""
        return self.data.tobytes()


@attrs.frozen
class UtteranceStart:
    """An utterance begins with the next audio chunk; ``text`` is what will be spoken."""

    utterance: str
    text: str = ""


@attrs.frozen
class UtteranceEnd:
    """The utterance ended with the previous audio chunk."""

    utterance: str


@attrs.frozen
class Word:
    """One word and when it is spoken, in seconds from the start of its utterance."""

    text: str
    start: float
    end: float


def _words(words: Iterable[Word]) -> tuple[Word, ...]:
    return tuple(words)


@attrs.frozen
class WordTimings:
    """Timings for some words of an utterance; may come before or after the audio they time."""

    utterance: str
    words: tuple[Word, ...] = attrs.field(converter=_words)


@attrs.frozen
class TextToken:
    """A piece of an utterance's text for a TTS stage to speak, as an LLM or voice agent produces it.

    Pieces of one ``utterance`` come in order and join without separators (spaces are part of
    the text); ``final`` marks the last, after which the utterance's text is complete.
    """

    text: str
    utterance: str
    final: bool = False


@attrs.frozen
class Clear:
    """Barge-in: drop the audio buffered downstream and start afresh with what follows."""

    reason: str = "barge-in"


@attrs.frozen
class Gap:
    """Audio that went missing: ``count`` packets from ``seq``, or ``samples`` samples at ``pts``.

    Either description may be unknown (None). A jitter buffer conceals what a gap reports.
    """

    seq: int | None = None
    count: int = 1
    pts: int | None = None
    samples: int | None = None
    reason: str = "lost"


@attrs.frozen
class Dtmf:
    """The caller pressed a key (telephony ``dtmf``); ``arrival`` is when the bridge heard of it."""

    digit: str
    arrival: float | None = None


Event: TypeAlias = UtteranceStart | UtteranceEnd | WordTimings | TextToken | Clear | Gap | Dtmf
Frame: TypeAlias = AudioChunk | Event
