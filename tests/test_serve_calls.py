"""Calls served end to end over loopback: a provider dials in, the caller's audio flows in, the bot's out.

The dialler is the ``websockets`` library speaking Twilio's messages by hand, not the project's
caller simulator: the server must satisfy a peer we did not write.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Mapping
from typing import Any

import trio
from websockets.exceptions import ConnectionClosed as PeerClosed
from websockets.sync.client import connect as peer_connect

from rtstream.callrun import call_runner
from rtstream.calls import CallSettings
from rtstream.config import parse_config
from rtstream.httpserver import bound_port, open_listener
from rtstream.routes import CallEndpoint
from rtstream.server import Server

TIMEOUT = 20

PIPELINES = """
[pipelines.caller]
[[pipelines.caller.stages]]
type = "telephony_in"
[[pipelines.caller.stages]]
type = "null_sink"

[pipelines.bot]
[[pipelines.bot.stages]]
type = "tone"
sample_rate = 8000
duration = 0.4
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


def twilio_caller(url: str, frames: int) -> dict[str, Any]:
    """Dial like Twilio: connected, start, caller media and a DTMF, echo marks, then stop once the bot is done."""
    sid = "MZ0123456789abcdef0123456789abcdef"
    seen: dict[str, Any] = {"media": 0, "payload_bytes": set(), "marks": [], "sids": set()}
    with peer_connect(url) as ws:
        ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        start = {
            "streamSid": sid,
            "callSid": "CA42",
            "accountSid": "AC1",
            "tracks": ["inbound"],
            "customParameters": {"lang": "en"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        }
        ws.send(json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": sid, "start": start}))
        for n in range(frames):
            payload = base64.b64encode(b"\xff" * 160).decode()
            media = {"track": "inbound", "chunk": str(n + 1), "timestamp": str(20 * n), "payload": payload}
            ws.send(json.dumps({"event": "media", "sequenceNumber": str(n + 2), "streamSid": sid, "media": media}))
        ws.send(json.dumps({"event": "dtmf", "streamSid": sid, "dtmf": {"track": "inbound_track", "digit": "7"}}))
        while not seen["marks"]:
            message = json.loads(ws.recv(timeout=TIMEOUT))
            seen["sids"].add(message["streamSid"])
            if message["event"] == "media":
                seen["media"] += 1
                seen["payload_bytes"].add(len(base64.b64decode(message["media"]["payload"])))
            elif message["event"] == "mark":
                seen["marks"].append(message["mark"]["name"])
                echo = {"event": "mark", "streamSid": sid, "sequenceNumber": "99", "mark": message["mark"]}
                ws.send(json.dumps(echo))
        ws.send(json.dumps({"event": "stop", "sequenceNumber": "100", "streamSid": sid, "stop": {"callSid": "CA42"}}))
        with contextlib.suppress(PeerClosed):
            while True:
                ws.recv(timeout=TIMEOUT)
    seen["close_code"] = ws.close_code
    return seen


async def test_a_twilio_call_flows_both_ways_and_ends_cleanly_on_stop() -> None:
    config = parse_config(PIPELINES)
    settings = CallSettings(path="/twilio", protocol="twilio", pipelines=("caller", "bot"))
    endpoint = CallEndpoint("twilio", settings, call_runner(config, {}, {}), public_url=None)
    server = Server({"/twilio": endpoint}, max_calls=4)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listener = await open_listener("127.0.0.1", 0)
            await nursery.start(server.serve, [listener])
            url = f"ws://127.0.0.1:{bound_port(listener)}/twilio"
            seen = await trio.to_thread.run_sync(twilio_caller, url, 25)
            await server.wait_idle()
            server.abort()
    assert seen["media"] >= 20  # 0.4 s of bot audio in 20 ms frames, and the pacer's idle slots
    assert seen["payload_bytes"] == {160}
    assert seen["sids"] == {"MZ0123456789abcdef0123456789abcdef"}
    assert len(seen["marks"]) == 1
    assert seen["close_code"] == 1000
    (record,) = server.calls
    assert record.outcome == "completed"
    caller, bot = record.report["pipelines"]
    assert caller["status"] == "completed"
    stats: Mapping[str, Any] = caller["stages"][0]["statistics"]
    assert (stats["media"], stats["dtmf"], stats["stopped"]) == (25, 1, True)
    assert caller["stages"][1]["statistics"]["received"]["chunks"] == 25
    sink = bot["stages"][-1]["statistics"]
    assert (sink["marks_sent"], sink["marks_echoed"], sink["messages_sent"]) == (1, 1, seen["media"] + 1)
