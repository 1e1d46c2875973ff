"""The frame codec against wsproto both ways, and every malformed frame with the close code RFC 6455 wants.

Round trips split the byte stream at arbitrary points, so each header and payload is parsed
from every kind of partial buffer; wsproto is the independent encoder and parser.
"""

from __future__ import annotations

import itertools
import os
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.handshake import generate_accept_token

from rtstream import wsframes
from rtstream.websocket import accept_token
from rtstream.wsframes import Close, FrameError, Frames, int_xor, numpy_xor, xor_mask

BIG = 1 << 20

payloads = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300),
    st.sampled_from([125, 126, 127, 65535, 65536, 70000]).map(lambda n: os.urandom(n)),
    st.sampled_from([125, 126, 65536]).map(lambda n: "é" * (n // 2) + "x" * (n % 2)),
)
control_payloads = st.binary(max_size=125)
controls = st.tuples(st.sampled_from(["ping", "pong"]), control_payloads)
closes = st.none() | st.tuples(
    st.sampled_from([1000, 1001, 1002, 1011, 1013, 3000, 4999, 1005]), st.text(max_size=40)
).map(lambda c: (c[0], "" if c[0] == 1005 else c[1]))


def split(data: bytes, draw: Any) -> list[bytes]:
    """``data`` cut at points hypothesis chooses (a few, or none)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def parse_all(frames: Frames, chunks: list[bytes]) -> list[object]:
    got: list[object] = []
    for chunk in chunks:
        frames.feed(chunk)
        while (item := frames.next()) is not None:
            got.append(item)
    return got


def wsproto_events(role: ConnectionType, chunks: list[bytes]) -> list[object]:
    """What wsproto parses from the chunks: whole messages, ("ping"/"pong", payload), ("close", code, reason)."""
    connection = Connection(role)
    got: list[object] = []
    parts: list[Any] = []
    for chunk in chunks:
        connection.receive_data(chunk)
        for event in connection.events():
            if isinstance(event, Message):
                parts.append(event.data)
                if event.message_finished:
                    got.append(("" if isinstance(event, TextMessage) else b"").join(parts))
                    parts = []
            elif isinstance(event, Ping | Pong):
                got.append(("ping" if isinstance(event, Ping) else "pong", bytes(event.payload)))
            elif isinstance(event, CloseConnection):
                got.append(("close", event.code, event.reason or ""))
    return got


@settings(max_examples=150, deadline=None)
@given(st.booleans(), st.lists(payloads | controls, max_size=8), closes, st.data())
def test_our_frames_parse_in_wsproto(client, items, close, data) -> None:
    """Runs of messages go through encode_many (or encode for one), control frames between them."""
    ours = Frames(client=client)
    expected = []
    stream = b""
    batch: list[str | bytes] = []
    for item in [*items, None]:
        if isinstance(item, str | bytes):
            batch.append(item)
            continue
        stream += ours.encode_many(batch) if len(batch) != 1 else ours.encode(batch[0])
        expected += batch
        batch = []
        if item is not None:
            kind, payload = item
            stream += ours.ping(payload) if kind == "ping" else ours.pong(payload)
            expected.append(item)
    if close is not None:
        stream += ours.close(*close)
        expected.append(("close", *close))
    peer_role = ConnectionType.SERVER if client else ConnectionType.CLIENT
    assert wsproto_events(peer_role, split(stream, data.draw)) == expected


@settings(max_examples=150, deadline=None)
@given(st.booleans(), st.lists(payloads | controls, max_size=8), closes, st.data())
def test_wsproto_frames_parse_in_ours_fragmented_and_interleaved(client, items, close, data) -> None:
    peer = Connection(ConnectionType.SERVER if client else ConnectionType.CLIENT)
    stream = b""
    expected: list[object] = []
    for item in items:
        if isinstance(item, tuple):
            kind, payload = item
            stream += peer.send(Ping(payload) if kind == "ping" else Pong(payload))
            expected.append(wsframes.Ping(payload) if kind == "ping" else wsframes.Pong(payload))
            continue
        cuts = sorted(data.draw(st.lists(st.integers(0, len(item)), max_size=3)))
        bounds = [0, *cuts, len(item)]
        pieces = [item[a:b] for a, b in itertools.pairwise(bounds)]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            event = (
                TextMessage(piece, message_finished=last)
                if isinstance(item, str)
                else BytesMessage(piece, message_finished=last)
            )
            stream += peer.send(event)
            if not last:  # a control frame between fragments
                for kind, payload in data.draw(st.lists(controls, max_size=1)):
                    stream += peer.send(Ping(payload) if kind == "ping" else Pong(payload))
                    expected.append(wsframes.Ping(payload) if kind == "ping" else wsframes.Pong(payload))
        expected.append(item)
    if close is not None:
        code, reason = close
        wire_code = CloseReason(code) if code == 1005 else code  # wsproto tells 1005 by identity
        stream += peer.send(CloseConnection(wire_code, reason))
        expected.append(Close(*close))
    ours = Frames(client=client, max_message_size=BIG)
    assert parse_all(ours, split(stream, data.draw)) == expected


@given(st.binary(max_size=3000), st.binary(min_size=4, max_size=4))
def test_masking_is_an_xor_with_the_repeated_key_on_both_paths(data, mask) -> None:
    expected = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    assert xor_mask(data, mask) == int_xor(data, mask) == numpy_xor(data, mask) == expected


@pytest.mark.parametrize("client", [True, False])
def test_a_parser_waiting_for_more_keeps_only_the_unparsed_bytes_of_a_read(client) -> None:
    sender = Frames(client=not client)
    whole = sender.encode(bytes(1000)) + sender.encode("x" * 300)
    partial = sender.encode(bytes(2000))
    frames = Frames(client=client)
    frames.feed(whole + partial[:700])
    assert [frames.next(), frames.next(), frames.next()] == [bytes(1000), "x" * 300, None]
    assert frames.holding == 700
    frames.feed(partial[700:])
    assert [frames.next(), frames.next()] == [bytes(2000), None]
    assert frames.holding == 0
    got = []
    for start in range(0, len(partial), 300):  # a message read in pieces
        frames.feed(partial[start : start + 300])
        got.append(frames.next())
        if got[-1] is None:
            assert frames.holding == start + 300
    assert got == [None] * 6 + [bytes(2000)]
    assert frames.next() is None
    assert frames.holding == 0


# -- malformed input, each with its close code ---------------------------------------------------


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True) -> bytes:
    """One frame built by hand (any header a peer could send)."""
    b0 = (0x80 if fin else 0) | rsv << 4 | opcode
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head = bytes((b0, bit | n))
    elif n < 65536:
        head = struct.pack("!BBH", b0, bit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, bit | 127, n)
    if not mask:
        return head + payload
    key = b"\x01\x02\x03\x04"
    return head + key + xor_mask(payload, key)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


MALFORMED = [
    ("unmasked from a client", frame(1, b"hi", mask=False), 1002, "unmasked client frame"),
    ("rsv1", frame(1, b"hi", rsv=4), 1002, "RSV bits set without an extension"),
    ("rsv3", frame(2, b"hi", rsv=1), 1002, "RSV bits set without an extension"),
    ("data opcode 3", frame(3), 1002, "unknown opcode 0x3"),
    ("control opcode 0xb", frame(0xB), 1002, "unknown opcode 0xb"),
    ("ping over 125", frame(9, b"x" * 126), 1002, "control frame over 125 bytes"),
    ("fragmented ping", frame(9, fin=False), 1002, "fragmented control frame"),
    ("fragmented close", frame(8, close_payload(1000), fin=False), 1002, "fragmented control frame"),
    ("lone continuation", frame(0, b"x"), 1002, "continuation frame without a message to continue"),
    (
        "text inside a fragmented message",
        frame(1, b"a", fin=False) + frame(1, b"b"),
        1002,
        "new message inside a fragmented one",
    ),
    ("close with 1 byte", frame(8, b"\x03"), 1002, "close frame with a 1-byte payload"),
    *(
        (f"close code {code}", frame(8, close_payload(code)), 1002, f"close code {code} is not one a peer may send")
        for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000)
    ),
    ("close reason not UTF-8", frame(8, close_payload(1000, b"\xff")), 1007, "close reason not valid UTF-8"),
    ("text not UTF-8", frame(1, b"ok \xff"), 1007, "text message not valid UTF-8"),
    ("text a surrogate", frame(1, b"\xed\xa0\x80"), 1007, "text message not valid UTF-8"),
    (
        "a character cut across fragments, never finished",
        frame(1, b"\xc3", fin=False) + frame(0, b"x"),
        1007,
        "text message not valid UTF-8",
    ),
    (
        "16-bit length for a short payload",
        bytes((0x81, 0x80 | 126)) + struct.pack("!H", 5) + b"\0" * 9,
        1002,
        "payload length not in its shortest form",
    ),
    (
        "64-bit length for a 16-bit payload",
        bytes((0x82, 0x80 | 127)) + struct.pack("!Q", 100),
        1002,
        "payload length not in its shortest form",
    ),
    ("64-bit length over 2**63", bytes((0x82, 0x80 | 127)) + b"\x80" + b"\0" * 7, 1002, "payload length over 2**63"),
    ("over the size, from the header alone", frame(2, b"x" * 1001)[:8], 1009, "message over 1000 bytes"),
    (
        "over the size in fragments",
        frame(2, b"x" * 600, fin=False) + frame(0, b"x" * 401)[:4],
        1009,
        "message over 1000 bytes",
    ),
]


@pytest.mark.parametrize(("stream", "code", "reason"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_frames_raise_the_rfc_close_code(stream, code, reason) -> None:
    ours = Frames(client=False, max_message_size=1000)
    good = frame(1, b"before")
    ours.feed(good + stream)
    assert ours.next() == "before"
    with pytest.raises(FrameError) as failed:
        while ours.next() is not None:
            pass
    assert (failed.value.code, failed.value.reason) == (code, reason)
    ours.feed(good)  # the parser has stopped for good
    assert ours.next() is None


def test_a_client_refuses_masked_frames() -> None:
    ours = Frames(client=True)
    ours.feed(frame(1, b"hi"))
    with pytest.raises(FrameError, match=r"^1002: masked frame from a server$"):
        ours.next()


def test_1014_bad_gateway_is_a_code_a_peer_may_send() -> None:
    """In the IANA registry since 2016 (wsproto 1.3 still refuses it)."""
    ours = Frames(client=False)
    ours.feed(frame(8, close_payload(1014, b"upstream")))
    assert ours.next() == Close(1014, "upstream")


def test_exactly_the_size_limit_passes_and_the_parser_stops_after_close() -> None:
    ours = Frames(client=False, max_message_size=1000)
    ours.feed(frame(2, b"x" * 500, fin=False) + frame(0, b"y" * 500) + frame(8) + frame(1, b"late"))
    assert ours.next() == b"x" * 500 + b"y" * 500
    assert ours.next() == Close(1005, "")
    assert ours.close_received and ours.next() is None


# -- the encoder ---------------------------------------------------------------------------------


def test_server_frames_are_unmasked_and_client_frames_masked_with_fresh_keys() -> None:
    server, client = Frames(client=False), Frames(client=True)
    assert server.encode("hi") == b"\x81\x02hi"
    assert server.encode(b"\x00" * 200)[:4] == b"\x82\x7e\x00\xc8"
    first, second = client.encode("hi"), client.encode("hi")
    assert first[:2] == second[:2] == b"\x81\x82"
    assert first[2:6] != second[2:6]  # 2**-32 odds of a false failure
    batch = client.encode_many(["hi", "hi"])
    assert batch[2:6] != batch[10:14]


def test_close_frames_follow_wsproto_for_local_only_codes_and_long_reasons() -> None:
    ours = Frames(client=False)
    assert ours.close(1005) == b"\x88\x00"
    assert ours.close(1006, "lost") == b"\x88\x06\x03\xe8lost"
    long = ours.close(1000, "é" * 100)  # 200 bytes, cut at a character boundary within 123
    assert wsproto_events(ConnectionType.CLIENT, [long]) == [("close", 1000, "é" * 61)]
    assert ours.close_sent


def test_control_payloads_over_125_bytes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^a control frame carries at most 125 bytes, not 126$"):
        Frames(client=True).ping(b"x" * 126)


def test_the_accept_token_is_rfc_6455s_example_and_wsprotos() -> None:
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    assert accept_token(key) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" == generate_accept_token(key)
