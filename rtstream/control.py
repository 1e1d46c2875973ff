"""A call's control path: barge-in does not wait behind the audio.

A :class:`~rtstream.frames.Clear` sent down a pipeline reaches each stage only after every
frame queued ahead of it, so the caller would hear the whole backlog before the bot stops.
Within a call, a clear goes through :class:`CallControl` instead: :meth:`CallControl.clear`
marks every reply spoken so far as cleared and tells every stage of the call at once. Each
stage then drops what it holds of those replies (chunker, converter, jitter buffer,
pause/breath, pacer, the telephony queue, which also sends the provider's clear), the shells
drop their queued frames of them as they read them, and the TTS or voice-agent source cancels
the reply it is speaking. What the caller heard of the reply — the played position — is kept as
a :class:`Cut`, for the agent to truncate its transcript.

Stages reach the control of their call through :data:`CURRENT_CONTROL` (set around the call's
pipelines like :data:`rtstream.calls.CURRENT_CALL`); outside a call there is none and a Clear
travels in-band as before.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections import deque
from collections.abc import Callable, Iterator

import attrs

from .frames import AudioChunk, Frame, UtteranceStart

KEPT_CUTS = 32


@attrs.frozen
class Cut:
    """Where a reply was cut: the utterance, how much of it had been sent to the caller, and when."""

    utterance: str | None
    played_ms: float
    at: float
    reason: str


class CallControl:
    """The control path of one call (see the module docstring)."""

    def __init__(self) -> None:
        self.cleared: set[str] = set()
        """Utterances whose audio is dropped wherever it is found."""
        self._live: set[str] = set()
        self._listeners: list[Callable[[str], None]] = []
        self.clears = 0
        self.dropped_frames = 0
        self.dropped_samples = 0
        """Queued audio of cleared utterances dropped by the shells (reason ``cleared``)."""
        self.cuts: deque[Cut] = deque(maxlen=KEPT_CUTS)
        self.bot_audible_until = -float("inf")
        """Until when the bot's last audio frame plays at the caller (set by the telephony sink)."""
        self.playing: str | None = None
        """The utterance of the last bot frame sent, and how many ms of it were sent."""
        self.played_ms = 0.0
        self._replying: set[str] = set()
        """Replies the telephony sink has begun and not yet ended (their audio may be late)."""

    def stale(self, frame: Frame) -> bool:
        """Whether ``frame`` is audio of a cleared utterance (counted, to be dropped); notes new utterances."""
        if isinstance(frame, AudioChunk):
            utterance = frame.utterance
            if utterance is None:
                return False
            if utterance in self.cleared:
                self.dropped_frames += 1
                self.dropped_samples += frame.samples
                return True
            self._live.add(utterance)
        elif isinstance(frame, UtteranceStart):
            self._live.add(frame.utterance)
        return False

    def clear(self, reason: str, now: float) -> None:
        """Barge-in: clear every utterance known so far and tell every listener now."""
        self.clears += 1
        self.cuts.append(Cut(self.playing, self.played_ms, now, reason))
        self.cleared |= self._live
        if self.playing is not None:
            self.cleared.add(self.playing)
        self._live = set()
        self._replying.clear()
        self.bot_audible_until = -float("inf")
        for listener in list(self._listeners):
            listener(reason)

    def clear_utterance(self, utterance: str) -> None:
        """Mark one more utterance cleared (a source's reply in progress, when it hears of the clear)."""
        self.cleared.add(utterance)

    def sent(self, frame: AudioChunk, now: float) -> None:
        """The telephony sink sent ``frame`` of the bot's audio at ``now``."""
        utterance = frame.utterance
        if utterance is None:
            return
        if utterance != self.playing:
            self.playing, self.played_ms = utterance, 0.0
        self.played_ms += frame.duration * 1000
        self.bot_audible_until = max(self.bot_audible_until, now) + frame.duration

    def reply(self, utterance: str, *, started: bool) -> None:
        """The telephony sink saw a reply begin or end (its UtteranceStart or UtteranceEnd)."""
        if started:
            self._replying.add(utterance)
        else:
            self._replying.discard(utterance)

    def bot_speaking(self, now: float) -> bool:
        """Whether the bot is in a reply: its last frame still playing, or a reply begun and not ended.

        A reply whose next frame is late (the TTS stalled, the pacer underran) is still a reply
        the caller can talk over.
        """
        return now < self.bot_audible_until or any(u not in self.cleared for u in self._replying)

    @contextlib.contextmanager
    def listening(self, listener: Callable[[str], None]) -> Iterator[None]:
        """Call ``listener(reason)`` at every clear while the block runs."""
        self._listeners.append(listener)
        try:
            yield
        finally:
            self._listeners.remove(listener)

    def statistics(self) -> dict[str, object]:
        return {
            "clears": self.clears,
            "dropped_frames": self.dropped_frames,
            "dropped_samples": self.dropped_samples,
            "cuts": [attrs.asdict(c) for c in self.cuts],
        }


CURRENT_CONTROL: contextvars.ContextVar[CallControl | None] = contextvars.ContextVar(
    "rtstream_current_control", default=None
)


def listening(on_clear: Callable[[str], None]) -> contextlib.AbstractContextManager[CallControl | None]:
    """Enter to hear the current call's clears (nothing outside a call); yields the control or None."""

    @contextlib.contextmanager
    def scope() -> Iterator[CallControl | None]:
        control = CURRENT_CONTROL.get()
        if control is None:
            yield None
            return
        with control.listening(on_clear):
            yield control

    return scope()
