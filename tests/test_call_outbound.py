"""``telephony_out`` on a real socket: a frame goes out in the caller's task while the sender is idle, in order always."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import trio
import trio.testing

from rtstream.calls import CURRENT_CALL, Call, CallSettings
from rtstream.frames import AudioChunk, AudioFormat
from rtstream.stages.call import BotStream, TelephonyOut
from rtstream.websocket import WebSocket
from rtstream.wsframes import Frames

FORMAT = AudioFormat("pcm_mulaw", 8000)
SID = "MZ" + "0" * 32


def frame(n: int) -> AudioChunk:
    return AudioChunk(np.full(160, n % 256, dtype=np.uint8), FORMAT, pts=160 * n)


@asynccontextmanager
async def bot_stream(out: TelephonyOut) -> AsyncIterator[tuple[BotStream, socket.socket, trio.MemorySendChannel[Any]]]:
    """telephony_out running on one end of a TCP pair; the other end (the provider) a plain socket."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    peer = socket.create_connection(listener.getsockname())
    ours, _ = await listener.accept()
    listener.close()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    peer.setblocking(False)
    ws = WebSocket(trio.SocketStream(ours), Frames(client=False))
    call = Call("/twilio", CallSettings(path="/twilio", protocol="twilio", pipelines=("bot",)), ws)
    call.parse(json.dumps({"event": "start", "streamSid": SID, "start": {"streamSid": SID}}))
    token = CURRENT_CALL.set(call)
    try:
        stream = out.open(FORMAT, None)
        tx, rx = trio.open_memory_channel[Any](0)
        async with trio.open_nursery() as nursery:
            await nursery.start(stream.run, rx)
            yield stream, peer, tx
            nursery.cancel_scope.cancel()
    finally:
        CURRENT_CALL.reset(token)
        peer.close()


def payloads(peer: socket.socket, frames: Frames) -> list[int]:
    """The first byte of every media message the provider has received so far."""
    try:
        while data := peer.recv(65536):
            frames.feed(data)
    except BlockingIOError:
        pass
    out = []
    while (message := frames.next()) is not None:
        assert isinstance(message, str)
        out.append(base64.b64decode(json.loads(message)["media"]["payload"])[0])
    return out


async def test_while_the_sender_is_idle_a_frame_is_on_the_wire_before_the_pacer_yields() -> None:
    with trio.fail_after(10):
        async with bot_stream(TelephonyOut()) as (stream, peer, _):
            received = Frames(client=True)
            await trio.testing.wait_all_tasks_blocked()
            stream.accept(frame(7))
            assert payloads(peer, received) == [7]  # no task of ours ran in between: loopback delivers at once
            assert stream.statistics().messages_sent == 1


async def test_what_the_socket_cannot_take_waits_for_the_sender_and_nothing_is_lost_or_reordered() -> None:
    with trio.fail_after(10):
        async with bot_stream(TelephonyOut(hold_ms=60_000)) as (stream, peer, _):
            received = Frames(client=True)
            await trio.testing.wait_all_tasks_blocked()
            for n in range(150):  # far more than the socket buffers hold: the provider reads none yet
                stream.accept(frame(n))
                await trio.lowlevel.checkpoint()
            got: list[int] = []
            while len(got) < 150:
                await trio.lowlevel.wait_readable(peer)  # the provider reads as the sender writes
                got += payloads(peer, received)
            assert got == [n % 256 for n in range(150)]
            stats = stream.statistics()
            assert (stats.messages_sent, stats.drops) == (150, {})
