"""Capabilities: the formats a stage can take or give, for negotiation before data flows.

Like GStreamer caps, :class:`Caps` is a union of structures: each :class:`Structure` allows a
set of encodings, rates, channel counts and frame durations together, so "μ-law at 8 kHz, or
PCM16 at 8 or 16 kHz" does not also allow μ-law at 16 kHz. Negotiation fixes one
:class:`StreamFormat` per edge: an audio format and, where a stage makes or needs fixed frames,
their duration.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, TypeVar

import attrs

from .frames import AudioFormat, Encoding

_T = TypeVar("_T")

_DEFAULT = AudioFormat(Encoding.PCM_S16LE, 16000, 1)

ANY_SIZE = 0.0
"""The frame duration of chunks that have none: each may be of any length."""


def _tuple_or_none(value: Iterable[object] | None) -> tuple | None:
    return None if value is None else tuple(value)


def frames_text(frame_ms: float) -> str:
    """A frame duration in words: ``frames of 20 ms``, ``chunks of any size``."""
    return "chunks of any size" if frame_ms == ANY_SIZE else f"frames of {frame_ms:g} ms"


@attrs.frozen
class StreamFormat:
    """What negotiation fixed for one edge: the audio format and the frame duration (``ANY_SIZE``: none)."""

    format: AudioFormat
    frame_ms: float = ANY_SIZE

    def __str__(self) -> str:
        return f"{self.format} {self.frame_ms:g} ms" if self.frame_ms != ANY_SIZE else str(self.format)


@attrs.frozen
class Structure:
    """Allowed encodings, rates, channel counts and frame durations, together; None in a dimension means any.

    Order is preference: when a choice is left open, the first allowed value wins unless the
    format on the other side of the stage is allowed too. A frame duration of ``ANY_SIZE``
    stands for chunks of any length; a stage that needs fixed frames does not allow it.
    """

    encodings: tuple[Encoding, ...] | None = attrs.field(default=None, converter=_tuple_or_none)
    rates: tuple[int, ...] | None = attrs.field(default=None, converter=_tuple_or_none)
    channels: tuple[int, ...] | None = attrs.field(default=None, converter=_tuple_or_none)
    frame_ms: tuple[float, ...] | None = attrs.field(default=None, converter=_tuple_or_none)

    def __contains__(self, fmt: StreamFormat) -> bool:
        return self.admits_format(fmt.format) and (self.frame_ms is None or fmt.frame_ms in self.frame_ms)

    def admits_format(self, fmt: AudioFormat) -> bool:
        return (
            (self.encodings is None or fmt.encoding in self.encodings)
            and (self.rates is None or fmt.sample_rate in self.rates)
            and (self.channels is None or fmt.channels in self.channels)
        )

    def __and__(self, other: Structure) -> Structure:
        def meet(mine: tuple | None, theirs: tuple | None) -> tuple | None:
            if mine is None:
                return theirs
            if theirs is None:
                return mine
            return tuple(v for v in mine if v in theirs)

        return Structure(
            meet(self.encodings, other.encodings),
            meet(self.rates, other.rates),
            meet(self.channels, other.channels),
            meet(self.frame_ms, other.frame_ms),
        )

    @property
    def empty(self) -> bool:
        return any(dim == () for dim in (self.encodings, self.rates, self.channels, self.frame_ms))

    def fixate(self, prefer: StreamFormat | None) -> StreamFormat:
        def pick(allowed: tuple[_T, ...] | None, wanted: _T | None, fallback: _T) -> _T:
            if allowed is None:
                return fallback if wanted is None else wanted
            return wanted if wanted in allowed else allowed[0]

        fmt = prefer.format if prefer is not None else None
        audio = AudioFormat(
            pick(self.encodings, None if fmt is None else fmt.encoding, _DEFAULT.encoding),
            pick(self.rates, None if fmt is None else fmt.sample_rate, _DEFAULT.sample_rate),
            pick(self.channels, None if fmt is None else fmt.channels, _DEFAULT.channels),
        )
        return StreamFormat(audio, pick(self.frame_ms, None if prefer is None else prefer.frame_ms, ANY_SIZE))

    def score(self, prefer: StreamFormat) -> int:
        """How many of ``prefer``'s dimensions this structure allows (to choose among a union)."""
        fmt = prefer.format
        return sum(
            allowed is None or value in allowed
            for allowed, value in (
                (self.encodings, fmt.encoding),
                (self.rates, fmt.sample_rate),
                (self.channels, fmt.channels),
                (self.frame_ms, prefer.frame_ms),
            )
        )

    def __str__(self) -> str:
        frames = "" if self.frame_ms is None else ", " + " or ".join(frames_text(ms) for ms in self.frame_ms)
        formats = (self.encodings, self.rates, self.channels)
        if all(dim is None for dim in formats):
            return "any format" + frames
        if all(dim is not None and len(dim) == 1 for dim in formats):
            return str(self.fixate(None).format) + frames
        encodings = "any encoding" if self.encodings is None else "|".join(e.value for e in self.encodings)
        rates = "any rate" if self.rates is None else "|".join(map(str, self.rates)) + " Hz"
        layouts = {1: "mono", 2: "stereo"}
        channels = "mono or stereo" if self.channels is None else "|".join(layouts[c] for c in self.channels)
        return f"{encodings}, {rates}, {channels}{frames}"


class Caps:
    """A union of :class:`Structure`: the formats a stage allows, in order of preference.

    ``Caps(encodings, rates, channels, frame_ms)`` is one structure; ``a | b`` is the union.
    """

    __slots__ = ("structures",)

    ANY: ClassVar[Caps]

    def __init__(
        self,
        encodings: Iterable[Encoding] | None = None,
        rates: Iterable[int] | None = None,
        channels: Iterable[int] | None = None,
        frame_ms: Iterable[float] | None = None,
    ) -> None:
        self.structures: tuple[Structure, ...] = (Structure(encodings, rates, channels, frame_ms),)

    @classmethod
    def union(cls, structures: Iterable[Structure]) -> Caps:
        """The union of ``structures``, empty ones left out, repeats once."""
        caps = cls.__new__(cls)
        kept: list[Structure] = []
        for s in structures:
            if not s.empty and s not in kept:
                kept.append(s)
        caps.structures = tuple(kept)
        return caps

    @classmethod
    def of(cls, fmt: AudioFormat | StreamFormat, frame_ms: float | None = None) -> Caps:
        """Exactly one format; its frame duration is any unless given (or carried by a StreamFormat)."""
        if isinstance(fmt, StreamFormat):
            return cls.of(fmt.format, fmt.frame_ms if frame_ms is None else frame_ms)
        return cls((fmt.encoding,), (fmt.sample_rate,), (fmt.channels,), None if frame_ms is None else (frame_ms,))

    def __or__(self, other: Caps) -> Caps:
        return Caps.union((*self.structures, *other.structures))

    def __and__(self, other: Caps) -> Caps:
        return Caps.union(mine & theirs for mine in self.structures for theirs in other.structures)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Caps) and self.structures == other.structures

    def __hash__(self) -> int:
        return hash(self.structures)

    def __repr__(self) -> str:
        return f"Caps.union({list(self.structures)!r})"

    def __contains__(self, fmt: StreamFormat | AudioFormat) -> bool:
        if isinstance(fmt, AudioFormat):
            return any(s.admits_format(fmt) for s in self.structures)
        return any(fmt in s for s in self.structures)

    @property
    def empty(self) -> bool:
        """No format satisfies these caps."""
        return not self.structures

    def with_frames(self, frame_ms: Iterable[float] | None) -> Caps:
        """The same formats with the frame duration replaced (None: any)."""
        ms = _tuple_or_none(frame_ms)
        return Caps.union(attrs.evolve(s, frame_ms=ms) for s in self.structures)

    def fixate(self, prefer: StreamFormat | AudioFormat | None = None) -> StreamFormat:
        """One format: in the structure that allows most of ``prefer``, its value where allowed, else the first."""
        if self.empty:
            raise ValueError(f"no format satisfies {self}")
        if isinstance(prefer, AudioFormat):
            prefer = StreamFormat(prefer)
        best = self.structures[0]
        if prefer is not None:
            best = max(self.structures, key=lambda s: s.score(prefer))  # max keeps the first of equals
        return best.fixate(prefer)

    def __str__(self) -> str:
        if not self.structures:
            return "no format"
        return "; or ".join(map(str, self.structures))


Caps.ANY = Caps()
