"""``elevenlabs_tts`` and ``deepgram_tts`` against their simulators on loopback: speech, text from upstream,
barge-in, resumes, refusals and bad messages (each counted by reason while the call goes on)."""

import contextlib
import functools
import itertools
import json
import logging

import numpy as np
import pytest
import trio

from rtstream.control import CURRENT_CONTROL, CallControl
from rtstream.errors import ConfigError, StageFailed
from rtstream.frames import AudioFormat, Clear, Gap, TextToken, UtteranceEnd, UtteranceStart, WordTimings
from rtstream.params import ParamError
from rtstream.simulators.speech import synthesize
from rtstream.simulators.tts import TtsServer, TtsSettings, audio_of, serve_tts
from rtstream.simulators.tts.deepgram import DeepgramServer, DeepgramSettings
from rtstream.simulators.tts.elevenlabs import ElevenLabsServer, ElevenLabsSettings
from rtstream.simulators.tts.server import Refusal
from rtstream.stages.cartesia import CartesiaTTS
from rtstream.stages.deepgram import DeepgramTTS, FlushBudget
from rtstream.stages.elevenlabs import ElevenLabsTTS
from rtstream.testing import ScriptedSource, run_stage, run_stages

PCM16 = AudioFormat("pcm_s16le", 16000)
KEY = "k"
FAST = {"rtf": 50, "first_byte_latency": 0}
QUICK = {"backoff_initial": 0.01, "backoff_max": 0.05}


class _VandalSession:
    """A session that slips bad messages in before its audio messages."""

    def __init__(self, session, bad):
        self.session, self.bad = session, bad

    def __getattr__(self, name):
        return getattr(self.session, name)

    def pop_due(self, now):
        out = []
        for message in self.session.pop_due(now):
            if self.bad and (isinstance(message, bytes) or '"audio"' in str(message)):
                out.append(self.bad.pop(0))
            out.append(message)
        return out


@contextlib.asynccontextmanager
async def simulator(kind, vandal=(), **settings):
    """(base URL, server) of an ElevenLabs or Deepgram simulator keyed with KEY on a free port.

    With ``vandal``, its sessions slip those bad messages in before their audio messages.
    """
    path = ""
    if kind == "cartesia":
        config = TtsSettings(**{**FAST, **settings})
        server = TtsServer(config, api_key=KEY)
        path = "/tts/websocket"
    elif kind == "elevenlabs":
        config = ElevenLabsSettings(**{**FAST, **settings})
        server = ElevenLabsServer(config, api_key=KEY)
    else:
        config = DeepgramSettings(**{**FAST, **settings})
        server = DeepgramServer(config, api_key=KEY)
    if vandal:
        honest, bad = server.open, list(vandal)

        def open_vandal(target, headers, number):
            session = honest(target, headers, number)
            return session if isinstance(session, Refusal) else _VandalSession(session, bad)

        server.open = open_vandal
    async with trio.open_nursery() as nursery:
        port = await nursery.start(functools.partial(serve_tts, config, "127.0.0.1", 0, server=server))
        yield f"ws://127.0.0.1:{port}{path}", server
        nursery.cancel_scope.cancel()


def stage(kind, url, **kw):
    cls = {"cartesia": CartesiaTTS, "elevenlabs": ElevenLabsTTS, "deepgram": DeepgramTTS}[kind]
    return cls(url=url, **{"api_key": KEY, "sample_rate": 16000, **QUICK, **kw})


def timed_words(out):
    return [w for f in out.events if isinstance(f, WordTimings) for w in f.words]


def stats(out):
    """The TTS stage's statistics (after a scripted source, when there is one)."""
    return next(stage.statistics for stage in out.report.stages if stage.type.endswith("_tts"))


BOTH = pytest.mark.parametrize("kind", ["elevenlabs", "deepgram"])
ALL = pytest.mark.parametrize("kind", ["cartesia", "elevenlabs", "deepgram"])


# -- speech ------------------------------------------------------------------------------------------


@ALL
async def test_transcripts_are_spoken_as_synthesized(kind):
    lines = ("Hello there, how are you?", "Fine. Thanks.")
    with trio.fail_after(15):
        async with simulator(kind) as (url, _):
            out = await run_stage(stage(kind, url, transcripts=lines))
    expected = np.concatenate([audio_of(line, PCM16) for line in lines])
    assert np.array_equal(out.audio(), expected)
    assert [f for f in out.events if not isinstance(f, WordTimings)] == [
        UtteranceStart("utt-1", lines[0]),
        UtteranceEnd("utt-1"),
        UtteranceStart("utt-2", lines[1]),
        UtteranceEnd("utt-2"),
    ]
    assert out.chunks[0].pts == 0 and all(c.utterance for c in out.chunks)


async def test_elevenlabs_alignment_becomes_word_timings_from_the_utterance_start():
    text = "Good morning, my dear friend."
    with trio.fail_after(15):
        async with simulator("elevenlabs") as (url, _):
            out = await run_stage(stage("elevenlabs", url, transcript=text))
    _, spoken = synthesize(text, 16000)
    words = timed_words(out)
    assert [w.text for w in words] == text.split()
    for word, truth in zip(words, spoken, strict=True):  # alignment is in whole milliseconds
        assert word.start == pytest.approx(truth.start / 16000, abs=0.002)
        assert word.end == pytest.approx(truth.end / 16000, abs=0.002)


@pytest.mark.parametrize(
    "kind,fields,encoding,rate",
    [
        ("elevenlabs", {"encoding": "pcm_mulaw", "sample_rate": None}, "pcm_mulaw", 8000),
        ("elevenlabs", {"sample_rate": 44100}, "pcm_s16le", 44100),
        ("deepgram", {"encoding": "pcm_alaw", "sample_rate": None}, "pcm_alaw", 8000),
        ("deepgram", {"sample_rate": 48000}, "pcm_s16le", 48000),
    ],
)
async def test_output_formats(kind, fields, encoding, rate):
    with trio.fail_after(15):
        async with simulator(kind) as (url, _):
            out = await run_stage(stage(kind, url, transcript="Hi there.", **fields))
    fmt = AudioFormat(encoding, rate)
    assert out.chunks[0].format == fmt and np.array_equal(out.audio(), audio_of("Hi there.", fmt))


@pytest.mark.parametrize("auth", ["header", "bearer", "query"])
async def test_cartesia_sends_its_key_each_way(auth):
    with trio.fail_after(10):
        async with simulator("cartesia") as (url, _):
            out = await run_stage(stage("cartesia", url, transcript="Hi.", auth=auth))
    assert np.array_equal(out.audio(), audio_of("Hi.", PCM16))


async def test_cartesia_asks_for_a_transport_encoding_and_delivers_pcm16():
    with trio.fail_after(10):
        async with simulator("cartesia") as (url, _):
            out = await run_stage(stage("cartesia", url, transcript="Hi there.", transport="pcm_s32le"))
    assert out.chunks[0].format == PCM16
    expected = audio_of("Hi there.", PCM16).astype(int)
    assert np.abs(out.audio().astype(int) - expected).max() <= 1  # truncated where PCM16 rounds


def test_elevenlabs_parameters_are_checked():
    with pytest.raises(ParamError, match=r"^keep_alive: must be shorter than inactivity_timeout \(20 s\), got 30$"):
        ElevenLabsTTS(transcript="Hi.", keep_alive=30)
    with pytest.raises(ParamError, match=r"^sample_rate: pcm_mulaw comes at 8000 Hz only, got 16000$"):
        ElevenLabsTTS(transcript="Hi.", encoding="pcm_mulaw", sample_rate=16000)
    with pytest.raises(ParamError, match=r"^transcript: give one of transcript, transcripts or transcript_file"):
        ElevenLabsTTS(transcript="Hi.", transcripts=("Yo.",))


def test_secrets_stay_out_of_the_repr():
    assert "sekrit" not in repr(ElevenLabsTTS(transcript="Hi.", api_key="sekrit"))
    assert "sekrit" not in repr(DeepgramTTS(transcript="Hi.", api_key="sekrit"))


# -- text from upstream ------------------------------------------------------------------------------


@ALL
async def test_text_frames_from_upstream_are_spoken_as_they_come(kind):
    script = [
        (0.0, TextToken("Hello the", "a")),
        (0.05, TextToken("re, my fri", "a")),
        (0.1, Gap()),
        (0.15, TextToken("end.", "a", final=True)),
        (0.2, TextToken("Bye now.", "b", final=True)),
    ]
    with trio.fail_after(15):
        async with simulator(kind) as (url, _):
            out = await run_stages([ScriptedSource(script=script, format=PCM16), stage(kind, url)])
    expected = np.concatenate([audio_of("Hello there, my friend.", PCM16), audio_of("Bye now.", PCM16)])
    assert np.array_equal(out.audio(), expected)
    events = [f for f in out.events if not isinstance(f, WordTimings)]
    assert events == [
        Gap(),
        UtteranceStart("a"),
        UtteranceEnd("a"),
        UtteranceStart("b"),
        UtteranceEnd("b"),
    ] or events == [
        UtteranceStart("a"),
        Gap(),
        UtteranceEnd("a"),
        UtteranceStart("b"),
        UtteranceEnd("b"),
    ]
    assert stats(out)["tokens"] == 4


@ALL
async def test_a_clear_cancels_the_utterance_and_passes_on(kind):
    long = "One two three four five six seven eight nine ten eleven twelve. "
    script = [(0.0, TextToken(long * 4, "a")), (0.3, Clear()), (0.35, TextToken("Yes?", "b", final=True))]
    with trio.fail_after(15):
        async with simulator(kind, rtf=2) as (url, _):
            out = await run_stages([ScriptedSource(script=script, format=PCM16), stage(kind, url)])
    events = [f for f in out.events if not isinstance(f, WordTimings)]
    assert events == [UtteranceStart("a"), UtteranceEnd("a"), Clear(), UtteranceStart("b"), UtteranceEnd("b")]
    b = [c for c in out.chunks if c.utterance == "b"]
    assert np.array_equal(np.concatenate([c.data for c in b]), audio_of("Yes?", PCM16))
    heard_a = sum(c.samples for c in out.chunks if c.utterance == "a")
    assert 0 < heard_a < len(audio_of(long * 4, PCM16))
    assert stats(out)["utterances_cancelled"] == 1


async def test_elevenlabs_keeps_the_connection_alive_while_upstream_thinks():
    script = [(0.0, TextToken("Let me ", "a")), (0.9, TextToken("think.", "a", final=True))]
    with trio.fail_after(15):
        async with simulator("elevenlabs", inactivity_timeout=0.5) as (url, server):
            out = await run_stages(
                [
                    ScriptedSource(script=script, format=PCM16),
                    stage("elevenlabs", url, keep_alive=0.2, inactivity_timeout=1),
                ]
            )
            await trio.testing.wait_all_tasks_blocked()
            report = server.report()
    assert np.array_equal(out.audio(), audio_of("Let me think.", PCM16))
    assert stats(out)["keep_alives"] >= 2 and stats(out)["connects"] == 1
    assert report["keep_alives"] >= 2 and report["errors_sent"] == {}


async def test_a_text_stage_first_in_a_pipeline_says_what_it_needs():
    with pytest.raises(ConfigError, match=r"transcript': elevenlabs_tts as the first stage needs a transcript"):
        await run_stage(ElevenLabsTTS())


# -- losses and refusals -----------------------------------------------------------------------------


async def test_elevenlabs_resumes_from_the_first_word_not_fully_heard():
    text = "One two three four five six seven eight nine ten."
    with trio.fail_after(20):
        async with simulator("elevenlabs", disconnect_after=40) as (url, server):  # each connection: ~0.5 s
            out = await run_stage(stage("elevenlabs", url, transcript=text))
            await trio.testing.wait_all_tasks_blocked()
            report = server.report()
    s = stats(out)
    assert s["connects"] >= 2 and s["resumes"] == s["connects"] - 1 == report["net_disconnected"]
    words = timed_words(out)
    assert [w.text for w in words] == text.split()  # each word timed once: resumed where the audio stopped
    assert all(a.end <= b.start + 1e-9 for a, b in itertools.pairwise(words))


async def test_deepgram_resumes_from_the_first_sentence_not_flushed():
    text = "One two three. Four five six. Seven eight nine. Ten eleven twelve."
    with trio.fail_after(20):
        async with simulator("deepgram", disconnect_after=300) as (url, _):  # each connection: ~1.6 s
            out = await run_stage(stage("deepgram", url, transcript=text))
    s = stats(out)
    assert s["connects"] >= 2 and s["resumes"] == s["connects"] - 1 and s["restarts"] == 0
    assert s["utterances_failed"] == 0
    full = len(audio_of(text, PCM16))
    longest = max(
        len(audio_of(sentence, PCM16)) for sentence in ("One two three.", "Four five six.", "Seven eight nine.")
    )
    # each resume repeats at most the part of a sentence heard before the drop
    assert full <= out.audio().size < full + s["resumes"] * longest


@BOTH
async def test_a_service_failure_mid_reply_resumes(kind):
    text = "One two three. Four five six."
    with trio.fail_after(20):
        async with simulator(kind, error_after=150) as (url, _):  # the failure closes the connection
            out = await run_stage(stage(kind, url, transcript=text))
    s = stats(out)
    assert s["utterances_failed"] == 0 and s["connects"] >= 2
    if kind == "elevenlabs":
        assert s["service_errors"] == {"internal_error": 1}
        assert [w.text for w in timed_words(out)] == text.split()


@ALL
async def test_a_wrong_key_fails_the_stage_with_401(kind):
    with trio.fail_after(10):
        async with simulator(kind) as (url, _):
            with pytest.raises(StageFailed, match=r"refused with HTTP 401$"):
                await run_stage(stage(kind, url, transcript="Hi.", api_key="wrong"))


ELEVENLABS_BAD = (
    "{not json",
    json.dumps({"audio": 5, "contextId": "utt-1"}),
    json.dumps({"audio": "@@@", "contextId": "utt-1"}),
    json.dumps({"audio": "AAAA", "contextId": "stranger"}),
    json.dumps({"audio": "AAAA", "alignment": {"chars": ["a"]}, "contextId": "utt-1"}),
    json.dumps({"karaoke": True}),
    "x" * 5000,
)
DEEPGRAM_BAD = (
    "{not json",
    json.dumps({"type": "Flushed", "sequence_id": "one"}),
    json.dumps({"type": "Karaoke"}),
    json.dumps({"type": "Warning", "description": "heads up", "code": "SOMETHING"}),
    "x" * 5000,
)


@pytest.mark.parametrize(
    "kind,bad,malformed",
    [
        (
            "elevenlabs",
            ELEVENLABS_BAD,
            {"bad_alignment": 1, "bad_base64": 1, "bad_json": 1, "bad_shape": 1, "oversize": 1, "unknown_event": 1},
        ),
        ("deepgram", DEEPGRAM_BAD, {"bad_json": 1, "bad_shape": 1, "oversize": 1, "unknown_event": 1}),
    ],
)
async def test_bad_messages_are_counted_by_reason_logged_once_and_the_call_goes_on(kind, bad, malformed, caplog):
    caplog.set_level(logging.WARNING, logger="rtstream.stages.tts")
    text = "Still going strong."
    with trio.fail_after(15):
        async with simulator(kind, vandal=bad + bad) as (url, _):
            out = await run_stage(stage(kind, url, transcript=text, max_message_bytes=4096))
    assert np.array_equal(out.audio(), audio_of(text, PCM16))
    s = stats(out)
    assert s["malformed"] == {reason: 2 * n for reason, n in malformed.items()}
    logged = [r for r in caplog.records if r.name == "rtstream.stages.tts" and "malformed" in r.getMessage()]
    assert len(logged) == len(malformed)  # once per kind (the pipeline's issue line is the runner's)
    if kind == "elevenlabs":
        assert s["stale_messages"] == 2  # audio for a context it never opened
    else:
        assert s["service_errors"] == {"SOMETHING": 2}


def test_the_flush_budget_allows_twenty_a_minute():
    budget = FlushBudget(20, 60.0)
    for t in range(20):
        assert budget.left(float(t)) > 0
        budget.spend(float(t))
    assert budget.left(30.0) == 0 and budget.next_allowed(30.0) == 60.0
    assert budget.left(60.0) == 1


@ALL
async def test_a_clear_on_the_calls_control_path_cancels_at_once(kind):
    long = "One two three four five six seven eight nine ten eleven twelve. " * 4
    control = CallControl()
    token = CURRENT_CONTROL.set(control)
    try:
        with trio.fail_after(15):
            async with simulator(kind, rtf=2) as (url, _), trio.open_nursery() as nursery:

                async def barge_in():
                    await trio.sleep(0.4)
                    control.clear("barge-in", trio.current_time())

                nursery.start_soon(barge_in)
                out = await run_stage(stage(kind, url, transcripts=(long, "Yes?")))
    finally:
        CURRENT_CONTROL.reset(token)
    assert stats(out)["utterances_cancelled"] == 1 and "utt-1" in control.cleared
    assert 0 < sum(c.samples for c in out.chunks if c.utterance == "utt-1") < len(audio_of(long, PCM16))
    assert np.array_equal(
        np.concatenate([c.data for c in out.chunks if c.utterance == "utt-2"]), audio_of("Yes?", PCM16)
    )


async def test_elevenlabs_stream_input_speaks_the_next_reply_on_a_new_connection_after_a_clear():
    long = "One two three four five six seven eight nine ten eleven twelve. " * 4
    script = [(0.0, TextToken(long, "a")), (0.3, Clear()), (0.35, TextToken("Yes?", "b", final=True))]
    with trio.fail_after(15):
        async with simulator("elevenlabs", rtf=2) as (url, _):
            out = await run_stages(
                [ScriptedSource(script=script, format=PCM16), stage("elevenlabs", url, endpoint="stream-input")]
            )
    b = [c for c in out.chunks if c.utterance == "b"]
    assert np.array_equal(np.concatenate([c.data for c in b]), audio_of("Yes?", PCM16))
    assert stats(out)["connects"] == 2 and stats(out)["utterances_cancelled"] == 1


async def test_elevenlabs_takes_a_new_connection_when_cancelled_contexts_fill_the_limit():
    long = "One two three four five six seven eight nine ten eleven twelve. " * 4
    script = [(0.0, TextToken(long, "a")), (0.3, Clear()), (0.32, TextToken("Yes?", "b", final=True))]
    with trio.fail_after(15):
        async with simulator("elevenlabs", rtf=2, contexts_per_connection=1) as (url, server):
            out = await run_stages(
                [ScriptedSource(script=script, format=PCM16), stage("elevenlabs", url, max_contexts=1)]
            )
            await trio.testing.wait_all_tasks_blocked()
            report = server.report()
    b = [c for c in out.chunks if c.utterance == "b"]
    assert np.array_equal(np.concatenate([c.data for c in b]), audio_of("Yes?", PCM16))
    assert stats(out)["connects"] == 2 and report["errors_sent"] == {}  # never refused a sixth (here: second)
