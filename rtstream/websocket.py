"""A lean WebSocket over a trio stream: h11 for the opening handshake, :mod:`rtstream.wsframes` for the frames.

There is no reader task and no message queue per connection: :meth:`WebSocket.receive` reads
the socket itself, answers pings and the peer's close as it goes, and returns one message. A
bridge stream always has a task reading its socket (a telephony link reads marks and stops, a
TTS link reads audio), so nothing is lost by not reading in the background, and each message
costs no task switch and no channel hop. Sends take a lock (two tasks may send on one socket)
and :meth:`WebSocket.send_many` frames several messages into one write. On a plain TCP socket
reads and writes are system calls made at once, with a trio wait only when the socket would
block (trio's stream adds a yield after each); :meth:`WebSocket.receive_ready` takes a message
already read without any I/O, and :meth:`WebSocket.try_send` sends from synchronous code.

:meth:`WebSocket.close` always sends a Close frame (unless a write cut off mid-frame would
garble it), bounded in time even against a peer that never reads, and is safe to call from a
cancelled task: a peer never sees a connection vanish (1006) when this side ended it.

The server side is :func:`accept` on a request already parsed by :mod:`rtstream.httpserver`,
so one port serves plain HTTP and WebSocket upgrades and a call can be refused (HTTP 503)
before the upgrade. The client side is :func:`connect`, ``ws://`` or ``wss://`` (TLS).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import ssl
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import attrs
import h11
import trio

from .wsframes import Close, FrameError, Frames, Ping, Pong

RECEIVE_BYTES = 16 << 10
"""Bytes read per receive: a burst of TTS chunks is read and parsed in one go.

What was read stays in memory until parsed, and a stage behind on its input (the pacer holding
back a fast TTS) reads full buffers: 16 KB (about 150 ms of 24 kHz base64 audio) rather than
64 KB keeps that near 10 KB a connection, at a few more reads a second."""
MAX_MESSAGE_BYTES = 1 << 20
"""Default bound on one incoming message; a larger one closes the connection with 1009."""
CLOSE_TIMEOUT = 1.0
"""How long :meth:`WebSocket.close` spends sending Close and waiting for the peer's before dropping the socket."""
DEFAULT_PORTS = {"ws": 80, "wss": 443}

NORMAL = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
UNSUPPORTED_DATA = 1003
NO_STATUS = 1005
ABNORMAL = 1006
POLICY_VIOLATION = 1008
TOO_BIG = 1009
INTERNAL_ERROR = 1011


@attrs.frozen
class CloseReason:
    """How a connection ended: the close code (1006 when no Close frame came) and its reason."""

    code: int
    reason: str = ""
    local: bool = False
    """True when this side started the closing handshake."""


class ConnectionClosed(Exception):
    """The connection is closed; ``reason`` says by whom and with which code."""

    def __init__(self, reason: CloseReason) -> None:
        super().__init__(f"connection closed with {reason.code}{': ' + reason.reason if reason.reason else ''}")
        self.reason = reason


class HandshakeFailed(Exception):
    """The opening handshake did not complete; ``status`` is the HTTP status when the server refused."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class WebSocket:
    """One open WebSocket connection, either role."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        frames: Frames,
        *,
        subprotocol: str | None = None,
    ) -> None:
        self._stream = stream
        self._socket = stream.socket if type(stream) is trio.SocketStream else None
        """The plain TCP socket under ``stream``, read and written directly (:meth:`_read`, :meth:`_write`)."""
        self._frames = frames
        self._send_lock = trio.StrictFIFOLock()
        self.subprotocol = subprotocol
        self.closed: CloseReason | None = None
        self._garbled = False
        """A write was cut off mid-frame: nothing more can be framed on this stream."""
        self._tail: memoryview | None = None
        """What :meth:`try_send` could not write at once: the next send writes it first."""
        self._held: Ping | Close | FrameError | None = None
        """A control frame (or the peer's protocol error) :meth:`receive_ready` parsed, for :meth:`receive`."""
        self.messages_in = 0
        self.messages_out = 0

    @property
    def max_message_size(self) -> int:
        """The bound on one incoming message; a larger one closes the connection with 1009."""
        return self._frames.max_message_size

    # ------------------------------------------------------------------ receiving

    async def receive(self) -> str | bytes:
        """The next whole message; ConnectionClosed once the connection has ended.

        Cancel-safe: a cancelled receive loses no message (a TTS stage cuts its wait short when
        an event comes), and a pong it is sending goes out whole first.
        """
        frames = self._frames
        while True:
            item: object = self._held
            self._held = None
            if item is None:
                try:
                    item = frames.next()
                except FrameError as exc:
                    item = exc
            if isinstance(item, FrameError):
                await self._fail(item.code, item.reason)
                continue
            if item is None:
                if self.closed is not None:
                    raise ConnectionClosed(self.closed)
                data = await self._read()
                if data:
                    frames.feed(data)
                else:
                    self._lost()
            elif isinstance(item, str | bytes):
                self.messages_in += 1
                return item
            elif isinstance(item, Ping):
                if not frames.close_sent:
                    with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
                        await self._send_bytes(frames.pong(item.payload))  # whole: a cancelled receive garbles nothing
            elif isinstance(item, Close):
                self.closed = CloseReason(item.code, item.reason)
                await self._close_frame(item.code, item.reason)  # the answering Close, if this side sent none
                await self._drop()

    async def _read(self) -> bytes | bytearray:
        """The next bytes from the peer, b"" once the connection is gone.

        On a plain TCP socket this is one ``read`` system call, and a wait only when there is
        nothing to read: trio's stream adds a scheduling round trip after every read that
        found data (a task step per read, at hundreds of reads a second). Cancel-safe: a
        cancelled wait has read nothing.
        """
        sock = self._socket
        if sock is None:
            try:
                return await self._stream.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
        while True:
            try:
                return os.read(sock.fileno(), RECEIVE_BYTES)
            except BlockingIOError:
                pass
            except OSError:  # reset, or closed under us
                return b""
            try:
                await trio.lowlevel.wait_readable(sock)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return b""

    def receive_ready(self) -> str | bytes | None:
        """The next message if it has already been read whole, else None: no I/O, no wait.

        A reader takes what one socket read brought in one go. A control frame or a protocol
        error stops it (None); :meth:`receive` then answers it as usual.
        """
        if self._held is not None or self.closed is not None:
            return None
        try:
            item = self._frames.next()
        except FrameError as exc:
            self._held = exc
            return None
        if isinstance(item, str | bytes):
            self.messages_in += 1
            return item
        if item is not None and not isinstance(item, Pong):
            self._held = item
        return None

    def _lost(self) -> None:
        if self.closed is None:
            self.closed = CloseReason(ABNORMAL, "connection lost")

    async def _fail(self, code: int, reason: str) -> None:
        """Close for a protocol violation by the peer; the next receive raises ConnectionClosed.

        What the peer still sends is read and discarded (unparsed, so an oversize message costs
        nothing) until it closes or CLOSE_TIMEOUT passes: closing a socket with unread bytes
        resets it, and the peer would never see our Close.
        """
        await self._close_frame(code, reason)
        self.closed = CloseReason(code, reason, local=True)
        with trio.move_on_after(CLOSE_TIMEOUT), contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while await self._stream.receive_some(RECEIVE_BYTES):
                pass
        await self._drop()

    # ------------------------------------------------------------------ sending

    async def send(self, message: str | bytes) -> None:
        """Send one message; ConnectionClosed if the connection has ended."""
        await self.send_many((message,))

    async def send_many(self, messages: Iterable[str | bytes]) -> None:
        """Send several messages in one write (one system call for a burst)."""
        if self.closed is not None or self._frames.close_sent:
            raise ConnectionClosed(self.closed or CloseReason(ABNORMAL, "closing"))
        messages = tuple(messages)
        await self._send_bytes(self._frames.encode_many(messages))
        self.messages_out += len(messages)

    async def _send_bytes(self, data: bytes) -> None:
        lock = self._send_lock
        try:
            lock.acquire_nowait()  # the common case, one sender: no scheduling round trip for the lock
        except trio.WouldBlock:
            await lock.acquire()
        try:
            if self._garbled:
                raise ConnectionClosed(self.closed or CloseReason(ABNORMAL, "a send was cut off"))
            await trio.lowlevel.checkpoint_if_cancelled()  # cancelled here, nothing was written
            done = False
            try:
                if self._tail is not None:
                    tail, self._tail = self._tail, None
                    await self._write(tail)
                await self._write(data)
                done = True
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._lost()
                raise ConnectionClosed(self.closed or CloseReason(ABNORMAL)) from None
            finally:
                self._garbled = not done
        finally:
            lock.release()

    def try_send(self, message: str | bytes) -> bool:
        """Send ``message`` from a synchronous caller if the socket takes it now; False when nothing was sent.

        For a task that must not wait on a peer (the pacer handing a frame to the telephony
        link): one write on a plain TCP socket while no other send is under way. What the
        socket did not take of the frame stays in order, and goes out before the next
        :meth:`send` or :meth:`flush` (:attr:`flushing` says one is owed).
        ConnectionClosed if the connection has ended.
        """
        if self.closed is not None or self._frames.close_sent:
            raise ConnectionClosed(self.closed or CloseReason(ABNORMAL, "closing"))
        sock = self._socket
        if sock is None or self._tail is not None or self._garbled or self._send_lock.locked():
            return False
        data = self._frames.encode(message)
        try:
            written = os.write(sock.fileno(), data)
        except BlockingIOError:
            return False
        except OSError:  # reset, or closed under us
            self._lost()
            raise ConnectionClosed(self.closed or CloseReason(ABNORMAL)) from None
        if written < len(data):
            self._tail = memoryview(data)[written:]
        self.messages_out += 1
        return True

    @property
    def flushing(self) -> bool:
        """Part of a frame :meth:`try_send` began is still to be written (by :meth:`flush` or the next send)."""
        return self._tail is not None

    async def flush(self) -> None:
        """Write what :meth:`try_send` left over; ConnectionClosed if the connection has ended."""
        if self._tail is not None:
            await self._send_bytes(b"")

    async def _write(self, data: bytes | memoryview) -> None:
        """Write all of ``data``; on a plain TCP socket, waiting only while its send buffer is full.

        trio's stream yields after every write; this writes with one system call and returns
        (the caller's :meth:`_send_bytes` has checked for cancellation), so a task that sends a
        frame and then waits for the next one costs one task step per frame, not two.
        """
        sock = self._socket
        if sock is None:
            await self._stream.send_all(data)
            return
        view = memoryview(data)
        while True:
            try:
                view = view[os.write(sock.fileno(), view) :]
            except BlockingIOError:
                pass
            except OSError as exc:  # reset, or closed under us
                raise trio.BrokenResourceError(str(exc)) from None
            if not view:
                return
            await trio.lowlevel.wait_writable(sock)

    async def ping(self, payload: bytes = b"") -> None:
        """Send a ping (its pong is consumed by :meth:`receive`)."""
        if self.closed is not None or self._frames.close_sent:
            raise ConnectionClosed(self.closed or CloseReason(ABNORMAL, "closing"))
        await self._send_bytes(self._frames.ping(payload))

    async def _close_frame(self, code: int, reason: str) -> None:
        """Send Close, unless this side already did, within CLOSE_TIMEOUT (a peer that never reads cannot hold us)."""
        if not self._frames.close_sent:
            with trio.move_on_after(CLOSE_TIMEOUT), contextlib.suppress(ConnectionClosed):
                await self._send_bytes(self._frames.close(code, reason))

    async def close(self, code: int = NORMAL, reason: str = "") -> None:
        """The closing handshake: send Close, wait for the peer's, drop the socket; CLOSE_TIMEOUT each at most.

        Shielded, so a cancelled task still sends Close. Safe to call more than once and after the
        peer closed; never raises for a lost connection. Not while another task is in :meth:`receive`.
        """
        with trio.CancelScope(shield=True):
            await self._close(code, reason)

    async def _close(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = CloseReason(code, reason, local=True)
            await self._close_frame(code, reason)
            frames = self._frames
            with trio.move_on_after(CLOSE_TIMEOUT):
                while not frames.close_received:
                    try:
                        data = await self._stream.receive_some(RECEIVE_BYTES)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        break
                    if not data:
                        break
                    frames.feed(data)
                    try:
                        while frames.next() is not None:
                            pass  # late messages are discarded; the peer's Close completes the handshake
                    except FrameError:
                        break
        await self._drop()

    async def _drop(self) -> None:
        """Close the stream; TLS sends close_notify, bounded too (a cancelled aclose still closes)."""
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._stream.aclose()


# ---------------------------------------------------------------------- server side


def upgrade_requested(request: h11.Request) -> bool:
    """Whether an HTTP request asks for a WebSocket."""
    headers = _headers(request.headers)
    return headers.get("upgrade", "").lower() == "websocket" and "upgrade" in headers.get("connection", "").lower()


async def accept(
    stream: trio.abc.Stream,
    request: h11.Request,
    trailing: bytes = b"",
    *,
    subprotocols: Sequence[str] = (),
    max_message_size: int = MAX_MESSAGE_BYTES,
) -> WebSocket:
    """Answer an upgrade request with 101 and return the open connection.

    ``trailing`` is what the client sent after the request (frames it sent without waiting).
    HandshakeFailed (after a 400 has been sent) when the request is not a valid upgrade.
    """
    headers = _headers(request.headers)
    key = headers.get("sec-websocket-key", "")
    if not upgrade_requested(request) or headers.get("sec-websocket-version") != "13" or not key:
        await _refuse(stream, 400, b"not a WebSocket version 13 upgrade request")
        raise HandshakeFailed("not a WebSocket version 13 upgrade request", 400)
    offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    chosen = next((p for p in offered if p in subprotocols), None)
    response = [
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Accept", accept_token(key.encode("ascii"))),
    ]
    if chosen is not None:
        response.append((b"Sec-WebSocket-Protocol", chosen.encode("ascii")))
    await stream.send_all(_response_bytes(101, response))
    frames = Frames(client=False, max_message_size=max_message_size)
    frames.feed(trailing)
    return WebSocket(stream, frames, subprotocol=chosen)


def accept_token(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept answering a Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())


async def _refuse(stream: trio.abc.Stream, status: int, body: bytes) -> None:
    headers = [
        (b"Content-Type", b"text/plain"),
        (b"Content-Length", str(len(body)).encode()),
        (b"Connection", b"close"),
    ]
    await stream.send_all(_response_bytes(status, headers) + body)


def _response_bytes(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    phrase = HTTPStatus(status).phrase.encode("ascii")
    lines = [b"HTTP/1.1 %d %s" % (status, phrase), *(name + b": " + value for name, value in headers)]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}


# ---------------------------------------------------------------------- client side


async def connect(
    url: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    subprotocols: Sequence[str] = (),
    timeout: float = 10.0,
    max_message_size: int = MAX_MESSAGE_BYTES,
    ssl_context: ssl.SSLContext | None = None,
) -> WebSocket:
    """Open a client connection to a ``ws://`` or ``wss://`` URL within ``timeout`` seconds.

    ``wss://`` verifies the server's certificate against ``ssl_context`` (default: the system's
    trusted roots). HandshakeFailed names the peer as scheme://host:port only (a key may sit in
    the path or the query) and why.
    """
    parts = urlsplit(url)
    name = peer(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise HandshakeFailed(f"{name}: only ws:// and wss:// URLs are supported, got {parts.scheme!r}")
    host = parts.hostname or ""
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16))
    request_headers = [
        ("Host", _host_header(host, parts.port)),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key.decode("ascii")),
        ("Sec-WebSocket-Version", "13"),
        *headers,
    ]
    if subprotocols:
        request_headers.append(("Sec-WebSocket-Protocol", ", ".join(subprotocols)))
    try:
        request = h11.Request(method="GET", target=target, headers=request_headers)
    except h11.LocalProtocolError:  # its message quotes the bad value, which may be a key
        raise HandshakeFailed(f"{name}: the URL path or a header is not valid in an HTTP request") from None
    with trio.move_on_after(timeout) as scope:
        stream: trio.abc.Stream
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise HandshakeFailed(f"{name}: {_why(exc)}") from None
        try:
            if parts.scheme == "wss":
                stream = await _tls(stream, host, ssl_context or ssl.create_default_context(), name)
            return await _client_handshake(stream, name, request, key, max_message_size)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            raise
    assert scope.cancelled_caught
    raise HandshakeFailed(f"{name}: no answer to the opening handshake within {timeout:g} s")


async def _tls(stream: trio.SocketStream, host: str, context: ssl.SSLContext, name: str) -> trio.SSLStream[Any]:
    """``stream`` wrapped in TLS, the server's certificate checked for ``host``."""
    tls = trio.SSLStream(stream, context, server_hostname=host)
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        detail = getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or cause or "connection lost"
        raise HandshakeFailed(f"{name}: TLS handshake failed: {detail}") from None
    return tls


async def _client_handshake(
    stream: trio.abc.Stream,
    name: str,
    request: h11.Request,
    key: bytes,
    max_message_size: int,
) -> WebSocket:
    http = h11.Connection(h11.CLIENT)
    await stream.send_all(http.send(request))
    while True:
        try:
            event = http.next_event()
        except h11.RemoteProtocolError:
            raise HandshakeFailed(f"{name}: the answer to the opening handshake is not HTTP") from None
        if event is h11.NEED_DATA:
            try:
                data = bytes(await stream.receive_some(RECEIVE_BYTES))
            except trio.BrokenResourceError:
                data = b""
            if not data:
                raise HandshakeFailed(f"{name}: the connection closed during the opening handshake")
            http.receive_data(data)
            continue
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            answer = _headers(event.headers)
            if answer.get("sec-websocket-accept", "").encode("latin-1") != accept_token(key):
                raise HandshakeFailed(f"{name}: the server's Sec-WebSocket-Accept is wrong")
            trailing, _ = http.trailing_data
            frames = Frames(client=True, max_message_size=max_message_size)
            frames.feed(trailing)
            return WebSocket(stream, frames, subprotocol=answer.get("sec-websocket-protocol"))
        if isinstance(event, h11.Response):
            raise HandshakeFailed(f"{name}: refused with HTTP {event.status_code}", event.status_code)
        raise HandshakeFailed(f"{name}: unexpected answer to the opening handshake")


def _why(exc: OSError) -> str:
    """What went wrong opening a TCP connection: the system's words, not trio's summary of all addresses tried."""
    causes = exc.__cause__.exceptions if isinstance(exc.__cause__, ExceptionGroup) else (exc,)
    return next((os.strerror(c.errno) for c in causes if isinstance(c, OSError) and c.errno), str(exc))


def peer(url: str) -> str:
    """``scheme://host:port`` of ``url``, for logs and errors: a key may be in its user, path or query."""
    parts = urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        port = None
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def _host_header(host: str, port: int | None) -> str:
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host
