"""The official Deepgram SDK (``deepgram-sdk``) against the Deepgram Aura simulator on a loopback socket.

``speak.v1.connect`` runs its sync WebSocket client in a worker thread; the simulator's
address is the SDK's own ``environment`` setting. Every JSON reply is validated against the
SDK's message models.
"""

import functools
import json

import pytest
import trio

from rtstream.frames import AudioFormat
from rtstream.simulators.tts import audio_of, serve_tts
from rtstream.simulators.tts.deepgram import DeepgramServer, DeepgramSettings

deepgram = pytest.importorskip("deepgram")
from deepgram.core.api_error import ApiError  # noqa: E402
from deepgram.environment import DeepgramClientEnvironment  # noqa: E402
from deepgram.speak.v1.types import (  # noqa: E402
    SpeakV1Cleared,
    SpeakV1Flushed,
    SpeakV1Metadata,
    SpeakV1Text,
    SpeakV1Warning,
)
from websockets.exceptions import ConnectionClosedError, InvalidStatus  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning:deepgram.core.websocket_compat",
    "ignore:websockets.legacy is deprecated:DeprecationWarning",
)
KEY = "dg-test"
MODELS = {"Metadata": SpeakV1Metadata, "Flushed": SpeakV1Flushed, "Cleared": SpeakV1Cleared, "Warning": SpeakV1Warning}


@pytest.fixture
async def simulator():
    settings = DeepgramSettings(rtf=0, first_byte_latency=0, flush_limit=2, inactivity_timeout=0.5)
    server = DeepgramServer(settings, api_key=KEY)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(functools.partial(serve_tts, settings, "127.0.0.1", 0, server=server))
        yield f"127.0.0.1:{port}", server
        nursery.cancel_scope.cancel()


def client(address, key=KEY):
    environment = DeepgramClientEnvironment(
        base=f"http://{address}", production=f"ws://{address}", agent=f"ws://{address}", agent_rest=f"http://{address}"
    )
    return deepgram.DeepgramClient(api_key=key, environment=environment)


def validated(message):
    """Audio as bytes, JSON replies as the SDK's strict models."""
    if isinstance(message, bytes):
        return message
    data = message if isinstance(message, dict) else message.dict()
    return MODELS[data["type"]].model_validate(data)


def until(connection, kind):
    out = []
    while True:
        out.append(validated(connection.recv()))
        if getattr(out[-1], "type", None) == kind:
            return out


async def in_thread(fn):
    with trio.fail_after(20):
        return await trio.to_thread.run_sync(fn)


async def test_speak_flush_and_close_with_the_sdk(simulator):
    address, _ = simulator

    def speak():
        with client(address).speak.v1.connect(model="aura-2-thalia-en", encoding="linear16", sample_rate="16000") as c:
            c.send_text(SpeakV1Text(text="Hello there. "))
            c.send_text(SpeakV1Text(text="How are you?"))
            c.send_flush()
            first = until(c, "Flushed")
            c.send_text(SpeakV1Text(text="Fine."))
            c.send_flush()
            second = until(c, "Flushed")
            c.send_close()
            return first, second

    first, second = await in_thread(speak)
    assert isinstance(first[0], SpeakV1Metadata) and first[0].model_name == "aura-2-thalia-en"
    assert [m.sequence_id for m in (first[-1], second[-1])] == [0, 1]
    pcm = b"".join(m for m in first + second if isinstance(m, bytes))
    assert pcm == audio_of("Hello there. How are you? Fine.", AudioFormat("pcm_s16le", 16000)).tobytes()


async def test_clear_drops_the_buffer_and_answers_cleared(simulator):
    address, _ = simulator

    def speak():
        with client(address).speak.v1.connect(model="aura-2-thalia-en", encoding="mulaw", sample_rate="8000") as c:
            c.send_text(SpeakV1Text(text="Never said"))
            c.send_clear()
            cleared = until(c, "Cleared")
            c.send_text(SpeakV1Text(text="Said."))
            c.send_flush()
            return cleared, until(c, "Flushed")

    cleared, flushed = await in_thread(speak)
    assert not any(isinstance(m, bytes) for m in cleared)
    assert (
        b"".join(m for m in flushed if isinstance(m, bytes))
        == audio_of("Said.", AudioFormat("pcm_mulaw", 8000)).tobytes()
    )


async def test_the_flush_limit_and_bad_messages_are_warnings_and_the_stream_goes_on(simulator):
    address, _ = simulator

    def speak():
        with client(address).speak.v1.connect(model="aura-2-thalia-en", encoding="linear16", sample_rate="8000") as c:
            c._websocket.send("{not json")
            c._websocket.send(json.dumps({"type": "Speak", "text": 5}))
            c._websocket.send(json.dumps({"type": "Sing"}))
            for _ in range(3):  # the simulator allows two per window here
                c.send_text(SpeakV1Text(text="Hi. "))
                c.send_flush()
            messages = until(c, "Warning") + until(c, "Warning") + until(c, "Warning") + until(c, "Warning")
            c.send_close()
            return messages

    messages = await in_thread(speak)
    warnings = [m.code for m in messages if isinstance(m, SpeakV1Warning)]
    assert warnings == ["BAD_JSON", "BAD_SHAPE", "UNKNOWN_EVENT", "FLUSH_LIMIT_EXCEEDED"]
    assert [m.sequence_id for m in messages if isinstance(m, SpeakV1Flushed)] == [0, 1]


async def test_a_wrong_key_and_a_bad_format_are_refused_before_the_upgrade(simulator):
    address, _ = simulator

    def connect(key, **query):
        with client(address, key).speak.v1.connect(model="aura-2-thalia-en", **query):
            pass

    # deepgram-sdk 7.17 turns only the legacy InvalidStatusCode into its ApiError; websockets >= 14 raises
    # InvalidStatus, which reaches the caller as it is
    with pytest.raises((ApiError, InvalidStatus)) as refused:
        await in_thread(lambda: connect("wrong"))
    assert status(refused.value) == 401
    assert json.loads(refused.value.response.body)["err_code"] == "INVALID_AUTH"
    with pytest.raises((ApiError, InvalidStatus)) as refused:
        await in_thread(lambda: connect(KEY, encoding="mulaw", sample_rate="48000"))
    assert status(refused.value) == 400


def status(exc):
    return exc.status_code if isinstance(exc, ApiError) else exc.response.status_code


async def test_inactivity_closes_the_connection(simulator):
    address, _ = simulator

    def idle():
        with client(address).speak.v1.connect(model="aura-2-thalia-en") as c:
            c.recv()  # the Metadata
            c.recv()

    with pytest.raises(ConnectionClosedError) as closed:
        await in_thread(idle)
    assert closed.value.rcvd.code == 1011 and closed.value.rcvd.reason.startswith("NET-0001")
