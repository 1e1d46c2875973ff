"""A served route under bad input: each case is counted and named, and the next call still works.

The peer is the ``websockets`` library with hand-written messages, as a careless or hostile
provider would send them.
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
import trio
from test_serve_calls import PIPELINES
from websockets.exceptions import ConnectionClosed as PeerClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as peer_connect

from rtstream.callrun import call_runner
from rtstream.calls import CallSettings
from rtstream.config import parse_config
from rtstream.httpserver import bound_port, open_listener
from rtstream.routes import CallEndpoint
from rtstream.server import Server
from rtstream.signatures import twilio_signature

TIMEOUT = 20
SID = "MZbad"
START = {"event": "start", "streamSid": SID, "start": {"streamSid": SID, "callSid": "CA1"}}
QUIET = base64.b64encode(b"\xff" * 160).decode()
MEDIA = {"event": "media", "streamSid": SID, "media": {"payload": QUIET}}
TOKEN = "bad-input-auth-token"


def drain(ws: Any) -> int | None:
    """Read until the server closes; its close code."""
    with contextlib.suppress(PeerClosed, TimeoutError):
        while True:
            ws.recv(timeout=TIMEOUT)
    return ws.close_code


def no_start(url: str) -> int | None:
    with peer_connect(url) as ws:
        ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        return drain(ws)


def malformed_then_call(url: str) -> int | None:
    """Garbage of every kind, audio before start, then a proper start, a binary frame, and a stop."""
    with peer_connect(url) as ws:
        ws.send("{not json")
        ws.send(json.dumps({"event": "no_such_event", "streamSid": SID}))
        ws.send(json.dumps({"event": "start", "streamSid": SID, "start": "not an object"}))
        ws.send(json.dumps(MEDIA))  # audio before the stream started
        ws.send(json.dumps(START))
        ws.send(b"\x00" * 160)  # binary on a JSON-only protocol
        ws.send(json.dumps({"event": "media", "streamSid": "MZother", "media": {"payload": QUIET}}))
        for _ in range(5):
            ws.send(json.dumps(MEDIA))
        ws.send(json.dumps({"event": "stop", "streamSid": SID}))
        return drain(ws)


def oversize(url: str) -> int | None:
    with peer_connect(url, max_size=None) as ws:
        ws.send(json.dumps(START))
        ws.send("x" * (10 << 20))  # a 10 MB message
        return drain(ws)


def good_call(url: str) -> int | None:
    with peer_connect(url) as ws:
        ws.send(json.dumps(START))
        ws.send(json.dumps(MEDIA))
        ws.send(json.dumps({"event": "stop", "streamSid": SID}))
        return drain(ws)


def unsigned(url: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        peer_connect(url)
    return refused.value.response.status_code


def signed(url: str) -> int | None:
    signature = twilio_signature(url, {}, TOKEN)
    with peer_connect(url, additional_headers={"X-Twilio-Signature": signature}) as ws:
        ws.send(json.dumps(START))
        ws.send(json.dumps(MEDIA))
        ws.send(json.dumps({"event": "stop", "streamSid": SID}))
        return drain(ws)


async def test_bad_providers_are_counted_and_named_and_good_calls_go_on() -> None:
    config = parse_config(PIPELINES)
    settings = CallSettings(path="/twilio", protocol="twilio", pipelines=("caller", "bot"), start_timeout=0.5)
    secured = CallSettings(path="/signed", protocol="twilio", pipelines=("caller", "bot"), auth_token=TOKEN)
    runner = call_runner(config, {}, {})
    server = Server(
        {
            "/twilio": CallEndpoint("twilio", settings, runner, public_url=None),
            "/signed": CallEndpoint("signed", secured, runner, public_url=None),
        },
        max_calls=8,
    )
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listener = await open_listener("127.0.0.1", 0)
            await nursery.start(server.serve, [listener])
            base = f"ws://127.0.0.1:{bound_port(listener)}"
            codes = [
                await trio.to_thread.run_sync(dial, f"{base}/twilio")
                for dial in (no_start, malformed_then_call, oversize, good_call)
            ]
            refused = await trio.to_thread.run_sync(unsigned, f"{base}/signed")
            signed_code = await trio.to_thread.run_sync(signed, f"{base}/signed")
            await server.wait_idle()
            server.abort()
    assert codes == [1000, 1000, 1009, 1000]
    assert (refused, signed_code) == (403, 1000)
    first, garbled, big, good, secure = server.calls
    assert (first.outcome, first.report["error"]) == ("failed", "no_start")
    assert (garbled.outcome, good.outcome, secure.outcome) == ("completed", "completed", "completed")
    assert big.outcome == "failed"  # the provider's stream broke off: the caller's side carried nothing
    assert big.report["link"]["close"] == {"code": 1009, "reason": "message over 1048576 bytes", "local": True}
    garbage = garbled.report["link"]
    assert garbage["malformed"] == {
        "audio_before_start": 1,
        "bad_json": 1,
        "bad_shape": 1,
        "binary_frame": 1,
        "unknown_event": 1,
        "wrong_stream_id": 1,
    }
    caller = garbled.report["pipelines"][0]["stages"][0]["statistics"]
    assert caller["media"] == 5 and caller["stopped"]
    assert server.report()["refused"] == {"bad_signature": 1}
