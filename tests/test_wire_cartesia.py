"""rtstream.wire.cartesia: the client and the service through each other, and every bad message."""

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtstream.frames import SAMPLE_RATES, AudioFormat, Encoding
from rtstream.wire import RemoteProtocolError
from rtstream.wire.cartesia import (
    BadRequest,
    Cancel,
    CartesiaClient,
    CartesiaService,
    Chunk,
    Done,
    Error,
    FlushDone,
    Generation,
    Request,
    Timestamps,
)

PCM8 = AudioFormat("pcm_s16le", 8000)
GENERATION = Generation(model_id="sonic-3", voice_id="v1", format=PCM8, language="en", timestamps=True)
CLIENT = CartesiaClient(sequence_field="seq", max_message_bytes=4096)
SERVICE = CartesiaService(sequence_field="seq")

texts = st.text(max_size=40)
ids = st.none() | texts
seconds = st.floats(0, 1e4, allow_nan=False)


def raises(reason, detail=".*"):
    return pytest.raises(RemoteProtocolError, match=rf"^{reason}: {detail}$")


# -- through each other -----------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    generation=st.builds(
        Generation,
        model_id=texts,
        voice_id=texts,
        format=st.builds(AudioFormat, st.sampled_from(Encoding), st.sampled_from(SAMPLE_RATES)),
        language=st.none() | texts,
        timestamps=st.booleans(),
    ),
    context=ids,
    transcript=texts,
    more=st.booleans(),
    flush=st.booleans(),
)
def test_requests_read_back_on_the_service_side(generation, context, transcript, more, flush):
    request = Request(context=context, transcript=transcript, generation=generation, more=more, flush=flush)
    assert SERVICE.receive(CLIENT.send(request)) == request


@given(context=texts)
def test_cancels_read_back(context):
    assert SERVICE.receive(CLIENT.send(Cancel(context))) == Cancel(context)


@settings(max_examples=100, deadline=None)
@given(
    response=st.one_of(
        st.builds(Chunk, ids, st.binary(max_size=600), st.none() | st.integers(0, 2**31), st.none() | seconds),
        st.integers(0, 20).flatmap(
            lambda n: st.builds(
                Timestamps,
                ids,
                st.tuples(*[texts] * n),
                st.tuples(*[seconds] * n),
                st.tuples(*[seconds] * n),
            )
        ),
        st.builds(FlushDone, ids, st.none() | st.integers(0, 1000)),
        st.builds(Done, ids),
        st.builds(
            Error, ids, st.none() | st.integers(100, 599), st.none() | texts, st.none() | texts, st.none() | texts
        ),
    )
)
def test_responses_read_back_on_the_client_side(response):
    assert CartesiaClient(sequence_field="seq").receive(SERVICE.send(response)) == response


def test_without_a_sequence_field_the_chunk_number_stays_off_the_wire():
    message = CartesiaService().send(Chunk("c", b"\x00\x00", seq=3))
    assert "seq" not in json.loads(message) and CLIENT.receive(message) == Chunk("c", b"\x00\x00")


def test_a_request_as_cartesia_documents_it():
    request = Request(context="ctx-1", transcript="Hello, ", generation=GENERATION, more=True)
    assert json.loads(CLIENT.send(request)) == {
        "model_id": "sonic-3",
        "voice": {"mode": "id", "id": "v1"},
        "language": "en",
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 8000},
        "add_timestamps": True,
        "transcript": "Hello, ",
        "context_id": "ctx-1",
        "continue": True,
    }
    flush = json.loads(CLIENT.send(Request(context="ctx-1", transcript="", generation=GENERATION, flush=True)))
    assert flush["flush"] is True and flush["continue"] is False
    assert json.loads(CLIENT.send(Cancel("ctx-1"))) == {"context_id": "ctx-1", "cancel": True}


def test_responses_as_cartesia_documents_them():
    assert json.loads(SERVICE.send(Chunk("c", b"\x01\x00", seq=0, step_time=1.5))) == {
        "type": "chunk",
        "data": base64.b64encode(b"\x01\x00").decode(),
        "done": False,
        "status_code": 206,
        "step_time": 1.5,
        "context_id": "c",
        "seq": 0,
    }
    assert json.loads(SERVICE.send(Timestamps("c", ("Hello",), (0.0,), (0.4,)))) == {
        "type": "timestamps",
        "done": False,
        "status_code": 206,
        "context_id": "c",
        "word_timestamps": {"words": ["Hello"], "start": [0.0], "end": [0.4]},
    }
    assert json.loads(SERVICE.send(Done("c"))) == {"type": "done", "done": True, "status_code": 206, "context_id": "c"}
    assert json.loads(SERVICE.send(FlushDone("c", 1)))["flush_done"] is True


# -- bad responses (the client side) -----------------------------------------------------------------


@pytest.mark.parametrize(
    "message,reason,detail",
    [
        (b"\x00", "binary_frame", "binary messages are not accepted; send JSON text"),
        ("{", "bad_json", "the message is not valid JSON: .*"),
        ("[1]", "bad_shape", "the message must be a JSON object"),
        ('{"data": "AA=="}', "bad_shape", "the message has no string 'type'"),
        ('{"type": "song"}', "unknown_event", "type 'song'"),
        ('{"type": "done", "context_id": 5}', "bad_shape", "context_id must be a string"),
        ('{"type": "chunk", "context_id": "c"}', "bad_shape", "data must be a string"),
        ('{"type": "chunk", "data": "!!", "context_id": "c"}', "bad_base64", "data is not valid base64"),
        ('{"type": "timestamps", "context_id": "c"}', "bad_timestamps", ".*"),
        ('{"type": "timestamps", "word_timestamps": {"words": ["a"], "start": [], "end": []}}', "bad_timestamps", ".*"),
        ('{"type": "timestamps", "word_timestamps": {"words": [1], "start": [0], "end": [1]}}', "bad_timestamps", ".*"),
        (
            '{"type": "timestamps", "word_timestamps": {"words": ["a"], "start": ["0"], "end": [1]}}',
            "bad_timestamps",
            ".*",
        ),
        (
            '{"type": "timestamps", "word_timestamps": {"words": "ab", "start": [0, 1], "end": [1, 2]}}',
            "bad_timestamps",
            ".*",
        ),
        ("x" * 5000, "oversize", "5000 characters, more than 4096"),
    ],
)
def test_the_client_refuses(message, reason, detail):
    with raises(reason, detail):
        CLIENT.receive(message)


def test_loose_optional_fields_are_read_as_absent():
    chunk = json.dumps({"type": "chunk", "data": "AAA=", "seq": True, "step_time": "fast", "context_id": "c"})
    assert CLIENT.receive(chunk) == Chunk("c", b"\x00\x00")
    error = json.dumps({"type": "error", "status_code": "429", "error_code": 7, "context_id": None})
    assert CLIENT.receive(error) == Error(None)


# -- bad requests (the service side) -----------------------------------------------------------------


def request(**fields):
    body = {
        "model_id": "sonic-3",
        "transcript": "Hi",
        "voice": {"mode": "id", "id": "v"},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 8000},
        "context_id": "c1",
        **fields,
    }
    return json.dumps(body)


@pytest.mark.parametrize(
    "message,reason,detail,context",
    [
        (b"\x00", "binary_frame", "binary messages are not accepted; send JSON text", None),
        ("{", "bad_json", "the request is not valid JSON: .*", None),
        ("[]", "bad_shape", "the request must be a JSON object", None),
        (request(context_id=3), "bad_shape", "context_id must be a string", None),
        ('{"cancel": true}', "bad_shape", "cancel needs a context_id", None),
        (request(model_id=None), "bad_shape", "model_id must be a string", "c1"),
        (request(transcript=5), "bad_shape", "transcript must be a string", "c1"),
        (request(voice={"mode": "embedding"}), "unsupported", "voice mode 'embedding' is not supported; .*", "c1"),
        (request(voice=[]), "bad_shape", 'voice must be a voice id or {"mode": "id", "id": "<voice id>"}', "c1"),
        (request(output_format=[]), "bad_shape", "output_format must be an object", "c1"),
        (
            request(output_format={"container": "mp3"}),
            "bad_value",
            "output_format.container must be 'raw', got 'mp3'",
            "c1",
        ),
        (
            request(output_format={"container": "raw", "encoding": "pcm_s24le"}),
            "bad_value",
            "output_format.encoding must be one of pcm_s16le, pcm_f32le, pcm_mulaw, pcm_alaw, pcm_s32le, pcm_f16le,"
            " got 'pcm_s24le'",
            "c1",
        ),
        (
            request(output_format={"container": "raw", "encoding": "pcm_s16le", "sample_rate": True}),
            "bad_value",
            "output_format.sample_rate must be one of 8000, 16000, 22050, 24000, 44100, 48000, got True",
            "c1",
        ),
        (request(add_timestamps="yes"), "bad_shape", "add_timestamps must be true or false", "c1"),
        (request(**{"continue": 1}), "bad_shape", "continue must be true or false", "c1"),
        (request(flush="no"), "bad_shape", "flush must be true or false", "c1"),
        (
            request(max_buffer_delay_ms=6000),
            "bad_value",
            "max_buffer_delay_ms must be an integer from 0 to 5000, .*",
            "c1",
        ),
        (request(speed="warp"), "bad_value", "speed must be one of slow, normal, fast, got 'warp'", "c1"),
    ],
)
def test_the_service_refuses_with_the_context_named(message, reason, detail, context):
    with pytest.raises(BadRequest, match=rf"^{reason}: {detail}$") as caught:
        SERVICE.receive(message)
    assert caught.value.reason == reason and caught.value.context == context
