"""Misbehaving peers, one per scenario, against cartesia_tts and telephony_ws.

Each peer is a few lines on rtstream's own server side (or a raw socket where it misbehaves
below WebSocket). Each test asserts what was counted, by reason, and how the pipeline ended:
a failing link gives up after its attempts with a one-line reason, a flood of garbage is
counted and skipped, memory stays bounded, and no peer can put its own long names in a
report. Virtual time (``autojump_clock``) except for the runs through the CLI.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from wsproto.handshake import generate_accept_token

from rtstream.frames import AudioFormat, Encoding
from rtstream.httpserver import Request, Upgrade, bound_port, open_listener, serve
from rtstream.pipeline import assemble
from rtstream.report import PipelineReport
from rtstream.runner import run_pipeline
from rtstream.stage import Stage
from rtstream.stages.cartesia import CartesiaTTS
from rtstream.stages.null import NullSink
from rtstream.stages.telephony import TelephonySink
from rtstream.stages.tone import Tone
from rtstream.websocket import CloseReason, ConnectionClosed, WebSocket
from rtstream.wire.cartesia import CartesiaService, Chunk, Done, Error
from rtstream.wire.cartesia import Request as TtsRequest
from rtstream.wire.telephony import PROTOCOLS
from rtstream.wire.telephony.base import Start

SECRET = "k3y-in-the-path-0123456789"
"""Part of every peer's URL path: no report or error may show it."""
FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}
AUDIO = b"\x01\x00" * 400
"""One chunk: 50 ms of 8 kHz PCM16."""
MULAW8K = AudioFormat(Encoding.PCM_MULAW, 8000)


@attrs.define
class Peer:
    """What a hostile peer saw: its connections and how each ended at its side."""

    url: str = ""
    connections: int = 0
    ended: list[CloseReason | None] = attrs.Factory(list)


Behaviour = Callable[[WebSocket, Peer], Awaitable[None]]


@asynccontextmanager
async def websocket_peer(behaviour: Behaviour) -> AsyncIterator[Peer]:
    """A WebSocket server that runs ``behaviour`` on every connection, recording how each ended."""
    peer = Peer()

    async def session(ws: WebSocket) -> None:
        peer.connections += 1
        try:
            with contextlib.suppress(ConnectionClosed):
                await behaviour(ws, peer)
        finally:
            peer.ended.append(ws.closed)

    async def route(request: Request) -> Upgrade:
        return Upgrade(session)

    async with trio.open_nursery() as nursery:
        listener = await open_listener("127.0.0.1", 0)
        peer.url = f"ws://127.0.0.1:{bound_port(listener)}/v1/{SECRET}"
        await nursery.start(
            lambda task_status: serve([listener], route, handler_nursery=nursery, task_status=task_status)
        )
        yield peer
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def socket_peer(
    behaviour: Callable[[trio.SocketStream, Peer], Awaitable[None]], *, receive_buffer: int | None = None
) -> AsyncIterator[Peer]:
    """A TCP server that runs ``behaviour`` on every connection: for peers that misbehave below WebSocket."""
    peer = Peer()

    async def handle(stream: trio.SocketStream) -> None:
        peer.connections += 1
        with contextlib.suppress(trio.BrokenResourceError):  # we hung up on it
            await behaviour(stream, peer)

    async with trio.open_nursery() as nursery:
        listener = await open_listener("127.0.0.1", 0)
        if receive_buffer is not None:  # a small window, taken by the connections it accepts
            listener.socket.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, receive_buffer)
        nursery.start_soon(trio.serve_listeners, handle, [listener])
        peer.url = f"ws://127.0.0.1:{bound_port(listener)}/v1/{SECRET}"
        yield peer
        nursery.cancel_scope.cancel()


async def until_closed(ws: WebSocket) -> None:
    """Read and ignore everything until the connection ends."""
    while True:
        await ws.receive()


async def upgrade(stream: trio.SocketStream) -> None:
    """Answer the client's upgrade request with 101 by hand."""
    request = b""
    while b"\r\n\r\n" not in request:
        request += await stream.receive_some(4096)
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key")
    )
    await stream.send_all(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + generate_accept_token(key) + b"\r\n\r\n"
    )


# -- the two stages under attack -------------------------------------------------------------


def tts(url: str, **kw: Any) -> CartesiaTTS:
    settings: dict[str, Any] = {
        "url": url,
        "transcript": "Hello there.",
        "sample_rate": 8000,
        "encoding": Encoding.PCM_S16LE,
        "timestamps": False,
        "response_timeout": 0.5,
        "reconnect_attempts": 2,
        **FAST,
        **kw,
    }
    return CartesiaTTS(**settings)


def phone(url: str, **kw: Any) -> TelephonySink:
    settings: dict[str, Any] = {"url": url, "reconnect_attempts": 2, "connect_timeout": 0.3, **FAST, **kw}
    return TelephonySink(**settings)


def tone(seconds: float = 1.0, **kw: Any) -> Tone:
    return Tone(sample_rate=8000, duration=seconds, **kw)


async def run(*stages: Stage) -> tuple[PipelineReport, Mapping[str, Any]]:
    """Run the stages as one pipeline; its report and the network stage's statistics."""
    report = await run_pipeline(assemble("hostile", list(stages)))
    network = next(s for s in report.stages if s.type in ("cartesia_tts", "telephony_ws"))
    assert SECRET not in json.dumps(attrs.asdict(report), default=str)
    return report, network.statistics


def failed_with(report: PipelineReport, stage: str, reason: str) -> None:
    assert report.status == "failed"
    assert report.error is not None
    assert re.fullmatch(rf"pipeline 'hostile', {stage} failed: {reason}", report.error), report.error


def reply(message: str | bytes, responses: Callable[[str], list]) -> list[str]:
    """The service's messages answering one request (``responses`` of its context)."""
    request = CartesiaService().receive(message)
    assert isinstance(request, TtsRequest)
    return [CartesiaService().send(r) for r in responses(request.context or "")]


def speech(context: str) -> list:
    return [Chunk(context, AUDIO), Chunk(context, AUDIO), Done(context)]


def twilio_start() -> list[str | bytes]:
    """Twilio's connected and start messages for stream MZ1."""
    wire = PROTOCOLS["twilio"].provider(MULAW8K, "MZ1")
    start = Start(
        stream_id="MZ1",
        call_id="CA1",
        account_id=wire.example_account,
        format=MULAW8K,
        tracks=("inbound",),
        caller="+1",
        called="+2",
    )
    return wire.opening(start)


# -- accept, then close at once (1011) -------------------------------------------------------


async def test_tts_that_accepts_and_closes_at_once_fails_after_its_attempts(autojump_clock):
    async def close_at_once(ws: WebSocket, peer: Peer) -> None:
        await ws.close(1011, "overloaded")

    async with websocket_peer(close_at_once) as peer:
        report, stats = await run(tts(peer.url), NullSink())
    failed_with(
        report,
        r"stage 1 \(cartesia_tts\)",
        r"LinkFailed: ws://127\.0\.0\.1:\d+: the peer closed the connection with 1011 \(overloaded\); "
        r"gave up after 3 failed attempts in a row",
    )
    assert peer.connections == stats["connects"] == 3 and stats["chunks"] == 0


async def test_telephony_peer_that_accepts_and_closes_at_once_fails_after_its_attempts(autojump_clock):
    async def close_at_once(ws: WebSocket, peer: Peer) -> None:
        await ws.close(1011, "")

    async with websocket_peer(close_at_once) as peer:
        report, stats = await run(tone(2.0), phone(peer.url))
    failed_with(
        report,
        r"stage 2 \(telephony_ws\)",
        r"LinkFailed: ws://127\.0\.0\.1:\d+: the peer closed the connection with 1011; "
        r"gave up after 3 failed attempts in a row",
    )
    assert peer.connections == stats["connects"] == 3 and stats["disconnects"] == 3


async def test_a_peer_that_carries_media_for_a_while_between_drops_is_retried_for_ever(autojump_clock):
    """Six drops, two retries allowed: each connection carried a second of audio first, so none trips the limit."""

    async def drop_after_a_while(ws: WebSocket, peer: Peer) -> None:
        if peer.connections <= 6:
            with trio.move_on_after(1.5):
                await until_closed(ws)
            await ws.close(1011, "")
        else:
            await until_closed(ws)

    async with websocket_peer(drop_after_a_while) as peer:
        report, stats = await run(tone(12.0), phone(peer.url))
    assert report.status == "completed", report.error
    assert stats["connects"] == 7 and stats["disconnects"] == 6 and stats["seconds_sent"] > 8


# -- handshake, then silence (and a peer that never reads) -----------------------------------


@pytest.mark.parametrize("reads", [True, False], ids=["reads", "never_reads"])
async def test_tts_that_never_answers_times_out_counts_and_fails(autojump_clock, reads):
    async def silent(ws: WebSocket, peer: Peer) -> None:
        if reads:
            await until_closed(ws)
        else:
            await trio.sleep_forever()

    async with websocket_peer(silent) as peer:
        report, stats = await run(tts(peer.url), NullSink())
    failed_with(
        report,
        r"stage 1 \(cartesia_tts\)",
        r"LinkFailed: ws://127\.0\.0\.1:\d+: no answer within 0\.5 s; gave up after 3 failed attempts in a row",
    )
    assert stats["timeouts"] == stats["connects"] == stats["contexts"] == 3 and stats["chunks"] == 0
    if reads:  # we left each connection with a Close frame, not by vanishing
        assert peer.ended == [CloseReason(1000, "")] * 3


async def test_telephony_peer_that_never_starts_the_stream_delivers_nothing(autojump_clock):
    """Twilio's stream is named by its start message; a peer that never sends it gets no audio, all counted."""
    async with websocket_peer(lambda ws, peer: until_closed(ws)) as peer:
        report, stats = await run(tone(3.0, speed=0, encoding=Encoding.PCM_MULAW), phone(peer.url, protocol="twilio"))
    assert report.status == "failed"
    assert report.error == "pipeline 'hostile', nothing delivered: stage 2 (telephony_ws) delivered no audio"
    drops = stats["drops"]
    assert stats["seconds_sent"] == 0 and drops["outage"].samples + drops["unsent_at_end"].samples == 3 * 8000


async def test_telephony_peer_that_never_reads_backs_our_sends_up_bounded_and_counted(autojump_clock):
    """The peer's window closes; the sink holds at most hold_ms, drops the rest as backlog, and ends in bounded time."""

    async def never_read(stream: trio.SocketStream, peer: Peer) -> None:
        await upgrade(stream)
        await trio.sleep_forever()

    async with socket_peer(never_read, receive_buffer=4096) as peer:
        started = trio.current_time()
        tracemalloc.start()
        try:
            _, stats = await run(
                Tone(sample_rate=16000, duration=180, speed=0, chunk_ms=100), phone(peer.url, hold_ms=500)
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert set(stats["drops"]) == {"backlog", "unsent_at_end", "send_failed"}  # the last: cut off mid-send at the end
    dropped = sum(drop.samples for drop in stats["drops"].values())
    assert dropped > 60 * 16000  # most of the three minutes never left
    assert stats["seconds_sent"] + dropped / 16000 == pytest.approx(180)
    assert peak < 30 << 20
    assert trio.current_time() - started < 10  # drain_timeout, linger and the close are each bounded


# -- garbage ------------------------------------------------------------------------------------


GARBAGE = ["{not json", "[1, 2]", '{"type": 7}', '{"type": "chunk", "data": "@@", "context_id": "utt-1"}']


async def test_tts_garbage_flood_is_counted_and_skipped_in_bounded_memory(autojump_clock):
    async def flood_then_speak(ws: WebSocket, peer: Peer) -> None:
        request = await ws.receive()
        for _ in range(2500):
            await ws.send_many(GARBAGE)
        await ws.send_many(reply(request, speech))
        await until_closed(ws)

    async with websocket_peer(flood_then_speak) as peer:
        tracemalloc.start()
        try:
            report, stats = await run(tts(peer.url), NullSink())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert report.status == "completed", report.error
    assert stats["malformed"] == {"bad_base64": 2500, "bad_json": 2500, "bad_shape": 5000}
    assert stats["chunks"] == 2 and stats["connects"] == 1
    assert peak < 20 << 20


async def test_telephony_garbage_flood_is_counted_while_the_audio_goes_out(autojump_clock):
    async def flood(ws: WebSocket, peer: Peer) -> None:
        for _ in range(2500):
            await ws.send_many(GARBAGE)
        await ws.send_many(twilio_start())  # the audio waits for the start: all the garbage is read first
        await until_closed(ws)

    async with websocket_peer(flood) as peer:
        report, stats = await run(
            tone(1.0, speed=0, encoding=Encoding.PCM_MULAW), phone(peer.url, protocol="twilio", marks=False)
        )
    assert report.status == "completed", report.error
    assert stats["malformed"] == {"bad_json": 2500, "bad_shape": 7500}
    assert stats["incoming"] == {"connected": 1, "start": 1} and stats["seconds_sent"] == 1.0


# -- oversize, and the wrong kind of frame --------------------------------------------------


async def test_tts_oversize_and_binary_messages_are_counted(autojump_clock):
    async def odd_frames(ws: WebSocket, peer: Peer) -> None:
        request = await ws.receive()
        await ws.send_many(["x" * 5000, b"\x00\x01" * 100, json.dumps({"type": "x" * 10_000})])
        await ws.send_many(reply(request, speech))
        await until_closed(ws)

    async with websocket_peer(odd_frames) as peer:
        report, stats = await run(tts(peer.url, max_message_bytes=4096), NullSink())
    assert report.status == "completed", report.error
    assert stats["malformed"] == {"binary_frame": 1, "oversize": 2}  # the 10,000-character type is oversize here


async def test_telephony_binary_where_text_is_expected_and_text_where_binary_is(autojump_clock):
    async def binary(ws: WebSocket, peer: Peer) -> None:
        await ws.send_many(twilio_start())
        await ws.send(b"\x00" * 100)
        await until_closed(ws)

    async def text(ws: WebSocket, peer: Peer) -> None:
        await ws.send_many(["not json", b"\x00"])  # raw: text is JSON metadata; a binary frame is whole samples
        await until_closed(ws)

    async with websocket_peer(binary) as peer:
        _, twilio = await run(
            tone(0.2, speed=0, encoding=Encoding.PCM_MULAW), phone(peer.url, protocol="twilio", marks=False)
        )
    async with websocket_peer(text) as peer:
        _, raw = await run(tone(0.2, speed=0), phone(peer.url))
    assert twilio["malformed"] == {"binary_frame": 1} and twilio["seconds_sent"] == pytest.approx(0.2)
    assert raw["malformed"] == {"bad_json": 1, "partial_sample": 1} and raw["seconds_sent"] == pytest.approx(0.2)


# -- names a peer chooses -------------------------------------------------------------------


async def test_a_ten_thousand_character_error_code_is_cut_to_a_bounded_report_key(autojump_clock):
    async def long_code(ws: WebSocket, peer: Peer) -> None:
        while True:
            context = json.loads(await ws.receive())["context_id"]
            await ws.send(CartesiaService().send(Error(context, 500, "E" * 10_000, "t", "m")))

    async with websocket_peer(long_code) as peer:
        report, stats = await run(tts(peer.url), NullSink())
    failed_with(
        report,
        r"stage 1 \(cartesia_tts\)",
        r"LinkFailed: ws://127\.0\.0\.1:\d+ answered E{63}…\(10000 characters\) for utt-1-r2; "
        r"gave up after 3 failed attempts in a row",
    )
    assert stats["service_errors"] == {"E" * 63 + "…(10000 characters)": 3}


async def test_a_hundred_distinct_error_codes_fold_into_a_bounded_set(autojump_clock):
    async def many_codes(ws: WebSocket, peer: Peer) -> None:
        while True:
            context = json.loads(await ws.receive())["context_id"]
            await ws.send(CartesiaService().send(Error(context, 500, f"code-{context}", "t", "m")))

    async with websocket_peer(many_codes) as peer:
        report, stats = await run(tts(peer.url, reconnect_attempts=100), NullSink())
    assert report.status == "failed" and "gave up after 101 failed attempts in a row" in (report.error or "")
    codes = stats["service_errors"]
    assert len(codes) == 33 and codes["other"] == 101 - 32


async def test_telephony_ten_thousand_character_event_name_is_one_malformed_count(autojump_clock):
    async def long_event(ws: WebSocket, peer: Peer) -> None:
        await ws.send_many(twilio_start())
        await ws.send(json.dumps({"event": "e" * 10_000}))
        await until_closed(ws)

    async with websocket_peer(long_event) as peer:
        report, stats = await run(
            tone(0.2, speed=0, encoding=Encoding.PCM_MULAW), phone(peer.url, protocol="twilio", marks=False)
        )
    assert report.status == "completed"
    assert stats["malformed"] == {"unknown_event": 1}
    assert len(json.dumps(stats, default=str)) < 2000


# -- slowloris ------------------------------------------------------------------------------


async def test_a_handshake_trickled_byte_by_byte_times_out_and_fails_the_link(autojump_clock):
    async def trickle(stream: trio.SocketStream, peer: Peer) -> None:
        await stream.receive_some(4096)
        for byte in b"HTTP/1.1 101 Switching Protocols\r\n" * 100:
            await stream.send_all(bytes([byte]))
            await trio.sleep(0.05)

    async with socket_peer(trickle) as peer:
        report, stats = await run(tone(1.0), phone(peer.url))
    failed_with(
        report,
        r"stage 2 \(telephony_ws\)",
        r"LinkFailed: ws://127\.0\.0\.1:\d+: no answer to the opening handshake within 0\.3 s; "
        r"gave up after 3 failed attempts in a row",
    )
    assert peer.connections == 3 and stats["connects"] == 0


async def test_a_reply_trickled_byte_by_byte_is_silence_to_the_tts(autojump_clock):
    """Bytes keep coming but no whole message within response_timeout: a timeout, not a hang."""

    async def trickle(stream: trio.SocketStream, peer: Peer) -> None:
        await upgrade(stream)
        frame = b"\x81\x7e\x04\x00" + b"x" * 1024  # one 1 KiB text message, sent a byte at a time
        for i in range(len(frame)):
            await stream.send_all(frame[i : i + 1])
            await trio.sleep(0.1)

    async with socket_peer(trickle) as peer:
        report, stats = await run(tts(peer.url), NullSink())
    assert report.status == "failed" and "no answer within 0.5 s" in (report.error or "")
    assert stats["timeouts"] == 3 and peer.connections == 3


# -- disconnect mid-reply -------------------------------------------------------------------


async def test_tts_disconnect_mid_reply_resumes_on_a_new_connection(autojump_clock):
    async def drop_mid_reply(ws: WebSocket, peer: Peer) -> None:
        request = await ws.receive()
        messages = reply(request, speech)
        if peer.connections == 1:
            await ws.send(messages[0])
            await ws._stream.aclose()  # gone without a Close frame: 1006 at our side
            return
        await ws.send_many(messages)
        await until_closed(ws)

    async with websocket_peer(drop_mid_reply) as peer:
        report, stats = await run(tts(peer.url), NullSink())
    assert report.status == "completed", report.error
    assert stats["connects"] == 2 and stats["resumes"] == 1 and stats["chunks"] == 3 and stats["restarts"] == 1


# -- through the CLI: the exit status and the one line ---------------------------------------


async def _cli(config: str, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    path = tmp_path / "hostile.toml"
    path.write_text(textwrap.dedent(config))
    return await trio.run_process(
        [sys.executable, "-P", "-m", "rtstream.cli", "run", str(path)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env={**os.environ, "PEER_KEY": SECRET},
    )


async def test_cli_exits_1_with_one_line_for_a_telephony_peer_that_closes_at_once(tmp_path):
    async def close_at_once(ws: WebSocket, peer: Peer) -> None:
        await ws.close(1011, "")

    with trio.fail_after(30):
        async with websocket_peer(close_at_once) as peer:
            port = peer.url.split(":")[2].split("/")[0]
            done = await _cli(
                f"""
                [pipelines.call]
                [[pipelines.call.stages]]
                type = "tone"
                sample_rate = 8000
                duration = 1
                [[pipelines.call.stages]]
                type = "telephony_ws"
                url = "ws://127.0.0.1:{port}/v1/${{PEER_KEY}}"
                reconnect_attempts = 3
                backoff_initial = 0.01
                """,
                tmp_path,
            )
    out = done.stdout.decode()
    assert done.returncode == 1, done.stderr
    assert re.match(
        rf"^pipeline 'call' failed after \d+\.\d\d s: pipeline 'call', stage 2 \(telephony_ws\) failed: LinkFailed: "
        rf"ws://127\.0\.0\.1:{port}: the peer closed the connection with 1011; "
        r"gave up after 4 failed attempts in a row$",
        out.splitlines()[0],
    )
    assert peer.connections == 4
    assert SECRET not in out + done.stderr.decode()


async def test_cli_exits_1_with_one_line_for_a_tts_that_never_answers(tmp_path):
    with trio.fail_after(30):
        async with websocket_peer(lambda ws, peer: until_closed(ws)) as peer:
            port = peer.url.split(":")[2].split("/")[0]
            done = await _cli(
                f"""
                [pipelines.say]
                [[pipelines.say.stages]]
                type = "cartesia_tts"
                url = "ws://127.0.0.1:{port}/v1/${{PEER_KEY}}"
                transcript = "Hello."
                response_timeout = 0.3
                reconnect_attempts = 1
                backoff_initial = 0.01
                [[pipelines.say.stages]]
                type = "null_sink"
                """,
                tmp_path,
            )
    out = done.stdout.decode()
    assert done.returncode == 1, done.stderr
    assert re.match(
        rf"^pipeline 'say' failed after \d+\.\d\d s: pipeline 'say', stage 1 \(cartesia_tts\) failed: LinkFailed: "
        rf"ws://127\.0\.0\.1:{port}: no answer within 0\.3 s; gave up after 2 failed attempts in a row$",
        out.splitlines()[0],
    )
    assert peer.ended == [CloseReason(1000, "")] * 2
    assert SECRET not in out + done.stderr.decode()
