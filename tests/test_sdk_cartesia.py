"""The official Cartesia SDK (``cartesia[websockets]``) against the TTS simulator on a loopback socket.

The SDK runs its own (sync) WebSocket client in a worker thread while the simulator serves on
trio; every message it receives is validated against the SDK's response models, so the
simulator is faithful only if the vendor's client cannot tell it from the service.
"""

import functools
import json

import pydantic
import pytest
import trio

from rtstream.frames import AudioFormat
from rtstream.simulators.tts import TtsServer, TtsSettings, audio_of, serve_tts

cartesia = pytest.importorskip("cartesia")
websockets_exceptions = pytest.importorskip("websockets.exceptions")
from cartesia.types.websocket_response import WebsocketResponse  # noqa: E402

RESPONSE = pydantic.TypeAdapter(WebsocketResponse)
PCM16 = {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000}
VOICE = {"mode": "id", "id": "a0e99841-438c-4a64-b679-ae501e7d6091"}
KEY = "sk-test"


@pytest.fixture
async def simulator():
    """A keyed Cartesia simulator on a free port: its base URL (what the SDK takes), and the server."""
    settings = TtsSettings(rtf=0, first_byte_latency=0, max_contexts=2)
    server = TtsServer(settings, api_key=KEY)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(functools.partial(serve_tts, settings, "127.0.0.1", 0, server=server))
        yield f"ws://127.0.0.1:{port}", server
        nursery.cancel_scope.cancel()


def client(base: str, key: str = KEY):
    return cartesia.Cartesia(api_key=key, websocket_base_url=base)


def validated(events):
    """Each event as the SDK's strict model (the SDK itself constructs them unchecked)."""
    return [RESPONSE.validate_json(event.to_json()) for event in events]


async def in_thread(fn):
    with trio.fail_after(20):
        return await trio.to_thread.run_sync(fn)


async def test_a_streamed_context_with_timestamps_flush_and_done(simulator):
    base, _ = simulator

    def speak():
        with client(base).tts.websocket_connect() as connection:
            ctx = connection.context(
                model_id="sonic-3",
                voice=VOICE,
                output_format=PCM16,
                add_timestamps=True,
                add_phoneme_timestamps=True,
                timeout=5,
            )
            ctx.push("Hello there, ")
            ctx.push("world. ", flush=True)
            ctx.push("Goodbye.")
            ctx.no_more_inputs()
            return validated(ctx.receive())

    events = await in_thread(speak)
    kinds = [e.type for e in events]
    assert kinds[-1] == "done" and {"chunk", "timestamps", "phoneme_timestamps", "flush_done"} <= set(kinds)
    audio = b"".join(e.audio for e in events if e.type == "chunk")
    assert audio == audio_of("Hello there, world. Goodbye.", AudioFormat("pcm_s16le", 16000)).tobytes()
    words = [w for e in events if e.type == "timestamps" for w in e.word_timestamps.words]
    assert words == ["Hello", "there,", "world.", "Goodbye."]
    [flush] = [e for e in events if e.type == "flush_done"]
    assert flush.flush_id == 1 and flush.flush_done
    # flush_id counts the flushes sent on the context so far (the SDK's definition): none before the first
    assert next(e.flush_id for e in events if e.type == "chunk") is None
    assert {e.flush_id for e in events if e.type == "chunk"} == {None, 1}


async def test_the_key_by_bearer_header_query_and_a_refusal_as_401(simulator):
    base, _ = simulator

    def connect(key, **kw):
        with client(base, key).tts.websocket_connect(**kw) as connection:
            ctx = connection.context(model_id="sonic-3", voice=VOICE, output_format=PCM16, timeout=5)
            ctx.push("Hi.", continue_=False)
            return validated(ctx.receive())[-1].type

    assert await in_thread(lambda: connect(KEY)) == "done"  # Authorization: Bearer, as the SDK sends it
    assert await in_thread(lambda: connect("wrong", extra_query={"api_key": KEY})) == "done"  # the query wins
    with pytest.raises(websockets_exceptions.InvalidStatus) as refused:
        await in_thread(lambda: connect("wrong"))
    response = refused.value.response
    assert response.status_code == 401
    body = json.loads(response.body)
    assert body["error_code"] == "unauthorized" and body["request_id"] and body["doc_url"]


async def test_the_version_query_wins_over_the_header_and_an_unknown_one_is_refused(simulator):
    base, server = simulator

    def connect(**kw):
        with client(base).tts.websocket_connect(**kw) as connection:
            ctx = connection.context(model_id="sonic-3", voice=VOICE, output_format=PCM16, timeout=5)
            ctx.push("Hi.", continue_=False)
            return validated(ctx.receive())[-1].type

    assert await in_thread(lambda: connect(extra_query={"cartesia_version": "2026-03-01"})) == "done"
    with pytest.raises(websockets_exceptions.InvalidStatus) as refused:
        await in_thread(lambda: connect(extra_query={"cartesia_version": "1999-01-01"}))
    assert refused.value.response.status_code == 400
    assert json.loads(refused.value.response.body)["error_code"] == "invalid_version"
    assert server.report()["rejected_bad_version"] == 1


async def test_cancel_ends_one_context_and_the_other_runs_on(simulator):
    base, server = simulator

    def speak():
        with client(base).tts.websocket_connect() as connection:
            kept = connection.context("kept", model_id="sonic-3", voice=VOICE, output_format=PCM16, timeout=5)
            dropped = connection.context("dropped", model_id="sonic-3", voice=VOICE, output_format=PCM16, timeout=5)
            dropped.push("Never mind ")
            dropped.cancel()
            kept.push("Still here.", continue_=False)
            return validated(kept.receive())

    events = await in_thread(speak)
    assert (events[-1].type, events[-1].context_id) == ("done", "kept")
    # audio made before the cancel arrived may still come (the SDK hands it on as unrouted); never its done
    assert all(e.type == "chunk" for e in events if e.context_id == "dropped")
    await trio.testing.wait_all_tasks_blocked()
    assert server.report()["contexts_cancelled"] == 1


async def test_errors_reach_the_sdk_in_its_error_model(simulator):
    base, _ = simulator

    def speak():
        with client(base).tts.websocket_connect() as connection:
            holders = [
                connection.context(f"c{n}", model_id="sonic-3", voice=VOICE, output_format=PCM16, timeout=5)
                for n in range(3)
            ]
            for holder in holders[:2]:
                holder.push("Hold ")  # two open contexts: the limit
            holders[2].push("One too many.", continue_=False)
            too_many = validated(holders[2].receive())
            bad = connection.context(
                "bad", model_id="sonic-3", voice=VOICE, output_format={**PCM16, "sample_rate": 11025}, timeout=5
            )
            bad.push("Hi.", continue_=False)
            return too_many + validated(bad.receive())

    limited, refused = await in_thread(speak)
    assert (limited.type, limited.status_code, limited.error_code) == ("error", 429, "concurrency_limited")
    assert limited.title and limited.message and limited.doc_url and limited.request_id
    assert (refused.status_code, refused.error_code, refused.context_id) == (400, "invalid_request", "bad")
    assert "sample_rate" in refused.message


async def test_unknown_fields_are_ignored_and_new_encodings_accepted(simulator):
    base, _ = simulator

    def speak(encoding):
        with client(base).tts.websocket_connect() as connection:
            ctx = connection.context(
                model_id="sonic-3",
                voice=VOICE,
                output_format={**PCM16, "encoding": encoding},
                max_buffer_delay_ms=0,
                use_normalized_timestamps=True,
                pronunciation_dict_id="dict-1",
                generation_config={"volume": 1.0, "emotion": "calm"},
                timeout=5,
            )
            ctx.push("Hi there.", continue_=False, speed="fast", some_future_field=1)
            return validated(ctx.receive())

    for encoding, width in (("pcm_s32le", 4), ("pcm_f16le", 2)):
        events = await in_thread(functools.partial(speak, encoding))
        audio = b"".join(e.audio for e in events if e.type == "chunk")
        assert events[-1].type == "done" and len(audio) % width == 0 and audio
