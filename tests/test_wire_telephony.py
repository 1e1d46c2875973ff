"""rtstream.wire.telephony: each protocol's two sides through each other, and every bad message.

The bridge side's commands are read back by the provider side, the provider side's events by
the bridge side; then each side is fed what a bad peer would send, one reason at a time.
"""

import ast
import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtstream.frames import AudioFormat, Encoding
from rtstream.wire import RemoteProtocolError
from rtstream.wire.telephony import (
    PROTOCOLS,
    ChunkRule,
    ClearEcho,
    Dtmf,
    MarkEcho,
    Media,
    Metadata,
    Regrouper,
    SendClear,
    SendMark,
    SendMedia,
    Start,
    Stop,
)
from rtstream.wire.telephony.exotel import CHUNK_RULE

ROOT = Path(__file__).resolve().parent.parent
ULAW = AudioFormat(Encoding.PCM_MULAW, 8000)
PCM8 = AudioFormat(Encoding.PCM_S16LE, 8000)
PCM16 = AudioFormat(Encoding.PCM_S16LE, 16000)
SID = {"twilio": "MZ" + "a" * 32, "plivo": "b" * 8 + "-1111-2222-3333-" + "c" * 12, "exotel": "d" * 32}
FORMATS = [("raw", PCM8), ("raw", PCM16), ("twilio", ULAW), ("plivo", ULAW), ("plivo", PCM16), ("exotel", PCM8)]
JSON = [(p, f) for p, f in FORMATS if p != "raw"]


def pair(protocol, fmt):
    """The two sides of one stream, the bridge side having read the provider's opening."""
    wire = PROTOCOLS[protocol]
    provider = wire.provider(fmt, SID.get(protocol))
    bridge = wire.bridge(fmt)
    opened = [bridge.receive(m) for m in provider.opening(Start(stream_id=SID.get(protocol, ""), format=fmt))]
    assert bridge.ready
    return bridge, provider, opened


def raises(reason, detail=None):
    pattern = rf"^{reason}$" if detail is None else rf"^{reason}: {detail}$"
    return pytest.raises(RemoteProtocolError, match=pattern)


def payloads(fmt):
    return st.integers(1, 400).flatmap(lambda n: st.binary(min_size=n * fmt.frame_bytes, max_size=n * fmt.frame_bytes))


# -- the two sides through each other --------------------------------------------------------------


@pytest.mark.parametrize("protocol,fmt", FORMATS)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_bridge_commands_read_back_on_the_provider_side(protocol, fmt, data):
    bridge, provider, _ = pair(protocol, fmt)
    commands = [SendMedia(data.draw(payloads(fmt)))]
    if PROTOCOLS[protocol].marks:
        commands += [SendMark(data.draw(st.text(min_size=1))), SendClear()]
    for command in commands:
        assert provider.receive(bridge.send(command)) == command


@pytest.mark.parametrize("protocol,fmt", JSON)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_provider_events_read_back_on_the_bridge_side(protocol, fmt, data):
    bridge, provider, _ = pair(protocol, fmt)
    media = Media(
        data.draw(payloads(fmt)),
        timestamp=data.draw(st.none() | st.integers(0, 2**40)),
        chunk=data.draw(st.none() | st.integers(0, 2**20)),
    )
    heard = bridge.receive(provider.send(media))
    assert (heard.payload, heard.timestamp, heard.chunk) == (media.payload, media.timestamp, media.chunk)
    events = [MarkEcho(data.draw(st.text())), Dtmf(data.draw(st.sampled_from("0123456789*#"))), Stop()]
    events += [ClearEcho()] if protocol == "plivo" else []
    for event in events:
        assert bridge.receive(provider.send(event)) == event


@pytest.mark.parametrize("protocol,fmt", JSON)
def test_a_start_reads_back_with_its_ids_format_and_custom_parameters(protocol, fmt):
    wire = PROTOCOLS[protocol]
    provider, bridge = wire.provider(fmt, SID[protocol]), wire.bridge(fmt)
    start = Start(
        stream_id=SID[protocol],
        call_id="CA1",
        account_id="AC1",
        format=fmt,
        tracks=("inbound",) if protocol != "exotel" else (),
        custom_parameters={"lang": "en", "bot": "7"},
        caller="+1555" if protocol == "exotel" else None,
        called="+1666" if protocol == "exotel" else None,
    )
    assert not bridge.ready
    assert bridge.receive(provider.send(start)) == start
    assert bridge.ready and bridge.stream_id == SID[protocol]


@pytest.mark.parametrize(
    "protocol,fmt,numbers",
    [("twilio", ULAW, ["2", "3", "4"]), ("exotel", PCM8, [2, 3, 4]), ("plivo", ULAW, [1, 2, None])],
)
def test_the_provider_numbers_its_messages_in_its_own_style(protocol, fmt, numbers):
    bridge, provider, _ = pair(protocol, fmt)  # the opening's start took the first number
    payload = b"\x00" * fmt.bytes_in(20)
    sent = [provider.send(Media(payload)), provider.send(Media(payload)), provider.send(MarkEcho("m"))]
    key = "sequence_number" if protocol == "exotel" else "sequenceNumber"
    assert [json.loads(m).get(key) for m in sent] == numbers
    assert [bridge.receive(m).sequence_number for m in sent[:2]] == [int(n) for n in numbers[:2]]


def test_openings():
    def opening(protocol, fmt):
        provider = PROTOCOLS[protocol].provider(fmt, SID.get(protocol))
        return [json.loads(m) for m in provider.opening(Start(stream_id=SID.get(protocol, ""), call_id="CA1"))]

    assert opening("raw", PCM8) == []
    connected, start = opening("twilio", ULAW)
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert start["sequenceNumber"] == "1" and start["streamSid"] == start["start"]["streamSid"] == SID["twilio"]
    assert start["start"]["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    [start] = opening("plivo", PCM16)
    assert start["sequenceNumber"] == 0 and start["extra_headers"] == "{}"
    assert start["start"]["mediaFormat"] == {"encoding": "audio/x-l16", "sampleRate": 16000}
    connected, start = opening("exotel", AudioFormat("pcm_s16le", 24000))
    assert connected == {"event": "connected"} and start["sequence_number"] == 1
    assert start["start"]["media_format"] == {"encoding": "base64", "sample_rate": "24000", "bit_rate": "128kbps"}


def test_bridge_messages_as_each_provider_documents_them():
    twilio, _, _ = pair("twilio", ULAW)
    plivo, _, _ = pair("plivo", PCM16)
    exotel, _, _ = pair("exotel", PCM8)
    b64 = base64.b64encode(b"\x01\x02").decode()
    assert json.loads(twilio.send(SendMedia(b"\x01\x02"))) == {
        "event": "media",
        "streamSid": SID["twilio"],
        "media": {"payload": b64},
    }
    assert json.loads(twilio.send(SendClear())) == {"event": "clear", "streamSid": SID["twilio"]}
    assert json.loads(plivo.send(SendMedia(b"\x01\x02"))) == {
        "event": "playAudio",
        "media": {"contentType": "audio/x-l16", "sampleRate": 16000, "payload": b64},
    }
    assert json.loads(plivo.send(SendMark("u1"))) == {"event": "checkpoint", "streamId": SID["plivo"], "name": "u1"}
    assert json.loads(plivo.send(SendClear())) == {"event": "clearAudio", "streamId": SID["plivo"]}
    assert json.loads(exotel.send(SendMark("u1"))) == {
        "event": "mark",
        "stream_sid": SID["exotel"],
        "mark": {"name": "u1"},
    }
    assert json.loads(exotel.send(SendClear())) == {"event": "clear", "stream_sid": SID["exotel"]}


def test_raw_streams_carry_binary_audio_and_json_metadata_both_ways():
    bridge, provider, opened = pair("raw", PCM8)
    assert opened == [] and bridge.send(SendMedia(b"\x01\x00")) == b"\x01\x00"
    assert bridge.receive(provider.send(Media(b"\x02\x00"))) == Media(b"\x02\x00")
    assert bridge.receive(provider.send(Metadata({"sampleRate": 8000}))) == Metadata({"sampleRate": 8000})
    assert provider.receive('{"type": "ping"}') == Metadata({"type": "ping"})


def test_what_a_protocol_has_no_message_for_is_our_error_not_the_peers():
    bridge, _, _ = pair("raw", PCM8)
    with pytest.raises(ValueError, match=r"^RawBridge has no message for SendMark$"):
        bridge.send(SendMark("m"))
    with pytest.raises(ValueError, match=r"^TwilioProvider has no message for ClearEcho$"):
        PROTOCOLS["twilio"].provider(ULAW, "MZ1").send(ClearEcho())
    with pytest.raises(RuntimeError, match=r"^the stream has not started: no stream id to send to$"):
        PROTOCOLS["twilio"].bridge(ULAW).send(SendMedia(b"\xff"))


def test_what_each_protocol_carries():
    assert {name: p.rates for name, p in PROTOCOLS.items()} == {
        "raw": (8000, 16000),
        "twilio": (8000,),
        "plivo": (8000, 16000),
        "exotel": (8000, 16000, 24000),
        "telnyx": (8000,),
        "vonage": (8000, 16000),
        "jambonz": (8000, 16000, 24000),
        "freeswitch": (8000, 16000),
        "freeswitch_binary": (8000, 16000),
    }
    assert [name for name, p in PROTOCOLS.items() if not p.marks] == ["raw", "freeswitch", "freeswitch_binary"]
    assert [name for name, p in PROTOCOLS.items() if p.chunk_rule] == ["exotel", "telnyx", "vonage"]


# -- bad messages, one reason at a time ------------------------------------------------------------

BAD_FOR_TWILIO_BRIDGE = [
    (b"\x00" * 160, "binary_frame"),
    ("{oops", "bad_json"),
    ('{"event": "stop"} x', "bad_json"),
    ('{"event": "stop", "streamSid": "SID", "stop": ' + "[" * 100_000 + "]" * 100_000 + "}", "bad_json"),
    ("[1]", "bad_shape"),
    ('{"streamSid": "SID"}', "bad_shape"),
    ('{"event": 7}', "bad_shape"),
    ('{"event": "dance", "streamSid": "SID"}', "unknown_event"),
    ('{"event": "media", "streamSid": "MZother", "media": {"payload": "/w=="}}', "wrong_stream_id"),
    ('{"event": "media", "streamSid": "SID", "media": {"payload": "%%%"}}', "bad_base64"),
    ('{"event": "media", "streamSid": "SID", "media": {"payload": ""}}', "partial_sample"),
    ('{"event": "media", "streamSid": "SID", "media": {"payload": 5}}', "bad_shape"),
    ('{"event": "media", "streamSid": "SID", "media": "/w=="}', "bad_shape"),
    ('{"event": "media", "streamSid": "SID", "sequenceNumber": "x1", "media": {"payload": "/w=="}}', "bad_shape"),
    ('{"event": "mark", "streamSid": "SID", "mark": {"name": 1}}', "bad_shape"),
    ('{"event": "dtmf", "streamSid": "SID", "dtmf": {}}', "bad_shape"),
    ('{"event": "start", "start": {}}', "missing_stream_id"),
    ('{"event": "start", "start": {"streamSid": "S", "customParameters": {"a": 1}}}', "bad_shape"),
    ('{"event": "start", "start": {"streamSid": "S", "tracks": "inbound"}}', "bad_shape"),
    ('{"event": "start", "start": {"streamSid": "S", "mediaFormat": {"encoding": "audio/x-l16"}}}', "bad_media_format"),
]


@pytest.mark.parametrize("message,reason", BAD_FOR_TWILIO_BRIDGE)
def test_the_twilio_bridge_side_refuses(message, reason):
    bridge, _, _ = pair("twilio", ULAW)
    with raises(reason, r".*" if reason != "partial_sample" else "0 bytes is not a whole number of .* samples"):
        bridge.receive(message.replace("SID", SID["twilio"]) if isinstance(message, str) else message)


def test_whitespace_around_a_message_is_json_too():
    bridge, _, _ = pair("twilio", ULAW)
    bridge.receive(f' {{"event": "start", "start": {{"streamSid": "{SID["twilio"]}"}}}}\n')
    assert bridge.receive(f'\t{{"event": "stop", "streamSid": "{SID["twilio"]}"}} ') == Stop()


@pytest.mark.parametrize(
    "protocol,fmt,message,reason",
    [
        ("exotel", PCM8, '{"event": "media", "stream_sid": "SID", "media": {"payload": "AA=="}}', "partial_sample"),
        ("exotel", PCM8, '{"event": "mark", "stream_sid": "other", "mark": {"name": "m"}}', "wrong_stream_id"),
        ("exotel", PCM8, '{"event": "start", "start": {"stream_sid": "S", "media_format": {}}}', "bad_media_format"),
        ("plivo", PCM16, '{"event": "media", "media": {"payload": "AA=="}}', "partial_sample"),
        ("plivo", PCM16, '{"event": "playedStream", "streamId": "other", "name": "m"}', "wrong_stream_id"),
        ("plivo", PCM16, '{"event": "playedStream", "streamId": "SID"}', "bad_shape"),
        ("plivo", PCM16, '{"event": "checkpoint", "streamId": "SID", "name": "m"}', "unknown_event"),
        ("plivo", PCM16, '{"event": "start", "start": {"streamId": "S"}, "extra_headers": "{x"}', "bad_shape"),
        ("plivo", PCM16, '{"event": "start", "start": {"callId": "C"}}', "missing_stream_id"),
        (
            "plivo",
            PCM16,
            '{"event": "start", "start": {"streamId": "S", "mediaFormat": {"encoding": ["x"]}}}',
            "bad_media_format",
        ),
        ("raw", PCM8, b"\x00\x00\x00", "partial_sample"),
        ("raw", PCM8, "not json", "bad_json"),
    ],
)
def test_the_other_bridge_sides_refuse(protocol, fmt, message, reason):
    bridge, _, _ = pair(protocol, fmt)
    with raises(reason, ".*"):
        bridge.receive(message.replace("SID", SID.get(protocol, "")) if isinstance(message, str) else message)


@pytest.mark.parametrize(
    "protocol,fmt,message,reason,detail",
    [
        ("twilio", ULAW, b"\x00", "binary_frame", "binary messages are not accepted; send JSON text"),
        ("twilio", ULAW, "{", "bad_json", "the message is not valid JSON: .*"),
        ("twilio", ULAW, '{"event": "connected"}', "unknown_event", "event 'connected'"),
        ("twilio", ULAW, '{"event": "clear"}', "wrong_stream_id", "streamSid None is not 'SID'"),
        ("twilio", ULAW, '{"event": "clear", "streamSid": "MZ0"}', "wrong_stream_id", "streamSid 'MZ0' is not 'SID'"),
        ("twilio", ULAW, '{"event": "media", "streamSid": "SID", "media": {"payload": "*"}}', "bad_base64", ".*"),
        ("twilio", ULAW, '{"event": "mark", "streamSid": "SID", "mark": {}}', "bad_shape", "name must be a string"),
        (
            "exotel",
            PCM8,
            '{"event": "media", "stream_sid": "SID", "media": {"payload": "AA=="}}',
            "partial_sample",
            ".*",
        ),
        ("exotel", PCM8, '{"event": "clear", "streamSid": "SID"}', "wrong_stream_id", ".*"),
        ("plivo", ULAW, '{"event": "clearAudio", "streamId": "x"}', "wrong_stream_id", ".*"),
        ("plivo", ULAW, '{"event": "checkpoint", "streamId": "SID"}', "bad_shape", "name must be a string"),
        ("plivo", ULAW, '{"event": "media", "media": {"payload": "/w=="}}', "unknown_event", "event 'media'"),
        (
            "plivo",
            ULAW,
            '{"event": "playAudio", "media": {"contentType": "audio/x-l16", "sampleRate": 8000, "payload": "AAA="}}',
            "wrong_content_type",
            "contentType 'audio/x-l16'",
        ),
        (
            "plivo",
            ULAW,
            '{"event": "playAudio", "media": {"contentType": ["x"], "sampleRate": 8000, "payload": "AAA="}}',
            "wrong_content_type",
            r"contentType \['x'\]",
        ),
        (
            "plivo",
            ULAW,
            (
                '{"event": "playAudio", "media": {"contentType": "audio/x-mulaw", "sampleRate": "8000",'
                ' "payload": "/w=="}}'
            ),
            "wrong_sample_rate",
            "sampleRate '8000'",
        ),
        (
            "plivo",
            ULAW,
            '{"event": "playAudio", "media": {"payload": "@"}}',
            "bad_base64",
            "payload is not valid base64",
        ),
        ("raw", PCM8, b"\x00", "partial_sample", "1 bytes is not a whole number of pcm_s16le 8000 Hz mono samples"),
        ("raw", PCM8, "nope", "bad_json", ".*"),
    ],
)
def test_the_provider_sides_refuse(protocol, fmt, message, reason, detail):
    provider = PROTOCOLS[protocol].provider(fmt, SID.get(protocol))
    sid = SID.get(protocol, "")
    with raises(reason, detail.replace("SID", sid)):
        provider.receive(message.replace("SID", sid) if isinstance(message, str) else message)


# -- the chunk rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule,message",
    [
        ((320, 0, 300), r"^max_bytes \(300\) must be at least multiple \(320\)$"),
        ((320, 4000, 3200), r"^min_bytes \(4000\) must not exceed max_bytes \(3200\)$"),
        ((320, 3300, 3500), r"^no multiple of 320 bytes lies between min_bytes \(3300\) and max_bytes \(3500\)$"),
        ((0, 0, 10), r"^multiple must be at least 1, got 0$"),
    ],
)
def test_a_chunk_rule_that_allows_no_chunk_is_refused(rule, message):
    with pytest.raises(ValueError, match=message):
        ChunkRule(*rule)


@settings(max_examples=200, deadline=None)
@given(
    multiple=st.integers(1, 700),
    low=st.integers(0, 5000),
    span=st.integers(0, 5000),
    pushes=st.lists(st.integers(0, 20_000), max_size=12),
)
def test_the_regrouper_only_ever_makes_allowed_chunks_and_loses_nothing(multiple, low, span, pushes):
    try:
        rule = ChunkRule(multiple, low, low + span)
    except ValueError:
        return
    regrouper = Regrouper(rule, 0)
    out = []
    for size in pushes:
        out += regrouper.push(b"\x01" * size)
    last = regrouper.flush()
    assert all(rule.allows(len(c)) for c in out)
    if last is not None:
        assert rule.allows(len(last)) and last.rstrip(b"\x00") == b"\x01" * (len(last) - regrouper.padded)
    assert sum(map(len, out)) + (len(last) if last else 0) - regrouper.padded == sum(pushes)


def test_exotel_rule():
    assert (CHUNK_RULE.smallest, CHUNK_RULE.largest) == (3200, 99_840)
    assert CHUNK_RULE.allows(3200) and CHUNK_RULE.allows(3520) and not CHUNK_RULE.allows(3000)


# -- the layer's boundaries -------------------------------------------------------------------------


def test_the_wire_layer_imports_only_the_engine_core():
    allowed = {"__future__", "abc", "base64", "binascii", "collections", "json", "re", "typing"}
    allowed |= {"urllib"}  # urllib.parse: the TTS protocols' handshake URLs and queries, pure
    allowed |= {"attrs", "rtstream.frames"}
    wire = ROOT / "rtstream" / "wire"
    for path in wire.rglob("*.py"):
        depth = len(path.relative_to(wire).parts)  # how many levels up a relative import may go and stay inside
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            elif isinstance(node, ast.ImportFrom):
                assert node.level <= depth, f"{path.name} imports from outside rtstream.wire"
                continue
            else:
                continue
            for name in names:
                assert name in allowed or name.split(".")[0] in allowed - {"rtstream"}, f"{path.name} imports {name}"


def test_provider_field_names_live_in_the_wire_layer_only():
    names = ("streamSid", "playAudio", "stream_sid", "context_id", "streamId", "sequenceNumber", "word_timestamps")
    names += ("call_control_id", "websocket:connected", "websocket:notify", "killAudio", "mixType", "streamAudio")
    for folder in ("rtstream", "stages", "simulators"):
        for path in (ROOT / folder).rglob("*.py"):
            if "wire" in path.relative_to(ROOT).parts:
                continue
            text = path.read_text()
            assert not [n for n in names if n in text], path
