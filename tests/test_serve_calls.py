"""Calls served end to end over loopback: a provider dials in, the caller's audio flows in, the bot's out.

The dialler is the ``websockets`` library speaking Twilio's messages by hand, not the project's
caller simulator: the server must satisfy a peer we did not write.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
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
speed = 0
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
    assert bot["stages"][3]["statistics"]["underruns"] == 0
    sink = bot["stages"][-1]["statistics"]
    assert (sink["marks_sent"], sink["marks_echoed"], sink["messages_sent"]) == (1, 1, seen["media"] + 1)


BARGE_IN = PIPELINES.replace(
    'type = "null_sink"', 'type = "barge_in"\n[[pipelines.caller.stages]]\ntype = "null_sink"'
).replace("duration = 0.4", "duration = 5.0")
"""The same call with barge_in on the caller's side and a reply long enough to talk over."""


def interrupting_caller(url: str, after_frames: int) -> dict[str, Any]:
    """Listen to the bot for ``after_frames`` frames, then talk over it and see what audio still arrives.

    After the clear the line keeps its cadence with silence; only frames that are not silent count.
    """
    sid = "MZ1"
    loud = base64.b64encode(bytes([0x00, 0x80] * 80)).decode()  # μ-law near full scale, alternating sign
    quiet = base64.b64encode(b"\xff" * 160).decode()
    seen: dict[str, Any] = {"before": 0, "after_clear": 0, "events_after_clear": []}
    with peer_connect(url) as ws:
        start = {"streamSid": sid, "callSid": "CA1", "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}}
        ws.send(json.dumps({"event": "start", "streamSid": sid, "start": start}))
        chunk = 0

        def say(payload: str) -> None:
            nonlocal chunk
            chunk += 1
            media = {"chunk": str(chunk), "timestamp": str(20 * chunk), "payload": payload}
            ws.send(json.dumps({"event": "media", "streamSid": sid, "media": media}))

        cleared_at = None
        while cleared_at is None:
            message = json.loads(ws.recv(timeout=TIMEOUT))
            if message["event"] == "media":
                seen["before"] += 1
                say(loud if seen["before"] > after_frames else quiet)
                if seen["before"] == after_frames + 1:
                    seen["spoke_at"] = time.monotonic()
            elif message["event"] == "clear":
                cleared_at = time.monotonic()
        seen["barge_in_ms"] = (cleared_at - seen["spoke_at"]) * 1000
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                message = json.loads(ws.recv(timeout=deadline - time.monotonic()))
            except TimeoutError:
                break
            if message["event"] == "media":
                payload = base64.b64decode(message["media"]["payload"])
                if payload.strip(b"\xff\x7f"):  # bot audio, not the line's idle silence
                    seen["after_clear"] += 1
                    seen.setdefault("first_after", payload)
            else:
                seen["events_after_clear"].append(message["event"])
        ws.send(json.dumps({"event": "stop", "streamSid": sid}))
    return seen


async def test_talking_over_the_bot_clears_it_within_a_frame_with_a_fade() -> None:
    config = parse_config(BARGE_IN)
    settings = CallSettings(path="/twilio", protocol="twilio", pipelines=("caller", "bot"))
    endpoint = CallEndpoint("twilio", settings, call_runner(config, {}, {}), public_url=None)
    server = Server({"/twilio": endpoint}, max_calls=4)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listener = await open_listener("127.0.0.1", 0)
            await nursery.start(server.serve, [listener])
            url = f"ws://127.0.0.1:{bound_port(listener)}/twilio"
            seen = await trio.to_thread.run_sync(interrupting_caller, url, 10)
            await server.wait_idle()
            server.abort()
    assert seen["after_clear"] == 1  # the frame that fades out, then the line's silence
    assert seen["barge_in_ms"] < 150  # 60 ms of speech to detect, a frame to reach the socket
    faded = seen["first_after"]
    assert faded[-1] in (0xFF, 0x7F) and faded[0] not in (0xFF, 0x7F)  # from the reply's level to silence
    (record,) = server.calls
    control = record.report["link"]["control"]
    assert control["clears"] == 1
    (cut,) = control["cuts"]
    assert cut["reason"] == "barge-in" and cut["played_ms"] >= 200
    caller, bot = record.report["pipelines"]
    assert caller["stages"][1]["statistics"]["barge_ins"] == 1
    assert bot["stages"][-1]["statistics"]["clears_sent"] == 1
    assert bot["stages"][3]["statistics"]["underruns"] == 0  # the line went idle, not silent inside a reply
