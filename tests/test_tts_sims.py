"""The TTS simulators' sessions, sans I/O: Cartesia's 2026-03-01 additions, ElevenLabs and Deepgram Aura."""

import base64
import json

import numpy as np

from rtstream.frames import AudioFormat
from rtstream.simulators.speech import synthesize
from rtstream.simulators.tts import TtsSession, TtsSettings, audio_of
from rtstream.simulators.tts.deepgram import DeepgramSession, DeepgramSettings
from rtstream.simulators.tts.elevenlabs import ElevenLabsSession, ElevenLabsSettings
from rtstream.simulators.tts.voice import encode
from rtstream.simulators.websocket import Close
from rtstream.wire.cartesia import handshake, read_handshake

PCM16 = AudioFormat("pcm_s16le", 16000)


def drain(session, now=0.0, until=60.0):
    """Every item the session sends from ``now`` to ``until``, with its time (JSON decoded)."""
    out, t = [], now
    while t <= until:
        out += [(t, json.loads(m) if isinstance(m, str) else m) for m in session.pop_due(t)]
        due = session.next_due()
        if due is None or due > until:
            break
        t = max(due, t)
    return out


# -- Cartesia ------------------------------------------------------------------------------------


def cartesia(transcript="Hello world.", context_id="c1", **extra):
    body = {
        "model_id": "sonic-3",
        "transcript": transcript,
        "voice": "v",  # a bare id, as the SDK's no_more_inputs sends it
        "context_id": context_id,
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        **extra,
    }
    return json.dumps(body)


def test_cartesia_handshake_reads_every_way_of_sending_the_key_and_the_query_wins():
    url, headers = handshake("wss://x/tts/websocket", api_key="k", version="2026-03-01", auth="bearer")
    assert (b"Authorization", b"Bearer k") in headers and read_handshake("/tts/websocket", headers).api_key == "k"
    url, headers = handshake("wss://x/tts/websocket?a=1", api_key="k", version="2026-03-01", auth="query")
    assert url == "wss://x/tts/websocket?a=1&api_key=k"
    shake = read_handshake(
        "/tts/websocket?api_key=q&cartesia_version=2024-06-10",
        [(b"X-API-Key", b"h"), (b"Cartesia-Version", b"2026-03-01")],
    )
    assert (shake.api_key, shake.version) == ("q", "2024-06-10")


def test_cartesia_phoneme_timestamps_and_flush_ids():
    s = TtsSession(TtsSettings(rtf=0, first_byte_latency=0))
    s.receive(cartesia("Hi there ", add_phoneme_timestamps=True, add_timestamps=True, **{"continue": True}), 0.0)
    s.receive(cartesia("friend.", flush=True, **{"continue": True}), 0.0)
    s.receive(cartesia("", **{"continue": False}), 0.0)
    msgs = [m for _, m in drain(s)]
    phonemes = [p for m in msgs if m["type"] == "phoneme_timestamps" for p in m["phoneme_timestamps"]["phonemes"]]
    assert "".join(phonemes) == "hitherefriend"
    assert next(m.get("flush_id") for m in msgs if m["type"] == "chunk") is None
    assert {m.get("flush_id") for m in msgs if m["type"] in ("chunk", "timestamps") and "friend." in json.dumps(m)} <= {
        1
    }
    assert [m["flush_id"] for m in msgs if m["type"] == "flush_done"] == [1]
    error = TtsSession(TtsSettings(), request_id="sim-1")
    error.receive("{", 0.0)
    [(_, reply)] = drain(error)
    assert reply["doc_url"].startswith("https://") and reply["request_id"] == "sim-1"


def test_cartesia_max_buffer_delay_holds_text_until_a_sentence_ends_or_the_delay_is_over():
    s = TtsSession(TtsSettings(rtf=0, first_byte_latency=0))
    s.receive(cartesia("Hold on ", max_buffer_delay_ms=500, **{"continue": True}), 0.0)
    assert drain(s, until=0.4) == []
    assert [m["type"] for _, m in drain(s, 0.4, until=0.6)][:1] == ["chunk"]
    s.receive(cartesia("Right. ", context_id="c2", max_buffer_delay_ms=500, **{"continue": True}), 1.0)
    assert drain(s, 1.0, until=1.0)  # a sentence end goes at once


def test_cartesia_speed_and_transport_encodings():
    s = TtsSession(TtsSettings(rtf=0, first_byte_latency=0))
    s.receive(cartesia("Quick.", speed="fast"), 0.0)
    fast = b"".join(base64.b64decode(m["data"]) for _, m in drain(s) if m["type"] == "chunk")
    assert len(fast) == len(synthesize("Quick.", 16000, 1.25)[0]) * 2 < len(audio_of("Quick.", PCM16).tobytes())
    for encoding, dtype in (("pcm_s32le", "<i4"), ("pcm_f16le", "<f2")):
        s = TtsSession(TtsSettings(rtf=0, first_byte_latency=0))
        s.receive(cartesia("Hi.", output_format={"container": "raw", "encoding": encoding, "sample_rate": 16000}), 0.0)
        got = b"".join(base64.b64decode(m["data"]) for _, m in drain(s) if m["type"] == "chunk")
        assert got == encode(synthesize("Hi.", 16000)[0], encoding) and len(got) % np.dtype(dtype).itemsize == 0


# -- ElevenLabs -----------------------------------------------------------------------------------


def eleven(**kw):
    settings = ElevenLabsSettings(**{"rtf": 0, "first_byte_latency": 0, **kw})
    return ElevenLabsSession(settings, multi=True, output_format="pcm_16000")


def send(session, now=0.0, **message):
    session.receive(json.dumps(message), now)


def audio_of_messages(messages, context="a"):
    return b"".join(
        base64.b64decode(m["audio"])
        for _, m in messages
        if isinstance(m, dict) and m.get("contextId") == context and "audio" in m
    )


def test_elevenlabs_buffers_text_by_the_chunk_length_schedule_until_a_flush():
    s = eleven(chunk_length_schedule=(30,))
    send(s, text=" ", context_id="a")
    send(s, text="Short text ", context_id="a")
    assert drain(s, until=1.0) == []
    send(s, text="that grows past thirty characters ", context_id="a", now=1.0)
    first = drain(s, 1.0, until=1.0)
    assert audio_of_messages(first) == audio_of("Short text that grows past thirty characters", PCM16).tobytes()
    send(s, text="then ends.", context_id="a", now=2.0)
    send(s, context_id="a", flush=True, now=2.0)
    send(s, context_id="a", close_context=True, now=2.0)
    rest = drain(s, 2.0, until=2.0)
    assert audio_of_messages(rest) == audio_of("then ends.", PCM16).tobytes()
    assert rest[-1][1] == {"isFinal": True, "contextId": "a"}


def test_elevenlabs_close_context_drops_what_was_not_flushed():
    s = eleven()
    send(s, text=" ", context_id="a")
    send(s, text="Never flushed ", context_id="a")
    send(s, context_id="a", close_context=True)
    assert [m for _, m in drain(s, until=1.0)] == [{"isFinal": True, "contextId": "a"}]


def test_elevenlabs_limits_contexts_and_closes_on_inactivity_and_bad_input():
    s = eleven(contexts_per_connection=1)
    send(s, text=" ", context_id="a")
    send(s, text=" ", context_id="b")
    items = [m for _, m in drain(s, until=1.0)]
    assert items[0]["error"] == "max_active_conversations" and items[0]["code"] == 1008
    assert isinstance(items[-1], Close) and items[-1].code == 1008
    s = eleven(inactivity_timeout=5)
    send(s, text=" ", context_id="a")
    send(s, text="", context_id="a", now=4.0)  # a keep-alive
    assert drain(s, 0.0, until=8.9) == []
    timeout = [m for _, m in drain(s, 8.9, until=9.1)]
    assert timeout[0]["error"] == "input_timeout_exceeded" and isinstance(timeout[-1], Close)
    for bad, code in (("{", "invalid_json"), ('{"text": 1}', "invalid_request")):
        s = eleven()
        s.receive(bad, 0.0)
        assert next(m for _, m in drain(s))["error"] == code
    assert s.statistics().errors == {"invalid_request": 1}


def test_elevenlabs_wants_the_key_in_the_first_message_when_the_header_had_none():
    settings = ElevenLabsSettings(rtf=0, first_byte_latency=0)
    s = ElevenLabsSession(settings, multi=True, output_format="pcm_16000", api_key="k", authorized=False)
    send(s, text=" ", context_id="a", xi_api_key="k")
    send(s, text="Hi. ", context_id="a", flush=True)
    assert audio_of_messages(drain(s)) == audio_of("Hi.", PCM16).tobytes()


def test_elevenlabs_stream_input_ends_with_empty_text_and_closes():
    settings = ElevenLabsSettings(rtf=0, first_byte_latency=0)
    s = ElevenLabsSession(settings, multi=False, output_format="ulaw_8000")
    send(s, text=" ")
    send(s, text="Hello there. ")
    send(s, text="")
    items = [m for _, m in drain(s)]
    assert (
        b"".join(base64.b64decode(m["audio"]) for m in items[:-2])
        == audio_of("Hello there.", AudioFormat("pcm_mulaw", 8000)).tobytes()
    )
    assert items[-2] == {"isFinal": True} and items[-1] == Close(1000, "")


# -- Deepgram ------------------------------------------------------------------------------------


def aura(**kw):
    settings = DeepgramSettings(**{"rtf": 0, "first_byte_latency": 0, **kw})
    return DeepgramSession(settings, fmt=PCM16, model="aura-2-thalia-en", request_id="r", seed=settings.seed)


def test_deepgram_speaks_sentences_as_they_end_and_the_rest_on_flush():
    s = aura()
    first = [m for _, m in drain(s, until=0.0)]
    assert first[0]["type"] == "Metadata" and first[0]["model_name"] == "aura-2-thalia-en"
    send(s, type="Speak", text="One sentence. And half")
    spoken = b"".join(m for _, m in drain(s, until=0.0) if isinstance(m, bytes))
    assert spoken == audio_of("One sentence.", PCM16).tobytes()
    send(s, type="Flush")
    rest = [m for _, m in drain(s, until=0.0)]
    assert b"".join(m for m in rest if isinstance(m, bytes)) == audio_of("And half", PCM16).tobytes()
    assert rest[-1] == {"type": "Flushed", "sequence_id": 0}


def test_deepgram_clear_drops_queued_audio_and_answers_cleared():
    s = aura(rtf=1)
    drain(s, until=0.0)
    send(s, type="Speak", text="A long sentence that takes a while. ")
    send(s, type="Flush")
    early = drain(s, 0.0, until=0.3)
    send(s, type="Clear", now=0.3)
    later = [m for _, m in drain(s, 0.3)]
    assert early and later == [{"type": "Cleared", "sequence_id": 1}]


def test_deepgram_warns_past_the_flush_limit_and_on_bad_messages_and_goes_on():
    s = aura(flush_limit=2, flush_window=60, max_text=10)
    drain(s, until=0.0)
    for t in (0.0, 1.0, 2.0):
        send(s, type="Flush", now=t)
    send(s, type="Flush", now=61.0)  # the window has moved on
    s.receive("{", 61.0)
    s.receive(json.dumps({"type": "Speak", "text": "far too long a text"}), 61.0)
    items = [m for _, m in drain(s, 0.0, until=61.0)]
    assert [m["sequence_id"] for m in items if m["type"] == "Flushed"] == [0, 1, 2]
    assert [m["code"] for m in items if m["type"] == "Warning"] == ["FLUSH_LIMIT_EXCEEDED", "BAD_JSON", "TEXT_TOO_LONG"]
    assert s.statistics().flushes_refused == 1


def test_deepgram_closes_after_inactivity_and_on_close():
    s = aura(inactivity_timeout=3)
    items = [m for _, m in drain(s, until=10.0)]
    assert items[-1] == Close(1011, "NET-0001: no messages within the inactivity timeout")
    s = aura()
    send(s, type="Close")
    assert [m for _, m in drain(s)][-1] == Close(1000, "")


def test_every_simulator_shares_the_chunking_and_the_seeded_impairments():
    def run(seed):
        s = aura(chunking="random", min_bytes=100, max_bytes=300, drop=0.2, seed=seed)
        drain(s, until=0.0)
        send(s, type="Speak", text="A rather long sentence for several chunks. ")
        return [m for _, m in drain(s, until=0.0)], s.statistics()

    first, stats = run(1)
    assert stats.network.dropped > 0 and all(100 <= len(m) <= 300 for m in first[:-1])
    assert run(1)[0] == first and run(2)[0] != first
