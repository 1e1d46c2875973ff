"""A scripted conversation on the caller's side, sans I/O: when the caller speaks, and what it measures.

The script (:mod:`rtstream.simulators.script`) is played turn by turn on the caller's own
clock. A turn's speech starts on the first caller frame that begins at or after the turn
begins (so it lies on the provider's grid), then its DTMF digits follow, ``dtmf_interval``
apart from the end of the speech. The caller's line is never empty: between turns its frames
carry silence.

The bot's audio is told apart from the line's silence by an energy gate on each received
frame (RMS above ``gate``). A *reply* is a run of loud frames: it begins at the arrival of its
first loud frame and ends at the end of its last one (arrival plus duration), once ``gap``
seconds pass with no loud frame — pauses inside a reply must be shorter than the gap. A reply
belongs to the latest turn that has finished speaking and has no reply yet; one that begins
while no turn waits (the bot talking over the caller, or speaking twice) is only counted.

Per turn, on the caller's clock:

- **turn latency**: from the end of the caller's speech (the end of its last sample; the last
  digit for a turn of digits only) to the arrival of the reply's first loud frame;
- **barge-in time**: when the caller's speech starts while a reply is under way (onset: the
  first sample of the speech; the reply has not ended by the gap rule, so a pause inside it
  counts), from that onset to the end of the reply's last loud frame — the moment the caller
  hears silence; 0 when that was before the onset — and, separately, from the onset to the
  provider's clear arriving (``clear_ms``; None if none came);
- **stale audio**: the duration of the reply's loud frames that arrived later than
  ``onset + detect``, where ``detect`` is the bridge's detection time (its VAD's minimum
  speech, by default the ``barge_in`` stage's 60 ms): audio the bridge sent after it could
  have known;
- **reply duration heard**: the total duration of the reply's loud frames.

Every method takes ``now``; :class:`~rtstream.simulators.caller.CallerCall` drives it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from rtstream.frames import AudioFormat

from ..script import Turn

EPSILON = 1e-9


@attrs.define
class Reply:
    """One reply of the bot as heard: times on the caller's clock, durations in seconds."""

    first: float
    last_end: float
    owner: TurnRecord | None = None
    heard: float = 0.0
    onset: float | None = None
    """The start of the caller's speech over this reply (barge-in), if any."""
    clear: float | None = None
    stale: float = 0.0


@attrs.define
class TurnRecord:
    """What happened in one turn: when it began, spoke and finished, and the reply it got."""

    number: int
    began: float
    spoke: float = 0.0
    """Seconds of speech."""
    said: float | None = None
    """The end of its speech (its last digit for a turn of digits only): turn latency counts from here."""
    reply: Reply | None = None
    outcome: str = "speaking"
    """``speaking``, ``waiting``, ``replied``, ``no_reply`` (none within the timeout), ``hung_up``."""


class Conversation:
    """Plays ``turns`` (each with its ``speech`` in the stream's encoding) and measures the replies.

    ``period`` is the caller's frame period; ``gate`` the mean square (of samples scaled to
    ±1) above which a received frame is the bot's audio; ``gap``, ``timeout`` (for a reply to
    begin), ``detect`` and ``dtmf_interval`` in seconds; ``start`` is when the first turn begins,
    from the opening.
    """

    def __init__(
        self,
        turns: Sequence[Turn],
        speech: Sequence[bytes],
        fmt: AudioFormat,
        *,
        period: float,
        gate: float,
        gap: float,
        timeout: float,
        detect: float,
        dtmf_interval: float,
        start: float,
    ) -> None:
        self.turns = turns
        self._speech = speech
        self._frame_bytes = fmt.frame_bytes
        self._rate = fmt.sample_rate
        self._period = period
        self._frame_samples = round(period * fmt.sample_rate)
        self._gate, self._gap, self._timeout, self._detect = gate, gap, timeout, detect
        self._dtmf_interval = dtmf_interval
        self._start = start
        self._t0 = 0.0
        self._index = 0
        """The turn being played (``len(turns)`` once the script is done)."""
        self._begin_at: float | None = None
        """When the current turn begins (None once it has)."""
        self._phase_until = math.inf
        """When the current turn's phase (speaking, waiting, interrupting) next changes."""
        self._segments: deque[tuple[int, bytes]] = deque()
        """The caller's speech to send, as (first sample from the opening, audio)."""
        self.dtmf: deque[tuple[float, str]] = deque()
        """Digits due, with their times, for the caller to send."""
        self.records: list[TurnRecord] = []
        self._unanswered: TurnRecord | None = None
        self._reply: Reply | None = None
        self.unexpected_replies = 0
        self.done_at: float | None = None
        """When the script ended (the caller then stops), None until it has."""
        self.hung_up = False

    # -- the caller's side ---------------------------------------------------------------------

    def open(self, now: float) -> None:
        self._t0 = now
        self._begin_at = now + self._start

    def frame(self, n: int) -> bytes | None:
        """The speech in caller frame ``n`` (silence padded), None when it carries none."""
        size = self._frame_samples
        first = n * size
        while self._segments and self._segments[0][0] + len(self._segments[0][1]) // self._frame_bytes <= first:
            self._segments.popleft()
        if not self._segments or self._segments[0][0] >= first + size:
            return None
        at, audio = self._segments[0]
        fb = self._frame_bytes
        return audio[(first - at) * fb : (first - at + size) * fb]

    def next_due(self) -> float | None:
        """When :meth:`advance` next has something to do."""
        times = [self._begin_at, self._phase_until, self._reply_end_due()]
        due = [t for t in times if t is not None and t != math.inf]
        return min(due) if due else None

    def advance(self, now: float) -> None:
        """Run the script's timers due by ``now``, in time order."""
        while (due := self.next_due()) is not None and due <= now + EPSILON:
            if self._reply is not None and (end := self._reply_end_due()) is not None and end <= due + EPSILON:
                self._end_reply(end)
            elif self._begin_at is not None and self._begin_at <= due + EPSILON:
                self._begin(self._begin_at)
            else:
                self._phase_due(self._phase_until)

    def _begin(self, at: float) -> None:
        self._begin_at = None
        turn = self.turns[self._index]
        record = TurnRecord(self._index + 1, at)
        self.records.append(record)
        end = at
        if turn.speaks:
            frame = math.ceil((at - self._t0) / self._period - EPSILON)
            speech = self._speech[self._index]
            onset = self._t0 + frame * self._period
            record.spoke = len(speech) / self._frame_bytes / self._rate
            self._segments.append((frame * self._frame_samples, speech))
            end = onset + record.spoke
            if self._reply is not None and self._reply.onset is None:
                self._reply.onset = onset
        for k, digit in enumerate(turn.dtmf):
            self.dtmf.append((end + k * self._dtmf_interval, digit))
        finished = end + max(0, len(turn.dtmf) - 1) * self._dtmf_interval
        record.said = end if turn.speaks else finished
        self._phase_until = finished  # then it waits, or goes on

    def _phase_due(self, at: float) -> None:
        """The current turn's phase ends at ``at``: it finished speaking, timed out, or interrupts."""
        self._phase_until = math.inf
        turn, record = self.turns[self._index], self.records[-1]
        if record.outcome == "speaking":
            if not turn.listens:
                self._unanswered = record
            if turn.hangup:
                record.outcome = "hung_up"
                self.hung_up = True
                self._next(at)
            elif not turn.wait and turn.interrupt_after_ms is None:
                record.outcome = "waiting"  # the reply may still come; the script goes on
                self._next(at)
            else:
                record.outcome = "waiting"
                self._phase_until = at + self._timeout
                if turn.listens and self._reply is not None and self._reply.owner is None:
                    self._own(self._reply, record, at)  # a listening turn hears the reply already under way
                elif turn.listens:
                    self._unanswered = record
        elif record.reply is None:  # waited in vain
            record.outcome = "no_reply"
            if self._unanswered is record:
                self._unanswered = None
            self._next(at)
        else:  # interrupt_after_ms of the reply has passed
            self._next(at)

    def _next(self, at: float) -> None:
        self._index += 1
        if self._index == len(self.turns):
            self.done_at = at
        else:
            self._begin_at = at

    # -- the bot's side ------------------------------------------------------------------------

    def heard(self, pcm: np.ndarray, now: float) -> None:
        """A frame of the bot's audio (PCM16) arrived at ``now``."""
        self.advance(now)
        if pcm.size == 0:
            return
        scaled = pcm.astype(np.float64) / 32768
        if float(np.dot(scaled, scaled)) / pcm.size <= self._gate:
            return
        duration = pcm.size / self._rate
        reply = self._reply
        if reply is None:
            reply = self._reply = Reply(now, now)
            if self._unanswered is not None:
                self._own(reply, self._unanswered, now)
        reply.heard += duration
        reply.last_end = now + duration
        if reply.onset is not None and now > reply.onset + self._detect + EPSILON:
            reply.stale += duration

    def _own(self, reply: Reply, owner: TurnRecord, now: float) -> None:
        """``reply`` answers ``owner``: a turn waiting on it now waits for its end, or for its interrupt time."""
        if self._unanswered is owner:
            self._unanswered = None
        reply.owner, owner.reply = owner, reply
        if owner.outcome != "waiting":
            return
        owner.outcome = "replied"
        if owner is self.records[-1] and self._phase_until != math.inf:
            turn = self.turns[owner.number - 1]
            interrupt = turn.interrupt_after_ms
            self._phase_until = math.inf if interrupt is None else max(now, reply.first + interrupt / 1000)

    def _reply_end_due(self) -> float | None:
        return None if self._reply is None else self._reply.last_end + self._gap

    def _end_reply(self, at: float) -> None:
        reply = self._reply
        assert reply is not None
        self._reply = None
        if reply.owner is None:
            self.unexpected_replies += 1
        owner = reply.owner
        current = self._index < len(self.turns) and self._begin_at is None and owner is self.records[-1]
        if owner is not None and current and self.turns[self._index].wait and owner.outcome == "replied":
            self._next(at)  # the turn waited for this reply to end

    def cleared(self, now: float) -> None:
        """The provider's clear arrived at ``now``."""
        self.advance(now)
        reply = self._reply
        if reply is not None and reply.onset is not None and reply.clear is None and now >= reply.onset:
            reply.clear = now

    # -- the report ----------------------------------------------------------------------------

    def report(self) -> list[dict[str, Any]]:
        """Per turn: its number, outcome, ``said_ms``, and the measures of the module docstring in ms.

        ``latency_ms`` is None for a turn that listened or got no reply; ``barge_in_ms``,
        ``clear_ms`` and ``stale_ms`` are None unless the caller spoke over the reply.
        """
        return [self._turn_report(record) for record in self.records]

    def _turn_report(self, record: TurnRecord) -> dict[str, Any]:
        out: dict[str, Any] = {"turn": record.number, "outcome": record.outcome, "said_ms": record.spoke * 1000}
        out.update(dict.fromkeys(("latency_ms", "reply_ms", "barge_in_ms", "clear_ms", "stale_ms")))
        reply = record.reply
        if reply is None:
            return out
        if not self.turns[record.number - 1].listens and record.said is not None:
            out["latency_ms"] = (reply.first - record.said) * 1000
        out["reply_ms"] = reply.heard * 1000
        if reply.onset is not None:
            out["barge_in_ms"] = max(0.0, reply.last_end - reply.onset) * 1000
            out["clear_ms"] = None if reply.clear is None else (reply.clear - reply.onset) * 1000
            out["stale_ms"] = reply.stale * 1000
        return out
