"""WebSocket framing speed: wsproto and rtstream.wsframes side by side, µs per message.

    python benchmarks/websocket.py [--repeat 15] [--socket-messages 20000]

Each row is one message kind the bridge carries, parsed and framed in both roles: "masked" is
what a server receives and a client sends (the telephony provider's media, our TTS requests),
"unmasked" what a client receives and a server sends (TTS audio, our telephony media). Parse
feeds one frame at a time to a long-lived connection object and takes the whole message out
(wsproto's events reassembled as rtstream's WebSocket used to); encode frames one message.
The ratio is wsproto's time over ours (above 1: ours is faster). Each figure is the best of
``--repeat`` runs, wsproto and ours interleaved, so noise from other processes on the machine
inflates neither side.

The socket rows send messages one at a time over a loopback TCP pair and receive each at the
other end (one trio loop, both ends): rtstream's WebSocket against trio-websocket (wsproto
plus a reader task and a message channel, as the simulators use it), CPU µs per message.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import time
import timeit
from collections.abc import Callable
from functools import partial

import trio
import trio.testing
import trio_websocket
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, Message, TextMessage

from rtstream.websocket import WebSocket
from rtstream.wire.cartesia import CartesiaService, Chunk
from rtstream.wsframes import Frames, int_xor, numpy_xor

BUDGET = 0.02  # seconds per timed run, at least


def messages() -> dict[str, str | bytes]:
    cartesia = CartesiaService().send(Chunk("utt-1", os.urandom(1050), step_time=12.5))
    twilio = json.dumps(
        {
            "event": "media",
            "sequenceNumber": "1234",
            "streamSid": "MZ" + "0" * 32,
            "media": {"track": "inbound", "chunk": "1233", "timestamp": "24660", "payload": ""},
        },
        separators=(",", ":"),
    ).replace('"payload":""', f'"payload":"{base64.b64encode(os.urandom(160)).decode()}"')
    return {
        f"Cartesia chunk, {len(cartesia)} B text": cartesia,
        f"Twilio 20 ms media, {len(twilio)} B text": twilio,
        "raw 60 ms PCM16, 960 B binary": os.urandom(960),
        "64 KiB binary": os.urandom(65536),
    }


def per_call(fn: Callable[[], object], repeat: int) -> list[float]:
    """µs per call of ``fn`` for each of ``repeat`` runs of at least BUDGET seconds."""
    number = max(1, int(BUDGET / max(timeit.timeit(fn, number=3) / 3, 1e-9)))
    return [t / number * 1e6 for t in timeit.repeat(fn, number=number, repeat=repeat)]


def wsproto_parser(client: bool, frame: bytes) -> Callable[[], object]:
    connection = Connection(ConnectionType.CLIENT if client else ConnectionType.SERVER)

    def parse() -> object:
        connection.receive_data(frame)
        parts: list = []
        for event in connection.events():
            if isinstance(event, Message):
                parts.append(event.data)
                if event.message_finished:
                    return parts[0] if len(parts) == 1 else ("" if isinstance(event, TextMessage) else b"").join(parts)
        return None

    return parse


def our_parser(client: bool, frame: bytes) -> Callable[[], object]:
    frames = Frames(client=client)

    def parse() -> object:
        frames.feed(frame)
        return frames.next()

    return parse


def wsproto_encoder(client: bool, message: str | bytes) -> Callable[[], object]:
    connection = Connection(ConnectionType.CLIENT if client else ConnectionType.SERVER)
    event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
    return lambda: connection.send(event)


def codec_rows(repeat: int) -> None:
    print(f"{'message':38s} {'role':9s} {'op':6s} {'wsproto µs':>10s} {'ours µs':>8s} {'ratio':>6s}")
    for name, message in messages().items():
        for client_receives in (False, True):
            sender = Frames(client=not client_receives)
            frame = sender.encode(message)
            role = "unmasked" if client_receives else "masked"
            theirs, ours = wsproto_parser(client_receives, frame), our_parser(client_receives, frame)
            assert theirs() == ours() == message
            report(name, role, "parse", theirs, ours, repeat)
            encoder = Frames(client=not client_receives)
            report(
                name,
                role,
                "encode",
                wsproto_encoder(not client_receives, message),
                partial(encoder.encode, message),
                repeat,
            )


def report(
    name: str, role: str, op: str, theirs: Callable[[], object], ours: Callable[[], object], repeat: int
) -> None:
    a, b = [], []
    for _ in range(repeat):  # interleaved: a burst of load slows both, not one
        a += per_call(theirs, 1)
        b += per_call(ours, 1)
    print(f"{name:38s} {role:9s} {op:6s} {min(a):10.2f} {min(b):8.2f} {min(a) / min(b):6.1f}")


# ---------------------------------------------------------------------- over a loopback socket


async def socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listener.accept()
    await listener.aclose()
    return client, server


async def ours_over_socket(message: str | bytes, count: int, client_sends: bool) -> float:
    a, b = await socket_pair()
    sender = WebSocket(a if client_sends else b, Frames(client=client_sends))
    receiver = WebSocket(b if client_sends else a, Frames(client=not client_sends))
    return await exchange(sender.send, receiver.receive, message, count)


async def trio_websocket_over_socket(message: str | bytes, count: int, client_sends: bool) -> float:
    a, b = await socket_pair()
    async with trio.open_nursery() as nursery:
        accepted: list[trio_websocket.WebSocketConnection] = []

        async def serve() -> None:
            request = await trio_websocket.wrap_server_stream(nursery, b)
            accepted.append(await request.accept())

        nursery.start_soon(serve)
        client = await trio_websocket.wrap_client_stream(nursery, a, "127.0.0.1", "/")
        await trio.testing.wait_all_tasks_blocked()
        (server,) = accepted
        sender, receiver = (client, server) if client_sends else (server, client)
        took = await exchange(sender.send_message, receiver.get_message, message, count)
        nursery.cancel_scope.cancel()
    return took


async def exchange(send: Callable, receive: Callable, message: str | bytes, count: int) -> float:
    """CPU µs per message: one task sends ``count`` messages, another receives them."""

    async def sender() -> None:
        for _ in range(count):
            await send(message)

    started = time.process_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        for _ in range(count):
            got = await receive()
        assert got == message
    return (time.process_time() - started) / count * 1e6


def mask_rows(repeat: int) -> None:
    print(f"\n{'unmasking':38s} {'size':>9s} {'int XOR µs':>10s} {'numpy µs':>8s} {'ratio':>6s}")
    mask = os.urandom(4)
    for size in (100, 230, 512, 960, 1506, 65536):
        data = os.urandom(size)
        a, b = [], []
        for _ in range(repeat):
            a += per_call(partial(int_xor, data, mask), 1)
            b += per_call(partial(numpy_xor, data, mask), 1)
        print(f"{'':38s} {size:9d} {min(a):10.2f} {min(b):8.2f} {min(a) / min(b):6.1f}")


def socket_rows(count: int, repeat: int) -> None:
    print(
        f"\n{'over loopback TCP, send + receive':38s} {'sender':9s} {'trio-ws µs':>10s} {'ours µs':>8s} {'ratio':>6s}"
    )
    for name, message in messages().items():
        n = count if len(message) < 10_000 else count // 20
        for client_sends in (True, False):
            a, b = [], []
            for _ in range(repeat):
                a.append(trio.run(trio_websocket_over_socket, message, n, client_sends))
                b.append(trio.run(ours_over_socket, message, n, client_sends))
            who = "client" if client_sends else "server"
            print(f"{name:38s} {who:9s} {min(a):10.1f} {min(b):8.1f} {min(a) / min(b):6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per figure; the best is shown")
    parser.add_argument("--socket-messages", type=int, default=20000, help="messages per socket run (64 KiB: /20)")
    parser.add_argument("--socket-repeat", type=int, default=3, help="socket runs per figure; the best is shown")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    codec_rows(args.repeat)
    mask_rows(args.repeat)
    socket_rows(args.socket_messages, args.socket_repeat)


if __name__ == "__main__":
    main()
