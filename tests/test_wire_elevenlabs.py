"""rtstream.wire.elevenlabs: both sides through each other, the handshake, alignment words, every refusal."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtstream.frames import AudioFormat
from rtstream.wire import RemoteProtocolError
from rtstream.wire.elevenlabs import (
    OUTPUT_FORMATS,
    Alignment,
    AlignmentWords,
    Audio,
    BadRequest,
    CloseContext,
    CloseSocket,
    ElevenLabsClient,
    ElevenLabsService,
    Final,
    ServiceError,
    Text,
    connect_url,
    output_format,
    read_handshake,
)

texts = st.text(max_size=30)
ms = st.integers(0, 100_000)


@settings(max_examples=100, deadline=None)
@given(
    request=st.one_of(
        st.builds(Text, texts, texts, st.booleans(), st.none() | st.just({"stability": 0.5, "speed": 1.1})),
        st.builds(CloseContext, texts),
        st.just(CloseSocket()),
    )
)
def test_requests_read_back_on_multi_stream_input(request):
    assert ElevenLabsService().receive(ElevenLabsClient().send(request)) == request


@settings(max_examples=100, deadline=None)
@given(
    response=st.one_of(
        st.integers(0, 8).flatmap(
            lambda n: st.builds(
                Audio,
                st.none() | texts,
                st.binary(max_size=200),
                st.none()
                | st.builds(
                    Alignment,
                    st.tuples(*[st.characters()] * n),
                    st.tuples(*[ms] * n),
                    st.tuples(*[ms] * n),
                ),
                st.none(),
                st.none() | st.integers(0, 1000),
            )
        ),
        st.builds(Final, st.none() | texts),
        st.builds(ServiceError, texts, st.none() | texts, st.none() | st.integers(1000, 4999)),
    )
)
def test_responses_read_back(response):
    assert (
        ElevenLabsClient(sequence_field="seq").receive(ElevenLabsService(sequence_field="seq").send(response))
        == response
    )


def test_stream_input_has_no_context_ids_and_ends_with_empty_text():
    client, service = ElevenLabsClient(multi=False), ElevenLabsService(multi=False)
    assert json.loads(client.send(Text("c", "Hi "))) == {"text": "Hi "}
    assert json.loads(client.send(CloseContext("c"))) == {"text": ""}
    assert json.loads(client.keep_alive(None)) == {"text": " "}
    assert service.receive('{"text": "Hi ", "context_id": "ignored"}') == Text(None, "Hi ")
    assert json.loads(service.send(Audio(None, b"\x00\x00"))) == {
        "audio": "AAA=",
        "isFinal": None,
        "normalizedAlignment": None,
        "alignment": None,
    }
    assert json.loads(service.send(Final(None))) == {"isFinal": True}


def test_messages_as_elevenlabs_documents_them():
    client = ElevenLabsClient()
    assert json.loads(client.send(Text("c1", " ", voice_settings={"stability": 0.5}))) == {
        "text": " ",
        "context_id": "c1",
        "voice_settings": {"stability": 0.5},
    }
    assert json.loads(client.send(Text("c1", "", flush=True))) == {"text": "", "context_id": "c1", "flush": True}
    assert json.loads(client.send(CloseContext("c1"))) == {"context_id": "c1", "close_context": True}
    assert json.loads(client.send(CloseSocket())) == {"close_socket": True}
    assert json.loads(client.keep_alive("c1")) == {"text": "", "context_id": "c1"}
    alignment = Alignment(("H", "i"), (0, 50), (50, 40))
    assert json.loads(ElevenLabsService().send(Audio("c1", b"\x01\x00", alignment, alignment))) == {
        "audio": "AQA=",
        "isFinal": False,
        "normalizedAlignment": {"chars": ["H", "i"], "charStartTimesMs": [0, 50], "charDurationsMs": [50, 40]},
        "alignment": {"chars": ["H", "i"], "charStartTimesMs": [0, 50], "charDurationsMs": [50, 40]},
        "contextId": "c1",
    }


def test_the_handshake():
    url = connect_url("wss://api.elevenlabs.io/", "v 1", model_id="m", output_format="ulaw_8000", inactivity_timeout=30)
    assert url == (
        "wss://api.elevenlabs.io/v1/text-to-speech/v%201/multi-stream-input"
        "?output_format=ulaw_8000&model_id=m&inactivity_timeout=30"
    )
    shake = read_handshake(url.split("elevenlabs.io", 1)[1], [(b"XI-API-KEY", b"k")])
    assert (shake.multi, shake.voice_id, shake.api_key, shake.query["output_format"]) == (True, "v 1", "k", "ulaw_8000")
    assert read_handshake("/v1/text-to-speech/v/stream-input", [(b"Authorization", b"Bearer t")]).api_key == "t"
    assert read_handshake("/v1/text-to-speech/v/stream-input?authorization=q", []).api_key == "q"
    assert read_handshake("/v1/voices", []) is None
    assert OUTPUT_FORMATS["pcm_48000"] == AudioFormat("pcm_s16le", 48000)
    assert output_format(AudioFormat("pcm_alaw", 8000)) == "alaw_8000"


def test_alignment_words_span_chunks_and_take_each_chunk_offset():
    words = AlignmentWords()
    first = words.feed(Alignment(("H", "i", " ", "t", "h"), (0, 100, 200, 250, 300), (100, 100, 50, 50, 50)), 0.0)
    assert first == [("Hi", 0.0, 0.2)]
    assert words.feed(Alignment(("e", "r", "e"), (0, 40, 80), (40, 40, 40)), 0.35) == []
    assert words.end() == [("there", 0.25, pytest.approx(0.47))]
    assert words.end() == []


def refused(reason, detail=".*"):
    return pytest.raises(RemoteProtocolError, match=rf"^{reason}: {detail}$")


@pytest.mark.parametrize(
    "message,reason,detail",
    [
        (b"\x00", "binary_frame", ".*"),
        ("{", "bad_json", ".*"),
        ('{"contextId": 5, "audio": "AA=="}', "bad_shape", "contextId must be a string"),
        ('{"audio": 5}', "bad_shape", "audio must be a string"),
        ('{"audio": "@@"}', "bad_base64", "audio is not valid base64"),
        ('{"audio": "AA==", "alignment": {"chars": ["a"], "charStartTimesMs": []}}', "bad_alignment", ".*"),
        (
            '{"audio": "AA==", "alignment": {"chars": [1], "charStartTimesMs": [0], "charDurationsMs": [1]}}',
            "bad_alignment",
            ".*",
        ),
        ('{"isFinal": false}', "unknown_event", ".*"),
        ("x" * 5000, "oversize", "5000 characters, more than 4096"),
    ],
)
def test_the_client_refuses(message, reason, detail):
    with refused(reason, detail):
        ElevenLabsClient(max_message_bytes=4096).receive(message)


def test_an_error_message_reads_as_service_error():
    message = '{"message": "Maximum simultaneous contexts", "error": "max_active_conversations", "code": 1008}'
    assert ElevenLabsClient().receive(message) == ServiceError(
        "Maximum simultaneous contexts", "max_active_conversations", 1008
    )


@pytest.mark.parametrize(
    "message,reason,detail",
    [
        ("{", "bad_json", ".*"),
        ('{"text": 5}', "bad_shape", "text must be a string"),
        ('{"text": "a", "context_id": 1}', "bad_shape", "context_id must be a string"),
        ('{"close_context": true}', "bad_shape", "close_context needs a context_id"),
        ('{"text": "a", "flush": "yes"}', "bad_shape", "flush must be true or false"),
        ('{"text": " ", "voice_settings": []}', "bad_shape", "voice_settings must be an object"),
        (
            '{"text": " ", "voice_settings": {"speed": 3}}',
            "bad_value",
            r"voice_settings.speed must be a number from 0.7 to 1.2, got 3",
        ),
        ('{"text": " ", "generation_config": {"chunk_length_schedule": [10]}}', "bad_value", ".*"),
        ('{"text": " ", "xi_api_key": 5}', "bad_shape", "xi_api_key must be a string"),
    ],
)
def test_the_service_refuses(message, reason, detail):
    with pytest.raises(BadRequest, match=rf"^{reason}: {detail}$"):
        ElevenLabsService().receive(message)


def test_the_service_reads_a_flush_without_text_and_a_bearer_in_the_first_message():
    assert ElevenLabsService().receive('{"context_id": "a", "flush": true}') == Text("a", "", True)
    assert ElevenLabsService().receive('{"text": " ", "authorization": "Bearer tok"}').api_key == "tok"
