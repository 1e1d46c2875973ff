"""rtstream.wire.deepgram: both sides through each other, the handshake, every refusal."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtstream.frames import AudioFormat
from rtstream.wire import RemoteProtocolError
from rtstream.wire.deepgram import (
    Audio,
    Clear,
    Cleared,
    Close,
    DeepgramClient,
    DeepgramService,
    Flush,
    Flushed,
    Metadata,
    ServiceWarning,
    Speak,
    connect_url,
    read_handshake,
    stream_format,
)

texts = st.text(max_size=30)


@given(request=st.one_of(st.builds(Speak, texts), st.just(Flush()), st.just(Clear()), st.just(Close())))
def test_requests_read_back(request):
    assert DeepgramService().receive(DeepgramClient().send(request)) == request


@given(
    response=st.one_of(
        st.builds(Audio, st.binary(max_size=100)),
        st.builds(Metadata, texts, texts, texts, texts),
        st.builds(Flushed, st.integers(0, 1000)),
        st.builds(Cleared, st.integers(0, 1000)),
        st.builds(ServiceWarning, texts, texts),
    )
)
def test_responses_read_back(response):
    assert DeepgramClient().receive(DeepgramService().send(response)) == response


def test_messages_as_deepgram_documents_them():
    client = DeepgramClient()
    assert json.loads(client.send(Speak("Hello"))) == {"type": "Speak", "text": "Hello"}
    assert [json.loads(client.send(r)) for r in (Flush(), Clear(), Close())] == [
        {"type": "Flush"},
        {"type": "Clear"},
        {"type": "Close"},
    ]
    assert json.loads(DeepgramService().send(Flushed(0))) == {"type": "Flushed", "sequence_id": 0}
    assert DeepgramService().send(Audio(b"\x01\x02")) == b"\x01\x02"


def test_the_handshake_and_the_stream_format():
    url = connect_url("wss://api.deepgram.com", model="aura-2-thalia-en", fmt=AudioFormat("pcm_mulaw", 8000))
    assert url == "wss://api.deepgram.com/v1/speak?model=aura-2-thalia-en&encoding=mulaw&sample_rate=8000"
    assert read_handshake("/v1/speak?encoding=alaw", [(b"Authorization", b"Token k")]).api_key == "k"
    assert read_handshake("/v1/speak", [(b"authorization", b"bearer t")]).api_key == "t"
    assert read_handshake("/v1/speak", [(b"Sec-WebSocket-Protocol", b"token, s")]).api_key == "s"
    assert read_handshake("/v1/speak", [(b"Authorization", b"Basic x")]).api_key is None
    assert stream_format({}) == AudioFormat("pcm_s16le", 24000)
    assert stream_format({"encoding": "alaw", "sample_rate": "16000"}) == AudioFormat("pcm_alaw", 16000)
    with pytest.raises(ValueError, match=r"^sample_rate for mulaw must be one of 8000, 16000, got '48000'$"):
        stream_format({"encoding": "mulaw", "sample_rate": "48000"})
    with pytest.raises(ValueError, match=r"^encoding must be one of linear16, mulaw, alaw, got 'mp3'$"):
        stream_format({"encoding": "mp3"})


@pytest.mark.parametrize(
    "message,reason",
    [
        ("{", "bad_json"),
        ('{"type": 1}', "bad_shape"),
        ('{"type": "Flushed"}', "bad_shape"),
        ('{"type": "Cleared", "sequence_id": true}', "bad_shape"),
        ('{"type": "Warning", "description": "x"}', "bad_shape"),
        ('{"type": "Metadata", "request_id": "r"}', "bad_shape"),
        ('{"type": "Karaoke"}', "unknown_event"),
        ("x" * 5000, "oversize"),
    ],
)
def test_the_client_refuses(message, reason):
    with pytest.raises(RemoteProtocolError, match=rf"^{reason}: "):
        DeepgramClient(max_message_bytes=4096).receive(message)


@pytest.mark.parametrize(
    "message,reason",
    [
        (b"\x00", "binary_frame"),
        ("{", "bad_json"),
        ('{"type": "Speak", "text": 5}', "bad_shape"),
        ('{"type": "Speak"}', "bad_shape"),
        ('{"type": "Sing"}', "unknown_event"),
    ],
)
def test_the_service_refuses(message, reason):
    with pytest.raises(RemoteProtocolError, match=rf"^{reason}: "):
        DeepgramService().receive(message)
