"""Scripted conversations of the caller simulator, measured on virtual time against a bot that listens.

The bot here is a tiny Twilio bridge on the wire classes: it sends a frame every 20 ms (its
reply, or the line's silence), finds the end of the caller's turn by energy (``end_frames``
quiet frames after speech), replies ``delay`` later, and on the caller's speech over its reply
(``onset_frames`` loud frames) sends Twilio's clear and falls silent after ``stale_frames``
more frames. On virtual time, with loopback delivering within the instant, every measure is
exact: the caller's frame ``n`` leaves at ``t0 + 20 (n + 1)`` ms, the bot's ticks lie 5 ms
after the caller's grid.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import trio
from test_serve_calls import BARGE_IN  # the served call with barge_in, as the end-to-end tests run it

from rtstream import websocket
from rtstream.audio import g711
from rtstream.callrun import call_runner
from rtstream.calls import CallSettings
from rtstream.config import parse_config
from rtstream.frames import AudioFormat
from rtstream.httpserver import Request, Response, Upgrade, bound_port, open_listener
from rtstream.routes import CallEndpoint
from rtstream.server import Server
from rtstream.simulators.caller import CallerSettings, Dialer
from rtstream.wavfile import WavWriter
from rtstream.wire.telephony import PROTOCOLS, Dtmf, Media, SendClear, SendMedia, Start, Stop

ULAW = AudioFormat("pcm_mulaw", 8000)
PERIOD = 0.02
LOUD = bytes(g711.ulaw_encode(np.full(160, 8000, np.int16)))
QUIET = bytes(g711.ulaw_encode(np.zeros(160, np.int16)))


class Bot:
    """A bridge that answers each of the caller's turns and stops when talked over (see the module docstring)."""

    def __init__(
        self,
        *,
        end_frames: int = 5,
        delay: float = 0.1,
        reply_frames: int = 25,
        onset_frames: int = 3,
        stale_frames: int = 0,
        greeting: bool = False,
        answers: bool = True,
        idle: bool = True,
    ) -> None:
        self.end_frames, self.delay, self.reply_frames = end_frames, delay, reply_frames
        self.onset_frames, self.stale_frames = onset_frames, stale_frames
        self.greeting, self.answers, self.idle = greeting, answers, idle
        self.events: list[tuple[float, Any]] = []
        self.sent: list[tuple[float, bool]] = []
        """Each frame sent: when, and whether it was the reply (not silence)."""
        self.clears: list[float] = []

    async def handle(self, request: Request, server: Server) -> Response | Upgrade:
        return server.admit("twilio", request, self.call)

    async def call(self, ws: websocket.WebSocket) -> tuple[str, Mapping[str, Any]]:
        side = PROTOCOLS["twilio"].bridge(ULAW)
        started = trio.Event()
        state = _State()

        async def send() -> None:
            await started.wait()
            t0 = trio.current_time() + 0.005
            if self.greeting:
                state.left = self.reply_frames
            for k in range(100_000):
                now = await _tick(t0 + k * PERIOD)
                if state.reply_at is not None and now >= state.reply_at - 1e-9:
                    state.reply_at, state.left = None, self.reply_frames
                speaking = state.left > 0
                if speaking or self.idle:
                    await ws.send(side.send(SendMedia(LOUD if speaking else QUIET)))
                    self.sent.append((now, speaking))
                state.left = max(0, state.left - 1)

        def hear(media: Media) -> None:
            pcm = g711.ulaw_decode(np.frombuffer(media.payload, np.uint8))
            if np.abs(pcm).mean() > 100:
                state.loud += 1
                state.quiet = 0
                state.spoke = True
                if state.left and state.loud == self.onset_frames:  # talked over: clear, then stop
                    self.clears.append(trio.current_time())
                    state.left = min(state.left, self.stale_frames)
                    nursery.start_soon(ws.send, side.send(SendClear()))
            else:
                state.loud = 0
                state.quiet += 1
                if state.spoke and state.quiet == self.end_frames and self.answers:
                    state.spoke = False
                    state.reply_at = trio.current_time() + self.delay

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            with contextlib.suppress(websocket.ConnectionClosed):
                while True:
                    event = side.receive(await ws.receive())
                    self.events.append((trio.current_time(), event))
                    if isinstance(event, Start):
                        started.set()
                    elif isinstance(event, Media):
                        hear(event)
                    elif isinstance(event, Stop):
                        break
            nursery.cancel_scope.cancel()
        return "completed", {}

    def of(self, kind: type) -> list[tuple[float, Any]]:
        return [(t, e) for t, e in self.events if isinstance(e, kind)]


@attrs.define
class _State:
    left: int = 0
    """Frames of the reply still to send."""
    reply_at: float | None = None
    loud: int = 0
    quiet: int = 0
    spoke: bool = False


async def _tick(at: float) -> float:
    await trio.sleep_until(at)
    return at


@contextlib.asynccontextmanager
async def serving(endpoint: Any, path: str = "/twilio") -> AsyncIterator[tuple[str, Server]]:
    server = Server({path: endpoint}, max_calls=100)
    async with trio.open_nursery() as nursery:
        listener = await open_listener("127.0.0.1", 0)
        await nursery.start(server.serve, [listener])
        yield f"ws://127.0.0.1:{bound_port(listener)}{path}", server
        server.abort()


def square(path: Path, seconds: float) -> str:
    """A WAV of a loud square wave (its first and last samples loud: its length is the speech's length)."""
    n = round(seconds * 8000)
    with WavWriter(str(path), AudioFormat("pcm_s16le", 8000)) as writer:
        writer.write(np.where(np.arange(n) % 20 < 10, 8000, -8000).astype(np.int16))
    return str(path)


async def converse(url: str, script: str, **kw: Any) -> dict[str, Any]:
    settings = CallerSettings(url=url, protocol="twilio", script=script, **{"speak_at": 0.1, "linger": 0.2, **kw})
    dialer = Dialer(settings)
    await dialer.run()
    return dialer.report()


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "script.toml"
    path.write_text(text)
    return str(path)


async def test_a_turn_waits_for_the_reply_and_measures_its_latency(autojump_clock, tmp_path):
    square(tmp_path / "a.wav", 0.2)
    square(tmp_path / "b.wav", 0.1)
    script = write(tmp_path, '[[turns]]\naudio = "a.wav"\n[[turns]]\naudio = "b.wav"\n')
    bot = Bot(reply_frames=25)
    async with serving(bot) as (url, _):
        report = await converse(url, script, reply_gap_ms=300)
    (call,) = report["per_call"]
    first, second = call["turns"]
    # speech in frames 5-14 ends at 0.3 s; the 5th quiet frame leaves at 0.4 s; the reply on the tick after 0.5 s
    assert first == {
        "turn": 1,
        "outcome": "replied",
        "said_ms": pytest.approx(200),
        "latency_ms": pytest.approx(205),
        "reply_ms": pytest.approx(500),
        "barge_in_ms": None,
        "clear_ms": None,
        "stale_ms": None,
    }
    # the reply ends at 1.005 s; 300 ms of silence on, the caller speaks from the frame at 1.32 s for 0.1 s
    assert second["latency_ms"] == pytest.approx(205) and second["reply_ms"] == pytest.approx(500)
    (start_at, _), *_ = bot.of(Start)
    loud = [round(t - start_at, 6) for t, e in bot.of(Media) if e.payload != QUIET]
    assert loud[0] == 0.12 and loud[10] == 1.34 and len(loud) == 15
    conversation = report["conversation"]
    assert (conversation["replied"], conversation["no_reply"], conversation["barge_ins"]) == (2, 0, 0)
    assert conversation["latency_ms"]["count"] == 2 and conversation["latency_ms"]["max"] == pytest.approx(205)
    assert call["outcome"] == "completed" and call["sent"]["stop"]


async def test_an_interruption_measures_barge_in_clear_and_stale_audio(autojump_clock, tmp_path):
    square(tmp_path / "a.wav", 0.2)
    square(tmp_path / "b.wav", 0.3)
    script = write(
        tmp_path, '[[turns]]\naudio = "a.wav"\ninterrupt_after_ms = 100\n[[turns]]\naudio = "b.wav"\nwait = false\n'
    )
    bot = Bot(stale_frames=1)
    async with serving(bot) as (url, _):
        report = await converse(url, script)
    (call,) = report["per_call"]
    first, second = call["turns"]
    # the reply's first frame at 0.505 s; 100 ms on, the caller speaks from the frame beginning at 0.62 s;
    # its 3rd frame leaves at 0.68 s, so the bot clears then, sends one more loud frame at 0.685 s (stale), then silence
    assert first["latency_ms"] == pytest.approx(205)
    assert first["clear_ms"] == pytest.approx(60)
    assert first["barge_in_ms"] == pytest.approx(85)
    assert first["stale_ms"] == pytest.approx(20) and first["reply_ms"] == pytest.approx(10 * 20)
    assert second["outcome"] == "waiting" and second["said_ms"] == pytest.approx(300)
    assert call["clears"] == 1 and len(bot.clears) == 1
    summary = report["conversation"]
    assert summary["barge_ins"] == 1 and summary["barge_in_ms"]["p50"] == pytest.approx(85, abs=0.01)


async def test_a_listening_turn_talks_over_the_greeting(autojump_clock, tmp_path):
    square(tmp_path / "b.wav", 0.3)
    script = write(tmp_path, '[[turns]]\ninterrupt_after_ms = 200\n[[turns]]\naudio = "b.wav"\nwait = false\n')
    bot = Bot(greeting=True, reply_frames=100)
    async with serving(bot) as (url, _):
        report = await converse(url, script, speak_at=0.0)
    listen, spoke = report["per_call"][0]["turns"]
    # the greeting from 0.005 s; the caller speaks from 0.22 s; clear at its 3rd frame, 0.28 s; last loud at 0.265 s
    assert listen["latency_ms"] is None and listen["outcome"] == "replied"
    assert listen["clear_ms"] == pytest.approx(60) and listen["barge_in_ms"] == pytest.approx(65)
    assert listen["stale_ms"] == 0 and listen["reply_ms"] == pytest.approx(14 * 20)
    assert spoke["said_ms"] == pytest.approx(300) and report["per_call"][0]["unexpected_replies"] == 0


async def test_digits_follow_the_speech_and_a_hang_up_does_not_wait(autojump_clock, tmp_path):
    square(tmp_path / "a.wav", 0.2)
    script = write(tmp_path, '[[turns]]\naudio = "a.wav"\ndtmf = "12"\nhangup = true\n')
    bot = Bot()
    async with serving(bot) as (url, _):
        report = await converse(url, script, dtmf_interval=0.1, linger=5)
    (start_at, _), *_ = bot.of(Start)
    assert [(round(t - start_at, 6), e.digit) for t, e in bot.of(Dtmf)] == [(0.3, "1"), (0.4, "2")]
    (stop_at, _), *_ = bot.of(Stop)
    assert round(stop_at - start_at, 6) == 0.4
    call = report["per_call"][0]
    assert call["turns"][0]["outcome"] == "hung_up" and call["sent"]["dtmf"] == 2
    assert call["close"]["by"] == "caller" and call["hangup"] == "stopped"  # no linger after a hang-up


async def test_a_turn_without_a_reply_times_out_and_the_script_goes_on(autojump_clock, tmp_path):
    square(tmp_path / "a.wav", 0.2)
    script = write(tmp_path, '[[turns]]\naudio = "a.wav"\n[[turns]]\naudio = "a.wav"\nwait = false\n')
    bot = Bot(answers=False, idle=False)
    async with serving(bot) as (url, _):
        report = await converse(url, script, reply_timeout=2.0)
    first, second = report["per_call"][0]["turns"]
    assert first["outcome"] == "no_reply" and first["latency_ms"] is None
    (start_at, _), *_ = bot.of(Start)
    loud = [round(t - start_at, 6) for t, e in bot.of(Media) if e.payload != QUIET]
    assert loud[10] == round(0.3 + 2.0 + 0.02, 6)  # the second turn from the frame that begins at 2.3 s
    assert report["conversation"]["no_reply"] == 1 and second["outcome"] == "waiting"


async def test_going_straight_on_speaks_the_next_turn_on_the_next_frame(autojump_clock, tmp_path):
    square(tmp_path / "a.wav", 0.21)  # ends mid-frame: the next turn starts on the frame after
    script = write(tmp_path, '[[turns]]\naudio = "a.wav"\nwait = false\n[[turns]]\naudio = "a.wav"\nwait = false\n')
    bot = Bot(answers=False)
    async with serving(bot) as (url, _):
        await converse(url, script)
    (start_at, _), *_ = bot.of(Start)
    media = [(round(t - start_at, 6), e.payload) for t, e in bot.of(Media)]
    loud = [t for t, p in media if p != QUIET]
    assert loud == [round(0.12 + 0.02 * n, 6) for n in range(11)] + [round(0.34 + 0.02 * n, 6) for n in range(11)]
    ends = dict(media)[0.32]
    assert ends[:80] != QUIET[:80] and ends[80:] == QUIET[80:]  # the speech's last 10 ms, then silence


async def test_synthesized_turns_inline(autojump_clock):
    bot = Bot()
    async with serving(bot) as (url, _):
        settings = CallerSettings(url=url, protocol="twilio", turns=["Hello there.", "Goodbye.|wait=false"], linger=0.2)
        dialer = Dialer(settings)
        await dialer.run()
    first, second = dialer.report()["per_call"][0]["turns"]
    assert first["outcome"] == "replied" and 100 < first["latency_ms"] < 320  # 5 quiet frames, 100 ms, a tick
    assert 400 < first["said_ms"] < 1000 and 300 < second["said_ms"] < 1000


# -- through the real bridge: Server, call runner, a pipeline with barge_in -----------------------------


async def test_a_barge_in_through_the_served_call_path(autojump_clock, tmp_path):
    square(tmp_path / "b.wav", 0.5)
    script = write(tmp_path, '[[turns]]\ninterrupt_after_ms = 400\n[[turns]]\naudio = "b.wav"\nwait = false\n')
    config = parse_config(BARGE_IN)
    settings = CallSettings(path="/twilio", protocol="twilio", pipelines=("caller", "bot"))
    endpoint = CallEndpoint("twilio", settings, call_runner(config, {}, {}), public_url=None)
    async with serving(endpoint) as (url, server):
        report = await converse(url, script, speak_at=0.0)
        await server.wait_idle()
    listen, _ = report["per_call"][0]["turns"]
    # the detector needs 60 ms of speech; the pacer's frame in flight fades out: one frame of stale audio at most
    assert listen["clear_ms"] == pytest.approx(60, abs=1)
    assert 60 <= listen["barge_in_ms"] <= 60 + 60 and listen["stale_ms"] <= 20
    assert 400 <= listen["reply_ms"] <= 400 + 120
    (record,) = server.calls
    assert record.report["link"]["control"]["clears"] == 1
