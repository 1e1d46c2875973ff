"""The voice-agent protocol: each side read by the other, and every refusal with its reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtstream.wire import RemoteProtocolError
from rtstream.wire.agent import (
    AgentClient,
    AgentServer,
    BargeIn,
    CallerAudio,
    Down,
    Dtmf,
    Error,
    LlmDone,
    LlmToken,
    Playback,
    ReplyAudio,
    Start,
    Stop,
    Transcript,
    TurnEnd,
    TurnStart,
)

turns = st.integers(0, 1 << 40)
texts = st.text(max_size=50)
played = st.none() | st.floats(0, 1e6, allow_nan=False)
pcm = st.binary(max_size=400).map(lambda b: b[: len(b) // 2 * 2])


def started() -> AgentServer:
    server = AgentServer()
    server.receive(AgentClient().send(Start(call_id="CA1")))
    return server


@given(
    st.lists(
        st.one_of(
            st.builds(CallerAudio, pcm),
            st.builds(Dtmf, st.sampled_from("0123456789*#")),
            st.builds(BargeIn, turns, played),
            st.builds(Playback, turns, played),
            st.just(Stop()),
        ),
        max_size=10,
    ),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
)
def test_the_agent_reads_what_the_bridge_sends(commands: list, parameters: dict) -> None:
    client, server = AgentClient(), AgentServer()
    start = Start(call_id="CA1", stream_id="MZ1", parameters=parameters)
    assert server.receive(client.send(start)) == start
    for command in commands:
        assert server.receive(client.send(command)) == command


@given(st.lists(st.tuples(turns, texts, pcm, st.booleans()), max_size=5))
def test_the_bridge_reads_what_the_agent_sends(replies: list) -> None:
    client, server = AgentClient(), AgentServer()
    for turn, said, audio, interrupted in replies:
        events: list[Down] = [
            Transcript(turn, said),
            TurnStart(turn, said or None),
            LlmToken(turn, said),
            ReplyAudio(audio, turn),
            LlmDone(turn),
            BargeIn(turn),
            TurnEnd(turn, interrupted),
            Error("busy", said),
        ]
        for event in events:
            assert client.receive(server.send(event)) == event
        assert client.open_turn is None


def test_a_turn_start_over_an_open_reply_moves_audio_to_the_new_turn() -> None:
    client, server = AgentClient(), AgentServer()
    client.receive(server.send(TurnStart(1)))
    client.receive(server.send(TurnStart(2)))
    assert client.receive(b"\0\0") == ReplyAudio(b"\0\0", 2)


@pytest.mark.parametrize(
    ("message", "reason", "detail"),
    [
        (b"\0\0", "audio_outside_turn", "reply audio before any turn_start"),
        ("nope", "bad_json", None),
        ("[1]", "bad_shape", "the message must be a JSON object"),
        ('{"type": 3}', "bad_shape", "the message has no string 'type'"),
        ('{"type": "hello"}', "unknown_type", "type 'hello'"),
        ('{"type": "transcript", "text": "x"}', "bad_turn", "turn must be a non-negative integer, got None"),
        ('{"type": "llm_token", "turn": -1, "text": "x"}', "bad_turn", "turn must be a non-negative integer, got -1"),
        ('{"type": "llm_done", "turn": true}', "bad_turn", "turn must be a non-negative integer, got True"),
        ('{"type": "transcript", "turn": 0, "text": 5}', "bad_shape", "text must be a string"),
        ('{"type": "turn_end", "turn": 0}', "turn_mismatch", "turn_end 0 while reply None is open"),
        ('{"type": "error", "message": "x"}', "bad_shape", "code must be a string"),
        ("x" * 65, "oversize", "65 bytes or characters, more than 64"),
    ],
)
def test_the_bridge_refuses_bad_agent_messages(message: str | bytes, reason: str, detail: str | None) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        AgentClient(max_message_bytes=64).receive(message)
    assert caught.value.reason == reason
    if detail is not None:
        assert caught.value.detail == detail


def test_the_bridge_refuses_odd_reply_audio_and_oversize_binary() -> None:
    client = AgentClient(max_message_bytes=64)
    client.receive('{"type":"turn_start","turn":0}')
    with pytest.raises(RemoteProtocolError, match=r"^odd_length: 3 bytes of PCM16 is not a whole number of samples$"):
        client.receive(b"abc")
    with pytest.raises(RemoteProtocolError, match=r"^oversize: 66 bytes, more than 64$"):
        client.receive(bytes(66))
    with pytest.raises(RemoteProtocolError, match=r"^bad_shape: interrupted must be true or false$"):
        client.receive('{"type":"turn_end","turn":0,"interrupted":1}')


@pytest.mark.parametrize(
    ("message", "reason", "detail"),
    [
        ('{"type": "start"}', "bad_shape", "call_id must be a string"),
        (
            '{"type": "start", "call_id": "c", "parameters": {"a": 1}}',
            "bad_shape",
            "parameters must be an object of strings",
        ),
        ('{"type": "start", "call_id": "c", "stream_id": 4}', "bad_shape", "stream_id must be a string"),
    ],
)
def test_the_agent_refuses_a_bad_start(message: str, reason: str, detail: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        AgentServer().receive(message)
    assert (caught.value.reason, caught.value.detail) == (reason, detail)


def test_the_agent_wants_the_start_first_and_once() -> None:
    with pytest.raises(RemoteProtocolError, match=r"^before_start: audio before the start message$"):
        AgentServer().receive(b"\0\0")
    with pytest.raises(RemoteProtocolError, match=r"^before_start: 'dtmf' before the start message$"):
        AgentServer().receive('{"type":"dtmf","digit":"1"}')
    with pytest.raises(RemoteProtocolError, match=r"^duplicate_start: a second start on one connection$"):
        started().receive('{"type":"start","call_id":"x"}')


@pytest.mark.parametrize(
    ("message", "reason", "detail"),
    [
        (b"\0", "odd_length", "1 bytes of PCM16 is not a whole number of samples"),
        ('{"type": "dtmf", "digit": "12"}', "bad_shape", "digit must be one character"),
        (
            '{"type": "barge_in", "turn": 1, "played_ms": -3}',
            "bad_shape",
            "played_ms must be a non-negative number of milliseconds",
        ),
        (
            '{"type": "playback", "turn": 1, "played_ms": "7"}',
            "bad_shape",
            "played_ms must be a non-negative number of milliseconds",
        ),
        ('{"type": "playback", "turn": "1"}', "bad_turn", "turn must be a non-negative integer, got '1'"),
        ('{"type": "transcript", "turn": 1, "text": ""}', "unknown_type", "type 'transcript'"),
    ],
)
def test_the_agent_refuses_bad_bridge_messages(message: str | bytes, reason: str, detail: str) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        started().receive(message)
    assert (caught.value.reason, caught.value.detail) == (reason, detail)


def test_messages_are_compact_json_with_the_documented_fields() -> None:
    assert json.loads(AgentClient().send(BargeIn(3, 250.0))) == {"type": "barge_in", "turn": 3, "played_ms": 250.0}
    assert AgentServer().send(TurnStart(2)) == '{"type":"turn_start","turn":2}'
    assert AgentServer().send(TurnEnd(2, True)) == '{"type":"turn_end","turn":2,"interrupted":true}'
