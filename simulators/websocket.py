"""The simulators' WebSocket shell: rtstream's own server side (the one port the bridge serves on), and a
sans-I/O session run on each connection.

A simulator is a :data:`~rtstream.httpserver.Route`: it refuses a request with a
:class:`~rtstream.httpserver.Response` or accepts it with an :class:`~rtstream.httpserver.Upgrade`,
whose session usually is :func:`converse`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import ssl
from typing import Any, Protocol

import attrs
import trio

from rtstream.httpserver import Route, bound_port, open_listener
from rtstream.httpserver import serve as serve_http
from rtstream.websocket import ConnectionClosed, WebSocket

from .netem import DISCONNECT

log = logging.getLogger(__name__)


@attrs.frozen
class Close:
    """Delivered in place of a message: close the connection with this code and reason (a service's refusal)."""

    code: int
    reason: str


async def serve(
    route: Route,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``route`` on ``host:port`` (0: any free port) until cancelled; start with the port.

    With ``ssl_context`` it serves ``wss://`` (for clients that only speak TLS, like ElevenLabs' SDK).
    """
    listener = await open_listener(host, port)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            functools.partial(serve_http, [listener], route, handler_nursery=nursery, ssl_context=ssl_context)
        )
        task_status.started(bound_port(listener))


class Session(Protocol):
    """A sans-I/O peer: fed messages with their arrival time, it says what to send and when."""

    def receive(self, message: str | bytes, now: float) -> None: ...

    def pop_due(self, now: float) -> list[Any]: ...

    def next_due(self) -> float | None: ...


async def converse(ws: WebSocket, session: Session, *, peer: str) -> bool:
    """Run ``session`` on ``ws`` until either side closes; :data:`DISCONNECT` drops the connection,
    a :class:`Close` closes it with its code.

    True when the session dropped it, False when the peer closed it.
    """
    wake = trio.Event()
    close: Close | None = None
    dropped = False

    async def read(cancel_scope: trio.CancelScope) -> None:
        try:
            while True:
                message = await ws.receive()
                session.receive(message, trio.current_time())
                if session.next_due() is not None:  # most messages (audio) queue no reply: no wake-up
                    wake.set()
        except ConnectionClosed:
            cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read, nursery.cancel_scope)
        with contextlib.suppress(ConnectionClosed):
            while close is None:
                burst: list[str | bytes] = []
                for item in session.pop_due(trio.current_time()):
                    if item is DISCONNECT:
                        log.info("%s: dropping the connection as configured", peer)
                        close, dropped = Close(1011, "simulated disconnect"), True
                        break
                    if isinstance(item, Close):
                        close = item
                        break
                    burst.append(item)
                if burst:  # what is due together goes out in one write
                    await ws.send_many(burst)
                if close is None:
                    due = session.next_due()
                    with trio.move_on_at(math.inf if due is None else due):
                        await wake.wait()
                    if wake.is_set():
                        wake = trio.Event()
        nursery.cancel_scope.cancel()
    if close is not None:  # the reader has stopped: close() reads the peer's answering Close
        await ws.close(close.code, close.reason)
    return dropped
