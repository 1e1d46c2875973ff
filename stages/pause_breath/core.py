"""The pause and breath injector's core: frames in, frames out, time passed in, no I/O.

Each utterance's transcript says where pauses and breaths belong (:mod:`.script`); its word
timings say where those boundaries fall in the audio. A cut for boundary ``k`` goes at the
quietest point between the end of word ``k - 1`` and the start of word ``k``, never inside a
word, so audio is held from the end of the last timed word before the next boundary that
wants something (less one fade length) until the timings and the audio of that gap are in.
The hold is bounded: audio held ``max_wait`` seconds, or beyond ``max_hold`` seconds of it,
goes out unmodified and is counted; a boundary whose gap went out before its timings came
is skipped and counted.

Positions inside an utterance are samples from its first sample. Output ``pts`` is input
``pts`` plus everything inserted before it; forwarded word timings move by what was
inserted before each word, and go out once that is final.
"""

from __future__ import annotations

import logging
import math
import sys
import zlib
from bisect import bisect_left, bisect_right
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator
from typing import Protocol

import attrs
import numpy as np

from rtstream.audio.breath import breath
from rtstream.audio.codec import from_float32
from rtstream.audio.level import SpeechLevel
from rtstream.audio.splice import apply_gain, fade_in, quietest_point
from rtstream.frames import AudioChunk, AudioFormat, Clear, Frame, Gap, UtteranceEnd, UtteranceStart, Word, WordTimings
from rtstream.markup import MarkupError
from rtstream.stage import Core
from rtstream.stats import AudioCounter, DropCount, Drops, Throughput, stat

from .script import SENTENCE_ENDS, Script, is_spoken, read_script

log = logging.getLogger(__name__)

_ALL = sys.maxsize
"""A release limit past any audio."""
_QUIET_WINDOW = 0.010
"""Seconds of audio around a candidate cut whose energy decides how quiet it is."""
_RATE_PRIOR = 1.0
"""Seconds of speech at the reference rate assumed before an utterance's own words are timed."""
_QUICK_SCALE = 0.85
"""A sentence-end breath is a quick one when speech runs this much faster than the reference."""
_RECENT = 16
"""Ended utterances remembered, so timings that come after their audio still move right."""
_MAX_PENDING = 4096
"""Timing messages an utterance holds back at most while the shift of their words is open."""


@attrs.frozen
class Insertion:
    """What one boundary gets: a pause, then each breath followed by a short silence."""

    reason: str | None
    """Why the pause: a punctuation reason, ``emphasis`` or ``tag``; None for no pause."""
    pause: int
    breaths: tuple[tuple[str, int], ...]
    """(type, samples) of each breath."""
    gap: int
    """Samples of silence after each breath."""

    @property
    def samples(self) -> int:
        return self.pause + sum(n + self.gap for _, n in self.breaths)


@attrs.define(eq=False)
class _Cut:
    position: int
    insertion: Insertion
    rng: np.random.Generator
    """Draws the breath noise when the segment is made: once the audio before the cut has gone out and set the level."""


@attrs.define(eq=False)
class _Held:
    """A frame waiting to go out; for a chunk, ``offset`` is its first sample's utterance position.

    ``frame`` None marks where an utterance that got no UtteranceEnd closes.
    """

    frame: Frame | None
    utt: _Utterance | None
    offset: int = 0
    arrived: float = 0.0


class _Utterance:
    """One utterance: its script, timings, what has come in and gone out, and its cuts."""

    def __init__(self, uid: str, script: Script | None, active: list[int], seed: int) -> None:
        self.id = uid
        self.script = script
        self.words: tuple[str, ...] = script.words if script is not None else ()
        """The spoken words of the script (none without one: then no boundary is active)."""
        self.active = active
        """The boundaries that want something, in order; ``next`` indexes the first unresolved one."""
        self.next = 0
        self.seed = (seed, zlib.crc32(uid.encode()))
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.letters = [0]  # cumulative letters of the timed words
        self.spoken = [0.0]  # cumulative seconds of the timed words
        self.last_breath = 0.0  # spoken seconds at the last breath
        self.origin_pts: int | None = None
        self.received = 0
        self.released = 0
        self.length: int | None = None
        self.cut: _Cut | None = None
        self.cut_positions: list[int] = []
        self.cut_totals: list[int] = []
        self.pending: deque[tuple[WordTimings, int]] = deque()
        self.closed = False

    @property
    def shaping(self) -> bool:
        """Whether some boundary still wants something (otherwise audio passes straight through)."""
        return self.next < len(self.active)

    def window(self, k: int) -> tuple[int, int] | None:
        """Where boundary ``k`` may be cut (end of word k-1, start of word k), once the timings show it."""
        n = len(self.words)
        length = self.length
        if len(self.starts) < min(k + 1, n):
            return None
        lo = self.ends[k - 1] if k else 0
        if k < n:
            hi = self.starts[k]
        elif length is not None:
            hi = length
        else:
            return None  # the boundary after the last word: not before the utterance's length is known
        if length is None:
            return lo, hi
        return min(lo, length), min(hi, length)

    def safe_point(self, k: int) -> int:
        """No cut for boundary ``k`` or later can fall before this position."""
        timed = min(len(self.ends), k)
        return self.ends[timed - 1] if timed else 0

    def inserted_before(self, position: int, *, inclusive: bool) -> int:
        """Samples inserted at cuts before ``position`` (or at it, when ``inclusive``)."""
        i = (bisect_right if inclusive else bisect_left)(self.cut_positions, position)
        return self.cut_totals[i - 1] if i else 0


class Shaping(Protocol):
    """The settings the core reads: the ``pause_breath`` stage's parameters (seconds, dB)."""

    @property
    def ranges(self) -> dict[str, tuple[float, float]]: ...
    @property
    def breath_ranges(self) -> dict[str, tuple[float, float]]: ...
    @property
    def emphasis(self) -> tuple[float, float]: ...
    @property
    def rate_scale(self) -> tuple[float, float]: ...
    @property
    def reference_rate(self) -> float: ...
    @property
    def breath_probability(self) -> float: ...
    @property
    def breath_min_interval(self) -> float: ...
    @property
    def deep_breath_after(self) -> float: ...
    @property
    def breath_level(self) -> float: ...
    @property
    def breath_gap(self) -> float: ...
    @property
    def fade_ms(self) -> float: ...
    @property
    def max_wait(self) -> float: ...
    @property
    def max_hold(self) -> float: ...
    @property
    def seed(self) -> int: ...
    @property
    def on_bad_markup(self) -> str: ...


@attrs.frozen
class PauseBreathStatistics:
    received: Throughput = stat(help="Audio taken in.")
    sent: Throughput = stat(help="Audio sent: what came in plus what was inserted.")
    utterances: int = stat(help="Utterances seen (UtteranceStart).")
    pauses: dict[str, int] = stat(help="Pauses inserted, by reason: a punctuation mark, emphasis or tag.")
    pause_seconds: dict[str, float] = stat(help="Seconds of pause inserted, by reason.")
    breaths: dict[str, int] = stat(help="Breaths inserted, by type.")
    breath_seconds: float = stat(help="Seconds of breath inserted.")
    seconds_inserted: float = stat(help="Seconds inserted in all (pauses, breaths and the gaps after breaths).")
    held_max_seconds: float = stat(help="The most audio held at once while waiting for word timings.")
    skipped: dict[str, int] = stat(
        help="Boundaries that wanted a pause or breath and got none: late_timings, missing_timings, cleared."
    )
    released_unshaped: dict[str, DropCount] = stat(
        help="Audio let go unmodified when the hold bound ran out: timings_late (max_wait), hold_full (max_hold)."
    )
    drops: dict[str, DropCount] = stat(help="Held audio dropped: clear (barge-in).")
    timing_issues: dict[str, int] = stat(
        help="Word timings not usable as sent: unknown_utterance, after_utterance, released_early, overlapping_words."
    )
    markup_errors: int = stat(help="Transcripts with a malformed tag (left unshaped).")


@attrs.define
class Counters:
    """What the core counted; :meth:`PauseBreathCore.statistics` turns it into the record."""

    received: AudioCounter = attrs.Factory(AudioCounter)
    sent: AudioCounter = attrs.Factory(AudioCounter)
    utterances: int = 0
    markup_errors: int = 0
    pauses: Counter[str] = attrs.Factory(Counter)
    pause_samples: Counter[str] = attrs.Factory(Counter)
    breaths: Counter[str] = attrs.Factory(Counter)
    breath_samples: int = 0
    inserted_samples: int = 0
    held_max_samples: int = 0
    skipped: Counter[str] = attrs.Factory(Counter)
    timing_issues: Counter[str] = attrs.Factory(Counter)
    released_unshaped: Drops = attrs.Factory(Drops)
    drops: Drops = attrs.Factory(Drops)


class PauseBreathCore(Core):
    """Inserts pauses and breaths at word boundaries; see the module docstring.

    ``push(frame, now)`` and ``poll(now)`` return what may go out, in order; ``poll`` is due
    at ``deadline`` while nothing arrives, and ``end()`` lets everything go at the end of the
    stream. ``now`` should leave out time spent waiting on downstream: audio held then is held
    by backpressure, not by missing timings, and must not run down the ``max_wait`` bound.
    """

    def __init__(self, config: Shaping, fmt: AudioFormat) -> None:
        self.config = config
        self.format = fmt
        self._ready: deque[Frame] = deque()
        self.counts = Counters()
        rate = fmt.sample_rate
        self._fade_samples = max(1, round(config.fade_ms / 1000 * rate))
        self._fade_in = fade_in(self._fade_samples)
        self._fade_out = self._fade_in[::-1].copy()
        self._window = max(2, round(_QUIET_WINDOW * rate))
        self._max_hold = round(config.max_hold * rate)
        self._level = SpeechLevel(fmt)
        self._held: deque[_Held] = deque()
        self._held_samples = 0
        self._current: _Utterance | None = None
        self._open: dict[str, _Utterance] = {}
        """Utterances whose audio has not all gone out, by id."""
        self._recent: OrderedDict[str, _Utterance] = OrderedDict()
        self._shift = 0
        self._next_in_pts = 0
        self._flushing = False

    # -- the interface ------------------------------------------------------------------------

    def push(self, frame: Frame, now: float) -> list[Frame]:
        """Take one frame that arrived at ``now``; what may go out now."""
        self._take(frame, now)
        return self._out()

    def _take(self, frame: Frame, now: float) -> None:
        kind = type(frame)
        if kind is AudioChunk:
            self._take_audio(frame, now)  # type: ignore[arg-type]  # checked by type() above: isinstance is slower
            self._drain(now)
            self.counts.held_max_samples = max(self.counts.held_max_samples, self._held_samples)
            return
        elif kind is WordTimings:
            self._take_timings(frame)  # type: ignore[arg-type]  # as above
        elif kind is UtteranceStart:
            self._start(frame, now)  # type: ignore[arg-type]  # as above
        elif kind is UtteranceEnd:
            uid = frame.utterance  # type: ignore[union-attr]  # as above
            utt = self._current if self._current is not None and self._current.id == uid else None
            if utt is not None:
                self._end(utt)
            self._held.append(_Held(frame, utt, arrived=now))
        elif kind is Clear:
            self._clear(frame)  # type: ignore[arg-type]  # as above
            return
        else:
            self._held.append(_Held(frame, None, arrived=now))
        self._drain(now)

    def poll(self, now: float) -> list[Frame]:
        """Let go what the hold bound no longer allows to wait."""
        self._drain(now)
        return self._out()

    @property
    def deadline(self) -> float:
        """When ``poll`` must run if nothing arrives before (inf: never)."""
        return self._held[0].arrived + self.config.max_wait if self._held else math.inf

    def end(self) -> list[Frame]:
        """The input ended: resolve what can be, skip the rest, let everything go."""
        self._flushing = True
        self._end_current(math.inf)
        self._drain(math.inf)
        return self._out()

    def _out(self) -> list[Frame]:
        out = list(self._ready)
        self._ready.clear()
        return out

    def statistics(self) -> PauseBreathStatistics:
        rate = self.format.sample_rate
        c = self.counts
        return PauseBreathStatistics(
            received=c.received.snapshot(),
            sent=c.sent.snapshot(),
            utterances=c.utterances,
            pauses=dict(sorted(c.pauses.items())),
            pause_seconds={k: v / rate for k, v in sorted(c.pause_samples.items())},
            breaths=dict(sorted(c.breaths.items())),
            breath_seconds=c.breath_samples / rate,
            seconds_inserted=c.inserted_samples / rate,
            held_max_seconds=c.held_max_samples / rate,
            skipped=dict(sorted(c.skipped.items())),
            released_unshaped=c.released_unshaped.snapshot(),
            drops=c.drops.snapshot(),
            timing_issues=dict(sorted(c.timing_issues.items())),
            markup_errors=c.markup_errors,
        )

    # -- input ---------------------------------------------------------------------------------

    def _take_audio(self, chunk: AudioChunk, now: float) -> None:
        self.counts.received.add(chunk)
        utt = self._current
        offset = 0
        if utt is not None:
            if utt.origin_pts is None:
                utt.origin_pts = chunk.pts
            offset = utt.received
            utt.received += chunk.samples
        self._held.append(_Held(chunk, utt, offset, now))
        self._held_samples += chunk.samples

    def _start(self, frame: UtteranceStart, now: float) -> None:
        self._end_current(now)  # a new utterance ends the one before
        self.counts.utterances += 1
        script = None
        try:
            script = read_script(frame.text)
        except MarkupError as exc:
            if self.config.on_bad_markup == "fail":
                raise MarkupError(f"utterance {frame.utterance!r}: {exc.message}", exc.tag, exc.position) from None
            self.counts.markup_errors += 1
            log.warning("utterance %r: %s; its audio passes unshaped", frame.utterance, exc)
        active = [] if script is None else self._active_boundaries(script)
        self._current = _Utterance(frame.utterance, script, active, self.config.seed)
        self._open[frame.utterance] = self._current
        self._held.append(_Held(frame, None, arrived=now))

    def _active_boundaries(self, script: Script) -> list[int]:
        n = len(script.words)
        ranges = self.config.ranges
        punctuation = script.punctuation
        return [
            k
            for k in range(n + 1)
            if script.marks[k] or (0 < k < n and (reason := punctuation[k]) is not None and ranges[reason][1] > 0)
        ]

    def _end(self, utt: _Utterance) -> None:
        if utt.length is None:
            utt.length = utt.received
        if self._current is utt:
            self._current = None

    def _end_current(self, now: float) -> None:
        """End the current utterance where no UtteranceEnd came: it closes at this point of the stream."""
        utt = self._current
        if utt is not None:
            self._end(utt)
            self._held.append(_Held(None, utt, arrived=now))

    def _take_timings(self, frame: WordTimings) -> None:
        utt = self._open.get(frame.utterance) or self._recent.get(frame.utterance)
        if utt is None:
            self.counts.timing_issues["unknown_utterance"] += 1
            self._ready.append(frame)
            return
        if not utt.active:
            self._ready.append(frame)  # nothing will be inserted in it: its times stand
            return
        key = self._add_timings(utt, frame.words)
        if utt.closed:
            self.counts.timing_issues["after_utterance"] += 1
            self._ready.append(self._shifted(utt, frame))
        elif key < utt.released:
            self._ready.append(self._shifted(utt, frame))
        else:
            if len(utt.pending) >= _MAX_PENDING:
                self.counts.timing_issues["released_early"] += 1
                self._ready.append(self._shifted(utt, utt.pending.popleft()[0]))
            utt.pending.append((frame, key))

    def _add_timings(self, utt: _Utterance, words: tuple[Word, ...]) -> int:
        """Record the timings of spoken words; the latest word start seen (in samples), or -1."""
        issues = self.counts.timing_issues
        spoken = utt.words
        rate = self.format.sample_rate
        key = -1
        for word in words:
            start, end = round(word.start * rate), round(word.end * rate)
            key = max(key, start)
            if not is_spoken(word.text):
                continue
            k = len(utt.starts)
            if k >= len(spoken):
                issues["beyond_text"] += 1
                continue
            if end < start or (k and start < utt.starts[-1]):
                issues["out_of_order"] += 1
                start = max(start, utt.starts[-1]) if k else start
                end = max(end, start)
            if _letters(word.text) != _letters(spoken[k]):
                issues["text_mismatch"] += 1
            utt.starts.append(start)
            utt.ends.append(end)
            utt.letters.append(utt.letters[-1] + len(_letters(spoken[k])))
            utt.spoken.append(utt.spoken[-1] + (end - start) / rate)
        return key

    def _shifted(self, utt: _Utterance, frame: WordTimings) -> WordTimings:
        if not utt.cut_positions:
            return frame
        rate = self.format.sample_rate
        words = []
        for word in frame.words:
            start = word.start + utt.inserted_before(round(word.start * rate), inclusive=True) / rate
            end = word.end + utt.inserted_before(round(word.end * rate), inclusive=False) / rate
            words.append(Word(word.text, start, end))
        return WordTimings(frame.utterance, tuple(words))

    def _clear(self, frame: Clear) -> None:
        """Barge-in: drop the held audio, let the held events go, then the Clear."""
        touched = [self._current] if self._current is not None else []
        for item in self._held:
            if type(item.frame) is AudioChunk:
                self.counts.drops.add("clear", samples=item.frame.samples)
            elif item.frame is not None:
                self._ready.append(self._moved(item.frame))
            if item.utt is not None and item.utt not in touched:
                touched.append(item.utt)
        for utt in touched:
            if utt.shaping:
                self._skip(utt, "cleared", len(utt.active) - utt.next)
            self._close(utt)
        self._held.clear()
        self._held_samples = 0
        self._current = None
        self._ready.append(frame)

    # -- output --------------------------------------------------------------------------------

    def _drain(self, now: float) -> None:
        held = self._held
        while held:
            item = held[0]
            frame, utt = item.frame, item.utt
            if type(frame) is AudioChunk:
                stop = item.offset + frame.samples
                if utt is not None and utt.shaping:
                    limit = self._advance(utt, item, now)
                    if limit <= item.offset:
                        return
                    stop = min(stop, limit)
                self._release(item, stop)
                continue
            if utt is not None:  # an utterance closes here: its last boundaries first
                if self._advance(utt, item, now) < _ALL:
                    return
                self._close(utt)
            held.popleft()
            if frame is not None:
                self._ready.append(self._moved(frame))

    def _advance(self, utt: _Utterance, head: _Held, now: float) -> int:
        """Resolve the utterance's boundaries as far as possible; how far its audio may go out now."""
        fade = self._fade_samples
        while utt.shaping:
            cut = utt.cut
            if cut is not None:
                if utt.released < cut.position:
                    return cut.position
                self._insert(utt, cut)
                continue
            k = utt.active[utt.next]
            window = utt.window(k)
            if window is not None:
                lo, hi = sorted(window)  # words that overlap are cut where they overlap
                lo = max(lo, utt.released)
                if lo > hi:
                    self._skip(utt, "late_timings")
                    continue
                if self._flushing or utt.length is not None or utt.received >= hi + fade:
                    if window[1] < window[0]:
                        self.counts.timing_issues["overlapping_words"] += 1
                    self._decide(utt, k, lo, hi)
                    continue
                limit = lo - fade
            else:
                limit = utt.safe_point(k) - fade
                if utt.length is not None:  # timings that run past the audio
                    limit = min(limit, utt.length)
            if limit > utt.released:
                return limit
            # Nothing more can go out until timings or audio come in; the bounds decide how long to wait.
            if self._flushing:
                self._skip(utt, "missing_timings")
            elif now >= head.arrived + self.config.max_wait:  # the same sum as deadline(), so it fires there
                if type(head.frame) is not AudioChunk:
                    self._skip(utt, "missing_timings")
                    continue
                self.counts.released_unshaped.add("timings_late", samples=head.frame.samples)
                return head.offset + head.frame.samples
            elif self._held_samples > self._max_hold and type(head.frame) is AudioChunk:
                self.counts.released_unshaped.add("hold_full", samples=head.frame.samples)
                return head.offset + head.frame.samples
            else:
                return utt.released
        return _ALL

    def _skip(self, utt: _Utterance, reason: str, count: int = 1) -> None:
        """Give up on the next ``count`` boundaries of the utterance, for ``reason``."""
        self.counts.skipped[reason] += count
        utt.next += count

    def _decide(self, utt: _Utterance, k: int, lo: int, hi: int) -> None:
        """Plan boundary ``k``, find its cut in ``[lo, hi]`` and fade the held audio around it."""
        rng = np.random.default_rng([*utt.seed, k])
        insertion = self._plan(utt, k, rng)
        if not insertion.samples:
            utt.next += 1
            return
        half = self._window // 2
        first, last = max(utt.released, lo - half), min(utt.received, hi + half)
        position = first + quietest_point(self._gather(utt, first, last), lo - first, hi - first, self._window)
        fade = self._fade_samples
        self._apply_fade(utt, position - fade, position, self._fade_out)
        self._apply_fade(utt, position, position + fade, self._fade_in)
        utt.cut = _Cut(position, insertion, rng)

    def _plan(self, utt: _Utterance, k: int, rng: np.random.Generator) -> Insertion:
        config = self.config
        script = utt.script
        assert script is not None
        rate = self.format.sample_rate
        marks = script.marks[k]
        scale = self._rate_scale(utt, k)
        reason = script.punctuation[k] if 0 < k < len(script.words) else None
        options = []
        if reason is not None:
            options.append((_uniform(rng, config.ranges[reason]) * scale, reason))
        if any(m.kind == "emphasis" for m in marks):
            options.append((_uniform(rng, config.emphasis) * scale, "emphasis"))
        # A pause mark always has its length and a breath mark its type (markup._mark): the
        # ``is not None`` tests only narrow the types.
        tagged = sum(m.seconds for m in marks if m.kind == "pause" and m.seconds is not None)
        seconds, why = (tagged, "tag") if tagged else max(options, default=(0.0, None))
        kinds = [m.breath_type for m in marks if m.kind == "breath" and m.breath_type is not None]
        spoken = utt.spoken[min(k, len(utt.spoken) - 1)]
        since = spoken - utt.last_breath
        if (
            not kinds
            and reason in SENTENCE_ENDS
            and since >= config.breath_min_interval
            and rng.random() < config.breath_probability
        ):
            kinds.append(
                "deep" if since >= config.deep_breath_after else "quick" if scale <= _QUICK_SCALE else "normal"
            )
        if kinds:
            utt.last_breath = spoken
        breaths = tuple((kind, round(_uniform(rng, config.breath_ranges[kind]) * rate)) for kind in kinds)
        pause = round(seconds * rate)
        return Insertion(why if pause else None, pause, breaths, round(config.breath_gap * rate) if breaths else 0)

    def _rate_scale(self, utt: _Utterance, k: int) -> float:
        """How much longer than at the reference rate pauses are, from the words before boundary ``k``."""
        reference = self.config.reference_rate
        if not reference:
            return 1.0
        timed = min(k, len(utt.starts))
        rate = (utt.letters[timed] + reference * _RATE_PRIOR) / (utt.spoken[timed] + _RATE_PRIOR)
        low, high = self.config.rate_scale
        return min(max(reference / rate, low), high)

    def _render(self, insertion: Insertion, rng: np.random.Generator) -> np.ndarray:
        fmt = self.format
        segment = fmt.silence(insertion.samples)
        level = self._level.rms * 10 ** (self.config.breath_level / 20)
        at = insertion.pause
        for kind, samples in insertion.breaths:
            sound = from_float32(breath(kind, samples, fmt.sample_rate, level, rng), fmt.encoding)
            segment[at : at + samples] = sound if fmt.channels == 1 else sound[:, None]
            at += samples + insertion.gap
        return segment

    def _insert(self, utt: _Utterance, cut: _Cut) -> None:
        insertion, samples = cut.insertion, cut.insertion.samples
        pts = (utt.origin_pts if utt.origin_pts is not None else self._next_in_pts) + cut.position
        segment = self._render(insertion, cut.rng)
        self._emit(AudioChunk(segment, self.format, pts=pts + self._shift, utterance=utt.id))
        self._shift += samples
        utt.cut_positions.append(cut.position)
        utt.cut_totals.append((utt.cut_totals[-1] if utt.cut_totals else 0) + samples)
        counts = self.counts
        counts.inserted_samples += samples
        if insertion.reason is not None:
            counts.pauses[insertion.reason] += 1
            counts.pause_samples[insertion.reason] += insertion.pause
        for kind, n in insertion.breaths:
            counts.breaths[kind] += 1
            counts.breath_samples += n
        utt.cut = None
        utt.next += 1

    def _held_chunks(self, utt: _Utterance, start: int, stop: int) -> Iterator[tuple[_Held, AudioChunk]]:
        """The held chunks of ``utt`` that overlap ``[start, stop)``, in order, each with its frame."""
        for item in self._held:
            chunk = item.frame
            if item.utt is not utt or type(chunk) is not AudioChunk:
                continue
            if item.offset >= stop:
                return
            if item.offset + chunk.samples > start:
                yield item, chunk

    def _gather(self, utt: _Utterance, start: int, stop: int) -> np.ndarray:
        pieces = [
            chunk.data[max(start - item.offset, 0) : stop - item.offset]
            for item, chunk in self._held_chunks(utt, start, stop)
        ]
        return np.concatenate(pieces) if pieces else self.format.silence(0)

    def _apply_fade(self, utt: _Utterance, start: int, stop: int, curve: np.ndarray) -> None:
        """Multiply the held audio of ``[start, stop)`` by ``curve`` (what has gone out already stays)."""
        for item, chunk in self._held_chunks(utt, max(start, utt.released), stop):
            a, b = max(start - item.offset, 0), min(stop - item.offset, chunk.samples)
            data = chunk.data.copy()
            data[a:b] = apply_gain(
                data[a:b], curve[item.offset + a - start : item.offset + b - start], self.format.encoding
            )
            item.frame = attrs.evolve(chunk, data=data)

    def _release(self, item: _Held, stop: int) -> None:
        """Send the held chunk's audio up to utterance position ``stop``; keep the rest held."""
        # _drain releases chunks only; it cannot pass its own reference: a fade may have replaced the frame since.
        chunk: AudioChunk = item.frame  # type: ignore[assignment]  # a chunk, as above
        utt = item.utt
        length = stop - item.offset
        self._emit_piece(chunk, length)
        self._held_samples -= length
        if length == chunk.samples:
            self._held.popleft()
        else:
            item.frame = attrs.evolve(chunk, data=chunk.data[length:], pts=chunk.pts + length)
            item.offset = stop
        if utt is not None:
            utt.released = max(utt.released, stop)
            self._send_final_timings(utt)

    def _emit_piece(self, chunk: AudioChunk, length: int) -> None:
        """Send the first ``length`` samples of an input chunk, moved by what was inserted so far."""
        data = chunk.data if length == chunk.samples else chunk.data[:length]
        self._level.add(data)
        self._next_in_pts = chunk.pts + length
        if data is chunk.data and not self._shift:
            self._emit(chunk)
        else:
            self._emit(attrs.evolve(chunk, data=data, pts=chunk.pts + self._shift))

    def _emit(self, chunk: AudioChunk) -> None:
        self.counts.sent.add(chunk)
        self._ready.append(chunk)

    def _moved(self, frame: Frame) -> Frame:
        """An event as it goes out: a Gap's pts moves with the audio."""
        if type(frame) is Gap and frame.pts is not None and self._shift:
            return attrs.evolve(frame, pts=frame.pts + self._shift)
        return frame

    def _send_final_timings(self, utt: _Utterance) -> None:
        while utt.pending and utt.pending[0][1] < utt.released:
            self._ready.append(self._shifted(utt, utt.pending.popleft()[0]))

    def _close(self, utt: _Utterance) -> None:
        """The utterance's audio has all gone out: count what it never got, send its timings."""
        if utt.closed:
            return
        if utt.shaping:
            self._skip(utt, "missing_timings", len(utt.active) - utt.next)
        utt.closed = True
        while utt.pending:
            self._ready.append(self._shifted(utt, utt.pending.popleft()[0]))
        if self._open.get(utt.id) is utt:
            del self._open[utt.id]
        self._recent[utt.id] = utt
        self._recent.move_to_end(utt.id)
        while len(self._recent) > _RECENT:
            self._recent.popitem(last=False)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return low if low == high else float(rng.uniform(low, high))


def _letters(word: str) -> str:
    return "".join(ch for ch in word.casefold() if ch.isalnum())
