"""Soak: many bridged calls at once, in real time, over loopback (slow; run with ``pytest -m slow``).

Forty calls of about fifteen seconds each go through the whole bridge, arriving twenty a second
while the earlier ones already speak, the simulators in processes of their own: every call must come
through whole and exact, in frames of the right size, with nothing dropped and the caller's
jitter within a bound that still holds on a busy machine. ``benchmarks/bridge.py`` measures the
same path for figures; this checks it.
"""

import json

import pytest
import trio
from sims import simulator_process
from test_bridge import assert_heard, bridge, converted

from rtstream.frames import AudioFormat, Encoding
from rtstream.pipeline import assemble
from rtstream.realtime import quiet_gc
from rtstream.runner import RunControl, run_pipeline
from rtstream.simulators.tts.protocol import audio_of
from rtstream.wavfile import read_wav

CALLS = 40
ARRIVALS = 20.0
"""Calls arriving per second: a busy contact centre's peak is a few per second."""
TRANSCRIPT = (
    "Thanks for calling. Your order left our warehouse on Monday, and it should arrive tomorrow "
    "before noon. Is there anything else I can help you with today? Have a good afternoon."
)
PATTERN_24K = [1500, 900, 2100, 600]
"""The simulator's 500/300/700/200-byte chunks of 8 kHz audio (31/19/44/12 ms), at 24 kHz."""
SOAK_P99_MS = 20.0
"""Receiver p99: looser than the benchmark's 5 ms, for a machine busy with other work."""


@pytest.mark.slow
@pytest.mark.soak
def test_forty_calls_in_real_time_come_through_whole_and_steady(tmp_path):
    tts_format, call_format = AudioFormat(Encoding.PCM_S16LE, 24000), AudioFormat(Encoding.PCM_S16LE, 8000)
    record = str(tmp_path / "call-{call}.wav")

    async def soak(tts_url, phone_url):
        with trio.fail_after(120):
            pipelines = [
                assemble(
                    f"call{i}",
                    bridge(
                        tts_url, phone_url, tts_format=tts_format, protocol="raw", frame_ms=60, transcript=TRANSCRIPT
                    ),
                    instance=i,
                )
                for i in range(1, CALLS + 1)
            ]
            reports = []
            control = RunControl()

            async def call(i):
                await trio.sleep(i / ARRIVALS)
                reports.append(await run_pipeline(pipelines[i], control))

            async with trio.open_nursery() as nursery:
                for i in range(CALLS):
                    nursery.start_soon(call, i)
            return reports

    report = tmp_path / "phone.json"
    pattern = ",".join(map(str, PATTERN_24K))
    with (
        simulator_process("tts", "rtf=3", "first_byte_latency=0.05", f"pattern=[{pattern}]") as tts_url,
        simulator_process("telephony", "protocol=raw", f"record='{record}'", "--report", str(report)) as phone_url,
        quiet_gc(),
    ):
        reports = trio.run(soak, tts_url, phone_url)
    received = json.loads(report.read_text())
    assert [p.status for p in reports] == ["completed"] * CALLS
    assert received["calls"] == CALLS and received["wrong_size"] == 0 and received["errors"] == {}
    assert received["gaps"]["count"] == 0
    assert received["deviation_ms"]["p99"] < SOAK_P99_MS
    for pipeline in reports:
        stats = {s.type: s.statistics for s in pipeline.stages}
        assert stats["telephony_ws"]["drops"] == {} and stats["pacer"]["drops"] == {}
    expected = converted(audio_of(TRANSCRIPT, tts_format), tts_format, call_format)
    for number in range(1, CALLS + 1):
        assert_heard(read_wav(record.format(call=number))[0], expected, call_format.samples_in(60))
