"""``barge_in``: the caller talks over the bot, so the bot stops.

A filter on the caller's pipeline of a call. It passes the caller's audio on unchanged and
watches its energy: once the caller has been louder than ``threshold_dbfs`` for
``min_speech_ms`` while the bot's reply is playing at the caller, it clears the call on its
control path (:mod:`rtstream.control`), so every stage of the bot's pipeline drops that reply
at once and the telephony sink sends the provider's clear. A reply counts as playing from its
start to its end, even while its next frame is late. One run of speech clears at most once
(whenever the bot speaks during it); the caller must fall silent (``release_ms``) before
speech can clear again.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np

from rtstream.audio.codec import to_float32
from rtstream.caps import Caps
from rtstream.control import CURRENT_CONTROL, CallControl
from rtstream.frames import AudioChunk, AudioFormat, Encoding, Frame
from rtstream.params import param
from rtstream.registry import register
from rtstream.stage import Core, CoreElement, Filter
from rtstream.stats import Quantiles, Summary, stat


@attrs.frozen
class BargeInStatistics:
    speech_onsets: int = stat(help="Times the caller started speaking (louder than the threshold for min_speech_ms).")
    barge_ins: int = stat(help="Onsets while the bot was speaking: each cleared the bot's reply.")
    onset_delay_ms: Summary = stat(
        help="Per barge-in, from the first loud sample of the onset to the clear (the detector's own delay)."
    )


class BargeInCore(Core):
    """Energy onset detection on the caller's audio; clears ``control`` when the bot is speaking."""

    untimed = True

    def __init__(self, fmt: AudioFormat, control: CallControl | None, threshold: float, speech: float, release: float):
        self.format = fmt
        self.control = control
        self.threshold = threshold
        """Mean square (of samples scaled to ±1) above which a chunk counts as speech."""
        self.speech = speech
        self.release = release
        self._loud = 0.0
        """Seconds of speech in a row, and the media time the run began."""
        self._quiet = 0.0
        self._began: float | None = None
        self._armed = True
        """No clear yet for this run of speech."""
        self._counted = False
        self.onsets = self.barge_ins = 0
        self.onset_delay = Quantiles()

    def push(self, frame: Frame, now: float) -> Sequence[Frame]:
        if type(frame) is AudioChunk:
            self._listen(frame, now)
        return (frame,)

    def _listen(self, chunk: AudioChunk, now: float) -> None:
        samples = to_float32(chunk.data, chunk.format.encoding)
        loud = float(np.dot(samples.ravel(), samples.ravel())) / max(samples.size, 1) > self.threshold
        duration = chunk.duration
        if not loud:
            self._quiet += duration
            if self._quiet >= self.release:
                self._loud, self._began, self._armed, self._counted = 0.0, None, True, False
            return
        self._quiet = 0.0
        if self._began is None:
            self._began = now
        self._loud += duration
        if not self._armed or self._loud < self.speech:
            return
        if not self._counted:
            self._counted = True
            self.onsets += 1
        if self.control is not None and self.control.bot_speaking(now):  # checked again while the caller talks on
            self._armed = False
            self.barge_ins += 1
            self.onset_delay.add(now - self._began)
            self.control.clear("barge-in", now)

    def statistics(self) -> BargeInStatistics:
        return BargeInStatistics(self.onsets, self.barge_ins, self.onset_delay.summary(scale=1000))


@register("barge_in", klass="Filter/Control")
@attrs.frozen(kw_only=True)
class BargeIn(Filter):
    """Clears the bot's reply when the caller talks over it (energy onset, in a call); passes audio on."""

    accepts = Caps((Encoding.PCM_S16LE, Encoding.PCM_MULAW, Encoding.PCM_ALAW), None, (1,))
    statistics_type = BargeInStatistics

    threshold_dbfs: float = param(-35.0, min=-90, max=0, unit="dBFS", help="RMS level above which audio is speech.")
    min_speech_ms: float = param(
        60.0, min=0, max=2000, unit="ms", help="Speech this long in a row is an onset (shorter noises are not)."
    )
    release_ms: float = param(
        300.0, min=0, max=10_000, unit="ms", help="Silence this long re-arms the detector for the next onset."
    )

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> CoreElement:
        assert fmt_in is not None
        threshold = 10 ** (self.threshold_dbfs / 10)
        core = BargeInCore(fmt_in, CURRENT_CONTROL.get(), threshold, self.min_speech_ms / 1000, self.release_ms / 1000)
        return CoreElement(core)
