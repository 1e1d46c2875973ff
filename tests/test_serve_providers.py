"""Calls from Plivo, Exotel, Telnyx and Vonage served end to end over loopback.

As in :mod:`test_serve_calls`, each dialler is the ``websockets`` library speaking the
provider's documented messages written by hand (``/work/shared/PROTOCOLS.md``), not the
project's wire classes: the server must satisfy peers we did not write. Each call sends the
caller's audio, takes the bot's 0.4 s tone in the provider's framing, acknowledges the
bot's mark the provider's way and ends the call the provider's way.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import trio
from test_serve_calls import PIPELINES, TIMEOUT
from websockets.exceptions import ConnectionClosed as PeerClosed
from websockets.sync.client import connect as peer_connect

from rtstream.callrun import call_runner
from rtstream.calls import CallSettings
from rtstream.config import parse_config
from rtstream.httpserver import bound_port, open_listener
from rtstream.routes import CallEndpoint
from rtstream.server import CallRecord, Server

FRAMES = 25
"""Caller media messages each dialler sends (20 ms each)."""


def drain(ws: Any) -> None:
    """Read until the server closes the socket."""
    with contextlib.suppress(PeerClosed):
        while True:
            ws.recv(timeout=TIMEOUT)


async def serve_one(
    protocol: str, dial: Callable[[str], dict[str, Any]], **settings: Any
) -> tuple[dict[str, Any], CallRecord]:
    """Serve one call on ``/protocol`` and dial it with ``dial(url)``; the dialler's findings and the call's record."""
    config = parse_config(PIPELINES)
    path = f"/{protocol}"
    call_settings = CallSettings(path=path, protocol=protocol, pipelines=("caller", "bot"), **settings)
    endpoint = CallEndpoint(protocol, call_settings, call_runner(config, {}, {}), public_url=None)
    server = Server({path: endpoint}, max_calls=4)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listener = await open_listener("127.0.0.1", 0)
            await nursery.start(server.serve, [listener])
            url = f"ws://127.0.0.1:{bound_port(listener)}{path}"
            seen = await trio.to_thread.run_sync(dial, url)
            await server.wait_idle()
            server.abort()
    (record,) = server.calls
    return seen, record


def check_call(
    record: CallRecord, protocol: str, seen: Mapping[str, Any], *, stopped: bool = True
) -> Mapping[str, Any]:
    """What every provider's call must show; the bot's sink statistics, for the provider's own checks.

    ``stopped``: whether the provider ended the stream with a stop message (Vonage just closes).
    """
    assert seen["close_code"] == 1000
    assert record.outcome == "completed", record.report
    assert record.report["link"]["protocol"] == protocol
    caller, bot = record.report["pipelines"]
    assert caller["status"] == "completed"
    stats: Mapping[str, Any] = caller["stages"][0]["statistics"]
    assert (stats["media"], stats["bad_payload"], stats["stopped"]) == (FRAMES, 0, stopped)
    assert record.report["link"]["malformed"] == {}
    assert caller["stages"][1]["statistics"]["received"]["chunks"] == FRAMES
    assert bot["status"] == "completed"
    assert bot["stages"][3]["statistics"]["underruns"] == 0
    sink: Mapping[str, Any] = bot["stages"][-1]["statistics"]
    assert (sink["marks_sent"], sink["marks_echoed"]) == (1, 1)
    return sink


# --- Plivo: JSON text, numbers as numbers, playAudio out, checkpoint answered by playedStream ---


def plivo_caller(url: str) -> dict[str, Any]:
    sid = "b7d3c1a2-0000-4000-8000-00000000a1b2"
    seen: dict[str, Any] = {"media": 0, "payload_bytes": set(), "formats": set(), "checkpoints": []}
    with peer_connect(url) as ws:
        start = {
            "callId": "c0ffee00-0000-4000-8000-000000000001",
            "streamId": sid,
            "accountId": "MA0001",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
        }
        ws.send(json.dumps({"event": "start", "sequenceNumber": 0, "start": start, "extra_headers": "{}"}))
        for n in range(FRAMES):
            payload = base64.b64encode(b"\xff" * 160).decode()
            media = {
                "track": "inbound",
                "timestamp": str(1_700_000_000_000 + 20 * n),
                "chunk": n + 1,
                "payload": payload,
            }
            ws.send(json.dumps({"event": "media", "sequenceNumber": n + 1, "streamId": sid, "media": media}))
        while not seen["checkpoints"]:
            message = json.loads(ws.recv(timeout=TIMEOUT))
            if message["event"] == "playAudio":
                seen["media"] += 1
                media = message["media"]
                seen["formats"].add((media["contentType"], media["sampleRate"]))
                seen["payload_bytes"].add(len(base64.b64decode(media["payload"])))
            elif message["event"] == "checkpoint":
                assert message["streamId"] == sid
                seen["checkpoints"].append(message["name"])
                played = {"event": "playedStream", "sequenceNumber": 99, "streamId": sid, "name": message["name"]}
                ws.send(json.dumps(played))
            else:
                raise AssertionError(f"unexpected {message!r}")
        ws.send(json.dumps({"event": "stop", "sequenceNumber": 100, "streamId": sid}))
        drain(ws)
    seen["close_code"] = ws.close_code
    return seen


async def test_a_plivo_call_plays_mulaw_answers_its_checkpoint_and_ends_on_stop() -> None:
    seen, record = await serve_one("plivo", plivo_caller)
    sink = check_call(record, "plivo", seen)
    assert seen["media"] >= 20  # 0.4 s in 20 ms frames, and the pacer's idle slots
    assert seen["formats"] == {("audio/x-mulaw", 8000)}
    assert seen["payload_bytes"] == {160}
    assert len(seen["checkpoints"]) == 1
    assert sink["messages_sent"] == seen["media"] + 1


# --- Exotel: snake_case envelope, base64 PCM16 8 kHz, outbound regrouped to >= 3.2 kB, multiples of 320 ---


def exotel_caller(url: str) -> dict[str, Any]:
    sid = "a3f5c0de0000400080000000000e0e01"
    seen: dict[str, Any] = {"chunks": [], "marks": [], "sids": set()}
    with peer_connect(url) as ws:
        ws.send(json.dumps({"event": "connected"}))
        start = {
            "stream_sid": sid,
            "call_sid": "e1e2e3",
            "account_sid": "exotel1",
            "from": "+910000000001",
            "to": "+910000000002",
            "custom_parameters": {},
            "media_format": {"encoding": "base64", "sample_rate": "8000", "bit_rate": "128kbps"},
        }
        ws.send(json.dumps({"event": "start", "sequence_number": 1, "stream_sid": sid, "start": start}))
        for n in range(FRAMES):
            payload = base64.b64encode(b"\x00\x00" * 160).decode()  # 20 ms of PCM16 silence
            media = {"chunk": n + 1, "timestamp": str(20 * n), "payload": payload}
            ws.send(json.dumps({"event": "media", "sequence_number": n + 2, "stream_sid": sid, "media": media}))
        while not seen["marks"]:
            message = json.loads(ws.recv(timeout=TIMEOUT))
            seen["sids"].add(message["stream_sid"])
            if message["event"] == "media":
                seen["chunks"].append(len(base64.b64decode(message["media"]["payload"])))
            elif message["event"] == "mark":
                seen["marks"].append(message["mark"]["name"])
                echo = {"event": "mark", "sequence_number": 99, "stream_sid": sid, "mark": message["mark"]}
                ws.send(json.dumps(echo))
            else:
                raise AssertionError(f"unexpected {message!r}")
        stop = {"call_sid": "e1e2e3", "account_sid": "exotel1", "reason": "callended"}
        ws.send(json.dumps({"event": "stop", "sequence_number": 100, "stream_sid": sid, "stop": stop}))
        drain(ws)
    seen["close_code"] = ws.close_code
    return seen


async def test_an_exotel_call_gets_chunks_of_at_least_100_ms_in_whole_320_byte_units() -> None:
    seen, record = await serve_one("exotel", exotel_caller)
    sink = check_call(record, "exotel", seen)
    assert seen["sids"] == {"a3f5c0de0000400080000000000e0e01"}
    assert len(seen["marks"]) == 1
    chunks = seen["chunks"]
    assert sum(chunks) >= 6400  # 0.4 s of PCM16 at 8 kHz
    assert all(size % 320 == 0 and 3200 <= size <= 100_000 for size in chunks), chunks
    assert sink["messages_sent"] == len(chunks) + 1


# --- Telnyx: snake_case, numbers as strings, PCMU, media that arrives out of order ---


def telnyx_caller(url: str) -> dict[str, Any]:
    sid = "32DE0DEA-53CB-4B21-89A4-9E1819C043BC"
    seen: dict[str, Any] = {"media": 0, "payload_bytes": set(), "marks": []}
    with peer_connect(url) as ws:
        ws.send(json.dumps({"event": "connected", "version": "1.0.0"}))
        start = {
            "user_id": "3E6F995F-85F7-4705-9741-53B116D28237",
            "call_control_id": "v3:abc",
            "call_session_id": "session-1",
            "from": "+13122010001",
            "to": "+13122010002",
            "tags": [],
            "client_state": "",
            "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
        }
        ws.send(json.dumps({"event": "start", "sequence_number": "1", "start": start, "stream_id": sid}))
        order = [n ^ 1 for n in range(FRAMES - 1)] + [FRAMES - 1]  # pairs swapped: 1 0 3 2 ...
        for n in order:
            payload = base64.b64encode(b"\xff" * 160).decode()
            media = {"track": "inbound", "chunk": str(n + 1), "timestamp": str(20 * n), "payload": payload}
            message = {"event": "media", "sequence_number": str(n + 2), "media": media, "stream_id": sid}
            ws.send(json.dumps(message))
        while not seen["marks"]:
            message = json.loads(ws.recv(timeout=TIMEOUT))
            if message["event"] == "media":
                seen["media"] += 1
                seen["payload_bytes"].add(len(base64.b64decode(message["media"]["payload"])))
            elif message["event"] == "mark":
                seen["marks"].append(message["mark"]["name"])
                echo = {"event": "mark", "sequence_number": "99", "stream_id": sid, "mark": message["mark"]}
                ws.send(json.dumps(echo))
            else:
                raise AssertionError(f"unexpected {message!r}")
        stop = {"user_id": start["user_id"], "call_control_id": "v3:abc"}
        ws.send(json.dumps({"event": "stop", "sequence_number": "100", "stop": stop, "stream_id": sid}))
        drain(ws)
    seen["close_code"] = ws.close_code
    return seen


async def test_a_telnyx_call_takes_media_out_of_order_and_plays_pcmu() -> None:
    seen, record = await serve_one("telnyx", telnyx_caller)
    check_call(record, "telnyx", seen)  # all 25 counted: reordering is a sequencer stage's job, not telephony_in's
    assert seen["media"] >= 20
    assert seen["payload_bytes"] == {160}  # whole 20 ms RTP packets of PCMU
    assert len(seen["marks"]) == 1


# --- Vonage: JSON websocket:connected, then binary L16 16 kHz, exactly 20 ms frames; no stop ---


def vonage_caller(url: str) -> dict[str, Any]:
    seen: dict[str, Any] = {"frames": [], "notifies": []}
    with peer_connect(url) as ws:
        ws.send(json.dumps({"event": "websocket:connected", "content-type": "audio/l16;rate=16000"}))
        for _ in range(FRAMES):
            ws.send(b"\x00\x00" * 320)  # 20 ms of L16 at 16 kHz
        while not seen["notifies"]:
            message = ws.recv(timeout=TIMEOUT)
            if isinstance(message, bytes):
                seen["frames"].append(len(message))
                continue
            data = json.loads(message)
            assert data["action"] == "notify", data
            seen["notifies"].append(data["payload"])
            ws.send(json.dumps({"event": "websocket:notify", "payload": data["payload"]}))
        # Vonage sends no stop: the call ends when the socket closes.
    seen["close_code"] = ws.close_code
    return seen


async def test_a_vonage_call_plays_exact_20_ms_binary_frames_and_ends_when_the_socket_closes() -> None:
    seen, record = await serve_one("vonage", vonage_caller, sample_rate=16000)
    sink = check_call(record, "vonage", seen, stopped=False)
    assert len(seen["frames"]) >= 20
    assert set(seen["frames"]) == {640}
    assert len(seen["notifies"]) == 1
    assert sink["messages_sent"] == len(seen["frames"]) + 1
