"""The official ElevenLabs SDK (``elevenlabs``) against the ElevenLabs simulator on a loopback socket.

The SDK's only input-streaming call, ``text_to_speech.convert_realtime`` (``stream-input``),
always dials ``wss://``: the simulator serves TLS with a trustme certificate that the SDK's
WebSocket client trusts through ``SSL_CERT_FILE``. The SDK has no multi-stream-input client,
only its message models: the multi-context tests speak through the same WebSocket library the
SDK uses, build every request from the SDK's models and validate every reply against them.
"""

import base64
import functools
import json
import ssl

import pytest
import trio

from rtstream.frames import AudioFormat
from rtstream.simulators.tts import audio_of, serve_tts
from rtstream.simulators.tts.elevenlabs import ElevenLabsServer, ElevenLabsSettings
from rtstream.wire.elevenlabs import Alignment, AlignmentWords

elevenlabs = pytest.importorskip("elevenlabs")
trustme = pytest.importorskip("trustme")
from elevenlabs import (  # noqa: E402
    AudioOutputMulti,
    CloseContext,
    CloseSocket,
    FinalOutputMulti,
    FlushContext,
    InitializeConnectionMulti,
    KeepContextAlive,
    SendTextMulti,
)
from elevenlabs.core.api_error import ApiError  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:ConnectionClosed.code is deprecated:DeprecationWarning")  # the SDK's
KEY = "xi-test"
VOICE = "21m00Tcm4TlvDq8ikWAM"
PCM16 = AudioFormat("pcm_s16le", 16000)


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
async def simulator(ca, tmp_path, monkeypatch):
    """A keyed ElevenLabs simulator serving TLS on a free port: (its https base URL, the server)."""
    settings = ElevenLabsSettings(rtf=0, first_byte_latency=0, inactivity_timeout=0.5, contexts_per_connection=2)
    server = ElevenLabsServer(settings, api_key=KEY)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            functools.partial(serve_tts, settings, "127.0.0.1", 0, server=server, ssl_context=context)
        )
        yield f"https://127.0.0.1:{port}", server
        nursery.cancel_scope.cancel()


async def in_thread(fn):
    with trio.fail_after(20):
        return await trio.to_thread.run_sync(fn)


def send(ws, model):
    ws.send(model.json(by_alias=True, exclude_none=True))


def replies(ws):
    """Every reply until the server closes, each validated against the SDK's multi-context models."""
    out = []
    try:
        while True:
            data = json.loads(ws.recv(timeout=5))
            out.append(
                FinalOutputMulti.model_validate(data) if "audio" not in data else AudioOutputMulti.model_validate(data)
            )
    except ConnectionClosed as closed:
        return out, closed


def multi_url(base, **query):
    params = "&".join(
        f"{k}={v}" for k, v in {"model_id": "eleven_flash_v2_5", "output_format": "pcm_16000", **query}.items()
    )
    return f"{base.replace('https', 'wss')}/v1/text-to-speech/{VOICE}/multi-stream-input?{params}"


async def test_convert_realtime_streams_speech_with_the_sdk(simulator):
    base, server = simulator

    def speak():
        client = elevenlabs.ElevenLabs(api_key=KEY, base_url=base)
        return b"".join(
            client.text_to_speech.convert_realtime(
                VOICE, text=iter(["Hello there, ", "how are ", "you today?"]), output_format="pcm_16000"
            )
        )

    audio = await in_thread(speak)
    assert audio == audio_of("Hello there, how are you today?", PCM16).tobytes()
    await trio.testing.wait_all_tasks_blocked()
    assert server.report()["connections"] == 1


async def test_a_wrong_key_is_refused_with_401_and_the_sdk_says_so(simulator):
    base, _ = simulator

    def speak():
        client = elevenlabs.ElevenLabs(api_key="wrong", base_url=base)
        return b"".join(client.text_to_speech.convert_realtime(VOICE, text=iter(["Hi. "]), output_format="pcm_16000"))

    with pytest.raises(InvalidStatus) as refused:
        await in_thread(speak)
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["detail"]["status"] == "invalid_api_key"


async def test_contexts_alignment_flush_keep_alive_and_close(simulator):
    base, _ = simulator

    def speak():
        with connect(multi_url(base), additional_headers={"xi-api-key": KEY}) as ws:
            send(ws, InitializeConnectionMulti(context_id="a", voice_settings={"stability": 0.5, "speed": 1.0}))
            send(ws, SendTextMulti(text="Good morning, ", context_id="a"))
            send(ws, KeepContextAlive(context_id="a"))
            send(ws, SendTextMulti(text="my friend. ", context_id="a"))
            send(ws, FlushContext(context_id="a", flush=True))
            send(ws, CloseContext(context_id="a", close_context=True))
            send(ws, CloseSocket(close_socket=True))
            return replies(ws)

    messages, closed = await in_thread(speak)
    assert closed.rcvd.code == 1000
    audio = [m for m in messages if isinstance(m, AudioOutputMulti)]
    assert {m.context_id for m in messages} == {"a"} and isinstance(messages[-1], FinalOutputMulti)
    pcm = b"".join(base64.b64decode(m.audio) for m in audio)
    assert pcm == audio_of("Good morning, my friend.", PCM16).tobytes()
    words, offset, aligner = [], 0.0, AlignmentWords()
    for m in audio:  # alignment times are relative to their own chunk
        if m.alignment is not None:
            a = m.alignment
            words += aligner.feed(
                Alignment(tuple(a.chars), tuple(a.char_start_times_ms), tuple(a.char_durations_ms)), offset
            )
        offset += len(base64.b64decode(m.audio)) // 2 / 16000
    assert [w for w, _, _ in words] == ["Good", "morning,", "my", "friend."]
    assert all(0 <= start < end for _, start, end in words)


async def test_the_key_in_the_first_message_and_the_context_limit(simulator):
    base, _ = simulator

    def speak():
        with connect(multi_url(base)) as ws:  # no header: the key rides in the first message
            send(ws, InitializeConnectionMulti(context_id="a", xi_api_key=KEY))
            for name in "bc":
                send(ws, SendTextMulti(text=" ", context_id=name))
            return replies(ws)

    _, closed = await in_thread(speak)
    assert closed.rcvd.code == 1008 and "Maximum simultaneous contexts" in closed.rcvd.reason


async def test_a_missing_key_bad_json_and_inactivity_close_with_the_error_message(simulator):
    base, _ = simulator

    def session(*messages, key=True):
        headers = {"xi-api-key": KEY} if key else {}
        with connect(multi_url(base), additional_headers=headers) as ws:
            for message in messages:
                ws.send(message)
            last = None
            try:
                while True:
                    last = json.loads(ws.recv(timeout=5))
            except ConnectionClosed as closed:
                return last, closed.rcvd.code

    assert await in_thread(lambda: session('{"text": " "}', key=False)) == (
        {"message": "Invalid API key", "error": "invalid_api_key", "code": 1008},
        1008,
    )
    error, code = await in_thread(lambda: session("{not json"))
    assert (error["error"], code) == ("invalid_json", 1008)
    error, code = await in_thread(lambda: session('{"text": 5, "context_id": "a"}'))
    assert (error["error"], error["message"], code) == ("invalid_request", "text must be a string", 1008)
    error, code = await in_thread(lambda: session('{"text": " ", "context_id": "a"}'))  # then silence
    assert (error["error"], code) == ("input_timeout_exceeded", 1008)


async def test_an_unsupported_output_format_is_refused_before_the_upgrade(simulator):
    base, _ = simulator

    def speak():
        client = elevenlabs.ElevenLabs(api_key=KEY, base_url=base)
        return list(client.text_to_speech.convert_realtime(VOICE, text=iter(["Hi. "]), output_format="mp3_44100_128"))

    with pytest.raises((InvalidStatus, ApiError)) as refused:
        await in_thread(speak)
    assert refused.value.response.status_code == 400
