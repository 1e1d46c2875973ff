"""Capabilities: the set of formats a stage can take or give, for negotiation before data flows."""

from __future__ import annotations

from typing import ClassVar

import attrs

from .frames import AudioFormat, Encoding

_DEFAULT = AudioFormat(Encoding.PCM_S16LE, 16000, 1)


def _tuple_or_none(value: object) -> tuple | None:
    return None if value is None else tuple(value)  # type: ignore[arg-type]


@attrs.frozen
class Caps:
    """Allowed encodings, rates and channel counts; None in a dimension means any.

    Order is preference: when a choice is left open, the first allowed value wins unless the
    format on the other side of the stage is allowed too.
    """

    encodings: tuple[Encoding, ...] | None = attrs.field(default=None, converter=_tuple_or_none)
    rates: tuple[int, ...] | None = attrs.field(default=None, converter=_tuple_or_none)
    channels: tuple[int, ...] | None = attrs.field(default=None, converter=_tuple_or_none)

    ANY: ClassVar[Caps]

    @classmethod
    def of(cls, fmt: AudioFormat) -> Caps:
        """Exactly one format."""
        return cls((fmt.encoding,), (fmt.sample_rate,), (fmt.channels,))

    def __contains__(self, fmt: AudioFormat) -> bool:
        return (
            (self.encodings is None or fmt.encoding in self.encodings)
            and (self.rates is None or fmt.sample_rate in self.rates)
            and (self.channels is None or fmt.channels in self.channels)
        )

    def __and__(self, other: Caps) -> Caps:
        def meet(mine: tuple | None, theirs: tuple | None) -> tuple | None:
            if mine is None:
                return theirs
            if theirs is None:
                return mine
            return tuple(v for v in mine if v in theirs)

        return Caps(
            meet(self.encodings, other.encodings),
            meet(self.rates, other.rates),
            meet(self.channels, other.channels),
        )

    @property
    def empty(self) -> bool:
        """No format satisfies these caps."""
        return any(dim == () for dim in (self.encodings, self.rates, self.channels))

    def fixate(self, prefer: AudioFormat | None = None) -> AudioFormat:
        """Choose one format: ``prefer``'s value in each dimension where allowed, else the first."""
        if self.empty:
            raise ValueError(f"no format satisfies {self}")

        def pick(allowed: tuple | None, wanted: object, fallback: object) -> object:
            if allowed is None:
                return fallback if wanted is None else wanted
            return wanted if wanted in allowed else allowed[0]

        return AudioFormat(
            pick(self.encodings, prefer and prefer.encoding, _DEFAULT.encoding),  # type: ignore[arg-type]
            pick(self.rates, prefer and prefer.sample_rate, _DEFAULT.sample_rate),  # type: ignore[arg-type]
            pick(self.channels, prefer and prefer.channels, _DEFAULT.channels),  # type: ignore[arg-type]
        )

    def __str__(self) -> str:
        if self == Caps.ANY:
            return "any format"
        if all(dim is not None and len(dim) == 1 for dim in (self.encodings, self.rates, self.channels)):
            return str(self.fixate())
        encodings = "any encoding" if self.encodings is None else "|".join(e.value for e in self.encodings)
        rates = "any rate" if self.rates is None else "|".join(map(str, self.rates)) + " Hz"
        layouts = {1: "mono", 2: "stereo"}
        channels = "mono or stereo" if self.channels is None else "|".join(layouts[c] for c in self.channels)
        return f"{encodings}, {rates}, {channels}"


Caps.ANY = Caps()
