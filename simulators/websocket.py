"""The simulators' WebSocket shell: serving a handler, running a sans-I/O session on a connection."""

from __future__ import annotations

import functools
import logging
import math
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from .netem import DISCONNECT

log = logging.getLogger(__name__)

MESSAGE_QUEUE = 8
"""Messages parsed ahead of the handler (the library's default, 1, blocks the reader per message)."""


@attrs.frozen
class Close:
    """Delivered in place of a message: close the connection with this code and reason (a service's refusal)."""

    code: int
    reason: str


async def serve(
    handler: Callable[[WebSocketRequest], Awaitable[None]],
    host: str,
    port: int,
    *,
    max_message_size: int,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` on ``host:port`` (0: any free port) until cancelled; start with the port.

    With ``ssl_context`` it serves ``wss://`` (for clients that only speak TLS, like ElevenLabs' SDK).
    """
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(
            functools.partial(
                serve_websocket,
                handler,
                host,
                port,
                ssl_context,
                max_message_size=max_message_size,
                message_queue_size=MESSAGE_QUEUE,
            )
        )
        task_status.started(listening.port)


class Session(Protocol):
    """A sans-I/O peer: fed messages with their arrival time, it says what to send and when."""

    def receive(self, message: str | bytes, now: float) -> None: ...

    def pop_due(self, now: float) -> list[Any]: ...

    def next_due(self) -> float | None: ...


async def converse(ws: WebSocketConnection, session: Session, *, peer: str) -> bool:
    """Run ``session`` on ``ws`` until either side closes; :data:`DISCONNECT` drops the connection,
    a :class:`Close` closes it with its code.

    True when the session dropped it, False when the peer closed it.
    """
    wake = trio.Event()
    dropped = False

    async def read(cancel_scope: trio.CancelScope) -> None:
        try:
            while True:
                message = await ws.get_message()
                session.receive(message, trio.current_time())
                if session.next_due() is not None:  # most messages (audio) queue no reply: no wake-up
                    wake.set()
        except ConnectionClosed:
            cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read, nursery.cancel_scope)
        try:
            while True:
                for item in session.pop_due(trio.current_time()):
                    if item is DISCONNECT:
                        log.info("%s: dropping the connection from %s as configured", peer, ws.remote)
                        dropped = True
                        await ws.aclose(1011, "simulated disconnect")
                        nursery.cancel_scope.cancel()
                        return dropped
                    if isinstance(item, Close):
                        await ws.aclose(item.code, item.reason)
                        nursery.cancel_scope.cancel()
                        return dropped
                    await ws.send_message(item)
                due = session.next_due()
                with trio.move_on_at(math.inf if due is None else due):
                    await wake.wait()
                if wake.is_set():
                    wake = trio.Event()
        except ConnectionClosed:
            nursery.cancel_scope.cancel()
    return dropped
