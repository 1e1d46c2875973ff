"""``sequencer``: numbers chunks for the wire, or puts received ones back in order and finds losses.

Sender mode (:class:`Stamper`) gives each chunk a 64-bit sequence number and a media timestamp
(``pts``, a sample clock that keeps the spacing of the input, so a gap in the input stays a gap)
and flags it FIRST or CONTINUATION in its utterance. Audio sent again (a pts range of the same
utterance already sent) keeps its original number and timestamp and is flagged RETRANSMIT. With
``mark_last``, each chunk waits for the next frame so the one before ``UtteranceEnd`` can be
flagged LAST; that costs up to one chunk of delay, so it is off by default.

Receiver mode (:class:`Receiver`) unwraps 16- or 32-bit wire numbers into 64 bits (nearest to
the highest seen), drops duplicates and reports losses, and passes every other chunk on the
moment it arrives, in arrival order. A jitter buffer after it puts audio in its place by
``pts`` at playout time (as NetEq's packet buffer does), so holding chunks back here would only
starve it after every loss. A number missing for ``window`` (milliseconds since the first
chunk after it arrived, or a number of chunks received after it) is reported as a ``Gap`` with
the pts and samples it spanned when the neighbours tell, and the reason ``"missing"``: it may
yet come, so a jitter buffer keeps its place open and decides at playout time. A chunk that
comes after its gap was reported still goes on (the buffer may yet play it), counted ``late``.

With ``reorder`` (or ``restamp``) the receiver is a :class:`Reorderer`: it holds chunks that
arrive ahead of a missing one and releases them in order, giving up the missing one after the
window with a ``Gap`` of reason ``"lost"``; chunks arriving after their gap are dropped. That
suits a consumer that is not a jitter buffer. ``restamp`` also rewrites ``pts`` in sequence
order, for senders that number their chunks but do not timestamp them: a TTS WebSocket's chunks
get their pts from the order they arrive in, which a reordered or duplicated chunk would
scramble. A loss then takes the length of the chunk before it.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import attrs

from rtstream.frames import AudioChunk, AudioFormat, ChunkFlags, Frame, Gap, UtteranceEnd, UtteranceStart
from rtstream.params import param
from rtstream.registry import register
from rtstream.stage import Core, CoreElement, Filter
from rtstream.stats import DropCount, Drops, stat

_REMEMBERED = 4096
"""Sequence numbers (and sent pts ranges) remembered to tell duplicates and retransmissions."""
_UNSET = object()
RESYNC = 3000
"""A jump ahead by more packets than this is a restarted sender, not a loss."""


class Stamper(Core):
    """Sender side: sequence numbers, media timestamps and utterance flags (untimed)."""

    untimed = True

    def __init__(self, *, start_seq: int = 0, mark_last: bool = False) -> None:
        self.next_seq = start_seq
        self.mark_last = mark_last
        self._clock = 0
        self._utterance: Any = _UNSET
        self._first = True
        self._expected: int | None = None
        self._sent: deque[tuple[Any, int, int, int, int]] = deque(maxlen=_REMEMBERED)
        self._held: AudioChunk | None = None
        self.drops = Drops()
        self.stamped = 0
        self.retransmits = 0

    def push(self, frame: Frame, now: float) -> list[Frame]:
        """Frames to send now, in order."""
        out: list[Frame] = []
        if self._held is not None:
            last = isinstance(frame, UtteranceEnd)
            held = self._held
            self._held = None
            out.append(attrs.evolve(held, flags=held.flags | ChunkFlags.LAST) if last else held)
        if isinstance(frame, UtteranceStart):
            self._first = True
            self._expected = None
            self._utterance = frame.utterance
        if not isinstance(frame, AudioChunk):
            out.append(frame)
            return out
        stamped = self._stamp(frame)
        if stamped is not None:
            if self.mark_last and not stamped.flags & ChunkFlags.RETRANSMIT:
                self._held = stamped
            else:
                out.append(stamped)
        return out

    def end(self) -> list[Frame]:
        """The end of the input: release a held chunk."""
        held, self._held = self._held, None
        return [] if held is None else [held]

    def statistics(self) -> SequencerStatistics:
        return SequencerStatistics("sender", self.stamped, self.retransmits, None, self.drops.snapshot())

    def _stamp(self, chunk: AudioChunk) -> AudioChunk | None:
        if chunk.utterance != self._utterance:
            self._first, self._expected, self._utterance = True, None, chunk.utterance
        if self._expected is not None and chunk.pts < self._expected:
            return self._resend(chunk)
        if self._expected is not None:
            self._clock += chunk.pts - self._expected
        flags = ChunkFlags.FIRST if self._first else ChunkFlags.CONTINUATION
        self._first = False
        seq, pts = self.next_seq, self._clock
        self.next_seq += 1
        self._clock += chunk.samples
        self._expected = chunk.end_pts
        self._sent.append((chunk.utterance, chunk.pts, chunk.end_pts, seq, pts))
        self.stamped += 1
        return attrs.evolve(chunk, seq=seq, pts=pts, flags=chunk.flags | flags)

    def _resend(self, chunk: AudioChunk) -> AudioChunk | None:
        for utterance, start, end, seq, pts in reversed(self._sent):
            if utterance == chunk.utterance and start <= chunk.pts < end:
                self.retransmits += 1
                flags = chunk.flags | ChunkFlags.RETRANSMIT | ChunkFlags.CONTINUATION
                return attrs.evolve(chunk, seq=seq, pts=pts + chunk.pts - start, flags=flags)
        self.drops.add("stale_retransmit", samples=chunk.samples)
        return None


@attrs.frozen
class ReorderStatistics:
    """What the receiver side saw, in chunks."""

    received: int = stat(help="Chunks in, duplicates included.")
    released: int = stat(help="Chunks passed on.")
    reordered: int = stat(help="Chunks that came after one with a higher number.")
    duplicates: int = stat(help="Chunks dropped because their number had already been passed on.")
    lost: int = stat(help="Numbers reported missing in Gap frames.")
    late: int = stat(
        help="Chunks that came after their gap was reported (passed on by the receiver, dropped when reordering)."
    )
    gaps: int = stat(help="Gap frames sent.")
    resyncs: int = stat(help="Jumps of more than 3000 numbers: the sender restarted.")
    unsequenced: int = stat(help="Chunks without a number, passed on as they are.")
    max_held: int = stat(help="The most chunks held back at once (always 0 unless reordering).")


@attrs.frozen
class SequencerStatistics:
    mode: str = stat(help="sender or receiver.")
    stamped: int = stat(help="Sender: chunks given a new sequence number.")
    retransmits: int = stat(help="Sender: chunks sent again under their original number.")
    receiver: ReorderStatistics | None = stat(help="Receiver: what the reorderer counted (None for a sender).")
    drops: dict[str, DropCount] = stat(
        help="Dropped audio by reason: stale_retransmit (sender), duplicate and late (receiver)."
    )


class Reorderer(Core):
    """Receiver side: unwrap, reorder within a window, drop duplicates, report losses as gaps."""

    def __init__(
        self, *, wire_bits: int = 64, window: float = 60.0, unit: str = "ms", max_held: int = 256, restamp: bool = False
    ) -> None:
        if wire_bits not in (16, 32, 64):
            raise ValueError(f"wire_bits must be 16, 32 or 64, got {wire_bits}")
        if unit not in ("ms", "packets"):
            raise ValueError(f"unit must be 'ms' or 'packets', got {unit!r}")
        self.modulus = 1 << wire_bits
        self.window = window / 1000 if unit == "ms" else window
        self.unit = unit
        self.max_held = max_held
        self.restamp = restamp
        self._next_pts: int | None = None
        """With ``restamp``: the pts of the next chunk released."""
        self._last_samples = 0
        self.next: int | None = None
        self._highest: int | None = None
        self._held: dict[int, tuple[AudioChunk, float]] = {}
        self._released: deque[int] = deque()
        self._released_set: set[int] = set()
        self._end_pts: int | None = None
        self.drops = Drops()
        self._c = dict.fromkeys(
            ("received", "released", "reordered", "lost", "late", "gaps", "resyncs", "unsequenced", "max_held"), 0
        )

    def unwrap(self, seq: int) -> int:
        """The 64-bit number nearest the highest seen that ``seq`` is the wire form of."""
        if self.modulus == 1 << 64 or self._highest is None:
            return seq
        half = self.modulus >> 1
        diff = (seq - self._highest) % self.modulus
        return self._highest + (diff - self.modulus if diff >= half else diff)

    @property
    def deadline(self) -> float:
        """When the oldest wait ends (ms windows); inf when nothing waits."""
        if self.unit != "ms" or not self._held:
            return math.inf
        return min(at for _, at in self._held.values()) + self.window

    def push(self, frame: Frame, now: float) -> list[Frame]:
        """Audio is numbered in; events pass at once."""
        if type(frame) is not AudioChunk:
            return [frame]
        chunk = frame
        c = self._c
        c["received"] += 1
        if chunk.seq is None:
            c["unsequenced"] += 1
            return [chunk]
        ext = self.unwrap(chunk.seq)
        arrival = now if chunk.arrival is None else chunk.arrival
        out: list[Frame] = []
        if self.next is None:
            self.next = ext
        elif ext - self.next > RESYNC or self.next - ext > RESYNC:
            c["resyncs"] += 1
            out.extend(self.end())
            self.next, self._highest, self._end_pts, self._next_pts = ext, None, None, None
        if ext < self.next:
            if ext in self._released_set:
                self.drops.add("duplicate", samples=chunk.samples)
            else:
                c["late"] += 1
                self.drops.add("late", samples=chunk.samples)
            return out
        if ext in self._held:
            self.drops.add("duplicate", samples=chunk.samples)
            return out
        if self._highest is not None and ext < self._highest:
            c["reordered"] += 1
        self._highest = ext if self._highest is None else max(self._highest, ext)
        self._held[ext] = (attrs.evolve(chunk, seq=ext), arrival)
        c["max_held"] = max(c["max_held"], len(self._held))
        self._release(out)
        while self._held and (
            len(self._held) > self.max_held or (self.unit == "packets" and len(self._held) >= self.window)
        ):
            self._give_up(out)
        return out

    def poll(self, now: float) -> list[Frame]:
        """Give up the missing chunks whose window has passed."""
        out: list[Frame] = []
        while self._held and now >= self.deadline:
            self._give_up(out)
        return out

    def end(self) -> list[Frame]:
        """The end of the input: release everything held, with gaps for what is missing."""
        out: list[Frame] = []
        while self._held:
            self._give_up(out)
        return out

    def _release(self, out: list[Frame]) -> None:
        while self.next in self._held:
            chunk, _ = self._held.pop(self.next)
            if self.restamp:
                if self._next_pts is not None and chunk.pts != self._next_pts:
                    chunk = attrs.evolve(chunk, pts=self._next_pts)
                self._next_pts = chunk.end_pts
                self._last_samples = chunk.samples
            out.append(chunk)
            self._remember(self.next)
            self._end_pts = chunk.end_pts
            self._c["released"] += 1
            self.next += 1

    def _remember(self, seq: int) -> None:
        if len(self._released) == _REMEMBERED:
            self._released_set.discard(self._released.popleft())
        self._released.append(seq)
        self._released_set.add(seq)

    def _give_up(self, out: list[Frame]) -> None:
        """Declare everything before the first held chunk lost, then release what follows."""
        first = min(self._held)
        assert self.next is not None  # a chunk is held: the sequence has begun
        count = first - self.next
        chunk = self._held[first][0]
        pts = self._end_pts
        samples: int | None
        if self.restamp and pts is not None:
            samples = count * self._last_samples
            self._next_pts = pts + samples
        else:
            samples = chunk.pts - pts if pts is not None and chunk.pts > pts else None
        out.append(Gap(seq=self.next, count=count, pts=pts if samples else None, samples=samples, reason="lost"))
        self._c["lost"] += count
        self._c["gaps"] += 1
        self.next = first
        self._release(out)

    def statistics(self) -> ReorderStatistics:
        return ReorderStatistics(duplicates=self.drops.snapshot().get("duplicate", DropCount(0, 0)).frames, **self._c)


class Receiver(Reorderer):
    """Receiver side without holding: unwrap, drop duplicates, pass on at once, report losses as gaps.

    Missing numbers are remembered as ranges (at most ``max_held`` of them, the oldest reported
    first when there are more), each with the time the chunk after it arrived.
    """

    def __init__(self, *, wire_bits: int = 64, window: float = 60.0, unit: str = "ms", max_held: int = 256) -> None:
        super().__init__(wire_bits=wire_bits, window=window, unit=unit, max_held=max_held)
        self._missing: list[list[Any]] = []
        """[first, end, since, chunks received after it], sorted by number."""
        self._spans: dict[int, tuple[int, int]] = {}
        """(pts, end pts) of the numbers remembered, to place a gap."""
        self._start = 0
        """The first number of the stream: one before it is no loss, just a first chunk that came second."""

    @property
    def deadline(self) -> float:
        if self.unit != "ms" or not self._missing:
            return math.inf
        return min(m[2] for m in self._missing) + self.window

    def push(self, frame: Frame, now: float) -> list[Frame]:
        if type(frame) is not AudioChunk:
            return [frame]
        chunk = frame
        c = self._c
        c["received"] += 1
        if chunk.seq is None:
            c["unsequenced"] += 1
            return [chunk]
        ext = self.unwrap(chunk.seq)
        out: list[Frame] = []
        if self._highest is not None and abs(ext - self._highest) > RESYNC:
            c["resyncs"] += 1
            out.extend(self.end())
            self._highest = None
        if self._highest is None:
            self._start = ext
        if ext in self._released_set:
            self.drops.add("duplicate", samples=chunk.samples)
            return out
        if self._highest is None or ext > self._highest:
            if self._highest is not None and ext > self._highest + 1:
                self._missing.append([self._highest + 1, ext, now, 0])
            self._highest = ext
        else:
            c["reordered"] += 1
            if not self._found(ext) and ext > self._start:
                c["late"] += 1
        self._remember(ext)
        if len(self._spans) >= _REMEMBERED:
            self._spans.pop(next(iter(self._spans)))
        self._spans[ext] = (chunk.pts, chunk.end_pts)
        c["released"] += 1
        out.append(attrs.evolve(chunk, seq=ext))
        for m in self._missing:
            m[3] += m[1] <= ext
        while len(self._missing) > self.max_held:
            self._report(0, out)
        if self.unit == "packets":
            i = 0
            while i < len(self._missing):
                if self._missing[i][3] >= self.window:
                    self._report(i, out)
                else:
                    i += 1
        return out

    def _found(self, ext: int) -> bool:
        """Take ``ext`` out of the missing ranges; whether it was still missing."""
        for i, (first, end, since, after) in enumerate(self._missing):
            if first <= ext < end:
                parts = [[a, b, since, after] for a, b in ((first, ext), (ext + 1, end)) if a < b]
                self._missing[i : i + 1] = parts
                return True
        return False

    def poll(self, now: float) -> list[Frame]:
        """Report the missing numbers whose window has passed."""
        out: list[Frame] = []
        i = 0
        while self.unit == "ms" and i < len(self._missing):
            if now >= self._missing[i][2] + self.window:
                self._report(i, out)
            else:
                i += 1
        return out

    def end(self) -> list[Frame]:
        """The end of the input: report everything still missing."""
        out: list[Frame] = []
        while self._missing:
            self._report(0, out)
        return out

    def _report(self, i: int, out: list[Frame]) -> None:
        first, end, _, _ = self._missing.pop(i)
        before, after = self._spans.get(first - 1), self._spans.get(end)
        pts = before[1] if before is not None else None
        samples = after[0] - pts if after is not None and pts is not None and after[0] > pts else None
        gap = Gap(seq=first, count=end - first, pts=pts if samples else None, samples=samples, reason="missing")
        out.append(gap)
        self._c["lost"] += end - first
        self._c["gaps"] += 1


class _Receiver(CoreElement):
    """The receiver's element: the reorderer's counts in the stage's record."""

    __slots__ = ()

    def statistics(self) -> SequencerStatistics:
        core: Reorderer = self.core  # type: ignore[assignment]  # the receiver opens with a Reorderer
        return SequencerStatistics("receiver", 0, 0, core.statistics(), core.drops.snapshot())


@register("sequencer", klass="Filter/Network")
@attrs.frozen(kw_only=True)
class Sequencer(Filter):
    """Numbers chunks for the wire (sender), or de-duplicates received ones and reports losses as gaps (receiver)."""

    statistics_type = SequencerStatistics

    mode: str = param(
        "sender", choices=("sender", "receiver"), help="sender stamps; receiver drops duplicates and finds gaps."
    )
    start_seq: int = param(0, min=0, max=(1 << 63) - 1, help="Sender: the first sequence number.")
    mark_last: bool = param(
        False,
        help="Sender: hold each chunk until the next frame, to flag the last of an utterance (adds a chunk of delay).",
    )
    wire_bits: int = param(64, choices=(16, 32, 64), unit="bits", help="Receiver: width of the wire sequence numbers.")
    window: float = param(
        60.0, gt=0, max=10000, help="Receiver: how long a chunk may be missing before a Gap reports it."
    )
    window_unit: str = param("ms", choices=("ms", "packets"), help="Receiver: the window in milliseconds or in chunks.")
    max_held: int = param(
        256,
        min=1,
        max=65536,
        help="Receiver: most chunks held (reorder) or missing ranges tracked; beyond it the oldest gap is reported.",
    )
    reorder: bool = param(
        False,
        help="Receiver: hold chunks behind a missing one and release them in order, for a consumer that is not "
        "a jitter buffer (a jitter buffer reorders by pts at playout time; holding here starves it).",
    )
    restamp: bool = param(
        False,
        help="Receiver: rewrite pts in sequence order, for numbered chunks timed by arrival (a TTS WebSocket); "
        "implies reorder.",
    )

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> CoreElement:
        if self.mode == "sender":
            return CoreElement(Stamper(start_seq=self.start_seq, mark_last=self.mark_last))
        if not (self.reorder or self.restamp):
            return _Receiver(
                Receiver(wire_bits=self.wire_bits, window=self.window, unit=self.window_unit, max_held=self.max_held)
            )
        return _Receiver(
            Reorderer(
                wire_bits=self.wire_bits,
                window=self.window,
                unit=self.window_unit,
                max_held=self.max_held,
                restamp=self.restamp,
            )
        )
