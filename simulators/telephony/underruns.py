"""In-utterance underruns as the far end hears them: fill and dry playout between the speech of a reply.

A bridge whose pacer finds no frame ready inside a reply sends a frame of fill (digital silence,
or its comfort noise) or sends late, and the words are split. The receiver tells fill from
speech by its bytes: every sample the encoding's zero (PCM 0; μ-law 0xFF, A-law 0xD5: G.711's
+0, what silence encodes to), or exactly one of the pacer's comfort-noise frames (same level and
seed, whole frames). Natural pauses are neither: recorded speech has a noise floor, whose
quietest pauses G.711 (A-law most) rounds to zero codes of both signs, and the simulators'
synthesized speech carries a room tone (:mod:`rtstream.simulators.speech`).

A *reply* begins at its first speech frame and ends at a mark or a clear; on a stream that has
carried no mark (raw streams have none), also at fill or dry playout lasting ``reply_idle``
seconds or more, which is then the idle line between two replies (so a stall that long inside
a reply is not counted there; the pacer's own figure has it). Fill frames and playout gaps
count once speech of the same reply follows them: the wait for a reply's first audio, the
silence after its last, and the idle line between replies do not.
"""

from __future__ import annotations

from typing import Any

from rtstream.audio.noise import comfort_noise
from rtstream.frames import AudioFormat, Encoding

ZERO_CODES = {
    Encoding.PCM_S16LE: b"\x00",
    Encoding.PCM_F32LE: b"\x00",
    Encoding.PCM_MULAW: b"\xff",
    Encoding.PCM_ALAW: b"\xd5",
}
"""The byte of a zero sample in each encoding (G.711's +0: a quiet pause encodes to -0 as well)."""
UNDERRUN_KEYS = ("frames", "ms", "fill_frames", "fill_ms", "gaps", "gap_ms", "replies", "speech_ms")
"""The fields of :meth:`ReplyUnderruns.report`, each a sum over calls."""


class ReplyUnderruns:
    """Counts the fill and dry playout inside replies; :meth:`media` per frame, :meth:`end_reply` at marks and clears.

    ``noise_level`` and ``noise_seed`` are the pacer's comfort noise (None: not looked for).
    """

    def __init__(
        self, fmt: AudioFormat, *, reply_idle: float, noise_level: float | None = None, noise_seed: int = 0
    ) -> None:
        self.format = fmt
        self.reply_idle = reply_idle
        self._zero = ZERO_CODES[fmt.encoding]
        self._noise_level, self._noise_seed = noise_level, noise_seed
        self._noise: dict[int, frozenset[bytes]] = {}
        self._marked = False
        self._in_reply = False
        self._fill_frames = 0
        self._fill = self._dry = self._quiet = 0.0
        self._gaps = 0
        self._gap_frames = 0.0
        self.replies = 0
        self.speech_seconds = 0.0
        self.fill_frames = self.gaps = 0
        self.fill_seconds = self.gap_seconds = 0.0
        self.gap_frames = 0.0
        """Dry playout inside replies in frames (each gap over the duration of the frame that ended it)."""

    def is_fill(self, payload: bytes) -> bool:
        """Whether ``payload`` is a frame of fill: digital silence, or one of the pacer's comfort-noise frames."""
        if not payload.strip(self._zero):
            return True
        if self._noise_level is None:
            return False
        samples = len(payload) // self.format.frame_bytes
        frames = self._noise.get(samples)
        if frames is None:
            noise = comfort_noise(self.format, samples, self._noise_level, self._noise_seed)
            frames = self._noise[samples] = frozenset(f.tobytes() for f in noise)
        return payload in frames

    def media(self, payload: bytes, duration: float, gap: float) -> None:
        """A frame of ``duration`` seconds arrived, after the far end's playout ran dry for ``gap`` seconds."""
        fill = self.is_fill(payload)
        if not self._in_reply:
            if not fill:
                self._begin(duration)
            return
        if gap:
            self._gaps += 1
            self._dry += gap
            self._gap_frames += gap / duration
            self._quiet += gap
        if fill:
            self._fill_frames += 1
            self._fill += duration
            self._quiet += duration
            return
        if not self._marked and self._quiet >= self.reply_idle:
            self._begin(duration)  # that quiet was the line between two replies
            return
        self.fill_frames += self._fill_frames
        self.fill_seconds += self._fill
        self.gaps += self._gaps
        self.gap_seconds += self._dry
        self.gap_frames += self._gap_frames
        self.speech_seconds += duration
        self._pending_cleared()

    def end_reply(self, *, mark: bool) -> None:
        """A mark (``mark``) or a clear ended the reply: what followed its last speech was not inside it."""
        self._marked = self._marked or mark
        self._in_reply = False
        self._pending_cleared()

    def _begin(self, duration: float) -> None:
        self._in_reply = True
        self.replies += 1
        self.speech_seconds += duration
        self._pending_cleared()

    def _pending_cleared(self) -> None:
        self._fill_frames = self._gaps = 0
        self._fill = self._dry = self._quiet = self._gap_frames = 0.0

    def report(self) -> dict[str, Any]:
        """Frames and ms: ``fill_frames``/``fill_ms``, ``gaps``/``gap_ms`` (dry playout), and their sums.

        ``frames`` adds the gaps in frames (rounded) to the fill frames; ``ms`` is fill plus gap
        time; ``replies`` and ``speech_ms`` say what they are out of.
        """
        return {
            "frames": self.fill_frames + round(self.gap_frames),
            "ms": (self.fill_seconds + self.gap_seconds) * 1000,
            "fill_frames": self.fill_frames,
            "fill_ms": self.fill_seconds * 1000,
            "gaps": self.gaps,
            "gap_ms": self.gap_seconds * 1000,
            "replies": self.replies,
            "speech_ms": self.speech_seconds * 1000,
        }
