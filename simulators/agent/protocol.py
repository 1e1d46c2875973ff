"""A simulated voice agent, sans I/O: the caller's audio in, a scripted conversation out.

An :class:`AgentSession` is one connection, speaking the agent's side of
:mod:`rtstream.wire.agent`. It runs an energy :class:`Vad` over the caller's audio (media
time: samples, not the clock): an utterance starts after ``onset_ms`` of frames above
``threshold_db`` and ends after ``silence_ms`` below it. The script
(:mod:`rtstream.simulators.script`, shared with the caller simulator) says what is heard: the
N-th utterance is the N-th turn that speaks (its ``caller`` is the transcript), a turn of
digits alone is heard when its digits have come (the digits are the transcript), and a first
turn that only listens is the agent's greeting, said at the start. Each is answered with its
``agent`` text (``reply`` when it has none, or past the end of the script): the
``transcript``, then, after ``first_token_latency``, ``turn_start`` and the reply's
``llm_token`` pieces at ``token_rate`` per second with ``llm_done``, and the reply's audio
(the TTS simulators' :class:`~rtstream.simulators.tts.voice.Voice`, PCM16 16 kHz) in chunks
cycled through ``pattern``, made ``rtf`` times faster than real time after
``first_byte_latency``, then ``turn_end``. Every message goes through
:class:`rtstream.simulators.netem.NetEm` (the TTS simulator's impairments; only audio is
dropped, duplicated or reordered).

A reply counts as playing at the caller from its transcript until its audio would have played
out in real time from its first chunk, or until the bridge reports its ``playback``. An
utterance that starts while a reply plays is a barge-in: the session sends ``barge_in``, drops
the rest of the reply (tokens and audio) and ends the turn (``turn_end`` interrupted); a
``barge_in`` from the bridge does the same without the echo. The barging utterance is the
next turn.
"""

from __future__ import annotations

import random
import re
from collections import Counter, deque
from typing import Any

import attrs
import numpy as np

from rtstream.params import ParamError, param, show_path
from rtstream.stats import Quantiles, Summary
from rtstream.wire import RemoteProtocolError
from rtstream.wire.agent import (
    FORMAT,
    AgentServer,
    BargeIn,
    CallerAudio,
    Down,
    Dtmf,
    LlmDone,
    LlmToken,
    Playback,
    ReplyAudio,
    Start,
    Stop,
    Transcript,
    TurnEnd,
    TurnStart,
)

from ..netem import Impairments, NetEm, NetEmStatistics
from ..script import ScriptError, Turn, load_script
from ..tts.settings import TtsSettings
from ..tts.voice import Voice, chunk_sizes

KEPT_TURNS = 100
"""Turns a session lists one by one in its statistics (all are counted)."""
MAX_DIGITS = 100
RECENT_TURNS = 8
"""Turns the bridge may still refer to by number (barge_in, playback)."""
_TOKENS = re.compile(r"\S+\s*")


@attrs.frozen(kw_only=True)
class AgentSettings(Impairments):
    """How the simulated voice agent hears and answers: VAD, script, pace, impairments."""

    script: str | None = param(
        type=str,
        optional=True,
        kind="input_file",
        max_size=1 << 20,
        help="The conversation script shared with the caller simulator (TOML [[turns]] of caller and agent text).",
    )
    reply: str = param("I see. Tell me more.", help="The reply to turns past the end of the script (or without one).")
    threshold_db: float = param(
        -45.0, min=-120, max=0, unit="dBFS", help="RMS level of a 20 ms frame above which it counts as speech."
    )
    onset_ms: float = param(60.0, min=20, max=2000, unit="ms", help="Speech this long starts an utterance.")
    silence_ms: float = param(
        600.0,
        min=20,
        max=10_000,
        unit="ms",
        help="Silence this long ends an utterance (more than the synthesizer's 400 ms sentence pause).",
    )
    first_token_latency: float = param(
        0.3, min=0, max=60, unit="s", help="From the end of the caller's turn to the reply's first token."
    )
    token_rate: float = param(50.0, gt=0, max=100_000, unit="tokens/s", help="Pace of the reply's llm_token messages.")
    first_byte_latency: float = param(
        0.1, min=0, max=60, unit="s", help="From the first token to the reply's first audio."
    )
    rtf: float = param(
        3.0, min=0, max=1000, help="Times faster than real time the reply's audio is made; 0 sends it all at once."
    )
    pattern: tuple[int, ...] = param(
        (3200, 1600, 4800, 640),
        type=(int,),
        min=2,
        max=1 << 20,
        unit="bytes",
        help="Sizes of the reply's audio messages, cycled (even: whole PCM16 samples).",
    )
    seed: int = param(0, min=0, help="Seed of the impairments (connection n uses seed + n).")
    turns: tuple[Turn, ...] = attrs.field(init=False)
    """The script's turns, read when the settings are made (so a bad file is a config error)."""

    @turns.default
    def _turns(self) -> tuple[Turn, ...]:
        if self.script is None:
            return ()
        try:
            return load_script(self.script)
        except ScriptError as exc:
            raise ParamError("script", str(exc).replace(self.script, show_path(self.script))) from None

    def __attrs_post_init__(self) -> None:
        if not self.pattern:
            raise ParamError("pattern", "must list at least one size")
        odd = [size for size in self.pattern if size % FORMAT.frame_bytes]
        if odd:
            raise ParamError("pattern", f"sizes must be whole PCM16 samples (even), got {odd[0]}")


# -- the VAD --------------------------------------------------------------------------------------


@attrs.frozen
class Onset:
    """An utterance started at ``sample``; known at ``at`` (the arrival of the audio that confirmed it)."""

    sample: int
    at: float


@attrs.frozen
class Offset:
    """An utterance ended at ``sample``: its last speech arrived at ``speech_end``, the silence said so at ``at``."""

    sample: int
    speech_end: float
    at: float


FRAME_MS = 20


class Vad:
    """Energy VAD on 20 ms frames of PCM16, in media time; :meth:`feed` gives the onsets and offsets."""

    def __init__(self, threshold_db: float, onset_ms: float, silence_ms: float, rate: int = FORMAT.sample_rate) -> None:
        self.frame = rate * FRAME_MS // 1000
        self._threshold = (10 ** (threshold_db / 20) * 32768) ** 2 * self.frame  # sum of squares per frame
        self._onset_frames = max(1, round(onset_ms / FRAME_MS))
        self._silence_frames = max(1, round(silence_ms / FRAME_MS))
        self._rest = np.zeros(0, dtype=np.int16)
        self._position = 0
        """Samples fed into whole frames so far."""
        self.speaking = False
        self._run = 0
        """Frames in a row of the other kind than ``speaking`` says."""
        self._run_start = 0
        self._last_speech_at = 0.0

    def feed(self, samples: np.ndarray, now: float) -> list[Onset | Offset]:
        """Take ``samples`` that arrived at ``now``; the events their frames complete."""
        data = np.concatenate((self._rest, samples)) if len(self._rest) else samples
        whole = len(data) // self.frame * self.frame
        self._rest = data[whole:].copy()
        events: list[Onset | Offset] = []
        if not whole:
            return events
        frames = data[:whole].astype(np.float64).reshape(-1, self.frame)
        for voiced in (frames * frames).sum(axis=1) > self._threshold:
            start = self._position
            self._position += self.frame
            if voiced:
                self._last_speech_at = now
            if voiced != self.speaking:
                if not self._run:
                    self._run_start = start
                self._run += 1
                if self._run >= (self._silence_frames if self.speaking else self._onset_frames):
                    self.speaking = voiced
                    self._run = 0
                    if voiced:
                        events.append(Onset(self._run_start, now))
                    else:
                        events.append(Offset(self._run_start, self._last_speech_at, now))
            else:
                self._run = 0
        return events


# -- the session ----------------------------------------------------------------------------------


@attrs.frozen
class TurnRecord:
    """One turn as the agent saw it."""

    turn: int
    transcript: str | None
    """What the agent heard (None: a greeting, nothing heard)."""
    reply: str
    latency_ms: float | None
    """From the arrival of the caller's last speech (or digit; a greeting: the start) to the reply's first audio
    sent (None: none sent)."""
    barged_in: bool
    heard_ms: float | None
    """What the bridge said the caller heard of the reply (playback or barge_in), if it said."""


@attrs.define
class _Reply:
    turn: int
    transcript: str | None
    text: str
    speech_end: float
    duration: float
    queue: deque[tuple[float, Down]]
    first_audio: float | None = None
    started: bool = False
    cut: bool = False
    heard_ms: float | None = None

    def record(self) -> TurnRecord:
        latency = None if self.first_audio is None else (self.first_audio - self.speech_end) * 1000
        return TurnRecord(self.turn, self.transcript, self.text, latency, self.cut, self.heard_ms)

    def playing(self, now: float) -> bool:
        if self.cut or self.heard_ms is not None:
            return False
        return bool(self.queue) or self.first_audio is None or now < self.first_audio + self.duration


@attrs.frozen
class AgentSessionStatistics:
    call_id: str | None
    turns: int
    barge_ins: int
    """Replies cut because the caller talked over them (heard by the agent or told by the bridge)."""
    barge_ins_heard: int
    """Of those, the ones the agent's own VAD found."""
    dtmf: str
    stopped: bool
    caller_seconds: float
    reply_bytes_sent: int
    reply_bytes_dropped: int
    """Reply audio not sent because its turn was cut."""
    latency_ms: Summary
    turn_log: tuple[TurnRecord, ...]
    malformed: dict[str, int]
    network: NetEmStatistics


class AgentSession:
    """One connection's agent: :meth:`receive` the bridge's messages, :meth:`pop_due` the replies."""

    def __init__(self, settings: AgentSettings, *, seed: int = 0) -> None:
        self.settings = settings
        self._wire = AgentServer()
        self._net = NetEm(settings.impairments(), seed)
        self._vad = Vad(settings.threshold_db, settings.onset_ms, settings.silence_ms)
        self._tts = TtsSettings(
            pattern=settings.pattern, rtf=settings.rtf, first_byte_latency=settings.first_byte_latency
        )
        self._sizes = chunk_sizes(self._tts, random.Random(seed))
        self._reply: _Reply | None = None
        self._turns = self._utterances = self._keyed = 0
        self._speaking = [t for t in settings.turns if t.speaks]
        """The script's turns heard by utterance: the N-th utterance is the N-th of these."""
        self._keyed_turns = [t for t in settings.turns if not t.speaks and t.dtmf]
        """The turns heard by their digits alone."""
        self._digits = ""
        self._kept: list[_Reply] = []
        """The first turns, for the statistics."""
        self._recent: dict[int, _Reply] = {}
        """The last turns, for the bridge's barge_in and playback by turn number."""
        self.call_id: str | None = None
        self.stopped = False
        self._dtmf: list[str] = []
        self._caller_samples = self._sent = self._dropped = 0
        self._barge_ins = self._heard = 0
        self._latency = Quantiles()
        self.malformed: Counter[str] = Counter()

    # -- input ---------------------------------------------------------------------------------

    def receive(self, message: str | bytes, now: float) -> None:
        """Take one message from the bridge that arrived at ``now`` (a bad one is counted and skipped)."""
        try:
            command = self._wire.receive(message)
        except RemoteProtocolError as exc:
            self.malformed[exc.reason] += 1
            return
        match command:
            case CallerAudio(pcm):
                samples = FORMAT.array(pcm)
                self._caller_samples += len(samples)
                for event in self._vad.feed(samples, now):
                    if isinstance(event, Onset):
                        self._onset(event)
                    else:
                        self._offset(event)
            case Start(call_id=call_id):
                self.call_id = call_id
                turns = self.settings.turns
                if turns and turns[0].listens and turns[0].agent:
                    self._answer(None, turns[0].agent, now, now)
            case Dtmf(digit):
                if len(self._dtmf) < MAX_DIGITS:
                    self._dtmf.append(digit)
                self._digit(digit, now)
            case BargeIn(turn, played_ms) | Playback(turn, played_ms):
                reply = self._recent.get(turn)
                if reply is None:
                    return
                reply.heard_ms = played_ms if played_ms is not None else reply.heard_ms
                if isinstance(command, BargeIn) and reply is self._reply and not reply.cut:
                    self._cut(reply, now, echo=False)
            case Stop():
                self.stopped = True

    def _onset(self, onset: Onset) -> None:
        reply = self._reply
        if reply is not None and reply.playing(onset.at):
            self._heard += 1
            self._cut(reply, onset.at, echo=True)

    def _cut(self, reply: _Reply, now: float, *, echo: bool, barge_in: bool = True) -> None:
        """Stop ``reply``: drop what is left of it, tell the bridge (``echo``) and end the turn."""
        self._barge_ins += barge_in
        reply.cut = True
        self._dropped += sum(len(e.pcm) for _, e in reply.queue if isinstance(e, ReplyAudio))
        reply.queue.clear()
        if echo:
            self._net.push(self._wire.send(BargeIn(reply.turn)), now)
        if reply.started:
            self._net.push(self._wire.send(TurnEnd(reply.turn, interrupted=True)), now)

    def _offset(self, offset: Offset) -> None:
        """The caller's utterance ended: answer the next script turn that speaks."""
        n = self._utterances
        self._utterances += 1
        turn = self._speaking[n] if n < len(self._speaking) else None
        heard = (turn.caller or "") if turn is not None else ""
        self._answer(heard, turn.agent if turn is not None else None, offset.at, offset.speech_end)

    def _digit(self, digit: str, now: float) -> None:
        """A key press: the next DTMF-only turn of the script is answered once its digits have come."""
        self._digits = (self._digits + digit)[-MAX_DIGITS:]
        n = self._keyed
        if n < len(self._keyed_turns) and self._digits.endswith(self._keyed_turns[n].dtmf):
            self._keyed += 1
            self._digits = ""
            self._answer(self._keyed_turns[n].dtmf, self._keyed_turns[n].agent, now, now)

    def _answer(self, heard: str | None, answer: str | None, now: float, since: float) -> None:
        """Reply to what was heard (None: a greeting, nothing heard); latency counts from ``since``."""
        s, turn = self.settings, self._turns
        self._turns += 1
        text = answer or s.reply
        if self._reply is not None and self._reply.queue:  # keys pressed during a reply: the new one replaces it
            self._cut(self._reply, now, echo=False, barge_in=False)
        if heard is not None:
            self._net.push(self._wire.send(Transcript(turn, heard)), now)
        queue: list[tuple[float, Down]] = []
        t0 = now + s.first_token_latency
        queue.append((t0, TurnStart(turn, text)))
        tokens = _TOKENS.findall(text)
        for i, token in enumerate(tokens):
            queue.append((t0 + i / s.token_rate, LlmToken(turn, token)))
        done = t0 + len(tokens) / s.token_rate
        queue.append((done, LlmDone(turn)))
        voice = Voice(self._tts, FORMAT.encoding.value, FORMAT.sample_rate, self._sizes)
        queue += [(piece.ready, ReplyAudio(piece.audio, turn)) for piece in voice.speak(text, t0)]
        queue.append((max(done, queue[-1][0]), TurnEnd(turn)))
        queue.sort(key=lambda item: item[0])  # stable: at equal times, the order built above
        reply = _Reply(turn, heard, text, since, voice.samples / FORMAT.sample_rate, deque(queue))
        self._reply = self._recent[turn] = reply
        if len(self._recent) > RECENT_TURNS:
            del self._recent[min(self._recent)]
        if len(self._kept) < KEPT_TURNS:
            self._kept.append(reply)

    # -- output --------------------------------------------------------------------------------

    def pop_due(self, now: float) -> list[Any]:
        """The messages due by ``now`` (strings, bytes, or :data:`rtstream.simulators.netem.DISCONNECT`)."""
        reply = self._reply
        if reply is not None:
            while reply.queue and reply.queue[0][0] <= now:
                ready, event = reply.queue.popleft()
                if isinstance(event, TurnStart):
                    reply.started = True
                elif isinstance(event, ReplyAudio):
                    if reply.first_audio is None:
                        reply.first_audio = ready
                        self._latency.add(ready - reply.speech_end)
                    self._sent += len(event.pcm)
                self._net.push(self._wire.send(event), ready, media=isinstance(event, ReplyAudio))
            if not reply.queue:
                self._net.flush(now)
        return self._net.pop_due(now)

    def next_due(self) -> float | None:
        """When :meth:`pop_due` next has something to do (None: only after new input)."""
        times = [t for t in (self._net.next_due(),) if t is not None]
        if self._reply is not None and self._reply.queue:
            times.append(self._reply.queue[0][0])
        return min(times) if times else None

    def statistics(self) -> AgentSessionStatistics:
        return AgentSessionStatistics(
            call_id=self.call_id,
            turns=self._turns,
            barge_ins=self._barge_ins,
            barge_ins_heard=self._heard,
            dtmf="".join(self._dtmf),
            stopped=self.stopped,
            caller_seconds=self._caller_samples / FORMAT.sample_rate,
            reply_bytes_sent=self._sent,
            reply_bytes_dropped=self._dropped,
            latency_ms=self._latency.summary(scale=1000),
            turn_log=tuple(r.record() for r in self._kept),
            malformed=dict(sorted(self.malformed.items())),
            network=self._net.statistics(),
        )
