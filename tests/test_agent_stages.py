"""agent_out and agent_in: their cores, and a call's two pipelines against the agent simulator over loopback.

Each call is a :class:`rtstream.calls.Call` built for a test route with the provider's start
already read; the caller's pipeline is scripted PCM16 16 kHz in real-time 20 ms packets
(synthesized speech and silence) into ``agent_out``, the bot's pipeline is ``agent_in`` into a
collecting sink. Everything runs on virtual time.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import trio
from click.testing import CliRunner
from sims import upgrading

from rtstream.audio.codec import from_float32
from rtstream.calls import CURRENT_CALL, Call, CallSettings
from rtstream.cli import main
from rtstream.control import CURRENT_CONTROL, CallControl
from rtstream.errors import FormatMismatch
from rtstream.frames import (
    AudioChunk,
    AudioFormat,
    Clear,
    Dtmf,
    Encoding,
    Frame,
    TextToken,
    UtteranceEnd,
    UtteranceStart,
)
from rtstream.httpserver import Request, Response, Upgrade
from rtstream.params import ParamError
from rtstream.pipeline import assemble
from rtstream.report import PipelineReport
from rtstream.runner import RunControl, run_pipeline
from rtstream.simulators.agent import AgentServer, AgentSettings
from rtstream.simulators.speech import synthesize
from rtstream.simulators.websocket import serve
from rtstream.stages.agent import LINKS, AgentIn, AgentOut, Downlink, Uplink
from rtstream.stages.converter import Converter
from rtstream.testing import CollectingSink, ScriptedSource, collected
from rtstream.websocket import WebSocket
from rtstream.wire.agent import FORMAT, ReplyAudio, Transcript, TurnEnd, TurnStart
from rtstream.wire.agent import AgentServer as AgentSide
from rtstream.wire.agent import Dtmf as DtmfUp
from rtstream.wire.agent import Start as Start_
from rtstream.wire.telephony import Start

SCRIPT = """
[[turns]]
caller = "Hello there, I need a table."
agent = "Sure, for how many people?"

[[turns]]
caller = "Four."
agent = "Four it is."
"""
PACKET = 320
PHONE = AudioFormat(Encoding.PCM_MULAW, 8000)


def speech(text: str) -> np.ndarray:
    return from_float32(synthesize(text, FORMAT.sample_rate)[0], FORMAT.encoding)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * FORMAT.sample_rate), dtype=np.int16)


def caller_script(
    *pieces: np.ndarray, dtmf_at: float | None = None, fmt: AudioFormat = FORMAT
) -> list[tuple[float, Frame]]:
    """The caller's audio (PCM16 16 kHz, or converted to ``fmt``) in 20 ms packets at real time, and a key press."""
    audio = np.concatenate(pieces)
    if fmt != FORMAT:  # every other sample: the energy is what the agent listens to
        audio = from_float32(audio[:: FORMAT.sample_rate // fmt.sample_rate].astype(np.float32) / 32768, fmt.encoding)
    packet = fmt.samples_in(20)
    script: list[tuple[float, Frame]] = [
        (i / fmt.sample_rate, AudioChunk(audio[i : i + packet], fmt, pts=i)) for i in range(0, len(audio), packet)
    ]
    if dtmf_at is not None:
        script.append((dtmf_at, Dtmf("5")))
        script.sort(key=lambda item: item[0])
    return script


def make_call() -> Call:
    call = Call("/test", CallSettings(path="/test", protocol="twilio", pipelines=("caller", "bot")), None)
    call.start = Start(stream_id="MZ1", call_id="CA1", custom_parameters={"lang": "en"})
    return call


class CallerSource(ScriptedSource):
    """Plays the caller's script to its end whatever stops the call, as telephony_in drains the provider's audio."""

    stoppable = False


@attrs.define
class Ran:
    caller: PipelineReport
    bot: PipelineReport
    frames: list[Frame]
    elements: dict[str, Sequence[Any]]

    def stats(self, pipeline: str, index: int) -> Any:
        return self.elements[pipeline][index].statistics()

    def of(self, kind: type) -> list:
        return [f for f in self.frames if isinstance(f, kind)]

    def audio(self, utterance: str) -> bytes:
        return b"".join(f.tobytes() for f in self.frames if isinstance(f, AudioChunk) and f.utterance == utterance)


async def converse(
    url: str,
    script: list[tuple[float, Frame]],
    *,
    control: CallControl | None = None,
    during: Callable[[Any], Any] | None = None,
    convert: bool = False,
    **connection: Any,
) -> Ran:
    """Run the call's two pipelines against the agent at ``url``; ``during(bot_pipeline)`` runs beside them.

    With ``convert`` the script is telephony audio (μ-law 8 kHz) and a converter feeds agent_out.
    """
    call = make_call()
    tokens = CURRENT_CALL.set(call), CURRENT_CONTROL.set(control)
    try:
        out = AgentOut(url=url, **connection)
        source = CallerSource(script=script, format=PHONE if convert else FORMAT)
        chain = [source, Converter(), out] if convert else [source, out]
        caller = assemble("caller", chain, capacities=[4] * (len(chain) - 1))
        bot = assemble(
            "bot",
            [AgentIn(url=url, **{k: v for k, v in connection.items() if k != "hold_ms"}), CollectingSink()],
            capacities=[4],
        )
        reports: dict[str, PipelineReport] = {}
        stopping = RunControl(grace=1.0)

        async def run(pipeline: Any) -> None:
            reports[pipeline.name] = await run_pipeline(pipeline, stopping)

        async def hang_up() -> None:  # with the caller's last audio, the call's sources stop (as in a served call)
            await trio.sleep(script[-1][0])
            stopping.stop()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, caller)
            nursery.start_soon(run, bot)
            nursery.start_soon(hang_up)
            if during is not None:
                nursery.start_soon(during, bot)
    finally:
        CURRENT_CALL.reset(tokens[0])
        CURRENT_CONTROL.reset(tokens[1])
    frames = [f for _, f in collected(bot)]
    return Ran(reports["caller"], reports["bot"], frames, {"caller": caller.elements, "bot": bot.elements})


@contextlib.asynccontextmanager
async def agent(
    tmp_path: Path, handler: Callable[[Any], Any] | None = None, api_key: str | None = None, **settings: Any
) -> AsyncIterator[tuple[str, AgentServer]]:
    """The agent simulator (or ``handler``) on a free loopback port: its URL and server."""
    path = tmp_path / "script.toml"
    path.write_text(SCRIPT)
    server = AgentServer(AgentSettings(script=str(path), **settings), api_key=api_key)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, handler or server.route, "127.0.0.1", 0)
        yield f"ws://127.0.0.1:{port}/agent", server
        nursery.cancel_scope.cancel()


TWO_TURNS = (silence(0.3), speech("Hello there, I need a table."), silence(3.0), speech("Four."), silence(3.0))


# -- the cores ------------------------------------------------------------------------------------


def chunk(samples: int) -> AudioChunk:
    return AudioChunk(np.zeros(samples, dtype=np.int16), FORMAT)


def test_the_uplink_holds_a_bounded_amount_of_audio_and_drops_the_oldest() -> None:
    uplink = Uplink(hold=1000)
    for _ in range(5):
        uplink.audio(chunk(320))
    uplink.control(DtmfUp("1"))
    batch = uplink.take()
    assert [samples for _, samples in batch] == [320, 320, 320, 0]
    assert {k: (v.frames, v.samples) for k, v in uplink.drops.snapshot().items()} == {"link_down": (2, 640)}
    uplink.connected = True
    for _ in range(4):
        uplink.audio(chunk(320))
    assert uplink.drops.snapshot()["backlog"].samples == 320
    assert uplink.take() and uplink.take() == []


def test_the_downlink_turns_a_reply_into_an_utterance_of_frames() -> None:
    side, down = AgentSide(), Downlink("agent", 1 << 20)
    down.connected()
    messages = [
        side.send(Transcript(0, "hi")),
        side.send(TurnStart(0, "Hello.")),
        '{"type":"llm_token","turn":0,"text":"Hello."}',
        side.send(ReplyAudio(b"\1\0\2\0")),
        '{"type":"llm_done","turn":0}',
        side.send(TurnEnd(0)),
    ]
    frames = [f for i, m in enumerate(messages) for f in down.receive(m, float(i))]
    assert frames[0] == UtteranceStart("agent-1-0", "Hello.")
    assert frames[1] == TextToken("Hello.", "agent-1-0")
    assert isinstance(frames[2], AudioChunk) and frames[2].utterance == "agent-1-0" and frames[2].arrival == 3.0
    assert frames[3:] == [TextToken("", "agent-1-0", final=True), UtteranceEnd("agent-1-0")]
    assert down.counts.turn.summary().p50 == pytest.approx(3.0, rel=0.02)  # transcript at 0, first audio at 3
    assert down.counts.first_token.summary().p50 == pytest.approx(2.0, rel=0.02)


def test_an_agent_barge_in_clears_ends_the_reply_and_drops_its_late_audio() -> None:
    down = Downlink("agent", 1 << 20)
    down.connected()
    down.receive('{"type":"turn_start","turn":3}', 0.0)
    assert down.receive('{"type":"barge_in","turn":3}', 0.1) == [Clear("agent_barge_in"), UtteranceEnd("agent-1-3")]
    assert down.receive(b"\0\0\0\0", 0.2) == []
    assert down.receive('{"type":"barge_in","turn":3}', 0.3) == []
    assert down.receive('{"type":"turn_end","turn":3,"interrupted":true}', 0.4) == []
    assert down.counts.drops.snapshot()["barged_in"].samples == 2
    assert down.cut_utterance == "agent-1-3"


def test_a_lost_connection_ends_the_open_reply_and_the_next_connection_has_new_utterances() -> None:
    down = Downlink("agent", 1 << 20)
    down.connected()
    down.receive('{"type":"turn_start","turn":0}', 0.0)
    assert down.lost() == [UtteranceEnd("agent-1-0")]
    assert down.lost() == []
    down.connected()
    assert down.receive('{"type":"turn_start","turn":0}', 1.0) == [UtteranceStart("agent-2-0")]
    assert down.cut() == (0, "agent-2-0")
    assert down.cut() is None
    assert (down.counts.replies_lost, down.counts.bridge_barge_ins) == (1, 1)


def test_a_clear_after_the_reply_finished_or_twice_cuts_nothing() -> None:
    down = Downlink("agent", 1 << 20)
    down.connected()
    down.receive('{"type":"turn_start","turn":0}', 0.0)
    down.receive(b"\0\0", 0.1)
    down.receive('{"type":"turn_end","turn":0}', 0.2)
    assert down.cut() is None  # nothing of it is left to stop at the agent
    down.receive('{"type":"turn_start","turn":1}', 0.3)
    assert down.cut() == (1, "agent-1-1")
    assert down.cut() is None  # a second clear 50 ms later
    assert down.receive(b"\0\0", 0.4) == [] and down.counts.bridge_barge_ins == 1


# -- over loopback --------------------------------------------------------------------------------


async def test_a_conversation_of_two_turns(autojump_clock: Any, tmp_path: Path) -> None:
    """The caller's μ-law 8 kHz through a converter, as from telephony_in; the agent hears two turns and answers each."""
    async with agent(tmp_path) as (url, server):
        ran = await converse(url, caller_script(*TWO_TURNS, dtmf_at=5.0, fmt=PHONE), convert=True)
    assert "failed" not in (ran.caller.status, ran.bot.status)  # completed, or stopped by the hang-up
    starts = ran.of(UtteranceStart)
    assert starts == [
        UtteranceStart("agent-1-0", "Sure, for how many people?"),
        UtteranceStart("agent-1-1", "Four it is."),
    ]
    assert ran.of(UtteranceEnd) == [UtteranceEnd("agent-1-0"), UtteranceEnd("agent-1-1")]
    assert ran.audio("agent-1-0") == speech("Sure, for how many people?").tobytes()
    assert ran.audio("agent-1-1") == speech("Four it is.").tobytes()
    tokens = [t for t in ran.of(TextToken) if t.utterance == "agent-1-0"]
    assert "".join(t.text for t in tokens) == "Sure, for how many people?" and tokens[-1].final
    out, into = ran.stats("caller", -1), ran.stats("bot", 0)
    assert (out.connects, out.disconnects, out.failures, out.dtmf_sent, out.drops) == (1, 0, {}, 1, {})
    assert out.seconds_sent == pytest.approx(sum(len(p) for p in TWO_TURNS) / 16000, abs=0.02)
    assert (into.transcripts, into.replies, into.turn_ms.count, into.malformed) == (2, 2, 2, {})
    assert 300 + 100 < into.turn_ms.p50 < 600  # the simulated thinking and first byte, then one chunk at rtf 3
    report = server.report()
    assert (report["connections"], report["turns"], report["stopped"], report["barge_ins"]) == (1, 2, 1, 0)
    (call,) = report["calls"]
    assert (call["call_id"], call["dtmf"]) == ("CA1", "5")
    assert [t["transcript"] for t in call["turns"]] == ["Hello there, I need a table.", "Four."]


async def test_the_agent_barging_in_clears_the_reply_in_band(autojump_clock: Any, tmp_path: Path) -> None:
    script = caller_script(speech("Hello there, I need a table."), silence(0.9), speech("Four."), silence(3.0))
    async with agent(tmp_path, rtf=1.0) as (url, server):
        ran = await converse(url, script)
    clear = ran.frames.index(Clear("agent_barge_in"))
    assert ran.frames[clear + 1] == UtteranceEnd("agent-1-0")
    assert 0 < len(ran.audio("agent-1-0")) < len(speech("Sure, for how many people?").tobytes())
    assert ran.audio("agent-1-1") == speech("Four it is.").tobytes()
    assert ran.stats("bot", 0).agent_barge_ins == 1
    assert server.report()["barge_ins_heard"] == 1


async def test_on_the_control_path_barge_ins_go_both_ways(autojump_clock: Any, tmp_path: Path) -> None:
    """The agent's barge-in clears the call at once (no in-band Clear); a clear from rtstream reaches the agent."""
    control = CallControl()
    script = caller_script(speech("Hello there, I need a table."), silence(0.9), speech("Four."), silence(6.0))

    async def clear_the_second_reply(bot: Any) -> None:
        receiver = bot.elements[0]
        while (
            receiver.statistics().chunks == 0
            or receiver.link.downlink.open is None
            or receiver.link.downlink.open[0] != 1
        ):
            await trio.sleep(0.01)
        control.clear("vad", trio.current_time())

    async with agent(tmp_path, rtf=1.0) as (url, server):
        ran = await converse(url, script, control=control, during=clear_the_second_reply)
    assert ran.of(Clear) == [Clear("agent_barge_in"), Clear("vad")]  # each once, from the control path (none in-band)
    assert control.clears == 2
    assert {"agent-1-0", "agent-1-1"} <= control.cleared
    into, out = ran.stats("bot", 0), ran.stats("caller", -1)
    assert (into.agent_barge_ins, into.bridge_barge_ins, out.barge_ins_sent) == (1, 1, 1)
    report = server.report()
    assert (report["barge_ins"], report["barge_ins_heard"]) == (2, 1)


async def test_the_agent_closing_mid_reply_ends_the_reply_and_the_link_reconnects(
    autojump_clock: Any, tmp_path: Path
) -> None:
    async with agent(tmp_path, disconnect_after=2) as (url, _):
        ran = await converse(url, caller_script(*TWO_TURNS), backoff_initial=0.05)
    out, into = ran.stats("caller", -1), ran.stats("bot", 0)
    assert out.connects >= 2 and out.disconnects >= 1
    assert into.replies_lost >= 1
    starts = [s.utterance for s in ran.of(UtteranceStart)]
    assert starts[:2] == ["agent-1-0", "agent-2-0"]  # the second turn on a new connection (the simulator starts over)
    assert [e.utterance for e in ran.of(UtteranceEnd)][:2] == starts[:2]
    assert "failed" not in (ran.caller.status, ran.bot.status)  # completed, or stopped by the hang-up


async def test_malformed_agent_messages_are_counted_by_reason_and_logged_once(
    autojump_clock: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def bad_agent(ws: WebSocket) -> None:
        await ws.receive()  # start
        messages: list[str | bytes] = ["nope", "nope", '{"type":"hello"}', b"\0\0", '{"type":"turn_start","turn":0}']
        for message in [*messages, b"abc", b"\1\0"]:
            await ws.send(message)
        await ws.send('{"type":"turn_end","turn":0}')
        with contextlib.suppress(Exception):
            while True:
                await ws.receive()

    async with agent(tmp_path, handler=upgrading(bad_agent)) as (url, _):
        with caplog.at_level(logging.WARNING, "rtstream.stages.agent"):
            ran = await converse(url, caller_script(silence(1.0)))
    into = ran.stats("bot", 0)
    assert into.malformed == {"audio_outside_turn": 1, "bad_json": 2, "odd_length": 1, "unknown_type": 1}
    assert ran.of(UtteranceStart) == [UtteranceStart("agent-1-0")] and len(ran.of(AudioChunk)) == 1
    assert sum("malformed" in r.getMessage() for r in caplog.records) == 4
    assert ran.bot.status != "failed"


async def test_an_agent_that_never_answers_is_counted_and_the_call_goes_on(autojump_clock: Any, tmp_path: Path) -> None:
    async def mute_agent(ws: WebSocket) -> None:
        with contextlib.suppress(Exception):
            while True:
                await ws.receive()

    async with agent(tmp_path, handler=upgrading(mute_agent)) as (url, _):
        ran = await converse(url, caller_script(speech("Hello?"), silence(3.0)), answer_timeout=1.0)
    assert ran.stats("caller", -1).failures == {"no_answer": 1}
    assert ran.frames == []
    assert "failed" not in (ran.caller.status, ran.bot.status)  # completed, or stopped by the hang-up


async def test_caller_audio_while_the_agent_is_busy_is_held_within_its_bound(
    autojump_clock: Any, tmp_path: Path
) -> None:
    path = tmp_path / "script.toml"
    path.write_text(SCRIPT)
    server = AgentServer(AgentSettings(script=str(path)))
    attempts = 0

    async def flaky(request: Request) -> Response | Upgrade:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            return Response.text(503)
        return await server.route(request)

    async with agent(tmp_path, handler=flaky) as (url, _):
        ran = await converse(url, caller_script(*TWO_TURNS), backoff_initial=1.0, backoff_max=1.0, hold_ms=200)
    out = ran.stats("caller", -1)
    assert (out.connects, out.disconnects, out.failures) == (1, 0, {})  # a 503 is retried
    held_away = out.drops["link_down"].samples
    assert 0.3 * 16000 < held_away < 1.0 * 16000  # the 0.5-1 s of backoff, less the 200 ms held
    assert out.seconds_sent * 16000 + held_away == pytest.approx(sum(len(p) for p in TWO_TURNS), abs=PACKET)
    assert ran.stats("bot", 0).replies == 2


async def test_an_agent_that_refuses_fails_the_bot_pipeline(autojump_clock: Any, tmp_path: Path) -> None:
    async with agent(tmp_path, api_key="right") as (url, _):
        ran = await converse(url, caller_script(silence(1.0)), api_key="wrong")
    out = ran.stats("caller", -1)
    assert out.failures == {"refused": 1}
    assert ran.bot.status == "failed" and "refused with HTTP 401" in (ran.bot.error or "")
    assert ran.caller.status != "failed"
    assert sum(d.samples for d in out.drops.values()) == 16000


async def test_audio_held_across_a_reconnect_is_bounded_and_counted(autojump_clock: Any, tmp_path: Path) -> None:
    path = tmp_path / "script.toml"
    path.write_text(SCRIPT)
    server = AgentServer(AgentSettings(script=str(path)))
    attempts = 0

    async def read_one_and_close(ws: WebSocket) -> None:
        await ws.receive()
        await ws.close()

    async def drops_the_first(request: Request) -> Response | Upgrade:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            return Upgrade(read_one_and_close)
        return await server.route(request)

    async with agent(tmp_path, handler=drops_the_first) as (url, _):
        ran = await converse(url, caller_script(*TWO_TURNS), backoff_initial=1.0, backoff_max=1.0, hold_ms=200)
    out = ran.stats("caller", -1)
    assert (out.connects, out.disconnects) == (2, 1)
    held_away = out.drops["link_down"].samples
    # Most of the ~0.5-1 s down, less the 200 ms held. How long it is down depends on when the
    # loopback close is seen on the autojumping clock (0.3-0.7 s over many runs), so the bounds are wide.
    assert 0.1 * 16000 < held_away < 1.0 * 16000
    assert out.seconds_sent * 16000 + held_away == pytest.approx(sum(len(p) for p in TWO_TURNS), abs=PACKET)
    assert ran.stats("bot", 0).replies == 2


async def test_an_unreachable_agent_fails_the_bot_pipeline(autojump_clock: Any) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    ran = await converse(
        f"ws://127.0.0.1:{port}/agent", caller_script(silence(0.5)), reconnect_attempts=1, backoff_initial=0.01
    )
    assert ran.stats("caller", -1).failures == {"unreachable": 1}
    assert ran.bot.status == "failed"
    assert ran.caller.status != "failed"


async def test_an_agent_that_hangs_up_unheard_every_time_is_given_up(autojump_clock: Any, tmp_path: Path) -> None:
    async def hangs_up(ws: WebSocket) -> None:
        await ws.close()

    async with agent(tmp_path, handler=upgrading(hangs_up)) as (url, _):
        ran = await converse(url, caller_script(silence(2.0)), reconnect_attempts=2, backoff_initial=0.01)
    out = ran.stats("caller", -1)
    assert (out.connects, out.disconnects, out.failures) == (3, 3, {"unreachable": 1})
    assert ran.bot.status == "failed" and "lost 3 connections in a row" in (ran.bot.error or "")


def test_both_ends_must_agree_on_the_connection() -> None:
    token = CURRENT_CALL.set(make_call())
    try:
        AgentOut(url="ws://127.0.0.1:1/agent").open(FORMAT, None)
        with pytest.raises(ParamError, match=r"^url: agent_in and agent_out on link 'agent' must give the same"):
            AgentIn(url="ws://127.0.0.1:2/agent").open(None, FORMAT)
        AgentIn(url="ws://127.0.0.1:2/agent", link="other").open(None, FORMAT)
    finally:
        CURRENT_CALL.reset(token)


def test_a_call_s_links_go_with_the_call() -> None:
    call = make_call()
    token = CURRENT_CALL.set(call)
    try:
        link = AgentIn(url="ws://127.0.0.1:1/agent").open(None, FORMAT).link
    finally:
        CURRENT_CALL.reset(token)
    assert link.start == Start_(call_id="CA1", stream_id="MZ1", parameters={"lang": "en"})
    assert LINKS[call] == {"agent": link}
    gone = weakref.ref(call)
    del call
    gc.collect()
    assert gone() is None  # the link does not keep its call alive


def test_the_stages_run_only_in_a_call() -> None:
    with pytest.raises(FormatMismatch, match=r"^agent_out runs only inside a call"):
        AgentOut(url="ws://127.0.0.1:1/agent").open(FORMAT, None)


SERVED = """
[server]
drain = 5.0

[services.agent]
type = "agent"
first_token_latency = 0.1

[services.caller]
type = "caller"
url = "${server.url}/twilio"
protocol = "twilio"
duration = 7.0
speak_at = 0.3
text = "Hello, I would like to check my order."

[calls.twilio]
path = "/twilio"
protocol = "twilio"
pipelines = ["caller", "bot"]

[pipelines.caller]
[[pipelines.caller.stages]]
type = "telephony_in"
[[pipelines.caller.stages]]
type = "converter"
[[pipelines.caller.stages]]
type = "agent_out"
url = "${services.agent.url}"

[pipelines.bot]
[[pipelines.bot.stages]]
type = "agent_in"
url = "${services.agent.url}"
[[pipelines.bot.stages]]
type = "converter"
[[pipelines.bot.stages]]
type = "chunker"
frame_ms = 20
[[pipelines.bot.stages]]
type = "pacer"
frame_ms = 20
[[pipelines.bot.stages]]
type = "telephony_out"
"""


@pytest.mark.slow
def test_a_served_twilio_call_is_answered_by_the_agent(tmp_path: Path) -> None:
    """rtstream run: the caller simulator dials /twilio, speaks, and hears the agent's reply (about 8 s of real time)."""
    path, report_path = tmp_path / "p.toml", tmp_path / "report.json"
    path.write_text(SERVED)
    result = CliRunner().invoke(main, ["run", str(path), "--report", str(report_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    agent = report["services"]["agent"]
    assert (agent["connections"], agent["turns"], agent["stopped"], agent["barge_ins"]) == (1, 1, 1, 0)
    (call,) = report["server"]["calls"]
    caller, bot = call["report"]["pipelines"]
    assert (caller["status"], bot["status"]) == ("completed", "stopped")  # the hang-up stops the bot
    replies = bot["stages"][0]["statistics"]
    assert (replies["replies"], replies["transcripts"]) == (1, 1)
    assert bot["stages"][-1]["statistics"]["seconds_sent"] > 2  # the whole reply reached the provider
