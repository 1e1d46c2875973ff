"""The Cartesia-protocol TTS session, sans I/O: every message type, errors, limits, timing."""

import base64
import json

import pytest

from rtstream.frames import SAMPLE_RATES, AudioFormat, Encoding
from rtstream.simulators.speech import SENTENCE_PAUSE, synthesize, word_seconds
from rtstream.simulators.tts import ContextLimiter, TtsSession, TtsSettings, audio_of

FMT = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 8000}


def request(transcript="Hello world.", context_id="c1", **extra):
    body = {
        "model_id": "sonic-3",
        "transcript": transcript,
        "voice": {"mode": "id", "id": "v"},
        "context_id": context_id,
        "output_format": FMT,
        "add_timestamps": True,
        **extra,
    }
    return json.dumps(body)


def drain(session, now=0.0, until=60.0):
    """Every message the session sends from ``now`` on, with its time."""
    out = []
    t = now
    while t <= until:
        out += [(t, m if not isinstance(m, str) else json.loads(m)) for m in session.pop_due(t)]
        due = session.next_due()
        if due is None:
            break
        t = max(due, t)
    return out


def fast(**kw):
    return TtsSettings(rtf=0, first_byte_latency=0, **kw)


def audio(messages, context_id="c1"):
    return b"".join(
        base64.b64decode(m["data"]) for _, m in messages if m["type"] == "chunk" and m["context_id"] == context_id
    )


def test_a_whole_utterance_gives_chunks_timestamps_and_done():
    s = TtsSession(fast())
    s.receive(request("Hello there, world."), 0.0)
    msgs = drain(s)
    kinds = [m["type"] for _, m in msgs]
    assert kinds[-1] == "done" and kinds.count("done") == 1
    assert set(kinds) == {"chunk", "timestamps", "done"}
    fmt = AudioFormat("pcm_s16le", 8000)
    assert audio(msgs) == audio_of("Hello there, world.", fmt).tobytes()
    stamps = [m["word_timestamps"] for _, m in msgs if m["type"] == "timestamps"]
    words = [w for st in stamps for w in st["words"]]
    assert words == ["Hello", "there,", "world."]
    _, spoken = synthesize("Hello there, world.", 8000)
    assert [st for s_ in stamps for st in s_["start"]] == [w.start / 8000 for w in spoken]
    assert [st for s_ in stamps for st in s_["end"]] == [w.end / 8000 for w in spoken]
    chunk = next(m for _, m in msgs if m["type"] == "chunk")
    assert chunk["status_code"] == 206 and chunk["done"] is False and chunk["seq"] == 0


def test_timestamps_follow_the_chunk_that_completes_their_words():
    s = TtsSession(fast())
    s.receive(request("One two three four five six."), 0.0)
    received = 0
    for _, m in drain(s):
        if m["type"] == "chunk":
            received += len(base64.b64decode(m["data"])) // 2
        elif m["type"] == "timestamps":
            assert all(end * 8000 <= received for end in m["word_timestamps"]["end"])


@pytest.mark.parametrize(
    "chunking,expected",
    [
        ("pattern", [500, 300, 700, 200, 500, 300]),
        ("fixed", [1000] * 6),
    ],
)
def test_chunk_sizes(chunking, expected):
    s = TtsSession(fast(chunking=chunking))
    s.receive(request("A rather long sentence for many chunks."), 0.0)
    sizes = [len(base64.b64decode(m["data"])) for _, m in drain(s) if m["type"] == "chunk"]
    assert sizes[:6] == expected


def test_random_chunk_sizes_stay_in_range_and_follow_the_seed():
    def sizes(seed):
        s = TtsSession(fast(chunking="random", min_bytes=101, max_bytes=333), seed=seed)
        s.receive(request("A rather long sentence for many chunks."), 0.0)
        return [len(base64.b64decode(m["data"])) for _, m in drain(s) if m["type"] == "chunk"]

    a = sizes(1)
    assert all(101 <= n <= 333 for n in a[:-1]) and any(n % 2 for n in a)
    assert a == sizes(1) and a != sizes(2)


@pytest.mark.parametrize("encoding", [e.value for e in Encoding])
@pytest.mark.parametrize("rate", SAMPLE_RATES)
def test_every_encoding_and_rate(encoding, rate):
    s = TtsSession(fast())
    s.receive(request("Hi.", output_format={"container": "raw", "encoding": encoding, "sample_rate": rate}), 0.0)
    got = audio(drain(s))
    fmt = AudioFormat(encoding, rate)
    assert got == audio_of("Hi.", fmt).tobytes()
    assert len(got) == (round(word_seconds("Hi.") * rate) + round(SENTENCE_PAUSE * rate)) * fmt.frame_bytes


def test_real_time_factor_and_first_byte_latency_set_the_timing():
    s = TtsSession(TtsSettings(rtf=2.0, first_byte_latency=0.25, chunking="fixed", chunk_bytes=1600))
    s.receive(request("Hello world, again and again."), 10.0)
    chunks = [(t, m) for t, m in drain(s, 10.0) if m["type"] == "chunk"]
    total = 0
    for t, m in chunks:
        total += len(base64.b64decode(m["data"]))
        assert t == pytest.approx(10.25 + total / 16000 / 2.0)


def test_continue_concatenates_and_speaks_whole_words_as_they_come():
    s = TtsSession(fast())
    s.receive(request("Hello wor", **{"continue": True}), 0.0)
    first = drain(s, until=0.5)
    assert [w for _, m in first if m["type"] == "timestamps" for w in m["word_timestamps"]["words"]] == ["Hello"]
    assert not any(m["type"] == "done" for _, m in first)
    s.receive(request("ld, said I.", **{"continue": True}), 0.6)
    s.receive(request("", **{"continue": False}), 0.7)
    rest = drain(s, 0.7)
    assert rest[-1][1]["type"] == "done"
    fmt = AudioFormat("pcm_s16le", 8000)
    assert audio(first) + audio(rest) == audio_of("Hello world, said I.", fmt).tobytes()
    starts = [st for _, m in first + rest if m["type"] == "timestamps" for st in m["word_timestamps"]["start"]]
    _, spoken = synthesize("Hello world, said I.", 8000)
    assert starts == [w.start / 8000 for w in spoken]
    assert [m["seq"] for _, m in first + rest if m["type"] == "chunk"] == list(
        range(len([1 for _, m in first + rest if m["type"] == "chunk"]))
    )


def test_flush_forces_out_buffered_text_and_answers_flush_done():
    s = TtsSession(fast())
    s.receive(request("Hello wor", **{"continue": True}), 0.0)
    s.receive(request("", **{"continue": True, "flush": True}), 0.0)
    s.receive(request("", **{"continue": True, "flush": True}), 0.0)
    msgs = drain(s, until=0.5)
    words = [w for _, m in msgs if m["type"] == "timestamps" for w in m["word_timestamps"]["words"]]
    assert words == ["Hello", "wor"]
    flushes = [m for _, m in msgs if m["type"] == "flush_done"]
    assert [f["flush_id"] for f in flushes] == [1, 2] and all(f["flush_done"] for f in flushes)
    assert msgs[-1][1]["type"] == "flush_done"


def test_cancel_stops_a_context():
    s = TtsSession(TtsSettings(rtf=1.0, first_byte_latency=0))
    s.receive(request("A long sentence that takes a while to say."), 0.0)
    early = drain(s, 0.0, until=0.3)
    s.receive(json.dumps({"context_id": "c1", "cancel": True}), 0.3)
    later = drain(s, 0.3)
    assert early and not later
    assert s.statistics().contexts_cancelled == 1


@pytest.mark.parametrize(
    "message,code,text",
    [
        ("{not json", "invalid_json", "the request is not valid JSON"),
        ("[1, 2]", "invalid_request", "the request must be a JSON object"),
        (b"\x00\x01", "invalid_request", "binary messages are not accepted; send JSON text"),
        (request(transcript=5), "invalid_request", "transcript must be a string"),
        (request(voice={"mode": "embedding"}), "invalid_request", "voice mode 'embedding' is not supported"),
        (
            request(output_format={"container": "mp3", "encoding": "pcm_s16le", "sample_rate": 8000}),
            "invalid_request",
            "output_format.container must be 'raw', got 'mp3'",
        ),
        (
            request(output_format={"container": "raw", "encoding": "pcm_s24le", "sample_rate": 8000}),
            "invalid_request",
            "output_format.encoding must be one of pcm_s16le, pcm_f32le, pcm_mulaw, pcm_alaw, pcm_s32le, pcm_f16le,",
        ),
        (
            request(output_format={"container": "raw", "encoding": "pcm_s16le", "sample_rate": 11025}),
            "invalid_request",
            "output_format.sample_rate must be one of 8000, 16000, 22050, 24000, 44100, 48000, got 11025",
        ),
        (request(**{"continue": "yes"}), "invalid_request", "continue must be true or false"),
        (json.dumps({"cancel": True}), "invalid_request", "cancel needs a context_id"),
    ],
)
def test_malformed_requests_get_the_protocol_error(message, code, text):
    s = TtsSession(fast())
    s.receive(message, 0.0)
    [(_, error)] = drain(s)
    assert error["type"] == "error" and error["done"] is True and error["status_code"] == 400
    assert error["error_code"] == code and error["message"].startswith(text)
    assert s.statistics().errors == {code: 1}


def test_a_context_cannot_change_format_or_take_input_after_it_ended():
    s = TtsSession(fast())
    s.receive(request("Hi", **{"continue": True}), 0.0)
    s.receive(request("there", output_format={**FMT, "sample_rate": 16000}), 0.0)
    s.receive(request("Bye."), 0.0)
    s.receive(request("Again."), 0.0)
    errors = [m for _, m in drain(s) if m["type"] == "error"]
    assert [e["error_code"] for e in errors] == ["invalid_request", "context_closed"]
    assert "cannot change it to pcm_s16le 16000 Hz mono" in errors[0]["message"]


def test_concurrency_limit_is_shared_across_sessions_and_answers_429():
    limiter = ContextLimiter(2)
    a, b = TtsSession(fast(), limiter=limiter), TtsSession(fast(), limiter=limiter)
    a.receive(request("One", context_id="x", **{"continue": True}), 0.0)
    b.receive(request("Two", context_id="y", **{"continue": True}), 0.0)
    b.receive(request("Three", context_id="z"), 0.0)
    [error] = [m for _, m in drain(b) if m["type"] == "error"]
    assert error["status_code"] == 429 and error["error_code"] == "concurrency_limited" and error["context_id"] == "z"
    a.receive(request("", context_id="x"), 0.0)  # ends x: its slot frees once done is sent
    drain(a)
    b.receive(request("Three.", context_id="z"), 0.0)
    assert [m["type"] for _, m in drain(b)][-1] == "done"


def test_an_idle_open_context_expires_after_its_last_audio():
    s = TtsSession(TtsSettings(rtf=0, first_byte_latency=0, context_timeout=1.0, max_contexts=1))
    s.receive(request("Hello ", **{"continue": True}), 0.0)
    drain(s, 0.0, until=0.5)
    assert s.next_due() == pytest.approx(1.0)
    assert s.pop_due(1.0) == []
    assert s.statistics().contexts_expired == 1
    s.receive(request("world."), 1.5)
    [(_, error)] = drain(s, 1.5)
    assert error["error_code"] == "context_expired"
    s.receive(request("Fresh.", context_id="c2"), 2.0)  # the slot was freed
    assert drain(s, 2.0)[-1][1]["type"] == "done"


def test_error_after_n_chunks_replies_with_an_error_once():
    s = TtsSession(fast(error_after=3))
    s.receive(request("A long enough sentence here."), 0.0)
    msgs = [m for _, m in drain(s)]
    assert [m["type"] for m in msgs if m["type"] != "timestamps"] == ["chunk"] * 3 + ["error"]
    assert msgs[-1]["status_code"] == 500 and msgs[-1]["done"] is True
    s.receive(request("Next one.", context_id="c2"), 1.0)
    assert drain(s, 1.0)[-1][1]["type"] == "done"


def test_sequence_field_can_be_renamed_or_left_out():
    for field in ("n", None):
        s = TtsSession(fast(sequence_field=field))
        s.receive(request("Hi."), 0.0)
        chunk = next(m for _, m in drain(s) if m["type"] == "chunk")
        assert ("n" in chunk) == (field == "n") and "seq" not in chunk


def test_impairments_are_seeded_and_keep_sequence_numbers():
    def messages(seed):
        s = TtsSession(fast(drop=0.1, duplicate=0.1, reorder=0.1, jitter=0.01), seed=seed)
        s.receive(request("A long enough sentence to give many chunks to impair."), 0.0)
        return drain(s)

    a = messages(3)
    assert a == messages(3) and a != messages(4)
    seqs = [m["seq"] for _, m in a if m["type"] == "chunk"]
    assert seqs != sorted(set(seqs))  # something was dropped, duplicated or reordered
    assert a[-1][1]["type"] == "done"


def test_the_disconnect_comes_after_n_chunks():
    s = TtsSession(fast(disconnect_after=4))
    s.receive(request("A long enough sentence here."), 0.0)
    out = []
    for m in s.pop_due(1.0):
        out.append(m if not isinstance(m, str) else json.loads(m)["type"])
    assert [m for m in out if m != "timestamps"][:4] == ["chunk"] * 4
    assert repr(out[-1]) == "DISCONNECT"
