"""The voice-agent (conversation) WebSocket, sans I/O: the bridge's side and the agent's side.

One connection per call to a service that does STT → LLM → TTS (PROTOCOLS.md, "the seed 004
shape"). Audio is binary PCM16 little-endian, 16 kHz mono, both ways: the caller's audio up,
the reply's audio down in chunks of any size, faster than real time. Everything else is one
JSON object per text frame with a string ``type``. What the seed shape leaves open (ids,
turns, barge-in, errors) is defined here, and the simulator speaks it the same way.

Up, bridge → agent (:class:`AgentClient` sends, :class:`AgentServer` reads):

- ``{"type":"start","call_id":"CA…","stream_id":"MZ…","parameters":{"lang":"en"}}`` first on
  every connection (a reconnect sends it again); binary audio before it is refused.
- binary: the caller's audio.
- ``{"type":"dtmf","digit":"5"}``: the caller pressed a key.
- ``{"type":"barge_in","turn":N,"played_ms":1234.5}``: the bridge heard the caller talk over
  reply N; the caller heard ``played_ms`` of it (null: unknown). The agent stops that reply.
- ``{"type":"playback","turn":N,"played_ms":…}``: how much of reply N the caller actually
  heard, once it is known (its end played, or it was cut), so the agent can truncate its history.
- ``{"type":"stop"}``: the call is over; the bridge closes next.

Down, agent → bridge (:class:`AgentServer` sends, :class:`AgentClient` reads):

- ``{"type":"transcript","text":"…","turn":N}``: what the caller said in turn N (turns count
  from 0 per connection; the caller's turn N is answered by reply N).
- ``{"type":"turn_start","turn":N,"text":"…"}``: reply N begins; ``text`` (optional) is the
  whole reply when the agent knows it. Binary audio from here to ``turn_end`` belongs to reply N.
- ``{"type":"llm_token","text":"…","turn":N}`` and ``{"type":"llm_done","turn":N}``: the
  reply's text as it is generated (tokens join without separators: spaces are in the text).
- binary: reply audio, only while a reply is open.
- ``{"type":"turn_end","turn":N}``: the reply's last audio has been sent (``"interrupted":true``
  when it was cut by a barge-in).
- ``{"type":"barge_in","turn":N}``: the agent heard the caller talk over reply N and stopped
  it; what audio of it is still on the way is stale.
- ``{"type":"error","code":"…","message":"…"}``: the agent failed (the connection may go on).

Refusals (:class:`~rtstream.wire.RemoteProtocolError` reasons): ``oversize``, ``bad_json``,
``bad_shape`` (not an object, a field of the wrong type), ``unknown_type``, ``bad_turn`` (not
a non-negative integer), ``odd_length`` (binary audio that is not whole samples),
``audio_outside_turn`` (reply audio with no reply open), ``turn_mismatch`` (a ``turn_end``
for a reply that is not the open one), ``before_start`` and ``duplicate_start`` (the agent's
side). A ``turn_start`` while a reply is open ends that reply first (the agent moved on).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, TypeAlias

import attrs

from rtstream.frames import AudioFormat, Encoding

from ._json import load_object, optional_text, text
from .errors import RemoteProtocolError

FORMAT = AudioFormat(Encoding.PCM_S16LE, 16000)
"""The audio format both ways."""
MAX_MESSAGE_BYTES = 1 << 20

# -- up: what the bridge says ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Start:
    kind: ClassVar[str] = "start"
    call_id: str
    stream_id: str | None = None
    parameters: Mapping[str, str] = attrs.field(factory=dict, hash=False)


@attrs.frozen
class CallerAudio:
    kind: ClassVar[str] = "audio"
    pcm: bytes


@attrs.frozen
class Dtmf:
    kind: ClassVar[str] = "dtmf"
    digit: str


@attrs.frozen
class Playback:
    """How much of reply ``turn`` the caller heard (None: unknown)."""

    kind: ClassVar[str] = "playback"
    turn: int
    played_ms: float | None = None


@attrs.frozen
class Stop:
    kind: ClassVar[str] = "stop"


# -- down: what the agent says --------------------------------------------------------------------


@attrs.frozen
class Transcript:
    kind: ClassVar[str] = "transcript"
    turn: int
    text: str


@attrs.frozen
class TurnStart:
    kind: ClassVar[str] = "turn_start"
    turn: int
    text: str | None = None


@attrs.frozen
class LlmToken:
    kind: ClassVar[str] = "llm_token"
    turn: int
    text: str


@attrs.frozen
class LlmDone:
    kind: ClassVar[str] = "llm_done"
    turn: int


@attrs.frozen
class ReplyAudio:
    """Audio of the open reply (``turn`` is filled in by the client that read it)."""

    kind: ClassVar[str] = "audio"
    pcm: bytes
    turn: int = -1


@attrs.frozen
class TurnEnd:
    kind: ClassVar[str] = "turn_end"
    turn: int
    interrupted: bool = False


@attrs.frozen
class Error:
    kind: ClassVar[str] = "error"
    code: str
    message: str = ""


# -- both ways ------------------------------------------------------------------------------------


@attrs.frozen
class BargeIn:
    """Up: the bridge heard the caller over reply ``turn`` (``played_ms`` of it heard). Down: the agent did."""

    kind: ClassVar[str] = "barge_in"
    turn: int
    played_ms: float | None = None


Up: TypeAlias = Start | CallerAudio | Dtmf | BargeIn | Playback | Stop
Down: TypeAlias = Transcript | TurnStart | LlmToken | LlmDone | ReplyAudio | TurnEnd | BargeIn | Error


def _turn(data: dict[str, Any]) -> int:
    value = data.get("turn")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RemoteProtocolError("bad_turn", f"turn must be a non-negative integer, got {value!r}")
    return value


def _played_ms(data: dict[str, Any]) -> float | None:
    value = data.get("played_ms")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e9:
        raise RemoteProtocolError("bad_shape", "played_ms must be a non-negative number of milliseconds")
    return float(value)


def _audio(message: bytes) -> bytes:
    if len(message) % FORMAT.frame_bytes:
        raise RemoteProtocolError("odd_length", f"{len(message)} bytes of PCM16 is not a whole number of samples")
    return message


def _load(message: str | bytes, max_message_bytes: int) -> dict[str, Any]:
    if len(message) > max_message_bytes:
        raise RemoteProtocolError("oversize", f"{len(message)} bytes or characters, more than {max_message_bytes}")
    return load_object(message, "type")


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


class AgentClient:
    """The bridge's side: :data:`Up` commands out, :data:`Down` events in.

    It keeps which reply is open, so binary audio comes out as :class:`ReplyAudio` of that turn.
    """

    def __init__(self, *, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes
        self.open_turn: int | None = None

    def send(self, command: Up) -> str | bytes:
        match command:
            case CallerAudio(pcm):
                return pcm
            case Start(call_id=call_id, stream_id=stream_id, parameters=parameters):
                return _dump(
                    {"type": "start", "call_id": call_id, "stream_id": stream_id, "parameters": dict(parameters)}
                )
            case Dtmf(digit):
                return _dump({"type": "dtmf", "digit": digit})
            case BargeIn(turn, played_ms) | Playback(turn, played_ms):
                return _dump({"type": command.kind, "turn": turn, "played_ms": played_ms})
            case Stop():
                return _dump({"type": "stop"})
        raise TypeError(f"not a command of the bridge: {command!r}")

    def receive(self, message: str | bytes) -> Down:
        if isinstance(message, bytes):
            if len(message) > self.max_message_bytes:
                raise RemoteProtocolError("oversize", f"{len(message)} bytes, more than {self.max_message_bytes}")
            if self.open_turn is None:
                raise RemoteProtocolError("audio_outside_turn", "reply audio before any turn_start")
            return ReplyAudio(_audio(message), self.open_turn)
        data = _load(message, self.max_message_bytes)
        kind = data["type"]
        if kind == "error":
            return Error(text(data, "code"), optional_text(data, "message") or "")
        if kind not in _DOWN_TYPES:
            raise RemoteProtocolError("unknown_type", f"type {kind!r}")
        turn = _turn(data)
        if kind == "transcript":
            return Transcript(turn, text(data, "text"))
        if kind == "llm_token":
            return LlmToken(turn, text(data, "text"))
        if kind == "llm_done":
            return LlmDone(turn)
        if kind == "turn_start":
            self.open_turn = turn
            return TurnStart(turn, optional_text(data, "text"))
        if kind == "turn_end":
            if turn != self.open_turn:
                raise RemoteProtocolError("turn_mismatch", f"turn_end {turn} while reply {self.open_turn} is open")
            self.open_turn = None
            interrupted = data.get("interrupted", False)
            if not isinstance(interrupted, bool):
                raise RemoteProtocolError("bad_shape", "interrupted must be true or false")
            return TurnEnd(turn, interrupted)
        return BargeIn(turn)


_DOWN_TYPES = frozenset({"transcript", "llm_token", "llm_done", "turn_start", "turn_end", "barge_in"})


class AgentServer:
    """The agent's side (the simulator's): :data:`Up` commands in, :data:`Down` events out."""

    def __init__(self, *, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes
        self.started = False

    def receive(self, message: str | bytes) -> Up:
        if isinstance(message, bytes):
            if len(message) > self.max_message_bytes:
                raise RemoteProtocolError("oversize", f"{len(message)} bytes, more than {self.max_message_bytes}")
            if not self.started:
                raise RemoteProtocolError("before_start", "audio before the start message")
            return CallerAudio(_audio(message))
        data = _load(message, self.max_message_bytes)
        kind = data["type"]
        if kind == "start":
            if self.started:
                raise RemoteProtocolError("duplicate_start", "a second start on one connection")
            parameters = data.get("parameters", {})
            if not isinstance(parameters, dict) or not all(isinstance(v, str) for v in parameters.values()):
                raise RemoteProtocolError("bad_shape", "parameters must be an object of strings")
            self.started = True
            return Start(
                call_id=text(data, "call_id"), stream_id=optional_text(data, "stream_id"), parameters=parameters
            )
        if not self.started:
            raise RemoteProtocolError("before_start", f"{kind!r} before the start message")
        if kind == "dtmf":
            digit = text(data, "digit")
            if len(digit) != 1:
                raise RemoteProtocolError("bad_shape", "digit must be one character")
            return Dtmf(digit)
        if kind == "barge_in":
            return BargeIn(_turn(data), _played_ms(data))
        if kind == "playback":
            return Playback(_turn(data), _played_ms(data))
        if kind == "stop":
            return Stop()
        raise RemoteProtocolError("unknown_type", f"type {kind!r}")

    def send(self, event: Down) -> str | bytes:
        match event:
            case ReplyAudio(pcm):
                return pcm
            case Transcript(turn, said) | LlmToken(turn, said):
                return _dump({"type": event.kind, "text": said, "turn": turn})
            case TurnStart(turn, reply):
                data: dict[str, Any] = {"type": "turn_start", "turn": turn}
                if reply is not None:
                    data["text"] = reply
                return _dump(data)
            case LlmDone(turn) | BargeIn(turn):
                return _dump({"type": event.kind, "turn": turn})
            case TurnEnd(turn, interrupted):
                data = {"type": "turn_end", "turn": turn}
                if interrupted:
                    data["interrupted"] = True
                return _dump(data)
            case Error(code, message):
                return _dump({"type": "error", "code": code, "message": message})
        raise TypeError(f"not an event of the agent: {event!r}")
