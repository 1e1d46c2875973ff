"""rtstream.wire.telephony: Telnyx, Vonage, Jambonz and FreeSWITCH, each side through the other.

As in test_wire_telephony.py: the bridge side's commands are read back by the provider side
and the provider side's events by the bridge side; the providers' documented example messages
parse to the right events; then each side is fed what a bad peer would send, one reason at a time.
"""

import base64
import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtstream.frames import AudioFormat, Encoding
from rtstream.wire import RemoteProtocolError
from rtstream.wire.telephony import (
    PROTOCOLS,
    ChunkRule,
    ClearEcho,
    Connected,
    Dtmf,
    DurationRule,
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
from rtstream.wire.telephony.vonage import MARK_KEY

ULAW = AudioFormat(Encoding.PCM_MULAW, 8000)
ALAW = AudioFormat(Encoding.PCM_ALAW, 8000)
PCM8 = AudioFormat(Encoding.PCM_S16LE, 8000)
PCM16 = AudioFormat(Encoding.PCM_S16LE, 16000)
PCM24 = AudioFormat(Encoding.PCM_S16LE, 24000)
FORMATS = [
    ("telnyx", ULAW),
    ("telnyx", ALAW),
    ("vonage", PCM8),
    ("vonage", PCM16),
    ("jambonz", PCM8),
    ("jambonz", PCM16),
    ("jambonz", PCM24),
    ("freeswitch", PCM8),
    ("freeswitch", PCM16),
    ("freeswitch_binary", PCM8),
    ("freeswitch_binary", PCM16),
]
DIGEST = hashlib.sha256(b"providers").hexdigest()
TELNYX_SID = "32DE0DEA-53CB-4B21-89A4-9E1819C043BC"
B64 = base64.b64encode(b"\x01\x02").decode()


def sid_of(protocol):
    return PROTOCOLS[protocol].provider.new_stream_id(DIGEST)


def pair(protocol, fmt, **start):
    """The two sides of one stream, the bridge side having read the provider's opening."""
    wire = PROTOCOLS[protocol]
    sid = sid_of(protocol)
    provider, bridge = wire.provider(fmt, sid), wire.bridge(fmt)
    opened = [bridge.receive(m) for m in provider.opening(Start(stream_id=sid or "", format=fmt, **start))]
    assert bridge.ready
    return bridge, provider, opened


def raises(reason, detail=".*"):
    return pytest.raises(RemoteProtocolError, match=rf"^{reason}: {detail}$")


def payloads(protocol, fmt, inbound):
    """Audio each side accepts: Vonage exactly 20 ms both ways, FreeSWITCH 20 ms multiples inbound."""
    if protocol == "vonage":
        return st.binary(min_size=fmt.bytes_in(20), max_size=fmt.bytes_in(20))
    if inbound and protocol.startswith("freeswitch"):
        unit, most = fmt.bytes_in(20), 10
    else:
        unit, most = fmt.frame_bytes, 300
    return st.integers(1, most).flatmap(lambda n: st.binary(min_size=n * unit, max_size=n * unit))


# -- the two sides through each other --------------------------------------------------------------


@pytest.mark.parametrize("protocol,fmt", FORMATS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_bridge_commands_read_back_on_the_provider_side(protocol, fmt, data):
    bridge, provider, _ = pair(protocol, fmt)
    commands = [SendMedia(data.draw(payloads(protocol, fmt, inbound=False)))]
    if PROTOCOLS[protocol].marks:
        commands += [SendMark(data.draw(st.text(min_size=1))), SendClear()]
    for command in commands:
        assert provider.receive(bridge.send(command)) == command


EVENTS = {
    "telnyx": [MarkEcho("m1"), Dtmf("5"), Metadata({"code": 100002, "title": "unknown error"}), Stop()],
    "vonage": [MarkEcho("m1"), ClearEcho(), Dtmf("#")],
    "jambonz": [MarkEcho("m1"), Dtmf("*")],
    "freeswitch": [Metadata({"event": "heartbeat"}), Metadata([1, "two"])],
    "freeswitch_binary": [Metadata({"event": "heartbeat"})],
}


@pytest.mark.parametrize("protocol,fmt", FORMATS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_provider_events_read_back_on_the_bridge_side(protocol, fmt, data):
    bridge, provider, _ = pair(protocol, fmt)
    payload = data.draw(payloads(protocol, fmt, inbound=True))
    if protocol == "telnyx":
        media = Media(payload, timestamp=data.draw(st.integers(0, 2**40)), chunk=data.draw(st.integers(0, 2**20)))
        heard = bridge.receive(provider.send(media))
        assert (heard.payload, heard.timestamp, heard.chunk) == (payload, media.timestamp, media.chunk)
    else:
        assert bridge.receive(provider.send(Media(payload))) == Media(payload)
    for event in EVENTS[protocol] + [MarkEcho(data.draw(st.text()))] * PROTOCOLS[protocol].marks:
        assert bridge.receive(provider.send(event)) == event


@pytest.mark.parametrize(
    "protocol,fmt,start",
    [
        ("telnyx", ULAW, dict(call_id="v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ", account_id="U1")),
        ("telnyx", ALAW, dict(custom_parameters={"lang": "en"})),
        ("vonage", PCM16, dict(custom_parameters={"lang": "en", "caller-id": "447700900123"})),
        (
            "jambonz",
            PCM16,
            dict(
                account_id="A1", caller="+1555", called="+1666", custom_parameters={"bot": "7", "direction": "inbound"}
            ),
        ),
    ],
)
def test_a_start_reads_back_with_its_ids_format_and_custom_parameters(protocol, fmt, start):
    wire = PROTOCOLS[protocol]
    sid = sid_of(protocol) or ""
    if protocol == "jambonz":
        start["call_id"] = sid  # jambonz's callSid names both the call and the stream
    start = Start(stream_id=sid, format=fmt, **start)
    provider, bridge = wire.provider(fmt, sid), wire.bridge(fmt)
    assert not bridge.ready
    assert bridge.receive(provider.opening(start)[-1]) == start
    assert bridge.ready and bridge.stream_id == sid


def test_openings_are_what_each_provider_sends_first():
    def opening(protocol, fmt, **start):
        provider = PROTOCOLS[protocol].provider(fmt, sid_of(protocol))
        return provider.opening(Start(stream_id=sid_of(protocol) or "", **start))

    connected, start = map(json.loads, opening("telnyx", ALAW, call_id="v2:abc", account_id="U1"))
    assert connected == {"event": "connected", "version": "1.0.0"}
    assert start == {
        "event": "start",
        "sequence_number": "1",
        "stream_id": sid_of("telnyx"),
        "start": {
            "user_id": "U1",
            "call_control_id": "v2:abc",
            "custom_parameters": {},
            "media_format": {"encoding": "PCMA", "sample_rate": 8000, "channels": 1},
        },
    }
    assert sid_of("telnyx") == sid_of("telnyx").upper() and len(sid_of("telnyx")) == 36
    [connected] = map(json.loads, opening("vonage", PCM16, custom_parameters={"lang": "en"}))
    assert connected == {"event": "websocket:connected", "content-type": "audio/l16;rate=16000", "lang": "en"}
    [metadata] = map(json.loads, opening("jambonz", PCM8, caller="+1555", custom_parameters={"bot": "7"}))
    assert metadata == {
        "callSid": sid_of("jambonz"),
        "from": "+1555",
        "sampleRate": 8000,
        "mixType": "mono",
        "bot": "7",
    }
    assert opening("freeswitch", PCM8) == [] and opening("freeswitch_binary", PCM16) == []
    assert opening("freeswitch", PCM8, custom_parameters={"bot": "7"}) == ['{"bot": "7"}']


# -- the providers' documented messages ------------------------------------------------------------

TELNYX_DOCS = [
    ('{"event": "connected", "version": "1.0.0"}', Connected()),
    (
        '{"event": "start", "sequence_number": "1", "start": {"user_id": "3E6F995F-85F7-4705-9741-53B116D28237",'
        ' "call_control_id": "v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ",'
        ' "client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d",'
        ' "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}}, "stream_id": "SID"}',
        Start(
            stream_id=TELNYX_SID,
            call_id="v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ",
            account_id="3E6F995F-85F7-4705-9741-53B116D28237",
            format=ULAW,
        ),
    ),
    (
        '{"event": "media", "sequence_number": "4", "media": {"track": "inbound", "chunk": "2", "timestamp": "5",'
        f' "payload": "{B64}"}}, "stream_id": "SID"}}',
        Media(b"\x01\x02", sequence_number=4, timestamp=5, chunk=2),
    ),
    (
        '{"event": "dtmf", "stream_id": "SID", "occurred_at": "2022-02-24T15:02:36.987Z", "sequence_number": "5",'
        ' "dtmf": {"digit": "1"}}',
        Dtmf("1"),
    ),
    (
        '{"event": "mark", "sequence_number": "4", "stream_id": "SID", "mark": {"name": "my label"}}',
        MarkEcho("my label"),
    ),
    (
        '{"event": "error", "sequence_number": "6", "stream_id": "SID",'
        ' "payload": {"code": 100002, "title": "unknown error", "detail": "An unknown error occurred"}}',
        Metadata({"code": 100002, "title": "unknown error", "detail": "An unknown error occurred"}),
    ),
    (
        '{"event": "stop", "sequence_number": "5", "stop": {"user_id": "U", "call_control_id": "v2:T"},'
        ' "stream_id": "SID"}',
        Stop(),
    ),
]


def test_telnyx_documented_messages():
    bridge = PROTOCOLS["telnyx"].bridge(ULAW)
    assert [bridge.receive(m.replace("SID", TELNYX_SID)) for m, _ in TELNYX_DOCS] == [e for _, e in TELNYX_DOCS]


def test_telnyx_media_out_of_order_keeps_its_numbers_for_the_jitter_buffer():
    bridge, provider, _ = pair("telnyx", ULAW)
    sent = [provider.send(Media(bytes([n]) * 160, timestamp=20 * n, chunk=n)) for n in range(1, 4)]
    heard = [bridge.receive(m) for m in (sent[2], sent[0], sent[1])]
    assert [(m.sequence_number, m.chunk, m.payload[0]) for m in heard] == [(4, 3, 3), (2, 1, 1), (3, 2, 2)]


def test_vonage_documented_messages():
    bridge = PROTOCOLS["vonage"].bridge(PCM16)
    assert not bridge.ready
    start = bridge.receive(
        '{"event": "websocket:connected", "content-type": "audio/l16;rate=16000", "prop1": "value1", "n": 2}'
    )
    assert start == Start(stream_id="", format=PCM16, custom_parameters={"prop1": "value1", "n": "2"})
    assert bridge.ready
    assert bridge.receive(b"\x00" * 640) == Media(b"\x00" * 640)
    assert bridge.receive('{"event": "websocket:cleared"}') == ClearEcho()
    assert bridge.receive(f'{{"event": "websocket:notify", "payload": {{"{MARK_KEY}": "u1"}}}}') == MarkEcho("u1")
    assert bridge.receive('{"event": "websocket:dtmf", "digit": "5", "duration": 260}') == Dtmf("5")


def test_jambonz_documented_messages():
    bridge = PROTOCOLS["jambonz"].bridge(PCM8)
    metadata = {
        "callSid": "b0d0a2c8-2d5a-4f6b-9b9f-0e8f1f2a3b4c",
        "direction": "inbound",
        "from": "+15083084809",
        "to": "+15083728299",
        "callId": "f8e2@10.0.0.1",
        "accountSid": "9351f46a-678c-43f5-b8a6-d4eb58d131af",
        "sampleRate": 8000,
        "mixType": "mono",
        "sipStatus": 200,
        "customer": "acme",
    }
    assert bridge.receive(json.dumps(metadata)) == Start(
        stream_id=metadata["callSid"],
        call_id=metadata["callSid"],
        account_id=metadata["accountSid"],
        format=PCM8,
        caller="+15083084809",
        called="+15083728299",
        custom_parameters={"direction": "inbound", "callId": "f8e2@10.0.0.1", "sipStatus": "200", "customer": "acme"},
    )
    assert bridge.receive(b"\x01\x00" * 160) == Media(b"\x01\x00" * 160)
    assert bridge.receive('{"event": "dtmf", "dtmf": "2", "duration": "1600"}') == Dtmf("2")
    assert bridge.receive('{"type": "mark", "data": {"name": "my-mark-1", "event": "playout"}}') == MarkEcho(
        "my-mark-1"
    )
    assert bridge.receive('{"type": "mark", "data": {"name": "my-mark-2", "event": "cleared"}}') == MarkEcho(
        "my-mark-2"
    )


def test_jambonz_marks_a_kill_audio_reached_echo_as_cleared():
    bridge, provider, _ = pair("jambonz", PCM8)
    for command in (SendMark("played"), SendMark("dropped")):
        provider.receive(bridge.send(command))
    played = json.loads(provider.send(MarkEcho("played")))
    provider.receive(bridge.send(SendClear()))
    dropped = json.loads(provider.send(MarkEcho("dropped")))
    assert (played["data"]["event"], dropped["data"]["event"]) == ("playout", "cleared")
    assert bridge.receive(json.dumps(dropped)) == MarkEcho("dropped")


def test_freeswitch_documented_messages():
    bridge = PROTOCOLS["freeswitch"].bridge(PCM16)
    assert bridge.ready
    assert bridge.receive(b"\x00" * 1280) == Media(b"\x00" * 1280)  # STREAM_BUFFER_SIZE 40 ms
    assert bridge.receive('{"callId": "abc", "bot": "7"}') == Metadata({"callId": "abc", "bot": "7"})


def test_bridge_messages_as_each_provider_documents_them():
    telnyx, _, _ = pair("telnyx", ULAW)
    assert json.loads(telnyx.send(SendMedia(b"\x01\x02"))) == {"event": "media", "media": {"payload": B64}}
    assert json.loads(telnyx.send(SendMark("u1"))) == {"event": "mark", "mark": {"name": "u1"}}
    assert json.loads(telnyx.send(SendClear())) == {"event": "clear"}
    vonage, _, _ = pair("vonage", PCM8)
    assert vonage.send(SendMedia(b"\x01\x02" * 160)) == b"\x01\x02" * 160
    assert json.loads(vonage.send(SendClear())) == {"action": "clear"}
    assert json.loads(vonage.send(SendMark("u1"))) == {"action": "notify", "payload": {MARK_KEY: "u1"}}
    jambonz, _, _ = pair("jambonz", PCM8)
    assert jambonz.send(SendMedia(b"\x01\x02")) == b"\x01\x02"
    assert json.loads(jambonz.send(SendClear())) == {"type": "killAudio"}
    assert json.loads(jambonz.send(SendMark("u1"))) == {"type": "mark", "data": {"name": "u1"}}
    freeswitch, _, _ = pair("freeswitch", PCM8)
    assert json.loads(freeswitch.send(SendMedia(b"\x01\x02"))) == {
        "type": "streamAudio",
        "data": {"audioDataType": "raw", "sampleRate": 8000, "audioData": B64},
    }
    assert pair("freeswitch_binary", PCM8)[0].send(SendMedia(b"\x01\x02")) == b"\x01\x02"


def test_what_these_protocols_have_no_message_for_is_our_error_not_the_peers():
    with pytest.raises(ValueError, match=r"^FreeswitchBridge has no message for SendMark$"):
        pair("freeswitch", PCM8)[0].send(SendMark("m"))
    with pytest.raises(ValueError, match=r"^VonageProvider has no message for Stop$"):
        PROTOCOLS["vonage"].provider(PCM8, None).send(Stop())
    with pytest.raises(ValueError, match=r"^JambonzProvider has no message for ClearEcho$"):
        PROTOCOLS["jambonz"].provider(PCM8, "j").send(ClearEcho())
    with pytest.raises(RuntimeError, match=r"^the stream has not started: no stream id to send to$"):
        PROTOCOLS["telnyx"].bridge(ULAW).send(SendClear())


# -- the records ------------------------------------------------------------------------------------


def test_the_records_say_what_each_new_protocol_carries():
    assert {n: (p.carries, p.default_encoding, p.frame_ms) for n, p in PROTOCOLS.items() if n in EVENTS} == {
        "telnyx": ({Encoding.PCM_MULAW: (8000,), Encoding.PCM_ALAW: (8000,)}, Encoding.PCM_MULAW, 20.0),
        "vonage": ({Encoding.PCM_S16LE: (8000, 16000)}, Encoding.PCM_S16LE, 20.0),
        "jambonz": ({Encoding.PCM_S16LE: (8000, 16000, 24000)}, Encoding.PCM_S16LE, 20.0),
        "freeswitch": ({Encoding.PCM_S16LE: (8000, 16000)}, Encoding.PCM_S16LE, 20.0),
        "freeswitch_binary": ({Encoding.PCM_S16LE: (8000, 16000)}, Encoding.PCM_S16LE, 20.0),
    }
    assert [n for n, p in PROTOCOLS.items() if p.subprotocol] == ["jambonz"]
    assert PROTOCOLS["jambonz"].subprotocol == "audio.jambonz.org"
    assert {n: p.max_buffered for n, p in PROTOCOLS.items() if p.max_buffered} == {"vonage": 3072}
    assert not PROTOCOLS["freeswitch"].marks and not PROTOCOLS["freeswitch_binary"].marks


@pytest.mark.parametrize(
    "protocol,fmt,rule",
    [
        ("telnyx", ULAW, ChunkRule(160, 160, 240_000)),
        ("telnyx", ALAW, ChunkRule(160, 160, 240_000)),
        ("vonage", PCM8, ChunkRule(320, 320, 320)),
        ("vonage", PCM16, ChunkRule(640, 640, 640)),
        ("exotel", PCM16, ChunkRule(320, 3200, 100_000)),
        ("jambonz", PCM8, None),
        ("freeswitch", PCM8, None),
    ],
)
def test_chunk_rules_in_bytes_of_the_stream_format(protocol, fmt, rule):
    assert PROTOCOLS[protocol].chunk_rule_for(fmt) == rule


def test_vonage_audio_regroups_into_exact_20_ms_frames_only():
    rule = PROTOCOLS["vonage"].chunk_rule_for(PCM16)
    regrouper = Regrouper(rule, 0)
    chunks = regrouper.push(b"\x01" * 1000) + regrouper.push(b"\x01" * 1000) + [regrouper.flush()]
    assert [len(c) for c in chunks] == [640, 640, 640, 640] and regrouper.padded == 560
    assert DurationRule(20, 20, 30_000).in_bytes(PCM16) == ChunkRule(640, 640, 960_000)


# -- bad messages, one reason at a time ------------------------------------------------------------

BAD_FOR_BRIDGES = [
    ("telnyx", ULAW, b"\xff" * 160, "binary_frame"),
    ("telnyx", ULAW, "{oops", "bad_json"),
    ("telnyx", ULAW, '{"event": "dance", "stream_id": "SID"}', "unknown_event"),
    ("telnyx", ULAW, '{"event": "media", "stream_id": "other", "media": {"payload": "/w=="}}', "wrong_stream_id"),
    ("telnyx", ULAW, '{"event": "media", "stream_id": "SID", "media": {"payload": "%%"}}', "bad_base64"),
    ("telnyx", ULAW, '{"event": "media", "stream_id": "SID", "media": {"payload": ""}}', "partial_sample"),
    ("telnyx", ULAW, '{"event": "media", "sequence_number": "x", "media": {"payload": "/w=="}}', "bad_shape"),
    ("telnyx", ULAW, '{"event": "error", "stream_id": "SID", "payload": "boom"}', "bad_shape"),
    ("telnyx", ULAW, '{"event": "start", "start": {}}', "missing_stream_id"),
    (
        "telnyx",
        ULAW,
        '{"event": "start", "stream_id": "S", "start": {"media_format": {"encoding": "OPUS", "sample_rate": 8000}}}',
        "bad_media_format",
    ),
    (
        "telnyx",
        ULAW,
        '{"event": "start", "stream_id": "S", "start": {"media_format": {"encoding": "PCMU", "sample_rate": 16000}}}',
        "bad_media_format",
    ),
    ("vonage", PCM8, b"\x00" * 319, "partial_sample"),
    ("vonage", PCM8, b"\x00" * 640, "wrong_frame_size"),
    ("vonage", PCM8, "[]", "bad_shape"),
    ("vonage", PCM8, '{"event": "websocket:media:update"}', "unknown_event"),
    ("vonage", PCM8, '{"event": "websocket:notify", "payload": {"other": 1}}', "bad_shape"),
    ("vonage", PCM8, '{"event": "websocket:dtmf", "digit": 5}', "bad_shape"),
    ("vonage", PCM8, '{"event": "websocket:connected", "content-type": "audio/l16;rate=24000"}', "bad_media_format"),
    ("vonage", PCM8, '{"event": "websocket:connected", "content-type": "audio/pcmu"}', "bad_media_format"),
    ("vonage", PCM8, '{"event": "websocket:connected"}', "bad_media_format"),
    ("jambonz", PCM8, b"\x00", "partial_sample"),
    ("jambonz", PCM8, "nope", "bad_json"),
    ("jambonz", PCM8, '{"type": "playDone"}', "unknown_event"),
    ("jambonz", PCM8, '{"type": "mark", "data": {"name": "m", "event": "started"}}', "bad_shape"),
    ("jambonz", PCM8, '{"type": "mark", "data": {"event": "playout"}}', "bad_shape"),
    ("jambonz", PCM8, '{"event": "dtmf"}', "bad_shape"),
    ("freeswitch", PCM8, b"\x00" * 3, "partial_sample"),
    ("freeswitch", PCM8, b"\x00" * 400, "wrong_frame_size"),
    ("freeswitch", PCM8, "{", "bad_json"),
    ("freeswitch_binary", PCM16, b"\x00" * 320, "wrong_frame_size"),
]


@pytest.mark.parametrize("protocol,fmt,message,reason", BAD_FOR_BRIDGES)
def test_the_bridge_sides_refuse(protocol, fmt, message, reason):
    bridge, _, _ = pair(protocol, fmt)
    with raises(reason):
        bridge.receive(message.replace("SID", sid_of(protocol) or "") if isinstance(message, str) else message)


@pytest.mark.parametrize(
    "protocol,message,reason,detail",
    [
        ("vonage", b"\x00" * 320, "audio_before_start", "audio before websocket:connected"),
        ("jambonz", b"\x00" * 320, "audio_before_start", "audio before the metadata frame"),
        ("jambonz", '{"sampleRate": 8000}', "missing_stream_id", "the metadata names no callSid"),
        ("jambonz", '{"callSid": "c", "sampleRate": 44100}', "bad_media_format", "sampleRate 44100, mixType 'mono'"),
        ("jambonz", '{"callSid": "c", "sampleRate": 8000, "mixType": "stereo"}', "bad_media_format", ".*'stereo'"),
        ("jambonz", '{"callSid": "c", "sampleRate": 8000, "from": 5}', "bad_shape", "from must be a string"),
    ],
)
def test_the_bridge_sides_refuse_before_the_start(protocol, message, reason, detail):
    bridge = PROTOCOLS[protocol].bridge(PCM8)
    with raises(reason, detail):
        bridge.receive(message)


@pytest.mark.parametrize(
    "protocol,fmt,message,reason,detail",
    [
        ("telnyx", ULAW, b"\x00", "binary_frame", "binary messages are not accepted; send JSON text"),
        ("telnyx", ULAW, '{"event": "stop"}', "unknown_event", "event 'stop'"),
        (
            "telnyx",
            ULAW,
            '{"event": "clear", "stream_id": "other"}',
            "wrong_stream_id",
            "stream_id 'other' is not 'SID'",
        ),
        ("telnyx", ULAW, '{"event": "media", "media": {"payload": "*"}}', "bad_base64", "payload is not valid base64"),
        ("telnyx", ULAW, '{"event": "mark", "mark": {}}', "bad_shape", "name must be a string"),
        ("telnyx", ALAW, '{"event": "media", "media": {"payload": ""}}', "partial_sample", "0 bytes .*"),
        ("vonage", PCM16, b"\x00" * 320, "wrong_frame_size", "320 bytes; frames are 640 \\(20 ms\\)"),
        ("vonage", PCM16, b"\x00" * 641, "partial_sample", ".*"),
        ("vonage", PCM16, '{"event": "clear"}', "bad_shape", "the message has no string 'action'"),
        ("vonage", PCM16, '{"action": "talk"}', "unknown_event", "action 'talk'"),
        ("vonage", PCM16, '{"action": "notify", "payload": []}', "bad_shape", "payload must be an object"),
        ("jambonz", PCM8, b"\x00" * 3, "partial_sample", ".*"),
        ("jambonz", PCM8, '{"type": "disconnect"}', "unknown_event", "type 'disconnect'"),
        ("jambonz", PCM8, '{"type": "mark", "data": {"name": 1}}', "bad_shape", "name must be a string"),
        ("jambonz", PCM8, '{"event": "killAudio"}', "bad_shape", "the message has no string 'type'"),
        ("freeswitch", PCM8, b"\x00\x00", "binary_frame", "this build plays streamAudio JSON, not binary frames"),
        (
            "freeswitch",
            PCM8,
            '{"type": "streamAudio", "data": {"audioDataType": "wav", "sampleRate": 8000, "audioData": "AAA="}}',
            "wrong_audio_type",
            "audioDataType 'wav'",
        ),
        (
            "freeswitch",
            PCM8,
            '{"type": "streamAudio", "data": {"audioDataType": "raw", "sampleRate": 16000, "audioData": "AAA="}}',
            "wrong_sample_rate",
            "sampleRate 16000",
        ),
        (
            "freeswitch",
            PCM8,
            '{"type": "streamAudio", "data": {"audioDataType": "raw", "sampleRate": 8000, "audioData": "AA=="}}',
            "partial_sample",
            ".*",
        ),
        ("freeswitch", PCM8, '{"type": "streamAudio", "data": "AAA="}', "bad_shape", "data must be an object"),
        ("freeswitch", PCM8, "{", "bad_json", ".*"),
        (
            "freeswitch",
            PCM8,
            '{"type": "streamAudio", "data": {"audioDataType": "raw", "sampleRate": 8000, "audioData": "!"}}',
            "bad_base64",
            "audioData is not valid base64",
        ),
        ("freeswitch_binary", PCM8, b"\x00", "partial_sample", ".*"),
    ],
)
def test_the_provider_sides_refuse(protocol, fmt, message, reason, detail):
    sid = sid_of(protocol)
    provider = PROTOCOLS[protocol].provider(fmt, sid)
    with raises(reason, detail.replace("SID", sid or "")):
        provider.receive(message)


def test_text_that_is_not_a_command_is_metadata_where_the_protocol_has_metadata():
    assert PROTOCOLS["freeswitch"].provider(PCM8, None).receive('{"type": "ping"}') == Metadata({"type": "ping"})
    streamed = '{"type": "streamAudio", "data": {}}'
    assert PROTOCOLS["freeswitch_binary"].provider(PCM8, None).receive(streamed) == Metadata(json.loads(streamed))
