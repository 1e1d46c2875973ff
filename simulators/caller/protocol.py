"""The caller's side of one call, sans I/O: the telephony provider dialling into a server.

A :class:`CallerCall` plays what Twilio, Plivo, Exotel... do once they open the media socket:
the protocol's opening (through its provider side, :mod:`rtstream.wire.telephony`), the
caller's audio in the provider's frames on an absolute grid (frame ``n`` is sent once its
audio has been "captured", at ``t0 + (n + 1) * period``), DTMF digits at set times, then
``stop`` — or a hang-up, which closes without one. Everything it sends goes through
:class:`~rtstream.simulators.netem.NetEm`, so jitter, loss, reordering, duplicates and the
hang-up are seeded and repeatable.

What the bot sends back is checked by the telephony simulator's own
:class:`~rtstream.simulators.telephony.TelephonyCall` (frame sizes, encoding, cadence, gaps,
mark echoes once the audio before them has played, each provider's answer to a clear), so the
caller and the listening simulator judge the bot's audio the same way.

No clock and no socket here: every method takes ``now``; the shell (:mod:`.dialer`) sends
what :meth:`CallerCall.pop_due` returns and sleeps until :meth:`CallerCall.next_due`.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from typing import Any

import attrs
import numpy as np

from rtstream.audio.codec import from_float32
from rtstream.audio.resample import StreamResampler
from rtstream.params import ParamError, param
from rtstream.signatures import plivo_v3_signature, twilio_signature
from rtstream.stats import Quantiles
from rtstream.wire.telephony import PROTOCOLS as WIRE
from rtstream.wire.telephony import Dtmf, Media, Stop

from ..netem import DISCONNECT, Impairments, NetEm
from ..script import ScriptError, Turn, load_script, parse_inline
from ..speech import synthesize
from ..telephony import TelephonyCall, TelephonySettings
from .conversation import Conversation

DTMF_DIGITS = "0123456789*#ABCD"
UNIX_TIMESTAMPS = frozenset({"plivo"})
"""Protocols whose media timestamps are Unix milliseconds (the others count from the stream's start)."""


def _twilio_headers(url: str, token: str, nonce: str) -> list[tuple[str, str]]:
    return [("X-Twilio-Signature", twilio_signature(url, {}, token))]


def _plivo_headers(url: str, token: str, nonce: str) -> list[tuple[str, str]]:
    signature = plivo_v3_signature("GET", url, {}, nonce, token)
    return [("X-Plivo-Signature-V3", signature), ("X-Plivo-Signature-V3-Nonce", nonce)]


SIGNERS = {"twilio": _twilio_headers, "plivo": _plivo_headers}
"""How each provider that signs its WebSocket upgrade does it: (url, auth token, nonce) to headers."""


@attrs.frozen
class _Sent:
    """A message in the network, with what it is (``opening``, ``media``, ``dtmf``, ``echo``, ``stop``).

    ``message`` is None for the stop of a protocol that has none (the call ends by closing).
    """

    kind: str
    message: str | bytes | None


@attrs.frozen
class Hangup:
    """Close the connection here, for ``reason``: ``stopped`` (after stop), or a hang-up without stop
    (``hangup``: ``hangup_after`` into the call; ``bot_frames``: after ``disconnect_after`` of the bot's frames)."""

    reason: str


@attrs.frozen(kw_only=True)
class CallerSettings(TelephonySettings):
    """What the simulated provider dials, what the caller says, and how the network treats it.

    The inherited settings describe the stream and how the bot's audio is checked;
    ``disconnect_after`` hangs up after that many of the bot's frames (mid-reply).
    """

    url: str = param(type=str, kind="ws_url", help="The server's media-stream URL to dial (ws://host:port/path).")
    public_url: str | None = param(
        type=str,
        optional=True,
        kind="ws_url",
        help="The URL signatures are computed over (the server's public URL behind a proxy); none: url.",
    )
    calls: int = param(1, min=1, max=100_000, help="Calls to place.")
    rate: float = param(1.0, gt=0, max=1000, unit="calls/s", help="Arrival rate: one call every 1/rate seconds.")
    duration: float = param(10.0, gt=0, max=86_400, unit="s", help="Caller audio per call before its stop.")
    send_frame_ms: float | None = param(
        type=float,
        optional=True,
        gt=0,
        max=1000,
        unit="ms",
        help="Caller audio per media message; none takes the protocol's (twilio and plivo 20, raw 60, exotel 100).",
    )
    audio: str | None = param(
        type=str,
        optional=True,
        kind="input_file",
        help="A 16-bit WAV file the caller says (resampled and encoded to the stream); none: synthesized text.",
    )
    text: str = param(
        "Hello, I would like to check the status of my order, please.",
        help="What the caller says when no audio file is given (synthesized speech).",
    )
    speak_at: float = param(0.5, min=0, max=86_400, unit="s", help="When the caller starts speaking; silence around.")
    dtmf: str = param(
        "",
        max_length=100,
        help="DTMF digits the caller presses (0-9, *, #, A-D); empty for none. Quote digits in TOML: '\"12\"'.",
    )
    dtmf_at: float = param(1.0, min=0, max=86_400, unit="s", help="When the first digit is pressed.")
    dtmf_interval: float = param(0.25, min=0, max=60, unit="s", help="Time between digits.")
    parameters: tuple[str, ...] = param(
        (), type=(str,), max_items=100, help="Custom parameters of the start message, each NAME=VALUE."
    )
    headers: tuple[str, ...] = param(
        (),
        type=(str,),
        max_items=50,
        secret=True,
        help="Extra headers of the WebSocket upgrade, each 'Name: value' (secret: they may carry credentials).",
    )
    auth_token: str | None = param(
        type=str,
        optional=True,
        secret=True,
        help="Sign the upgrade as the provider does (twilio: X-Twilio-Signature, plivo: V3); none: unsigned.",
    )
    subprotocol: str | None = param(
        type=str,
        optional=True,
        kind="header",
        help="WebSocket subprotocol to ask for; none: the protocol's own (jambonz: audio.jambonz.org), if any.",
    )
    hangup_after: float | None = param(
        type=float,
        optional=True,
        gt=0,
        max=86_400,
        unit="s",
        help="Hang up (close without stop) this far into the call; none never does. See disconnects.",
    )
    linger: float = param(2.0, min=0, max=600, unit="s", help="After stop, how long to wait for the server to close.")
    connect_timeout: float = param(10.0, gt=0, max=600, unit="s", help="Bound on connecting and the handshake.")
    timeout: float | None = param(
        type=float,
        optional=True,
        gt=0,
        max=86_400 * 2,
        unit="s",
        help="Absolute bound on one call; none: duration + linger + connect_timeout + 10.",
    )
    jitter: float = param(0.0, min=0, max=10, unit="s", help="Extra delay per message, uniform between 0 and this.")
    stall_probability: float = param(0.0, min=0, max=1, help="Chance that a message stalls the stream.")
    stall: float = param(0.5, min=0, max=60, unit="s", help="How long a stall holds up the stream.")
    duplicate: float = param(0.0, min=0, max=1, help="Chance that an audio message is sent twice.")
    reorder: float = param(0.0, min=0, max=1, help="Chance that an audio message is swapped with the next one.")
    drop: float = param(0.0, min=0, max=1, help="Chance that an audio message is lost.")
    record: str | None = param(
        type=str,
        optional=True,
        kind="output_path",
        help="Write the bot's audio of each call to this WAV file; {call} stands for the call number.",
    )
    report_calls: int = param(
        20, min=0, max=100_000, help="Calls listed one by one in the report (all are counted in the totals)."
    )
    script: str | None = param(
        type=str,
        optional=True,
        kind="input_file",
        help=(
            "A conversation to play (TOML or JSON [[turns]]: caller, agent, audio, wait, interrupt_after_ms, dtmf,"
            " hangup); it starts at speak_at and replaces duration, text, audio and dtmf. None: say text once."
        ),
    )
    turns: tuple[str, ...] = param(
        (),
        type=(str,),
        max_items=1000,
        help="The script's turns inline, each 'WORDS|key|key=value' (e.g. 'Hi|interrupt_after_ms=300', '|dtmf=12').",
    )
    reply_gate_dbfs: float = param(
        -45.0, min=-90, max=0, unit="dBFS", help="RMS above which a bot frame is speech, not the line's silence."
    )
    reply_gap_ms: float = param(
        700.0, gt=0, max=60_000, unit="ms", help="Silence that ends a reply; pauses inside a reply must be shorter."
    )
    reply_timeout: float = param(10.0, gt=0, max=3600, unit="s", help="How long a turn waits for its reply to begin.")
    barge_in_detect_ms: float = param(
        60.0,
        min=0,
        max=10_000,
        unit="ms",
        help="The bridge's time to detect speech over its reply: bot audio arriving after onset plus this is stale.",
    )

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._check_script()
        if self.url.startswith("wss:"):
            raise ParamError("url", "the dialer speaks ws:// only; dial the server itself, not its TLS proxy")
        try:
            self.send_frame_bytes  # noqa: B018  (checks the frame is whole samples)
        except ValueError as exc:
            raise ParamError("send_frame_ms", str(exc)) from None
        wire = WIRE[self.protocol].provider(self.format, "")
        bad = [d for d in self.dtmf if d not in DTMF_DIGITS]
        if bad:
            raise ParamError("dtmf", f"digits are 0-9, *, #, A-D, got {bad[0]!r}")
        if self.dtmf:
            try:
                wire.send(Dtmf(self.dtmf[0]))
            except ValueError:
                raise ParamError("dtmf", f"{self.protocol} streams carry no DTMF") from None
            last = self.dtmf_at + (len(self.dtmf) - 1) * self.dtmf_interval
            if last > self.duration:
                raise ParamError("dtmf", f"the last digit falls at {last:g} s, after the call's {self.duration:g} s")
        for item in self.parameters:
            if "=" not in item or not item.partition("=")[0]:
                raise ParamError("parameters", f"each must be NAME=VALUE, got {item!r}")
        for i, item in enumerate(self.headers, 1):
            name, sep, _ = item.partition(":")
            if not sep or not name.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in item):
                raise ParamError("headers", f"each must be 'Name: value' on one line; item {i} is not")
        if self.auth_token is not None and self.protocol not in SIGNERS:
            raise ParamError("auth_token", f"{self.protocol} does not sign its streams; signing: {', '.join(SIGNERS)}")
        if self.record is not None:
            try:
                self.record.format(call=1)
            except (KeyError, IndexError, ValueError) as exc:
                raise ParamError("record", f"only {{call}} may stand in braces, got {self.record!r} ({exc})") from None

    def _check_script(self) -> None:
        if self.script is not None and self.turns:
            raise ParamError("turns", "give a script file or inline turns, not both")
        key = "script" if self.script is not None else "turns"
        try:
            turns = self.conversation()
        except ScriptError as exc:
            raise ParamError(key, str(exc)) from None
        if turns is None:
            return
        for other in ("dtmf", "audio"):
            if getattr(self, other):
                raise ParamError(other, f"a {key} has its own; give it in the turns")
        if any(turn.dtmf for turn in turns):
            try:
                WIRE[self.protocol].provider(self.format, "").send(Dtmf("1"))
            except ValueError:
                raise ParamError(key, f"{self.protocol} streams carry no DTMF") from None

    def conversation(self) -> tuple[Turn, ...] | None:
        """The script's turns (read from the file), or None when the caller says its text once."""
        if self.script is not None:
            return load_script(self.script)
        return parse_inline(self.turns) if self.turns else None

    @property
    def send_frame_bytes(self) -> int:
        """Bytes of one media message of caller audio."""
        return self.format.bytes_in(self.send_frame_ms or WIRE[self.protocol].frame_ms)

    @property
    def send_period(self) -> float:
        return self.send_frame_bytes / self.format.frame_bytes / self.sample_rate

    @property
    def send_frames(self) -> int:
        """Media messages per call: ``duration`` rounded up to whole frames."""
        return max(1, math.ceil(round(self.duration / self.send_period, 9)))

    @property
    def subprotocols(self) -> tuple[str, ...]:
        """What the upgrade asks for: the subprotocol set, else the protocol's own."""
        chosen = self.subprotocol or WIRE[self.protocol].subprotocol
        return () if chosen is None else (chosen,)

    def call_timeout(self, turns: int = 0) -> float:
        """The timeout, else the call's length and 10 s; a script of ``turns`` takes 30 s each beyond reply_timeout."""
        if self.timeout is not None:
            return self.timeout
        length = self.speak_at + turns * (self.reply_timeout + 30) if turns else self.duration
        return length + self.linger + self.connect_timeout + 10

    def custom_parameters(self) -> dict[str, str]:
        return dict(item.partition("=")[::2] for item in self.parameters)

    def upgrade_headers(self, number: int) -> list[tuple[str, str]]:
        """The headers of call ``number``'s upgrade: the extra ones and the provider's signature."""
        out = [(name.strip(), value.strip()) for name, _, value in (h.partition(":") for h in self.headers)]
        if self.auth_token is not None:
            nonce = hashlib.sha256(f"{self.seed}:{number}:nonce".encode()).hexdigest()[:20]
            out += SIGNERS[self.protocol](self.public_url or self.url, self.auth_token, nonce)
        return out

    def hangs_up(self, number: int) -> bool:
        """Whether call ``number`` takes the hang-ups (``disconnects``: how many calls do, 0 every one)."""
        return self.disconnects == 0 or number <= self.disconnects

    def impairments(self, *, hangup: bool) -> Impairments:
        frames = None
        if hangup and self.hangup_after is not None:
            frames = max(1, round(self.hangup_after / self.send_period))
        return Impairments(
            jitter=self.jitter,
            stall_probability=self.stall_probability,
            stall=self.stall,
            duplicate=self.duplicate,
            reorder=self.reorder,
            drop=self.drop,
            disconnect_after=frames,
        )


class CallerCall:
    """One call from the caller's side: :meth:`open`, then :meth:`pop_due` / :meth:`receive`; :meth:`report`.

    ``speech`` is the caller's audio in the stream's encoding (shared by every call), placed
    ``speak_at`` seconds into the call with silence around it — unless ``script`` gives turns
    and their speech (:class:`~.conversation.Conversation` then decides when the caller speaks,
    presses digits and stops). ``unix_ms`` is the wall-clock
    time the call opened, for protocols that stamp media with it; ``all_deviations`` gathers
    the bot's inter-arrival deviations across calls.
    """

    def __init__(
        self,
        settings: CallerSettings,
        number: int,
        speech: bytes,
        *,
        script: tuple[tuple[Turn, ...], tuple[bytes, ...]] | None = None,
        unix_ms: int = 0,
        all_deviations: Quantiles | None = None,
    ) -> None:
        self.settings = settings
        self.number = number
        hangup = settings.hangs_up(number)
        self.checker = TelephonyCall(
            settings,
            number,
            disconnect_after=settings.disconnect_after if hangup else None,
            all_deviations=all_deviations,
        )
        """Checks and times the bot's audio, echoes marks and answers clears."""
        self.wire = self.checker.wire
        fmt = settings.format
        self._speech = speech
        self._speech_at = round(settings.speak_at * fmt.sample_rate) * fmt.frame_bytes
        self._frame_bytes = settings.send_frame_bytes  # the settings compute these exactly, slowly: once per call
        self._period = settings.send_period
        self._frames = settings.send_frames
        self._silence = bytes([int(fmt.encoding.silence)]) * self._frame_bytes
        self._frame_ms = self._period * 1000
        self._timestamp_origin = unix_ms if settings.protocol in UNIX_TIMESTAMPS else 0
        seed = int(hashlib.sha256(f"{settings.seed}:{number}:netem".encode()).hexdigest()[:16], 16)
        self.netem = NetEm(settings.impairments(hangup=hangup), seed)
        self._t0: float | None = None
        self._next_frame = 0
        self._dtmf: deque[tuple[float, str]] = deque()
        self._stop_pushed = False
        self._bot_hangup = False
        self._end_at: float | None = None
        self.ended = False
        self.hangup: str | None = None
        """Why the caller closed the connection (``hangup``, ``bot_frames``, ``stopped``), None if it did not."""
        self.sent_frames = self.sent_dtmf = 0
        self.stop_sent = False
        """A stop message went out (streams without one end by closing)."""
        self._said_all = False
        self.first_audio: float | None = None
        self.outcome: str | None = None
        self.close: dict[str, Any] | None = None
        self.conversation: Conversation | None = None
        if script is not None:
            self.conversation = Conversation(
                *script,
                fmt,
                period=self._period,
                gate=10 ** (settings.reply_gate_dbfs / 10),
                gap=settings.reply_gap_ms / 1000,
                timeout=settings.reply_timeout,
                detect=settings.barge_in_detect_ms / 1000,
                dtmf_interval=settings.dtmf_interval,
                start=settings.speak_at,
            )
            self._dtmf = self.conversation.dtmf
            self._frames = 1 << 62  # until the script is done

    # -- the caller's side ---------------------------------------------------------------------

    def open(self, now: float) -> None:
        """The connection is up at ``now``: queue the opening; the caller's audio starts on its grid."""
        s = self.settings
        self._t0 = now
        if self.conversation is not None:
            self.conversation.open(now)
        else:
            self._dtmf = deque((now + s.dtmf_at + i * s.dtmf_interval, d) for i, d in enumerate(s.dtmf))
        for message in self.checker.opening(s.custom_parameters()):
            self.netem.push(_Sent("opening", message), now)

    @property
    def script_done(self) -> bool:
        """The call ran its course: its audio (and stop, where there is one) went out, or it hung up as planned."""
        return self._said_all or self.hangup in ("hangup", "bot_frames")

    def _frame_time(self, n: int) -> float:
        assert self._t0 is not None
        return self._t0 + (n + 1) * self._period

    def _frame(self, n: int) -> bytes:
        size = self._frame_bytes
        if self.conversation is not None:
            piece = self.conversation.frame(n)
            return self._silence if piece is None else piece + self._silence[len(piece) :]
        offset = n * size - self._speech_at
        if offset + size <= 0 or offset >= len(self._speech):
            return self._silence
        lead = max(0, -offset)
        piece = self._speech[max(0, offset) : offset + size]
        return self._silence[:lead] + piece + self._silence[: size - lead - len(piece)]

    def _push_due(self, now: float) -> None:
        """Push into the network, in time order, what the caller has said by ``now``."""
        while not self._stop_pushed and not self._bot_hangup and not self.netem.disconnected:
            t_frame = self._frame_time(self._next_frame) if self._next_frame < self._frames else math.inf
            t_dtmf = self._dtmf[0][0] if self._dtmf else math.inf
            t_stop = self._stop_time()
            t = min(t_frame, t_dtmf, t_stop)
            if t > now:
                return
            if t_frame <= t_dtmf and t_frame <= t_stop:
                n = self._next_frame
                self._next_frame += 1
                media = Media(
                    self._frame(n),
                    timestamp=self._timestamp_origin + round(n * self._frame_ms),
                    chunk=n + 1,
                )
                self.netem.push(_Sent("media", self.wire.send(media)), t, media=True)
            elif t_dtmf <= t_stop:
                self.netem.push(_Sent("dtmf", self.wire.send(Dtmf(self._dtmf.popleft()[1]))), t)
            else:
                self._stop_pushed = True
                try:
                    stop: str | bytes | None = self.wire.send(Stop())
                except ValueError:  # a binary stream has no stop: the call ends by closing
                    stop = None
                self.netem.push(_Sent("stop", stop), t)
                self.netem.flush(t)

    def _stop_time(self) -> float:
        """When the stop goes: with the last frame, or the frame in which the script ended (inf until it has)."""
        if self.conversation is None:
            return self._frame_time(self._frames - 1)
        done = self.conversation.done_at
        if done is None:
            return math.inf
        assert self._t0 is not None
        return self._t0 + math.ceil(round((done - self._t0) / self._period, 9)) * self._period  # its frame sent

    def pop_due(self, now: float) -> list[str | bytes | Hangup]:
        """The messages to send by ``now``, in order; a :class:`Hangup` last when the caller closes."""
        if self.ended:
            return []
        if self.conversation is not None:
            self.conversation.advance(now)
        self._push_due(now)
        if not self._stop_pushed and not self._bot_hangup:
            for item in self.checker.pop_due(now):  # mark and clear echoes share the network's order
                self._bot_hangup = self._bot_hangup or item is DISCONNECT
                self.netem.push(item if item is DISCONNECT else _Sent("echo", item), now)
        out: list[str | bytes | Hangup] = []
        for item in self.netem.pop_due(now):
            if item is DISCONNECT:
                return self._hang_up(out, "bot_frames" if self._bot_hangup else "hangup")
            if item.kind == "media":
                self.sent_frames += 1
            elif item.kind == "dtmf":
                self.sent_dtmf += 1
            elif item.kind == "stop":
                self._said_all = True
                self.stop_sent = item.message is not None
                hung_up = self.conversation is not None and self.conversation.hung_up
                self._end_at = now + (0.0 if item.message is None or hung_up else self.settings.linger)
            if item.message is not None:
                out.append(item.message)
        if self._end_at is not None and now >= self._end_at:
            return self._hang_up(out, "stopped")
        return out

    def _hang_up(self, out: list[str | bytes | Hangup], reason: str) -> list[str | bytes | Hangup]:
        self.ended = True
        self.hangup = reason
        out.append(Hangup(reason))
        return out

    def next_due(self) -> float | None:
        """When :meth:`pop_due` next has something to do (None: nothing until the bot speaks)."""
        if self.ended:
            return None
        times = [self._end_at, self.netem.next_due()]
        if not self._stop_pushed and not self._bot_hangup and not self.netem.disconnected:
            times.append(min(self._frame_time(min(self._next_frame, self._frames - 1)), self._stop_time()))
            times.append(self._dtmf[0][0] if self._dtmf else None)
            times.append(self.checker.next_due())
            if self.conversation is not None:
                times.append(self.conversation.next_due())
        due = [t for t in times if t is not None]
        return min(due) if due else None

    # -- the bot's side ------------------------------------------------------------------------

    def receive(self, message: str | bytes, now: float) -> np.ndarray | None:
        """Check one message from the server; the bot's PCM16 audio it carried (None if none)."""
        clears = self.checker.clears
        pcm = self.checker.receive(message, now)
        if pcm is not None and self.first_audio is None and self._t0 is not None:
            self.first_audio = now - self._t0
        if self.conversation is not None:
            if pcm is not None:
                self.conversation.heard(pcm, now)
            if self.checker.clears > clears:
                self.conversation.cleared(now)
        return pcm

    # -- the end -------------------------------------------------------------------------------

    def record_close(self, code: int, by: str, reason: str) -> None:
        """How the connection closed: its close code, who closed it (``caller``, ``server``) and why."""
        self.close = {"code": code, "by": by, "reason": reason}

    def finish(self, outcome: str) -> None:
        """How the call ended: ``completed`` (its script ran out) or why not (``http_503``, ``timeout``...)."""
        self.outcome = outcome

    def report(self) -> dict[str, Any]:
        """The checker's report of the bot's audio, with the caller's side and the call's end.

        Beside the checker's keys (frames, seconds, wrong_size, errors by reason, marks,
        marks_echoed, clears, deviation_ms, drift_ms, gaps, in_utterance_underruns: fill and
        gaps inside replies, see :mod:`rtstream.simulators.telephony.underruns`): ``outcome``;
        ``close`` (code, by, reason; None if never connected); ``hangup`` (why the caller
        closed); ``first_audio_ms`` (connection to the bot's first audio); ``sent``: media
        messages written, the seconds of caller audio said, DTMF, whether stop went out, and
        what the network dropped, duplicated, reordered and stalled. With a script, ``turns``
        (see :meth:`.Conversation.report`) and ``unexpected_replies`` (bot audio no turn was
        waiting for); else None for both.
        """
        checked = self.checker.report()
        net = self.netem.statistics()
        conv = self.conversation
        return {
            **checked,
            "outcome": self.outcome,
            "close": self.close,
            "hangup": self.hangup,
            "first_audio_ms": None if self.first_audio is None else self.first_audio * 1000,
            "turns": None if conv is None else conv.report(),
            "unexpected_replies": None if conv is None else conv.unexpected_replies,
            "sent": {
                "frames": self.sent_frames,
                "seconds": self._next_frame * self._period,
                "dtmf": self.sent_dtmf,
                "stop": self.stop_sent,
                "dropped": net.dropped,
                "duplicated": net.duplicated,
                "reordered": net.reordered,
                "stalls": net.stalls,
            },
        }


def speech_bytes(settings: CallerSettings, samples: np.ndarray | None = None, rate: int = 0) -> bytes:
    """What the caller says, in the stream's encoding: ``samples`` (float32 mono at ``rate``) or the text."""
    fmt = settings.format
    if samples is None:
        samples = synthesize(settings.text, fmt.sample_rate)[0]
    elif rate != fmt.sample_rate:
        resampler = StreamResampler(rate, fmt.sample_rate)
        samples = np.concatenate([resampler.process(samples.astype(np.float32)), resampler.flush()])
    return bytes(from_float32(samples, fmt.encoding).astype(fmt.encoding.dtype, copy=False))
