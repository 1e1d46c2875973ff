"""The lean WebSocket and the one-port HTTP server, checked against an independent peer.

The peer is the ``websockets`` library (its synchronous client, in a thread), so neither side
of a handshake or a frame is checked only against our own code.
"""

from __future__ import annotations

import socket as stdlib_socket
import ssl
import threading
from collections.abc import Iterator

import pytest
import trio
import trustme
from websockets.exceptions import ConnectionClosed as PeerClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as peer_connect
from websockets.sync.server import ServerConnection
from websockets.sync.server import serve as peer_serve
from wsproto.handshake import generate_accept_token

from rtstream import websocket
from rtstream.httpserver import Request, Response, Upgrade, bound_port, open_listener, serve
from rtstream.wsframes import Close, Frames

TIMEOUT = 10


async def echo(ws: websocket.WebSocket) -> None:
    """Echo every message until the peer closes."""
    try:
        while True:
            await ws.send(await ws.receive())
    except websocket.ConnectionClosed:
        pass


async def route(request: Request) -> Response | Upgrade:
    if request.path == "/echo":
        return Upgrade(echo, subprotocols=("audio.jambonz.org",), max_message_size=4096)
    if request.path == "/busy":
        return Response.text(503, "full")
    if request.path == "/form":
        return Response.text(200, ",".join(f"{k}={v[0]}" for k, v in sorted(request.form.items())))
    return Response.text(404)


async def start_server(nursery: trio.Nursery) -> int:
    listener = await open_listener("127.0.0.1", 0)
    port = bound_port(listener)
    await nursery.start(lambda task_status: serve([listener], route, handler_nursery=nursery, task_status=task_status))
    return port


async def test_independent_client_echoes_text_and_binary_and_closes_cleanly() -> None:
    def dial(port: int) -> tuple[object, object, object, int | None]:
        with peer_connect(f"ws://127.0.0.1:{port}/echo", subprotocols=["audio.jambonz.org"]) as peer:
            peer.send("hello")
            text = peer.recv()
            peer.send(b"\x00\x01" * 100)
            binary = peer.recv()
            chosen = peer.subprotocol
        return text, binary, chosen, peer.close_code

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery)
            text, binary, chosen, code = await trio.to_thread.run_sync(dial, port)
            nursery.cancel_scope.cancel()
    assert (text, binary, chosen, code) == ("hello", b"\x00\x01" * 100, "audio.jambonz.org", 1000)


async def test_an_oversize_message_closes_with_1009() -> None:
    def dial(port: int) -> int | None:
        with peer_connect(f"ws://127.0.0.1:{port}/echo") as peer:
            peer.send(b"x" * 5000)
            with pytest.raises(PeerClosed):
                peer.recv()
        return peer.close_code

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery)
            code = await trio.to_thread.run_sync(dial, port)
            nursery.cancel_scope.cancel()
    assert code == 1009


async def test_a_refused_upgrade_gets_the_routes_status_before_any_websocket() -> None:
    def dial(port: int) -> int:
        with pytest.raises(InvalidStatus) as refused:
            peer_connect(f"ws://127.0.0.1:{port}/busy")
        return refused.value.response.status_code

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery)
            status = await trio.to_thread.run_sync(dial, port)
            nursery.cancel_scope.cancel()
    assert status == 503


def _http(port: int, raw: bytes) -> bytes:
    with stdlib_socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def test_plain_http_routes_forms_and_rejects_garbage() -> None:
    body = b"CallSid=CA1&From=%2B15550100"
    form = (
        b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery)
            answer = await trio.to_thread.run_sync(_http, port, form)
            missing = await trio.to_thread.run_sync(_http, port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            garbage = await trio.to_thread.run_sync(_http, port, b"\x16\x03\x01 not http\r\n\r\n")
            plain_on_ws = await trio.to_thread.run_sync(_http, port, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            nursery.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nCallSid=CA1,From=+15550100\n")
    assert missing.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert garbage.startswith(b"HTTP/1.1 400 ")
    assert plain_on_ws.startswith(b"HTTP/1.1 426 ")


async def test_our_client_against_our_server_and_a_refusal() -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery)
            ws = await websocket.connect(f"ws://127.0.0.1:{port}/echo?key=secret")
            await ws.send_many(["a", b"b", "c"])
            got = [await ws.receive() for _ in range(3)]
            await ws.close()
            with pytest.raises(websocket.HandshakeFailed, match=r"^ws://127\.0\.0\.1:\d+: refused with HTTP 503$"):
                await websocket.connect(f"ws://127.0.0.1:{port}/busy?key=secret")
            nursery.cancel_scope.cancel()
    assert got == ["a", b"b", "c"]
    assert ws.closed == websocket.CloseReason(1000, "", local=True)


async def test_a_peer_that_vanishes_reads_as_1006_at_the_server() -> None:
    ended: list[websocket.CloseReason | None] = []
    done = trio.Event()

    async def record(ws: websocket.WebSocket) -> None:
        with pytest.raises(websocket.ConnectionClosed):
            await ws.receive()
        ended.append(ws.closed)
        done.set()

    async def recording_route(request: Request) -> Response | Upgrade:
        return Upgrade(record)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listener = await open_listener("127.0.0.1", 0)
            port = bound_port(listener)
            await nursery.start(
                lambda task_status: serve([listener], recording_route, handler_nursery=nursery, task_status=task_status)
            )
            ws = await websocket.connect(f"ws://127.0.0.1:{port}/")
            await ws._stream.aclose()  # the transport drops with no Close frame
            await done.wait()
            nursery.cancel_scope.cancel()
    assert ended == [websocket.CloseReason(1006, "connection lost")]


class IndependentServer:
    """The ``websockets`` library's echo server in a thread, TLS or not, recording each connection's close code."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.close_codes: list[int | None] = []
        self.closed = threading.Event()
        self._server = peer_serve(self._echo, "localhost", 0, ssl=tls)
        self.port = self._server.socket.getsockname()[1]

    def _echo(self, ws: ServerConnection) -> None:
        for message in ws:
            ws.send(message)
        self.close_codes.append(ws.close_code)  # 1006 when no Close frame came
        self.closed.set()

    def __enter__(self) -> IndependentServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[IndependentServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    with IndependentServer(context) as server:
        yield server


async def test_wss_speaks_tls_to_an_independent_server_and_closes_with_a_close_frame(ca, tls_server) -> None:
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    with trio.fail_after(TIMEOUT):
        ws = await websocket.connect(f"wss://localhost:{tls_server.port}/x?key=secret", ssl_context=trusting)
        await ws.send_many(["hello", b"\x00\x01"])
        got = [await ws.receive(), await ws.receive()]
        await ws.close()
        await trio.to_thread.run_sync(tls_server.closed.wait)
    assert got == ["hello", b"\x00\x01"]
    assert tls_server.close_codes == [1000]


async def test_wss_checks_the_certificate_against_the_system_roots(tls_server) -> None:
    with (
        trio.fail_after(TIMEOUT),
        pytest.raises(
            websocket.HandshakeFailed,
            match=rf"^wss://localhost:{tls_server.port}: TLS handshake failed: unable to get local issuer certificate$",
        ),
    ):
        await websocket.connect(f"wss://localhost:{tls_server.port}/x?key=secret")


async def test_a_megabyte_crosses_a_plain_socket_each_way() -> None:
    """A megabyte each way through the independent echo server (its limit), read back in many socket reads."""
    payload = bytes(range(256)) * 4000
    with IndependentServer() as server, trio.fail_after(TIMEOUT):
        ws = await websocket.connect(f"ws://localhost:{server.port}/", max_message_size=8 << 20)
        assert ws._socket is not None  # the direct path, not trio's stream
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.send, payload)
            echoed = await ws.receive()
        await ws.close()
    assert echoed == payload


async def raw_listener() -> tuple[trio.socket.SocketType, int]:
    """A bare TCP listener on loopback for a hand-written peer, and its port."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener, listener.getsockname()[1]


async def accept_upgrade(listener: trio.socket.SocketType) -> trio.socket.SocketType:
    """Accept one connection and answer its WebSocket upgrade by hand; the socket, ready for frames."""
    sock, _ = await listener.accept()
    request = b""
    while b"\r\n\r\n" not in request:
        request += await sock.recv(4096)
    key = next(line.split(b": ")[1] for line in request.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key"))
    await sock.send(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + generate_accept_token(key) + b"\r\n\r\n"
    )
    return sock


async def test_receive_ready_takes_what_one_read_brought_and_leaves_control_frames_to_receive() -> None:
    """Four frames in one write: receive() returns the first, receive_ready() stops at the ping, receive() pongs."""
    listener, port = await raw_listener()
    pong = trio.Event()
    got: list[bytes] = []

    async def serve_frames() -> None:
        sock = await accept_upgrade(listener)
        await sock.send(b"\x81\x01a" + b"\x89\x02hi" + b"\x81\x01b" + b"\x81\x01c")
        got.append(await sock.recv(64))
        pong.set()
        await trio.sleep_forever()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_frames)
            ws = await websocket.connect(f"ws://127.0.0.1:{port}/")
            first = await ws.receive()
            before_ping = ws.receive_ready()
            after_ping = [await ws.receive(), ws.receive_ready(), ws.receive_ready()]
            await pong.wait()
            nursery.cancel_scope.cancel()
    assert (first, before_ping, after_ping) == ("a", None, ["b", "c", None])
    assert ws.messages_in == 3
    frame = got[0]  # the client's Pong, masked: 0x8A, 0x80 | 2, the mask, "hi" masked
    assert frame[:2] == b"\x8a\x82" and bytes(b ^ frame[2 + i % 4] for i, b in enumerate(frame[6:8])) == b"hi"


async def test_try_send_fills_the_socket_without_waiting_and_keeps_every_frame_whole_and_in_order() -> None:
    """Against a peer that reads nothing at first: try_send says False once the socket is full, a frame it
    began is finished by flush, and the peer then reads every frame try_send took, whole, in order."""
    listener, port = await raw_listener()
    drain = trio.Event()
    received: list[object] = []

    async def stall_then_read() -> None:
        sock = await accept_upgrade(listener)
        await drain.wait()
        frames = Frames(client=False, max_message_size=1 << 20)
        while not any(isinstance(m, Close) for m in received):
            data = await sock.recv(1 << 16)
            if not data:
                break
            frames.feed(data)
            while (item := frames.next()) is not None:
                received.append(item)
        await sock.send(b"\x88\x02\x03\xe8")  # the answering Close
        sock.close()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stall_then_read)
            ws = await websocket.connect(f"ws://127.0.0.1:{port}/")
            taken = 0
            while taken < 2000 and ws.try_send(taken.to_bytes(4, "big") * 4096) and not ws.flushing:
                taken += 1
            begun = ws.flushing
            taken += begun  # a frame the socket took part of goes out whole
            if begun:
                assert not ws.try_send(b"later")  # nothing overtakes the rest of that frame
            drain.set()
            await ws.flush()
            await ws.send(b"end")
            await ws.close()
    assert 0 < taken < 2000  # the socket filled up, and try_send never waited for it
    expected = [i.to_bytes(4, "big") * 4096 for i in range(taken)] + [b"end"]
    assert received[:-1] == expected and isinstance(received[-1], Close)
    assert ws.messages_out == taken + 1


async def test_a_cancelled_task_still_sends_close() -> None:
    with IndependentServer() as server, trio.fail_after(TIMEOUT):
        ws = await websocket.connect(f"ws://localhost:{server.port}/")
        with trio.CancelScope() as scope:
            scope.cancel()
            await ws.close()
        await trio.to_thread.run_sync(server.closed.wait)
    assert server.close_codes == [1000]


async def test_close_gives_up_on_a_peer_that_never_reads(autojump_clock) -> None:
    """The peer accepts the upgrade, then reads nothing: our sends fill the socket, close() still returns."""
    listener, port = await raw_listener()

    async def accept_and_stall() -> None:
        with await accept_upgrade(listener):
            await trio.sleep_forever()  # holding the socket open, reading nothing

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_and_stall)
        ws = await websocket.connect(f"ws://127.0.0.1:{port}/")
        with trio.move_on_after(5):
            while True:
                await ws.send(b"\x00" * 65536)
        started = trio.current_time()
        await ws.close()
        nursery.cancel_scope.cancel()
    assert trio.current_time() - started <= 3 * websocket.CLOSE_TIMEOUT
    assert ws.closed == websocket.CloseReason(1000, "", local=True)


async def test_the_client_stages_connect_over_wss_with_the_system_trust_store(ca, tls_server, tmp_path, monkeypatch):
    """Every client stage connects through open_connection: wss:// there checks against the system's roots."""
    from rtstream.stages.wsclient import open_connection

    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    with trio.fail_after(TIMEOUT):
        async with open_connection(f"wss://localhost:{tls_server.port}/tts/websocket", timeout=5) as ws:
            await ws.send("over TLS")
            assert await ws.receive() == "over TLS"
        await trio.to_thread.run_sync(tls_server.closed.wait)
    assert tls_server.close_codes == [1000]


def _raw_client(port: int, frame: bytes) -> bytes:
    """Upgrade on a plain socket, send ``frame`` as it is, and return the server's first frame (a Close, short)."""
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    request = (
        b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n"
    )
    with stdlib_socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(request + frame)
        data = b""
        while len(frames := data.partition(b"\r\n\r\n")[2]) < 2 or len(frames) < 2 + frames[1]:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    head = data.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 101 ") and generate_accept_token(key) in head
    return frames


@pytest.mark.parametrize(
    ("frame", "close"),
    [
        (b"\x81\x02hi", b"\x88\x17\x03\xeaunmasked client frame"),
        (b"\x81\x81\x00\x00\x00\x00\xff", b"\x88\x1e\x03\xeftext message not valid UTF-8"),
        (b"\x82\xfe\x13\x88" + b"\x00" * 4, b"\x88\x19\x03\xf1message over 4096 bytes"),  # 5000 B declared, none sent
    ],
    ids=["unmasked", "not_utf8", "oversize_header"],
)
async def test_a_peers_protocol_violation_is_answered_with_the_rfc_close_code(frame, close) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery)
            answer = await trio.to_thread.run_sync(_raw_client, port, frame)
            nursery.cancel_scope.cancel()
    assert answer == close
