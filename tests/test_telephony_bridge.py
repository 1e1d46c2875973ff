"""``tone`` -> ``telephony_ws`` -> telephony simulator over loopback: sizes, audio, timing, reconnects."""

import numpy as np
import pytest
import trio
from sims import P99_BOUND_MS, telephony_server

from rtstream.audio import g711
from rtstream.errors import StageFailed
from rtstream.frames import Encoding
from rtstream.stages.telephony import TelephonySink
from rtstream.stages.tone import Tone
from rtstream.testing import run_stages
from rtstream.wavfile import read_wav


def expected_pcm(tone: Tone, samples: int) -> np.ndarray:
    data = tone.render(0, samples)
    return g711.ulaw_decode(data) if tone.encoding is Encoding.PCM_MULAW else data


@pytest.mark.parametrize(
    "protocol,rate,encoding,chunk_ms,frame_bytes",
    [
        ("raw", 8000, "pcm_s16le", 60, 960),
        ("raw", 16000, "pcm_s16le", 60, 1920),
        ("twilio", 8000, "pcm_mulaw", 20, 160),
        ("plivo", 8000, "pcm_mulaw", 20, 160),
        ("exotel", 8000, "pcm_s16le", 100, 3200),  # 100 ms frames regrouped to 3200 bytes
    ],
)
async def test_frames_arrive_whole_on_time_and_unchanged(tmp_path, protocol, rate, encoding, chunk_ms, frame_bytes):
    tone = Tone(sample_rate=rate, encoding=encoding, chunk_ms=chunk_ms, duration=0.6, frequency=300)
    record = str(tmp_path / "call-{call}.wav")
    with trio.fail_after(15):
        async with telephony_server(record=record, protocol=protocol, sample_rate=rate) as (url, server):
            out = await run_stages([tone, TelephonySink(url=url, protocol=protocol)])
            with trio.move_on_after(2):
                await server.wait_idle()
            report = server.report()
    [call] = report["per_call"]
    samples = round(0.6 * rate)
    assert call["frames"] == samples * (2 if encoding == "pcm_s16le" else 1) // frame_bytes
    assert call["wrong_size"] == 0 and call["errors"] == {} and call["closed"] == "bridge"
    assert call["deviation_ms"]["p99"] < P99_BOUND_MS
    heard, fmt = read_wav(record.format(call=1))
    assert fmt.sample_rate == rate and np.array_equal(heard, expected_pcm(tone, samples))
    sink = out.report.stages[1].statistics
    assert sink["drops"] == {} and sink["connects"] == 1
    if protocol != "raw":
        assert call["marks"] == 1 and sink["marks_sent"] == 1 and sink["marks_echoed"] == 1


async def test_the_sink_reconnects_and_counts_what_the_outage_cost():
    tone = Tone(sample_rate=8000, chunk_ms=60, duration=1.2)
    sink = TelephonySink(url="ws://placeholder", protocol="raw", hold_ms=0, backoff_initial=0.3, backoff_max=0.3)
    with trio.fail_after(15):
        async with telephony_server(protocol="raw", disconnect_after=5) as (url, server):
            out = await run_stages([tone, attrs_evolve(sink, url=url)])
            with trio.move_on_after(2):
                await server.wait_idle()
            report = server.report()
    assert report["calls"] == 2
    first, second = report["per_call"]
    assert first["closed"] == "simulator" and first["frames"] == 5 and second["closed"] == "bridge"
    stats = out.report.stages[1].statistics
    assert stats["connects"] == 2 and stats["disconnects"] == 1
    lost = sum(d.frames for d in stats["drops"].values())
    assert set(stats["drops"]) <= {"outage", "send_failed"} and 0 < lost < 10
    assert first["frames"] + second["frames"] + lost == 20  # every frame heard or counted as dropped


async def test_frames_held_through_a_short_outage_are_delivered():
    tone = Tone(sample_rate=8000, chunk_ms=60, duration=0.9)
    with trio.fail_after(15):
        async with telephony_server(protocol="raw", disconnect_after=3) as (url, server):
            out = await run_stages([tone, TelephonySink(url=url, protocol="raw", hold_ms=2000, backoff_initial=0.02)])
            with trio.move_on_after(2):
                await server.wait_idle()
            report = server.report()
    stats = out.report.stages[1].statistics
    in_flight = stats["drops"].get("send_failed")
    assert set(stats["drops"]) <= {"send_failed"}
    assert report["frames"] + (in_flight.frames if in_flight else 0) == 15


async def test_no_telephony_side_fails_the_call_with_a_clear_error():
    with trio.fail_after(10):
        with trio.socket.socket() as probe:
            await probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        sink = TelephonySink(url=f"ws://127.0.0.1:{port}/", reconnect_attempts=1, backoff_initial=0.01)
        with pytest.raises(
            StageFailed,
            match=rf"^pipeline 'test', stage 2 \(telephony_ws\) failed: LinkFailed: ws://127\.0\.0\.1:{port}: "
            r"Connection refused; gave up after 2 failed attempts in a row$",
        ):
            await run_stages([Tone(sample_rate=8000, duration=0.1), sink])


def attrs_evolve(stage, **changes):
    import attrs

    return attrs.evolve(stage, **changes)
