"""The caller simulator over real loopback sockets, against a tiny bridge built on the wire classes.

The bridge is :class:`rtstream.server.Server` with one endpoint that speaks the protocol's
bridge side: it takes the start, records the caller's audio and DTMF, replies with frames on
an absolute grid, a mark, a clear if asked, and bad messages if asked, and closes on stop. On
virtual time (loopback sockets deliver within the instant they are written), the caller's
report can be checked number by number.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import pytest
import trio
from click.testing import CliRunner
from websockets.sync.server import serve as peer_serve

from rtstream import websocket
from rtstream.audio import g711
from rtstream.audio.codec import from_int16
from rtstream.cli import main
from rtstream.frames import AudioFormat
from rtstream.httpserver import Request, Response, Upgrade, bound_port, open_listener
from rtstream.params import ParamError
from rtstream.server import Server
from rtstream.signatures import plivo_v3_valid, twilio_valid
from rtstream.simulators.caller import CallerCall, CallerSettings, Dialer, Hangup
from rtstream.simulators.caller.dialer import load_speech
from rtstream.simulators.services import CallerService, TelephonyService
from rtstream.simulators.telephony.protocol import MAX_PENDING_MARKS
from rtstream.wavfile import read_wav
from rtstream.wire import RemoteProtocolError
from rtstream.wire.telephony import (
    PROTOCOLS,
    ClearEcho,
    Dtmf,
    Event,
    MarkEcho,
    Media,
    SendClear,
    SendMark,
    SendMedia,
    Start,
    Stop,
)

SPEECH = "/work/shared/data/speech/speech_a.wav"
ULAW = AudioFormat("pcm_mulaw", 8000)


def tone(fmt: AudioFormat, samples: int) -> bytes:
    pcm = (np.sin(np.arange(samples) * 0.3) * 8000).astype(np.int16)
    return bytes(from_int16(pcm, fmt.encoding).astype(fmt.encoding.dtype))


class Bridge:
    """A bridge endpoint for one protocol: what it heard, and a reply it sends once the stream starts."""

    def __init__(
        self,
        protocol: str,
        fmt: AudioFormat,
        *,
        frame_bytes: int,
        reply_frames: int = 25,
        reply_at: float = 0.2,
        clear: bool = False,
        bad: Sequence[str | bytes] = (),
        close_on_stop: bool = True,
        subprotocols: Sequence[str] = (),
    ) -> None:
        self.protocol, self.format = protocol, fmt
        self.frame_bytes = frame_bytes
        self.period = frame_bytes / fmt.frame_bytes / fmt.sample_rate
        self.reply_frames, self.reply_at = reply_frames, reply_at
        self.clear, self.bad, self.close_on_stop = clear, bad, close_on_stop
        self.subprotocols = tuple(subprotocols)
        self.requests: list[Request] = []
        self.events: list[tuple[float, Event]] = []
        self.errors: Counter[str] = Counter()
        self.closed: list[websocket.CloseReason | None] = []

    async def handle(self, request: Request, server: Server) -> Response | Upgrade:
        self.requests.append(request)
        return server.admit(self.protocol, request, self.call, subprotocols=self.subprotocols)

    def of(self, kind: type) -> list[Any]:
        return [e for _, e in self.events if isinstance(e, kind)]

    async def call(self, ws: websocket.WebSocket) -> tuple[str, Mapping[str, Any]]:
        side = PROTOCOLS[self.protocol].bridge(self.format)
        started = trio.Event()
        if side.ready:
            started.set()

        async def reply() -> None:
            await started.wait()
            t0 = trio.current_time()
            payload = tone(self.format, self.frame_bytes // self.format.frame_bytes)
            for i in range(self.reply_frames):
                await trio.sleep_until(t0 + self.reply_at + i * self.period)
                await ws.send(side.send(SendMedia(payload)))
            if PROTOCOLS[self.protocol].marks:
                await ws.send(side.send(SendMark("utt-1")))
                if self.clear:
                    await ws.send(side.send(SendClear()))
            for message in self.bad:  # SID stands for the stream's id
                await ws.send(message.replace("SID", side.stream_id or "") if isinstance(message, str) else message)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reply)
            with contextlib.suppress(websocket.ConnectionClosed):
                while True:
                    message = await ws.receive()
                    try:
                        event = side.receive(message)
                    except RemoteProtocolError as exc:
                        self.errors[exc.reason] += 1
                        continue
                    self.events.append((trio.current_time(), event))
                    if isinstance(event, Start):
                        started.set()
                    if isinstance(event, Stop) and self.close_on_stop:
                        break
            self.closed.append(ws.closed)
            nursery.cancel_scope.cancel()
        return "completed", {}


@contextlib.asynccontextmanager
async def serving(bridge: Bridge, path: str = "/call") -> AsyncIterator[str]:
    server = Server({path: bridge}, max_calls=100)
    async with trio.open_nursery() as nursery:
        listener = await open_listener("127.0.0.1", 0)
        await nursery.start(server.serve, [listener])
        yield f"ws://127.0.0.1:{bound_port(listener)}{path}"
        server.abort()


def settings(url: str, protocol: str = "twilio", **kw: Any) -> CallerSettings:
    return CallerSettings(url=url, protocol=protocol, **{"duration": 1.0, "linger": 1.0, **kw})


async def dial(caller: CallerSettings) -> dict[str, Any]:
    dialer = Dialer(caller)
    await dialer.run()
    return dialer.report()


def first(report: dict[str, Any]) -> dict[str, Any]:
    return report["per_call"][0]


# -- each protocol, end to end -------------------------------------------------------------------------

CASES = [
    ("twilio", {}, 160),
    ("plivo", {}, 160),
    ("plivo", {"encoding": "pcm_s16le", "sample_rate": 16000}, 640),
    ("exotel", {}, 3200),
    ("raw", {}, 960),
    ("raw", {"sample_rate": 16000}, 1920),
    ("telnyx", {}, 160),
    ("telnyx", {"encoding": "pcm_alaw"}, 160),
    ("vonage", {}, 320),
    ("vonage", {"sample_rate": 16000}, 640),
    ("jambonz", {}, 320),
    ("freeswitch", {}, 320),
    ("freeswitch_binary", {"sample_rate": 16000}, 640),
]


@pytest.mark.parametrize("protocol,extra,frame_bytes", CASES)
async def test_each_protocol_end_to_end(autojump_clock, protocol, extra, frame_bytes):
    caller = settings("ws://x/", protocol, **extra)
    fmt = caller.format
    period = frame_bytes / fmt.frame_bytes / fmt.sample_rate
    replies = min(10, int(0.7 / period))  # all sent before the stop, 1 s in
    wire = PROTOCOLS[protocol]
    subprotocols = () if wire.subprotocol is None else (wire.subprotocol,)
    bridge = Bridge(protocol, fmt, frame_bytes=frame_bytes, reply_frames=replies, subprotocols=subprotocols)
    async with serving(bridge) as url:
        report = await dial(settings(url, protocol, parameters=["lang=en", "agent=7"], **extra))
    call = first(report)
    assert (report["placed"], report["completed"], report["failed"]) == (1, 1, {})
    assert call["frames"] == replies and call["seconds"] == pytest.approx(replies * period)
    assert call["wrong_size"] == 0 and call["errors"] == {}
    assert call["deviation_ms"]["count"] == replies - 1 and call["deviation_ms"]["max"] == pytest.approx(0, abs=1e-9)
    assert call["drift_ms"] == {"final": pytest.approx(0, abs=1e-9), "max": pytest.approx(0, abs=1e-9)}
    assert call["gaps"] == {"count": 0, "total_ms": 0.0, "max_ms": 0.0}
    sent_frames = caller.send_frames
    assert call["sent"]["frames"] == sent_frames == -(-1000 // round(caller.send_period * 1000))  # 1 s, rounded up
    assert call["sent"]["seconds"] == pytest.approx(sent_frames * caller.send_period)
    heard = bridge.of(Media)
    assert len(heard) == sent_frames and all(len(m.payload) == caller.send_frame_bytes for m in heard)
    assert (call["marks"], call["marks_echoed"]) == ((1, 1) if wire.marks else (0, 0))
    assert call["outcome"] == "completed" and call["hangup"] == (None if call["sent"]["stop"] else "stopped")
    if call["sent"]["stop"]:  # the server closes on stop
        assert len(bridge.of(Stop)) == 1 and call["close"] == {"code": 1000, "by": "server", "reason": ""}
    else:  # a stream without a stop message ends by the caller closing
        assert not bridge.of(Stop) and call["close"] == {"code": 1000, "by": "caller", "reason": "stopped"}
    starts = bridge.of(Start)
    if protocol in ("raw", "freeswitch", "freeswitch_binary"):  # no start message: the stream starts with audio
        assert not starts
        return
    (start,) = starts
    assert dict(start.custom_parameters) == {"lang": "en", "agent": "7"}
    if call["stream_id"] is not None:
        assert start.stream_id == call["stream_id"] and start.call_id and start.format in (fmt, None)
    numbered = [m.sequence_number for m in heard if m.sequence_number is not None]
    assert numbered == sorted(numbered)


# -- marks, clears, recording --------------------------------------------------------------------------


async def test_a_mark_is_echoed_once_its_audio_has_played(autojump_clock):
    bridge = Bridge("twilio", ULAW, frame_bytes=160, reply_frames=25, reply_at=0.2)
    async with serving(bridge) as url:
        report = await dial(settings(url, playout_delay=0.04))
    (start_at,) = [t for t, e in bridge.events if isinstance(e, Start)]
    (echo_at,) = [t for t, e in bridge.events if isinstance(e, MarkEcho)]
    # the first frame arrives 0.2 s after the start; 25 frames of 20 ms play after 40 ms of buffering
    assert echo_at - start_at == pytest.approx(0.2 + 0.04 + 25 * 0.02)
    assert bridge.of(MarkEcho) == [MarkEcho("utt-1")]
    assert (first(report)["marks"], first(report)["marks_echoed"], report["marks_echoed"]) == (1, 1, 1)


async def test_twilio_clear_echoes_the_pending_mark_at_once(autojump_clock):
    bridge = Bridge("twilio", ULAW, frame_bytes=160, reply_frames=25, reply_at=0.2, clear=True)
    async with serving(bridge) as url:
        report = await dial(settings(url))
    (start_at,) = [t for t, e in bridge.events if isinstance(e, Start)]
    (echo_at,) = [t for t, e in bridge.events if isinstance(e, MarkEcho)]
    assert echo_at - start_at == pytest.approx(0.2 + 24 * 0.02)  # when the clear came, with the last frame
    assert (first(report)["clears"], first(report)["marks_echoed"], report["clears"]) == (1, 1, 1)
    assert not bridge.of(ClearEcho)


async def test_plivo_clear_is_answered_with_cleared_audio_and_drops_the_mark(autojump_clock):
    bridge = Bridge("plivo", ULAW, frame_bytes=160, reply_frames=25, clear=True)
    async with serving(bridge) as url:
        report = await dial(settings(url, "plivo"))
    assert bridge.of(ClearEcho) == [ClearEcho()] and not bridge.of(MarkEcho)
    assert (first(report)["clears"], first(report)["marks_echoed"]) == (1, 0)


async def test_the_bots_audio_is_recorded_per_call(autojump_clock, tmp_path):
    bridge = Bridge("twilio", ULAW, frame_bytes=160, reply_frames=25)
    async with serving(bridge) as url:
        await dial(settings(url, calls=2, rate=4, record=str(tmp_path / "bot-{call}.wav")))
    for number in (1, 2):
        samples, fmt = read_wav(tmp_path / f"bot-{number}.wav")
        assert fmt == AudioFormat("pcm_s16le", 8000)
        expected = np.tile(g711.ulaw_decode(np.frombuffer(tone(ULAW, 160), np.uint8)), 25)
        assert np.array_equal(samples, expected)


# -- what the caller sends --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["twilio", "plivo", "exotel", "telnyx", "vonage", "jambonz"])
async def test_dtmf_digits_reach_the_bridge_at_their_times(autojump_clock, protocol):
    caller = settings("ws://x/", protocol, dtmf="12#", dtmf_at=0.3, dtmf_interval=0.1)
    bridge = Bridge(protocol, caller.format, frame_bytes=160, reply_frames=0, subprotocols=caller.subprotocols)
    async with serving(bridge) as url:
        report = await dial(attrs.evolve(caller, url=url))
    (start_at,) = [t for t, e in bridge.events if isinstance(e, Start)]
    digits = [(round(t - start_at, 6), e.digit) for t, e in bridge.events if isinstance(e, Dtmf)]
    assert digits == [(0.3, "1"), (0.4, "2"), (0.5, "#")]
    assert first(report)["sent"]["dtmf"] == 3 and report["sent"]["dtmf"] == 3


async def test_the_caller_says_a_wav_file_on_the_providers_grid(autojump_clock):
    bridge = Bridge("twilio", ULAW, frame_bytes=160, reply_frames=0)
    async with serving(bridge) as url:
        await dial(settings(url, audio=SPEECH, speak_at=0.1, duration=3.0))
    media = [(t, e) for t, e in bridge.events if isinstance(e, Media)]
    (start_at,) = [t for t, e in bridge.events if isinstance(e, Start)]
    assert [round(t - start_at, 6) for t, _ in media] == [round(0.02 * (n + 1), 6) for n in range(150)]
    assert [e.chunk for _, e in media] == list(range(1, 151))
    assert [e.timestamp for _, e in media] == [20 * n for n in range(150)]
    heard = g711.ulaw_decode(np.frombuffer(b"".join(e.payload for _, e in media), np.uint8))
    assert not heard[:800].any() and heard[800:8800].any()  # silence for 0.1 s, then speech
    pcm, _ = read_wav(SPEECH)
    spoken = np.flatnonzero(heard)
    assert spoken[0] >= 800 and spoken[-1] < 800 + round(len(pcm) / 2) + 1


async def test_a_hang_up_mid_call_closes_without_stop(autojump_clock):
    bridge = Bridge("twilio", ULAW, frame_bytes=160, reply_frames=50)
    async with serving(bridge) as url:
        report = await dial(settings(url, calls=2, rate=10, hangup_after=0.5, disconnects=1))
    hung, whole = report["per_call"]
    assert hung["hangup"] == "hangup" and hung["close"] == {"code": 1000, "by": "caller", "reason": "hangup"}
    assert hung["sent"]["frames"] == 25 and not hung["sent"]["stop"] and hung["outcome"] == "completed"
    assert whole["hangup"] is None and whole["sent"]["stop"] and whole["sent"]["frames"] == 50
    assert len(bridge.of(Stop)) == 1 and report["completed"] == 2


async def test_a_hang_up_after_some_of_the_bots_frames(autojump_clock):
    bridge = Bridge("twilio", ULAW, frame_bytes=160, reply_frames=40)
    async with serving(bridge) as url:
        report = await dial(settings(url, disconnect_after=10))
    call = first(report)
    assert call["hangup"] == "bot_frames" and call["frames"] == 10 and not bridge.of(Stop)
    assert call["close"]["by"] == "caller" and call["outcome"] == "completed"


async def test_impairments_are_seeded_and_repeat_exactly(autojump_clock):
    impaired: dict[str, Any] = {
        "drop": 0.1,
        "duplicate": 0.1,
        "reorder": 0.1,
        "jitter": 0.005,
        "seed": 3,
        "duration": 2.0,
    }
    runs = []
    for _ in range(2):
        bridge = Bridge("twilio", ULAW, frame_bytes=160, reply_frames=0)
        async with serving(bridge) as url:
            report = await dial(settings(url, **impaired))
        (start_at,) = [t for t, e in bridge.events if isinstance(e, Start)]
        heard = [(round(t - start_at, 9), e.sequence_number) for t, e in bridge.events if isinstance(e, Media)]
        runs.append((first(report)["sent"], heard))
    assert runs[0] == runs[1]
    sent, heard = runs[0]
    assert sent["dropped"] and sent["duplicated"] and sent["reordered"]
    assert len(heard) == sent["frames"] == 100 - sent["dropped"] + sent["duplicated"]
    numbers = [n or 0 for _, n in heard]
    assert numbers != sorted(numbers) and len(set(numbers)) == 100 - sent["dropped"]


# -- what the bridge gets wrong ---------------------------------------------------------------------------


async def test_bad_messages_from_the_bridge_are_counted_by_reason(autojump_clock):
    sid = "MZ-not-this-stream"
    bad: list[str | bytes] = [
        "{not json",
        b"\x00\x01",
        '{"event": "bogus"}',
        '["an", "array"]',
        json.dumps({"event": "media", "streamSid": sid, "media": {"payload": "AAAA"}}),
        '{"event": "media", "streamSid": "SID", "media": {"payload": "%%%"}}',
    ]
    bridge = Bridge("twilio", ULAW, frame_bytes=160, reply_frames=5, bad=bad)
    async with serving(bridge) as url:
        report = await dial(settings(url))
    expected = {"bad_base64": 1, "bad_json": 1, "bad_shape": 1, "binary_frame": 1, "unknown_event": 1}
    assert first(report)["errors"] == {**expected, "wrong_stream_id": 1} == report["errors"]
    assert first(report)["frames"] == 5 and report["completed"] == 1


async def test_wrong_frame_sizes_and_a_late_frame(autojump_clock):
    bridge = Bridge("twilio", ULAW, frame_bytes=320, reply_frames=5)
    async with serving(bridge) as url:
        report = await dial(settings(url))
    call = first(report)
    assert (call["frames"], call["wrong_size"]) == (5, 5)
    # 40 ms frames every 40 ms: on time for their length, so no deviation and no gap
    assert call["deviation_ms"]["max"] == pytest.approx(0, abs=1e-9) and call["gaps"]["count"] == 0


# -- the dialer: arrivals, refusals, timeouts -------------------------------------------------------------


async def test_calls_arrive_at_the_set_rate(autojump_clock):
    bridge = Bridge("twilio", ULAW, frame_bytes=160, reply_frames=10)
    async with serving(bridge) as url:
        report = await dial(settings(url, calls=4, rate=2))
    starts = [t for t, e in bridge.events if isinstance(e, Start)]
    assert [round(t - starts[0], 6) for t in starts] == [0.0, 0.5, 1.0, 1.5]
    assert len({e.stream_id for e in bridge.of(Start)}) == 4
    assert (report["placed"], report["completed"], report["failed"], report["active"]) == (4, 4, {}, 0)
    assert report["frames"] == 40 and report["deviation_ms"]["count"] == 36
    assert report["close_codes"] == {"1000": 4} and report["first_audio_ms"]["count"] == 4
    assert report["first_audio_ms"]["max"] == pytest.approx(200, rel=0.02)


async def test_failures_are_counted_by_reason(autojump_clock):
    bridge = Bridge("twilio", ULAW, frame_bytes=160, reply_frames=0)
    server = Server({"/call": bridge}, max_calls=1)
    async with trio.open_nursery() as nursery:
        listener = await open_listener("127.0.0.1", 0)
        await nursery.start(server.serve, [listener])
        url = f"ws://127.0.0.1:{bound_port(listener)}/call"
        report = await dial(settings(url, calls=2, rate=10))
        missing = await dial(settings(url.replace("/call", "/nowhere")))
        server.abort()
    assert (report["completed"], report["failed"]) == (1, {"http_503": 1})
    assert report["per_call"][1]["close"] is None and report["per_call"][1]["outcome"] == "http_503"
    assert missing["failed"] == {"http_404": 1}
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    unreachable = await dial(settings(f"ws://127.0.0.1:{port}/call"))
    assert unreachable["failed"] == {"unreachable": 1}


async def test_a_call_that_does_not_end_times_out(autojump_clock):
    bridge = Bridge("twilio", ULAW, frame_bytes=160, reply_frames=0, close_on_stop=False)
    async with serving(bridge) as url:
        began = trio.current_time()
        report = await dial(settings(url, linger=30, timeout=5))
        assert trio.current_time() - began == pytest.approx(5, abs=0.01)
    call = first(report)
    assert report["failed"] == {"timeout": 1} and call["sent"]["stop"]
    assert call["close"] == {"code": 1001, "by": "caller", "reason": "going away"}


async def test_a_server_that_closes_early_fails_the_call(autojump_clock):
    class Impatient(Bridge):
        async def call(self, ws: websocket.WebSocket) -> tuple[str, Mapping[str, Any]]:
            await ws.receive()
            await ws.receive()
            await ws.close(1011, "no thanks")
            return "completed", {}

    async with serving(Impatient("twilio", ULAW, frame_bytes=160)) as url:
        report = await dial(settings(url))
    assert report["failed"] == {"server_closed": 1}
    assert first(report)["close"] == {"code": 1011, "by": "server", "reason": "no thanks"}


async def test_the_upgrade_is_signed_and_asks_for_the_subprotocol(autojump_clock):
    bridge = Bridge("twilio", ULAW, frame_bytes=160, reply_frames=0, subprotocols=("audio.example.org",))
    async with serving(bridge) as url:
        public = "ws://calls.example.com/call"
        report = await dial(
            settings(
                url,
                auth_token="secret-token",
                public_url=public,
                subprotocol="audio.example.org",
                headers=["X-Tenant: acme"],
            )
        )
    (request,) = bridge.requests
    assert twilio_valid(public, {}, "secret-token", request.headers["x-twilio-signature"])
    assert request.headers["sec-websocket-protocol"] == "audio.example.org"
    assert request.headers["x-tenant"] == "acme" and report["completed"] == 1
    assert "secret-token" not in repr(settings(url, auth_token="secret-token"))


def test_plivo_signs_with_a_nonce():
    caller = settings("ws://127.0.0.1:1/plivo", "plivo", auth_token="tok")
    headers = dict(caller.upgrade_headers(3))
    nonce = headers["X-Plivo-Signature-V3-Nonce"]
    assert plivo_v3_valid("GET", "ws://127.0.0.1:1/plivo", {}, nonce, "tok", headers["X-Plivo-Signature-V3"])
    assert dict(caller.upgrade_headers(3)) == headers != dict(caller.upgrade_headers(4))


# -- the settings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"protocol": "raw", "dtmf": "1"}, r"^dtmf: raw streams carry no DTMF$"),
        ({"dtmf": "1x"}, r"^dtmf: digits are 0-9, \*, #, A-D, got 'x'$"),
        ({"dtmf": "123", "dtmf_at": 0.9}, r"^dtmf: the last digit falls at 1.4 s, after the call's 1 s$"),
        ({"protocol": "exotel", "auth_token": "t"}, r"^auth_token: exotel does not sign its streams; signing: "),
        ({"url": "wss://example.com/x"}, r"^url: the dialer speaks ws:// only"),
        ({"parameters": ["novalue"]}, r"^parameters: each must be NAME=VALUE, got 'novalue'$"),
        ({"headers": ["A: b", "NoColon"]}, r"^headers: each must be 'Name: value' on one line; item 2 is not$"),
        ({"send_frame_ms": 0.01}, r"^send_frame_ms: 0.01 ms at 8000 Hz is 0.08 samples"),
        ({"record": "x-{number}.wav"}, r"^record: only \{call\} may stand in braces"),
    ],
)
def test_settings_refused(kw, message):
    with pytest.raises(ParamError, match=message):
        CallerSettings(**{"url": "ws://127.0.0.1:1/x", "protocol": "twilio", "duration": 1.0, **kw})


# -- the pure core, without a socket ----------------------------------------------------------------------


def step(call: CallerCall, until: float = 100.0) -> list[tuple[float, Any]]:
    """Everything the call sends, with when, stepping from one due time to the next."""
    out = []
    while (due := call.next_due()) is not None and due <= until:
        out += [(round(due, 9), item) for item in call.pop_due(due)]
    return out


def test_the_core_sends_the_opening_the_grid_then_stop_and_lingers():
    caller = settings("ws://127.0.0.1:1/x", duration=0.1, linger=0.5)
    call = CallerCall(caller, 1, b"")
    call.open(10.0)
    sent = step(call)
    events = [(t, json.loads(m)["event"] if isinstance(m, str) else m) for t, m in sent]
    assert events == [
        (10.0, "connected"),
        (10.0, "start"),
        *[(round(10.0 + 0.02 * n, 9), "media") for n in range(1, 6)],
        (10.1, "stop"),
        (10.6, Hangup("stopped")),
    ]
    assert call.ended and call.next_due() is None and call.pop_due(11.0) == []
    assert (call.sent_frames, call.stop_sent, call.hangup) == (5, True, "stopped")


def test_a_binary_stream_ends_by_closing_right_after_its_last_frame():
    call = CallerCall(settings("ws://127.0.0.1:1/x", "raw", duration=0.12), 1, b"")
    call.open(0.0)
    assert step(call) == [(0.06, bytes(960)), (0.12, bytes(960)), (0.12, Hangup("stopped"))]


def test_the_callers_speech_sits_at_speak_at_with_silence_around():
    caller = settings("ws://127.0.0.1:1/x", "raw", duration=0.3, speak_at=0.07)
    speech = bytes(range(1, 201)) * 2  # 200 samples of PCM16, never zero
    call = CallerCall(caller, 1, speech)
    call.open(0.0)
    audio = b"".join(m for _, m in step(call) if isinstance(m, bytes))
    assert audio == bytes(2 * 560) + speech + bytes(len(audio) - 1120 - 400)


def test_speech_from_a_wav_file_is_resampled_and_encoded():
    caller = settings("ws://127.0.0.1:1/x")
    pcm, fmt = read_wav(SPEECH)
    speech = load_speech(settings("ws://127.0.0.1:1/x", audio=SPEECH))
    assert fmt.sample_rate == 16000 and len(speech) == (len(pcm) + 1) // 2  # a μ-law byte per 8 kHz sample
    synthesized = load_speech(caller)
    assert len(synthesized) > 8000 and len(set(synthesized)) > 50


# -- an independent peer: a bridge written with the websockets library ------------------------------------


@contextlib.contextmanager
def websockets_twilio_bridge(frames: int = 10) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A Twilio bridge on the websockets library, in a thread: answers start with media and a mark, closes on stop."""
    seen: list[dict[str, Any]] = []
    payload = base64.b64encode(tone(ULAW, 160)).decode()

    def handler(conn: Any) -> None:
        for raw in conn:
            message = json.loads(raw)
            seen.append(message)
            if message["event"] == "start":
                sid = message["start"]["streamSid"]
                for _ in range(frames):
                    conn.send(json.dumps({"event": "media", "streamSid": sid, "media": {"payload": payload}}))
                conn.send(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": "reply-1"}}))
            elif message["event"] == "stop":
                conn.close()
                return

    with peer_serve(handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/twilio", seen
        finally:
            server.shutdown()
            thread.join(10)


async def test_the_caller_speaks_twilio_to_a_bridge_we_did_not_write():
    with trio.fail_after(20), websockets_twilio_bridge() as (url, seen):
        report = await dial(settings(url, duration=0.4, linger=2, parameters=["lang=en"], dtmf="5", dtmf_at=0.2))
    call = first(report)
    assert (report["completed"], report["failed"]) == (1, {})
    assert (call["frames"], call["wrong_size"], call["errors"], call["marks_echoed"]) == (10, 0, {}, 1)
    assert call["close"] == {"code": 1000, "by": "server", "reason": ""}
    events = [m["event"] for m in seen if m["event"] != "mark"]
    assert events == ["connected", "start", *["media"] * 10, "dtmf", *["media"] * 10, "stop"]
    assert [m["mark"]["name"] for m in seen if m["event"] == "mark"] == ["reply-1"]
    start = seen[1]
    assert start["start"]["customParameters"] == {"lang": "en"} and start["sequenceNumber"] == "1"
    assert start["start"]["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    numbers = [int(m["sequenceNumber"]) for m in seen[1:]]
    assert numbers == list(range(1, len(numbers) + 1))
    media = [m for m in seen if m["event"] == "media"]
    assert all(len(base64.b64decode(m["media"]["payload"])) == 160 for m in media)
    assert [m["media"]["chunk"] for m in media] == [str(n) for n in range(1, 21)]
    assert next(m for m in seen if m["event"] == "dtmf")["dtmf"]["digit"] == "5"


def test_rtstream_simulate_caller_dials_and_reports(tmp_path):
    path = tmp_path / "caller.json"
    with websockets_twilio_bridge(frames=5) as (url, seen):
        result = CliRunner().invoke(
            main,
            [
                *("simulate", "caller", url, "protocol=twilio", "calls=2", "rate=20", "duration=0.2", "linger=2"),
                *("report_calls=0", "--report", str(path)),
            ],
        )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "caller dialling (Ctrl-C stops it)" and lines[1] == "caller report"
    report = json.loads(path.read_text())
    assert (report["placed"], report["completed"], report["frames"], report["marks_echoed"]) == (2, 2, 10, 2)
    assert report["per_call"] == [] and sum(m["event"] == "stop" for m in seen) == 2


def test_rtstream_simulate_caller_refuses_bad_settings():
    result = CliRunner().invoke(main, ["simulate", "caller", "ws://127.0.0.1:1/x", "protocol=raw", "dtmf=#"])
    assert result.exit_code == 2
    assert result.output == "Error: service 'caller', key 'dtmf': raw streams carry no DTMF\n"
    missing = CliRunner().invoke(main, ["simulate", "caller", "protocol=twilio"])
    assert missing.exit_code == 2 and "url" in missing.output


def test_the_caller_service_dials():
    assert CallerService.dials and not TelephonyService.dials
    assert CallerService.info.name == "caller"


def test_marks_waiting_to_play_are_bounded():
    call = CallerCall(settings("ws://127.0.0.1:1/x"), 1, b"")
    call.open(0.0)
    side = PROTOCOLS["twilio"].bridge(ULAW)
    side.receive(call.checker.opening()[1])  # the bridge learns the stream id
    audio = side.send(SendMedia(tone(ULAW, 8000)))  # one second, so every mark waits for it
    call.receive(audio, 0.0)
    for n in range(MAX_PENDING_MARKS + 3):
        call.receive(side.send(SendMark(f"m{n}")), 0.0)
    report = call.report()
    assert report["marks"] == MAX_PENDING_MARKS + 3 and report["errors"] == {"too_many_marks": 3}
