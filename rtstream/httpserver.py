"""One port for HTTP and WebSocket: parse a request, ask the route, answer it or upgrade it.

Telephony providers reach the bridge over one public port: a webhook (Twilio's voice URL,
Plivo's answer URL) is plain HTTP, the media stream that follows is a WebSocket upgrade, and a
load balancer polls ``/health``. Each connection carries one request (``Connection: close``):
the route looks at the parsed :class:`Request` and returns either a :class:`Response` or an
:class:`Upgrade` whose session runs on the accepted :class:`~rtstream.websocket.WebSocket`.
A route can therefore refuse a call (404, 403, 503) before the upgrade, when refusing is cheap.

Nothing a client sends can take the server down: header and body sizes are bounded, a client
that does not finish its request in ``request_timeout`` is dropped, and an error in a route or
session is logged and ends only that connection.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import attrs
import h11
import trio

from .websocket import MAX_MESSAGE_BYTES, HandshakeFailed, WebSocket, accept, upgrade_requested

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 << 10
MAX_BODY_BYTES = 64 << 10
REQUEST_TIMEOUT = 10.0


@attrs.frozen
class Request:
    """One parsed HTTP request (headers by lower-case name)."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    peer: str
    target: str
    """The raw request target, path and query, as the client sent it (signatures cover it)."""

    @property
    def form(self) -> dict[str, list[str]]:
        """The body as an HTML form (a provider's webhook parameters); empty for other bodies."""
        if not self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return {}
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    @property
    def websocket(self) -> bool:
        """Whether the request asks for a WebSocket upgrade."""
        return self.headers.get("upgrade", "").lower() == "websocket"


@attrs.frozen
class Response:
    """An HTTP answer."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def text(cls, status: int, text: str | None = None) -> Response:
        """A plain-text answer; by default the status's own phrase."""
        return cls(status, ((text if text is not None else HTTPStatus(status).phrase) + "\n").encode())


@attrs.frozen
class Upgrade:
    """Accept the WebSocket and run ``session`` on it; the server closes it when the session returns."""

    session: Callable[[WebSocket], Awaitable[None]]
    subprotocols: tuple[str, ...] = ()
    max_message_size: int = MAX_MESSAGE_BYTES
    abandoned: Callable[[], None] | None = None
    """Called instead of ``session`` when the upgrade fails (to give back what the route reserved)."""


Route = Callable[[Request], Awaitable[Response | Upgrade]]


async def open_listener(host: str, port: int, *, reuse_port: bool = False, backlog: int = 1024) -> trio.SocketListener:
    """A TCP listener; with ``reuse_port`` several processes share the port (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return trio.SocketListener(sock)


def bound_port(listener: trio.SocketListener) -> int:
    """The port a listener is bound to (for port 0)."""
    return int(listener.socket.getsockname()[1])


async def serve(
    listeners: Sequence[trio.SocketListener],
    route: Route,
    *,
    handler_nursery: trio.Nursery,
    request_timeout: float = REQUEST_TIMEOUT,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections until cancelled; each runs in ``handler_nursery``.

    Cancelling this task stops accepting (the listeners close) while the connections in
    ``handler_nursery`` go on: that is how a server drains. With ``ssl_context`` every
    connection speaks TLS (``https://``, ``wss://``); its handshake counts in ``request_timeout``.
    """

    async def handle(stream: trio.SocketStream) -> None:
        if ssl_context is not None:
            await handle_connection(
                trio.SSLStream(stream, ssl_context, server_side=True), route, request_timeout=request_timeout
            )
        else:
            await handle_connection(stream, route, request_timeout=request_timeout)

    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept_loop, listener, handle, handler_nursery)
        task_status.started()


async def _accept_loop(
    listener: trio.SocketListener, handle: Callable[[trio.SocketStream], Awaitable[None]], nursery: trio.Nursery
) -> None:
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("accept failed (%s); retrying in 0.1 s", exc.strerror)
                    await trio.sleep(0.1)
                    continue
                raise
            nursery.start_soon(handle, stream)


async def handle_connection(
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream], route: Route, *, request_timeout: float
) -> None:
    """Serve one connection: one request, then a response or a WebSocket session."""
    peer = _peer_of(stream)
    try:
        with trio.move_on_after(request_timeout) as waiting:
            parsed = await _read_request(stream, peer)
        if waiting.cancelled_caught:
            log.info("%s: request not complete within %g s; dropped", peer, request_timeout)
            return
        if isinstance(parsed, Response):
            await _send_response(stream, parsed)
            return
        request, raw, trailing = parsed
        answer = await route(request)
        if isinstance(answer, Response):
            await _send_response(stream, answer)
            return
        await _upgrade(stream, request, raw, trailing, answer)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    except Exception:
        log.exception("%s: the request handler failed", peer)
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()


async def _upgrade(
    stream: trio.abc.Stream, request: Request, raw: h11.Request, trailing: bytes, answer: Upgrade
) -> None:
    started = False
    try:
        if not request.websocket:
            await _send_response(stream, Response.text(426, "this path takes a WebSocket"))
            return
        try:
            ws = await accept(
                stream, raw, trailing, subprotocols=answer.subprotocols, max_message_size=answer.max_message_size
            )
        except HandshakeFailed:
            return
        started = True
        try:
            await answer.session(ws)
        finally:
            with trio.CancelScope(shield=True):
                await ws.close()
    finally:
        if not started and answer.abandoned is not None:
            answer.abandoned()


async def _read_request(stream: trio.abc.Stream, peer: str) -> tuple[Request, h11.Request, bytes] | Response:
    http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
    head: h11.Request | None = None
    body = bytearray()
    while True:
        try:
            event = http.next_event()
        except h11.RemoteProtocolError as exc:
            return Response.text(exc.error_status_hint, "bad request")
        if event is h11.NEED_DATA:
            data = await stream.receive_some(MAX_HEADER_BYTES)
            if not data:
                raise trio.BrokenResourceError("the client closed before finishing its request")
            http.receive_data(bytes(data))
        elif isinstance(event, h11.Request):
            head = event
            if upgrade_requested(event):
                break  # no body; what follows belongs to the WebSocket
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY_BYTES:
                return Response.text(413)
        elif isinstance(event, h11.EndOfMessage):
            break
        elif isinstance(event, h11.ConnectionClosed):
            raise trio.BrokenResourceError("the client closed before finishing its request")
    assert head is not None
    target = head.target.decode("latin-1")
    parts = urlsplit(target)
    headers: dict[str, str] = {}
    for name, value in head.headers:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    request = Request(
        method=head.method.decode("ascii", "replace"),
        path=parts.path or "/",
        query=parse_qs(parts.query, keep_blank_values=True),
        headers=headers,
        body=bytes(body),
        peer=peer,
        target=target,
    )
    trailing, _ = http.trailing_data
    return request, head, trailing


async def _send_response(stream: trio.abc.Stream, response: Response) -> None:
    headers = [
        ("Content-Type", response.content_type),
        ("Content-Length", str(len(response.body))),
        ("Connection", "close"),
        *response.headers,
    ]
    lines = [f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}", *(f"{k}: {v}" for k, v in headers)]
    await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body)


def _peer_of(stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]) -> str:
    transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    try:
        host, port = transport.socket.getpeername()[:2]
    except OSError:
        return "unknown peer"
    return f"{host}:{port}"
