"""The whole bridge over loopback: TTS simulator -> cartesia_tts -> converter -> chunker -> pacer
-> telephony_ws -> telephony simulator, with the simulators of ``sims``.

What the caller hears (the simulator's recording) is checked against what the TTS simulator
synthesized, run through the converter alone: the same samples, padded with silence at the end.
"""

import functools
import json
import logging

import numpy as np
import pytest
import trio
from sims import P99_BOUND_MS, telephony_server, tts_server, upgrading

from rtstream.audio.codec import to_int16
from rtstream.frames import AudioChunk, AudioFormat, Encoding
from rtstream.simulators.tts import TtsSettings
from rtstream.simulators.tts.protocol import TtsSession, audio_of
from rtstream.simulators.tts.server import MAX_REQUEST_BYTES
from rtstream.simulators.websocket import converse, serve
from rtstream.stages.cartesia import CartesiaTTS
from rtstream.stages.chunker import Chunker
from rtstream.stages.converter import Converter, ConverterCore
from rtstream.stages.pacer import Pacer
from rtstream.stages.telephony import TelephonySink
from rtstream.testing import run_stages
from rtstream.wavfile import read_wav
from rtstream.websocket import WebSocket

TEXT = "Hello there."
FAST = {"rtf": 20.0, "first_byte_latency": 0.01}
"""The TTS simulator well ahead of real time: a test takes little more than its audio."""
TIMEOUT = 10


def bridge(tts_url, phone_url, *, tts_format, protocol, frame_ms, transcript=TEXT, underrun="skip", **tts):
    """The stages of one bridged call."""
    source = CartesiaTTS(
        url=tts_url,
        transcript=transcript,
        encoding=tts_format.encoding,
        sample_rate=tts_format.sample_rate,
        backoff_initial=0.01,
        **tts,
    )
    return [
        source,
        Converter(),
        Chunker(frame_ms=frame_ms),
        Pacer(frame_ms=frame_ms, underrun=underrun),
        TelephonySink(url=phone_url, protocol=protocol, backoff_initial=0.01),
    ]


def converted(audio: np.ndarray, tts_format: AudioFormat, call_format: AudioFormat) -> np.ndarray:
    """``audio`` through a converter alone, as the PCM16 the telephony simulator records."""
    core = ConverterCore(call_format, input_format=tts_format)
    out = [*core.push(AudioChunk(audio, tts_format), 0.0), *core.end()]
    return to_int16(np.concatenate([c.data for c in out]), call_format.encoding)


def assert_heard(heard: np.ndarray, expected: np.ndarray, frame: int) -> None:
    """``heard`` is ``expected`` followed by less than a frame of silence (the last frame's padding)."""
    assert len(expected) <= len(heard) < len(expected) + frame
    assert np.array_equal(heard[: len(expected)], expected)
    assert not heard[len(expected) :].any()


async def run_call(tmp_path, *, tts=None, phone=None, **kw):
    """Run one call; (the run's stage statistics by type, the telephony report, the recordings)."""
    record = str(tmp_path / "call-{call}.wav")
    phone = {"protocol": kw["protocol"], "sample_rate": 8000, **(phone or {})}
    with trio.fail_after(TIMEOUT):
        async with (
            tts_server(**{**FAST, **(tts or {})}) as (tts_url, _),
            telephony_server(record=record, **phone) as (phone_url, server),
        ):
            out = await run_stages(bridge(tts_url, phone_url, **kw))
            with trio.move_on_after(2):
                await server.wait_idle()
            report = server.report()
    stats = {s.type: s.statistics for s in out.report.stages}
    heard = [read_wav(record.format(call=n))[0] for n in range(1, report["calls"] + 1)]
    return stats, report, heard


@pytest.mark.parametrize(
    "protocol,call_rate,tts_format,frame_ms,frame_bytes",
    [
        ("raw", 8000, AudioFormat(Encoding.PCM_S16LE, 24000), 60, 960),  # resampled 24 -> 8 kHz
        ("raw", 16000, AudioFormat(Encoding.PCM_S16LE, 16000), 60, 1920),
        ("twilio", 8000, AudioFormat(Encoding.PCM_S16LE, 8000), 20, 160),  # encoded to mu-law
    ],
)
async def test_the_caller_hears_what_the_tts_said_in_whole_frames_on_time(
    tmp_path, protocol, call_rate, tts_format, frame_ms, frame_bytes
):
    stats, report, [heard] = await run_call(
        tmp_path, tts_format=tts_format, protocol=protocol, frame_ms=frame_ms, phone={"sample_rate": call_rate}
    )
    [call] = report["per_call"]
    call_format = AudioFormat(Encoding.PCM_MULAW if protocol == "twilio" else Encoding.PCM_S16LE, call_rate)
    assert call["wrong_size"] == 0 and call["errors"] == {} and call["closed"] == "bridge"
    assert call["frames"] * frame_bytes == call["seconds"] * call_rate * call_format.frame_bytes
    assert call["deviation_ms"]["p99"] < P99_BOUND_MS
    assert_heard(
        heard, converted(audio_of(TEXT, tts_format), tts_format, call_format), call_format.samples_in(frame_ms)
    )
    sink = stats["telephony_ws"]
    assert sink["drops"] == {} and sink["first_audio_ms"].count == 1
    assert 0 < sink["first_audio_ms"].max < 1000
    if protocol == "twilio":
        assert call["marks"] == 1 and sink["marks_echoed"] == 1


async def test_a_dropped_tts_connection_resumes_and_no_word_is_lost(tmp_path):
    fmt = AudioFormat(Encoding.PCM_S16LE, 8000)
    text = "One two three four five six seven."
    stats, report, [heard] = await run_call(
        tmp_path, tts={"disconnect_after": 60}, tts_format=fmt, protocol="raw", frame_ms=60, transcript=text
    )
    source = stats["cartesia_tts"]
    assert source["connects"] == 2 and source["resumes"] == 1 and source["utterances_failed"] == 0
    assert report["wrong_size"] == 0 and report["errors"] == {}
    # what arrived before the drop, then the utterance again from a word not fully heard
    words, full = text.split(), audio_of(text, fmt)
    heard_as = []
    for j in range(1, len(words)):
        rest = audio_of(" ".join(words[j:]), fmt)
        before = source["samples_out"] - len(rest)
        candidate = np.concatenate([full[:before], rest])
        if len(candidate) <= len(heard) and np.array_equal(heard[: len(candidate)], candidate):
            heard_as.append(j)
            assert_heard(heard, candidate, 480)
    assert len(heard_as) == 1


async def test_a_dropped_telephony_connection_reconnects_and_delivers_what_it_held(tmp_path):
    fmt = AudioFormat(Encoding.PCM_S16LE, 8000)
    stats, report, heard = await run_call(
        tmp_path, phone={"disconnect_after": 5}, tts_format=fmt, protocol="raw", frame_ms=60
    )
    first, second = report["per_call"]
    assert first["closed"] == "simulator" and first["frames"] == 5 and second["closed"] == "bridge"
    sink = stats["telephony_ws"]
    assert sink["connects"] == 2 and sink["disconnects"] == 1
    lost = sink["drops"].get("send_failed")
    assert set(sink["drops"]) <= {"send_failed"}  # held through the outage: only a frame in flight can be lost
    assert first["frames"] + second["frames"] + (lost.frames if lost else 0) == stats["pacer"]["frames_sent"]
    if lost is None:
        assert_heard(np.concatenate(heard), converted(audio_of(TEXT, fmt), fmt, fmt), 480)


class _Malformed:
    """A TTS session that slips malformed messages in after its first audio chunk."""

    def __init__(self, session: TtsSession, bad: list[str]) -> None:
        self._session, self._bad = session, bad

    def receive(self, message, now):
        self._session.receive(message, now)

    def pop_due(self, now):
        due = self._session.pop_due(now)
        if self._bad and any('"chunk"' in m for m in due if isinstance(m, str)):
            due, self._bad = [*due, *self._bad], []
        return due

    def next_due(self):
        return self._session.next_due()


async def test_malformed_tts_messages_are_counted_and_logged_while_the_call_goes_on(tmp_path, caplog):
    bad = [
        "{not json",
        json.dumps({"type": "chunk", "data": "***", "done": False, "context_id": "utt-1"}),
        json.dumps({"type": "karaoke", "context_id": "utt-1"}),
        json.dumps({"type": "chunk", "data": "A" * 5000, "done": False, "context_id": "utt-1"}),
    ]
    settings = TtsSettings(**FAST)

    async def handler(ws: WebSocket) -> None:
        await converse(ws, _Malformed(TtsSession(settings), list(bad)), peer="malformed tts")

    fmt = AudioFormat(Encoding.PCM_S16LE, 8000)
    record = str(tmp_path / "call-{call}.wav")
    with trio.fail_after(TIMEOUT), caplog.at_level(logging.WARNING, logger="rtstream.stages.cartesia"):
        async with (
            trio.open_nursery() as nursery,
            telephony_server(record=record, protocol="raw") as (phone_url, server),
        ):
            port = await nursery.start(functools.partial(serve, upgrading(handler, MAX_REQUEST_BYTES), "127.0.0.1", 0))
            stages = bridge(
                f"ws://127.0.0.1:{port}/tts/websocket",
                phone_url,
                tts_format=fmt,
                protocol="raw",
                frame_ms=60,
                max_message_bytes=4096,
            )
            out = await run_stages(stages)
            nursery.cancel_scope.cancel()
        with trio.move_on_after(2):
            await server.wait_idle()
    source = out.report.stages[0].statistics
    assert source["malformed"] == {"bad_base64": 1, "bad_json": 1, "oversize": 1, "unknown_event": 1}
    warned = [r.getMessage() for r in caplog.records if "malformed message" in r.getMessage()]
    assert len(warned) == 4 and all("ws://127.0.0.1:" in w for w in warned)
    assert_heard(read_wav(record.format(call=1))[0], audio_of(TEXT, fmt), 480)


@pytest.mark.parametrize(
    "protocol,frame_ms,underrun,rtf",
    [
        ("raw", 60, "silence", 0.6),
        ("twilio", 20, "comfort_noise", 0.6),
        ("twilio", 20, "skip", 0.6),
        ("twilio", 20, "silence", 20.0),
    ],
    ids=["starved-raw-silence", "starved-twilio-comfort-noise", "starved-twilio-skip", "healthy-twilio"],
)
async def test_the_receiver_counts_the_underruns_the_pacer_counted_inside_the_reply(
    tmp_path, protocol, frame_ms, underrun, rtf
):
    """A TTS slower than real time starves the reply: the pacer's fill (or skipped slots) splits its words."""
    text = "One two, three."
    stats, report, _ = await run_call(
        tmp_path,
        tts={"rtf": rtf},
        tts_format=AudioFormat(Encoding.PCM_S16LE, 8000),
        protocol=protocol,
        frame_ms=frame_ms,
        transcript=text,
        underrun=underrun,
    )
    pacer, [call] = stats["pacer"], report["per_call"]
    heard = call["in_utterance_underruns"]
    assert heard["replies"] == 1
    if rtf > 1:
        assert pacer["in_utterance_underruns"] == heard["fill_frames"] == 0
        return
    assert pacer["in_utterance_underruns"] > 5
    if underrun == "skip":  # nothing sent in the empty slots: the far end's playout ran dry instead
        assert heard["fill_frames"] == 0 and heard["gaps"] > 0
    elif pacer["stalls"] == 0:  # every empty slot got a fill frame (a slot already past gets none)
        assert heard["fill_frames"] == pacer["in_utterance_underruns"]
    else:
        assert 0 < heard["fill_frames"] <= pacer["in_utterance_underruns"]
