"""Telephony media streams, sans I/O: the events, commands and framing every provider shares.

Each provider module holds the two ends of one protocol. The bridge side turns the provider's
messages into events (:class:`Start`, :class:`Media`, :class:`Dtmf`, :class:`MarkEcho`...) and
the bridge's commands (:class:`SendMedia`, :class:`SendMark`, :class:`SendClear`) into
messages; the provider side, which the simulator plays, turns those messages back into the
commands and the events into messages. So each side is tested through the other, and a new
provider is one module: its :class:`Protocol` record and its two sides.

Text frames are ``str``, binary frames ``bytes``. Bad data from the peer raises
:class:`~rtstream.wire.RemoteProtocolError`; nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar, TypeAlias

import attrs

from rtstream.frames import AudioFormat, Encoding

from ..errors import RemoteProtocolError

# -- events: what the provider says ------------------------------------------------------------


@attrs.frozen
class Connected:
    """The socket is up; the stream has not started (Twilio, Exotel)."""

    kind: ClassVar[str] = "connected"


@attrs.frozen(kw_only=True)
class Start:
    """The stream started: its ids, its audio format and the call's custom parameters."""

    kind: ClassVar[str] = "start"
    stream_id: str
    call_id: str | None = None
    account_id: str | None = None
    format: AudioFormat | None = None
    """The caller's audio, as the provider announces it (None: not announced)."""
    tracks: tuple[str, ...] = ()
    custom_parameters: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    caller: str | None = None
    called: str | None = None


@attrs.frozen
class Media:
    """Caller audio: ``payload`` in the stream's encoding, with the provider's numbering where it has one."""

    kind: ClassVar[str] = "media"
    payload: bytes
    sequence_number: int | None = None
    timestamp: int | None = None
    """Milliseconds as the provider counts them (Twilio: since the stream started; Plivo: Unix time)."""
    chunk: int | None = None


@attrs.frozen
class Dtmf:
    kind: ClassVar[str] = "dtmf"
    digit: str


@attrs.frozen
class MarkEcho:
    """The audio sent before the mark ``name`` has played (Plivo: ``playedStream``), or was cleared."""

    kind: ClassVar[str] = "mark"
    name: str


@attrs.frozen
class ClearEcho:
    """The provider dropped the audio it buffered (Plivo: ``clearedAudio``)."""

    kind: ClassVar[str] = "cleared"


@attrs.frozen
class Stop:
    kind: ClassVar[str] = "stop"
    reason: str | None = None


@attrs.frozen
class Metadata:
    """A JSON text frame on a binary media stream (either direction)."""

    kind: ClassVar[str] = "metadata"
    data: Any


Event: TypeAlias = Connected | Start | Media | Dtmf | MarkEcho | ClearEcho | Stop | Metadata

# -- commands: what the bridge says ------------------------------------------------------------


@attrs.frozen
class SendMedia:
    """Audio for the caller, in the stream's encoding."""

    kind: ClassVar[str] = "media"
    payload: bytes


@attrs.frozen
class SendMark:
    """Echo ``name`` once the audio sent before it has played (Plivo: ``checkpoint``)."""

    kind: ClassVar[str] = "mark"
    name: str


@attrs.frozen
class SendClear:
    """Drop the audio buffered at the provider (barge-in)."""

    kind: ClassVar[str] = "clear"


Command: TypeAlias = SendMedia | SendMark | SendClear

# -- the two sides -----------------------------------------------------------------------------


def check_samples(payload: bytes, fmt: AudioFormat) -> bytes:
    """``payload`` if it is a whole, non-zero number of samples."""
    if not payload or len(payload) % fmt.frame_bytes:
        raise RemoteProtocolError("partial_sample", f"{len(payload)} bytes is not a whole number of {fmt} samples")
    return payload


def unsupported(side: object, item: object) -> ValueError:
    """What sending something a protocol has no message for raises (a bug of ours, not of the peer)."""
    return ValueError(f"{type(side).__name__} has no message for {type(item).__name__}")


class BridgeSide(abc.ABC):
    """The bridge's end of one media stream, in ``fmt``: provider messages in, bridge messages out."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self.stream_id: str | None = None
        """Named by the provider's start; None until then."""

    @property
    def ready(self) -> bool:
        """Commands can be sent: the stream is named (binary streams need no name)."""
        return self.stream_id is not None

    @abc.abstractmethod
    def receive(self, message: str | bytes) -> Event:
        """The event ``message`` carries; RemoteProtocolError if it is not one."""

    @abc.abstractmethod
    def send(self, command: Command) -> str | bytes:
        """The message for ``command``; ValueError if this protocol has none (see :class:`Protocol`)."""


class ProviderSide(abc.ABC):
    """The provider's end of one media stream ``stream_id`` in ``fmt``: bridge messages in, provider messages out."""

    clear_echo: ClassVar[bool] = False
    """A clear is answered with :class:`ClearEcho` and drops pending marks; without, pending marks echo at once."""
    example_account: ClassVar[str | None] = None
    """An account id in the provider's style, for simulated starts."""

    def __init__(self, fmt: AudioFormat, stream_id: str | None) -> None:
        self.format = fmt
        self.stream_id = stream_id

    @staticmethod
    def new_stream_id(digest: str) -> str | None:
        """A stream id in the provider's style, from at least 32 hex digits (None: the protocol has none)."""
        return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"

    def opening(self, start: Start) -> list[str | bytes]:
        """The messages that open the stream."""
        return [self.send(start)]

    @abc.abstractmethod
    def receive(self, message: str | bytes) -> Command | Metadata:
        """The command ``message`` carries; RemoteProtocolError if it is not one."""

    @abc.abstractmethod
    def send(self, event: Event) -> str | bytes:
        """The message for ``event``; ValueError if this protocol has none."""

    def _check_stream(self, data: dict[str, Any], key: str) -> None:
        if data.get(key) != self.stream_id:
            raise RemoteProtocolError("wrong_stream_id", f"{key} {data.get(key)!r} is not {self.stream_id!r}")


# -- framing ------------------------------------------------------------------------------------


@attrs.frozen
class ChunkRule:
    """Outbound audio must go in messages of a multiple of ``multiple`` bytes, from ``min_bytes`` to ``max_bytes``.

    Exotel's rule (:data:`rtstream.wire.telephony.exotel.CHUNK_RULE`) is in bytes at any rate;
    Telnyx's and Vonage's are in milliseconds (:class:`DurationRule`).
    """

    multiple: int
    min_bytes: int
    max_bytes: int

    def __attrs_post_init__(self) -> None:
        if self.multiple < 1:
            raise ValueError(f"multiple must be at least 1, got {self.multiple}")
        if self.min_bytes > self.max_bytes:
            raise ValueError(f"min_bytes ({self.min_bytes}) must not exceed max_bytes ({self.max_bytes})")
        if self.max_bytes < self.multiple:
            raise ValueError(f"max_bytes ({self.max_bytes}) must be at least multiple ({self.multiple})")
        if self.largest < self.smallest:
            raise ValueError(
                f"no multiple of {self.multiple} bytes lies between min_bytes ({self.min_bytes})"
                f" and max_bytes ({self.max_bytes})"
            )

    @property
    def smallest(self) -> int:
        """The smallest chunk allowed: min_bytes rounded up to a multiple (one multiple at least)."""
        return max(self.multiple, -(-self.min_bytes // self.multiple) * self.multiple)

    @property
    def largest(self) -> int:
        """The largest chunk allowed: max_bytes rounded down to a multiple."""
        return self.max_bytes - self.max_bytes % self.multiple

    def allows(self, size: int) -> bool:
        return size % self.multiple == 0 and self.min_bytes <= size <= self.max_bytes


@attrs.frozen
class DurationRule:
    """A :class:`ChunkRule` in milliseconds of audio, for providers whose limits are durations (Telnyx, Vonage)."""

    multiple_ms: float
    min_ms: float
    max_ms: float

    def in_bytes(self, fmt: AudioFormat) -> ChunkRule:
        return ChunkRule(fmt.bytes_in(self.multiple_ms), fmt.bytes_in(self.min_ms), fmt.bytes_in(self.max_ms))


class Regrouper:
    """Cuts outbound audio into the chunks a :class:`ChunkRule` allows, padding the last one with silence."""

    def __init__(self, rule: ChunkRule, silence: int | float) -> None:
        self.rule = rule
        self._silence = bytes([int(silence)])
        self._buffer = bytearray()
        self.padded = 0
        """Bytes of silence added to fill last chunks."""

    def push(self, payload: bytes) -> list[bytes]:
        """Whole chunks available after ``payload``."""
        self._buffer += payload
        rule, out = self.rule, []
        while len(self._buffer) >= rule.smallest:
            size = min(len(self._buffer), rule.largest)
            size -= size % rule.multiple
            out.append(bytes(self._buffer[:size]))
            del self._buffer[:size]
        return out

    def flush(self) -> bytes | None:
        """What is left, padded with silence to a whole chunk (None when nothing is left)."""
        if not self._buffer:
            return None
        size = max(self.rule.smallest, -(-len(self._buffer) // self.rule.multiple) * self.rule.multiple)
        self.padded += size - len(self._buffer)
        chunk = bytes(self._buffer) + self._silence * (size - len(self._buffer))
        self._buffer.clear()
        return chunk

    def reset(self) -> int:
        """Drop what is buffered; return how many bytes that was."""
        dropped = len(self._buffer)
        self._buffer.clear()
        return dropped


# -- the record of a protocol ------------------------------------------------------------------


@attrs.frozen
class Protocol:
    """What one telephony protocol carries and its two sides."""

    name: str
    carries: Mapping[Encoding, tuple[int, ...]] = attrs.field(hash=False)
    """Each encoding the streams carry, with its sample rates."""
    default_encoding: Encoding
    frame_ms: float
    """The usual length of one media message."""
    bridge: type[BridgeSide]
    provider: type[ProviderSide]
    marks: bool = True
    """Marks and clears have messages (binary streams have neither)."""
    chunk_rule: ChunkRule | DurationRule | None = None
    """Outbound chunk sizes the provider requires (None: any whole frame); see :meth:`chunk_rule_for`."""
    subprotocol: str | None = None
    """The WebSocket subprotocol the provider asks for and the bridge must accept (Jambonz)."""
    max_buffered: int | None = None
    """Media messages the provider buffers ahead of playout (Vonage: 3,072); a sink must not run further ahead."""

    def chunk_rule_for(self, fmt: AudioFormat) -> ChunkRule | None:
        """The outbound chunk rule in bytes of ``fmt``."""
        if isinstance(self.chunk_rule, DurationRule):
            return self.chunk_rule.in_bytes(fmt)
        return self.chunk_rule

    @property
    def rates(self) -> tuple[int, ...]:
        """Every sample rate carried, in any encoding."""
        return tuple(sorted({r for rates in self.carries.values() for r in rates}))
