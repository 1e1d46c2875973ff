"""Both ends of the telephony protocols, sans I/O: the simulator's call and the sink's link.

The link's messages are fed to the call, so each protocol is checked end to end without a
socket, and the call's checks are tested against malformed messages one by one.
"""

import base64
import json

import numpy as np
import pytest

from rtstream.audio import g711
from rtstream.frames import AudioChunk, AudioFormat, Clear, Encoding, UtteranceEnd, UtteranceStart
from rtstream.params import ParamError
from rtstream.simulators.telephony import TelephonyCall, TelephonySettings
from rtstream.stages.telephony import TelephonyLink, TelephonySink
from rtstream.wire import RemoteProtocolError
from rtstream.wire.telephony import ChunkRule, Regrouper, SendMark, SendMedia

ULAW = AudioFormat(Encoding.PCM_MULAW, 8000)
PCM8 = AudioFormat(Encoding.PCM_S16LE, 8000)


def tone(fmt, samples, pts=0):
    pcm = (np.sin(np.arange(pts, pts + samples) * 0.3) * 8000).astype(np.int16)
    data = g711.ulaw_encode(pcm) if fmt.encoding is Encoding.PCM_MULAW else pcm
    return AudioChunk(data, fmt, pts=pts, utterance="u1")


def connected(protocol, fmt, call, **kw):
    """A link that has read the call's opening messages."""
    regroup = Regrouper(ChunkRule(320, 3200, 100_000), 0) if protocol == "exotel" else None
    link = TelephonyLink(protocol, fmt, marks=True, hold=1.0, regroup=regroup, **kw)
    link.connect()
    for message in call.opening():
        link.receive(message, 0.0)
    return link


def pump(link, call, now):
    """Send everything the link has to the call; the PCM16 the call heard."""
    heard = []
    while (item := link.pop(now)) is not None:
        pcm = call.receive(item[1], now)
        if pcm is not None:
            heard.append(pcm)
    return np.concatenate(heard) if heard else np.zeros(0, np.int16)


@pytest.mark.parametrize(
    "protocol,fmt,frame",
    [
        ("raw", PCM8, 480),
        ("raw", AudioFormat("pcm_s16le", 16000), 960),
        ("twilio", ULAW, 160),
        ("plivo", ULAW, 160),
        ("plivo", AudioFormat("pcm_s16le", 16000), 320),
        ("exotel", PCM8, 1600),
    ],
)
def test_each_protocol_end_to_end(protocol, fmt, frame):
    settings = TelephonySettings(protocol=protocol, sample_rate=fmt.sample_rate, encoding=fmt.encoding)
    call = TelephonyCall(settings, 1)
    link = connected(protocol, fmt, call)
    assert link.ready
    sent = []
    period = frame / fmt.sample_rate
    for i in range(10):
        chunk = tone(fmt, frame, pts=i * frame)
        sent.append(chunk.data)
        link.push(chunk)
        heard = pump(link, call, i * period)
        expected = g711.ulaw_decode(chunk.data) if fmt.encoding is Encoding.PCM_MULAW else chunk.data
        assert np.array_equal(heard, expected)
    link.push(UtteranceEnd("u1"))
    pump(link, call, 10 * period)
    report = call.report()
    assert report["frames"] == 10 and report["wrong_size"] == 0 and report["errors"] == {}
    assert report["deviation_ms"]["max"] == pytest.approx(0, abs=1e-6)
    assert report["gaps"]["count"] == 0
    if protocol == "raw":
        assert report["marks"] == 0 and link.statistics().marks_sent == 0
        return
    assert report["marks"] == 1
    echoes = call.pop_due(100.0)
    assert len(echoes) == 1
    link.receive(echoes[0], 1.0)
    assert link.statistics().marks_echoed == 1


def test_twilio_wire_format_and_mark_echo_after_playout():
    call = TelephonyCall(TelephonySettings(protocol="twilio", playout_delay=0.05), 1)
    connected_msg, start = (json.loads(m) for m in call.opening())
    assert connected_msg == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    sid = start["streamSid"]
    assert start["start"]["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    link = connected("twilio", ULAW, call)
    link.push(tone(ULAW, 160))
    link.push(UtteranceEnd("utt-1"))
    media = json.loads(link.pop(0.0)[1])
    assert media["event"] == "media" and media["streamSid"] == sid
    assert base64.b64decode(media["media"]["payload"]) == tone(ULAW, 160).data.tobytes()
    assert json.loads(link.pop(0.0)[1]) == {"event": "mark", "streamSid": sid, "mark": {"name": "utt-1"}}
    call.receive(json.dumps(media), 0.0)
    call.receive(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": "utt-1"}}), 0.0)
    assert call.next_due() == pytest.approx(0.07)  # 50 ms playout delay + 20 ms of audio
    assert call.pop_due(0.069) == []
    [echo] = call.pop_due(0.07)
    assert json.loads(echo)["mark"] == {"name": "utt-1"}


def test_clear_drops_queued_audio_and_echoes_pending_marks_at_once():
    call = TelephonyCall(TelephonySettings(protocol="twilio"), 1)
    link = connected("twilio", ULAW, call)
    for _ in range(5):
        call.receive(link.stream.send(SendMedia(tone(ULAW, 160).tobytes())), 0.0)
    call.receive(link.stream.send(SendMark("a")), 0.0)
    link.push(tone(ULAW, 160))
    link.push(Clear())
    kind, message = link.pop(0.0)
    assert kind == "clear" and json.loads(message)["event"] == "clear" and link.pop(0.0) is None
    call.receive(message, 0.01)
    assert [json.loads(m)["mark"]["name"] for m in call.pop_due(0.01)] == ["a"]
    assert link.statistics().drops["cleared"].samples == 160
    assert call.report()["clears"] == 1


def test_plivo_checkpoint_and_clear_answers():
    call = TelephonyCall(TelephonySettings(protocol="plivo", playout_delay=0), 1)
    link = connected("plivo", ULAW, call)
    link.push(tone(ULAW, 160))
    link.push(UtteranceEnd("u"))
    pump(link, call, 0.0)
    [played] = call.pop_due(1.0)
    assert json.loads(played) == {"event": "playedStream", "streamId": call.stream_id, "name": "u"}
    link.push(Clear())
    pump(link, call, 1.0)
    [cleared] = call.pop_due(1.0)
    assert json.loads(cleared) == {"event": "clearedAudio", "streamId": call.stream_id}


@pytest.mark.parametrize(
    "message,reason",
    [
        (b"\x00" * 160, "binary_frame"),
        ("{oops", "bad_json"),
        ('{"streamSid": "x"}', "bad_shape"),
        ('{"event": "dance", "streamSid": "SID"}', "unknown_event"),
        ('{"event": "media", "streamSid": "MZwrong", "media": {"payload": ""}}', "wrong_stream_id"),
        ('{"event": "media", "streamSid": "SID", "media": {"payload": "%%%"}}', "bad_base64"),
        ('{"event": "media", "streamSid": "SID", "media": {}}', "bad_shape"),
        ('{"event": "mark", "streamSid": "SID", "mark": {}}', "bad_shape"),
    ],
)
def test_twilio_checks_every_message(message, reason):
    call = TelephonyCall(TelephonySettings(protocol="twilio"), 1)
    if isinstance(message, str):
        message = message.replace("SID", call.stream_id)
    assert call.receive(message, 0.0) is None
    assert call.report()["errors"] == {reason: 1} and call.report()["frames"] == 0


def test_wrong_sizes_and_partial_samples_are_counted():
    call = TelephonyCall(TelephonySettings(protocol="raw", sample_rate=8000), 1)
    assert call.receive(b"\x00" * 960, 0.0) is not None
    assert call.receive(b"\x00" * 640, 0.06) is not None
    assert call.receive(b"\x00" * 961, 0.12) is None
    call.receive('{"type": "metadata"}', 0.12)
    report = call.report()
    assert (report["frames"], report["wrong_size"], report["errors"], report["text_frames"]) == (
        2,
        1,
        {"partial_sample": 1},
        1,
    )


def test_exotel_checks_the_chunk_rule():
    call = TelephonyCall(TelephonySettings(protocol="exotel"), 1)
    link = connected("exotel", PCM8, call)
    for size in (3200, 3840, 3000, 2560, 100_160):
        call.receive(link.stream.send(SendMedia(b"\x00" * size)), 0.0)
    assert call.report()["wrong_size"] == 3


def test_timing_deviation_drift_and_gaps():
    call = TelephonyCall(TelephonySettings(protocol="raw", playout_delay=0.02), 1)
    arrivals = [0.0, 0.061, 0.119, 0.180, 0.300, 0.360]  # +1 ms, -2 ms, +1 ms, a 60 ms hole, on time
    for t in arrivals:
        call.receive(b"\x00" * 960, t)
    r = call.report()
    assert r["deviation_ms"]["count"] == 5
    assert r["deviation_ms"]["max"] == pytest.approx(60, rel=0.02)
    assert r["drift_ms"]["final"] == pytest.approx(60, abs=1e-6)
    assert r["gaps"]["count"] == 1 and r["gaps"]["total_ms"] == pytest.approx(
        40, abs=1e-6
    )  # 60 ms late less 20 ms buffered


def test_a_mark_starts_a_new_timing_segment():
    call = TelephonyCall(TelephonySettings(protocol="twilio"), 1)
    link = connected("twilio", ULAW, call)
    call.receive(link.stream.send(SendMedia(b"\xff" * 160)), 0.0)
    call.receive(link.stream.send(SendMark("u1")), 0.0)
    call.receive(link.stream.send(SendMedia(b"\xff" * 160)), 5.0)  # the next utterance, much later
    r = call.report()
    assert r["deviation_ms"]["count"] == 0 and r["gaps"]["count"] == 0


def test_the_simulated_disconnect_follows_the_nth_frame():
    call = TelephonyCall(TelephonySettings(protocol="raw"), 1, disconnect_after=2)
    call.receive(b"\x00" * 960, 0.0)
    assert call.pop_due(0.0) == []
    call.receive(b"\x00" * 960, 0.06)
    assert [repr(m) for m in call.pop_due(0.06)] == ["DISCONNECT"]


def test_link_holds_audio_while_down_up_to_its_bound():
    link = TelephonyLink("raw", PCM8, marks=True, hold=0.2)
    link.connect()
    link.disconnect()
    for i in range(10):
        link.push(tone(PCM8, 480, pts=480 * i))
    assert link.pop(0.0) is None
    stats = link.statistics()
    assert stats.drops["outage"].samples == 480 * 6 and stats.drops["outage"].frames == 6
    link.connect()
    sent = [link.pop(3.0) for _ in range(4)]
    assert all(kind == "media" for kind, _ in sent) and link.pop(3.0) is None
    assert sent[0][1] == tone(PCM8, 480, pts=480 * 6).tobytes()  # the newest frame and 180 ms (within 200) before it


def test_a_frame_lost_in_flight_is_a_drop_with_its_samples_not_a_send():
    link = TelephonyLink("raw", PCM8, marks=False, hold=1.0)
    link.connect()
    link.push(tone(PCM8, 480))
    link.push(tone(PCM8, 160, pts=480))
    kind, _ = link.pop(0.0)
    link.sent()
    kind, _ = link.pop(0.0)
    link.lost_in_flight(kind)
    stats = link.statistics()
    assert stats.messages_sent == 1 and stats.seconds_sent == 0.06 and link.pending == 0
    assert stats.drops["send_failed"].frames == 1 and stats.drops["send_failed"].samples == 160


def test_json_protocols_wait_for_start_before_sending():
    link = TelephonyLink("twilio", ULAW, marks=True, hold=1.0)
    link.connect()
    link.push(tone(ULAW, 160))
    assert link.pop(0.0) is None
    link.receive(json.dumps({"event": "start", "streamSid": "MZ1", "start": {"streamSid": "MZ1"}}), 0.0)
    assert json.loads(link.pop(0.0)[1])["streamSid"] == "MZ1"


@pytest.mark.parametrize(
    "message,reason",
    [
        (b"\x00", "binary_frame"),
        ("nope", "bad_json"),
        ("[]", "bad_shape"),
        ('{"event": "start", "start": {}}', "missing_stream_id"),
        ('{"event": "mark", "mark": {"name": "never-sent"}}', "unknown_mark"),
    ],
)
def test_link_counts_malformed_messages(message, reason):
    link = TelephonyLink("twilio", ULAW, marks=True, hold=1.0)
    with pytest.raises(RemoteProtocolError, match=rf"^{reason}\b"):
        link.receive(message, 0.0)
    assert link.statistics().malformed == {reason: 1}


def test_regrouper_makes_exotel_chunks_and_pads_the_rest():
    r = Regrouper(ChunkRule(320, 3200, 4000), 0)
    assert r.push(b"\x01" * 3000) == []
    [chunk] = r.push(b"\x01" * 1000)
    assert len(chunk) == 3840
    assert r.flush() == b"\x01" * 160 + b"\x00" * 3040 and r.padded == 3040
    assert r.flush() is None
    big = r.push(b"\x01" * 9000)
    assert [len(c) for c in big] == [3840, 3840] and r.reset() == 1320


def test_sink_caps_follow_the_protocol():
    assert str(TelephonySink(url="ws://x", protocol="twilio").input_caps()) == "pcm_mulaw 8000 Hz mono"
    assert str(TelephonySink(url="ws://x", protocol="raw").input_caps()) == "pcm_s16le, 8000|16000 Hz, mono"
    assert str(TelephonySink(url="ws://x", protocol="raw", sample_rate=16000).input_caps()) == "pcm_s16le 16000 Hz mono"
    assert (
        str(TelephonySink(url="ws://x", protocol="plivo", encoding="pcm_s16le").input_caps())
        == "pcm_s16le, 8000|16000 Hz, mono"
    )
    with pytest.raises(ParamError, match=r"^sample_rate: twilio streams carry 8000 Hz, got 16000$"):
        TelephonySink(url="ws://x", protocol="twilio", sample_rate=16000)
    with pytest.raises(ParamError, match=r"^encoding: raw streams carry pcm_s16le, got 'pcm_alaw'$"):
        TelephonySink(url="ws://x", protocol="raw", encoding="pcm_alaw")


def test_simulator_settings_refuse_what_a_protocol_does_not_carry():
    with pytest.raises(ParamError, match=r"^sample_rate: twilio streams carry 8000 Hz, got 16000$"):
        TelephonySettings(protocol="twilio", sample_rate=16000)
    with pytest.raises(ParamError, match=r"^encoding: raw streams do not carry pcm_mulaw at 8000 Hz$"):
        TelephonySettings(protocol="raw", encoding="pcm_mulaw")


def test_first_audio_latency_is_timed_per_utterance_from_arrival_to_send():
    link = TelephonyLink("raw", PCM8, marks=False, hold=0.06)
    link.connect()
    for n, (arrival, sent) in enumerate(((1.0, 1.03), (5.0, 5.1)), 1):
        link.push(UtteranceStart(f"u{n}"))
        link.push(AudioChunk(tone(PCM8, 480).data, PCM8, arrival=arrival))
        link.push(AudioChunk(tone(PCM8, 480).data, PCM8, arrival=arrival + 0.01))
        assert link.pop(sent)[0] == "media" and link.pop(sent + 0.06)[0] == "media"
    summary = link.statistics().first_audio_ms
    assert summary.count == 2 and summary.max == pytest.approx(100) and summary.p50 == pytest.approx(30, rel=0.02)


def test_a_first_frame_dropped_in_an_outage_passes_its_arrival_on():
    link = TelephonyLink("raw", PCM8, marks=False, hold=0.06)
    link.push(UtteranceStart("u1"))
    for i in range(3):  # the first is dropped: more than hold_ms waits behind it
        link.push(AudioChunk(tone(PCM8, 480).data, PCM8, pts=480 * i, arrival=1.0 + i / 100))
    link.connect()
    assert link.pop(2.0)[0] == "media"
    assert link.statistics().drops["outage"].frames == 1
    assert link.statistics().first_audio_ms.max == pytest.approx(1000)  # from the first audio's arrival


def test_exotel_chunk_settings_that_allow_no_chunk_are_refused():
    no_chunk = r"must be at least exotel_multiple \(320\), got 300"
    with pytest.raises(ParamError, match=rf"^exotel_max_bytes: {no_chunk}$"):
        TelephonySink(url="ws://x", protocol="exotel", exotel_min_bytes=0, exotel_max_bytes=300)
    with pytest.raises(ParamError, match=rf"^exotel_max_bytes: {no_chunk}$"):
        TelephonySettings(protocol="exotel", exotel_min_bytes=0, exotel_max_bytes=300)
    with pytest.raises(ParamError, match=r"^exotel_min_bytes: must not exceed exotel_max_bytes \(3000\)$"):
        TelephonySettings(protocol="exotel", exotel_max_bytes=3000)
    with pytest.raises(ParamError, match=r"^exotel_max_bytes: the chunk rule allows no chunk: no multiple of 320 "):
        TelephonySink(url="ws://x", protocol="exotel", exotel_min_bytes=3300, exotel_max_bytes=3500)
