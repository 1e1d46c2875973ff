"""What the WebSocket client stages share: backoff with jitter, connecting, naming the peer."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import trio
from trio_websocket import HandshakeError, WebSocketConnection, open_websocket_url

MAX_MESSAGE_BYTES = 16 << 20
"""The library's hard bound on one incoming message; stages count smaller oversize limits themselves."""
CLOSE_TIMEOUT = 1.0
RECEIVE_BYTES = 64 << 10
"""Bytes read per receive: a burst of TTS chunks is read and parsed in one go, not 4 KiB at a time."""
MESSAGE_QUEUE = 8
"""Messages parsed ahead of the stage that reads them (the library's default, 1, costs a task switch per message)."""


class Backoff:
    """Exponential backoff with jitter: attempt n waits between half and all of ``initial * 2**n``, capped."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self._rng = rng or random.Random()
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * 2**self.attempt)
        self.attempt += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempt = 0


def peer(url: str) -> str:
    """The URL without its query string (which may hold a key): for logs and errors."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class ConnectFailed(Exception):
    """A connection could not be opened; the message names the peer and why.

    ``status`` is the HTTP status when the server refused the handshake (401: a bad key).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@contextlib.asynccontextmanager
async def open_connection(
    url: str, *, headers: list[tuple[bytes, bytes]] | None = None, timeout: float
) -> AsyncIterator[WebSocketConnection]:
    """A client connection to ``url`` for the body of the block; ConnectFailed if it cannot be opened.

    Errors raised in the body (a ConnectionClosed, say) come out as they are.
    """
    opened = False
    try:
        # trio-websocket 0.12 leaves its reader task (and so its nursery) waiting forever when the opening
        # handshake times out: a deadline of our own ends the attempt, lifted once the connection is open.
        with trio.CancelScope(deadline=trio.current_time() + timeout + CLOSE_TIMEOUT) as opening:
            async with open_websocket_url(
                url,
                extra_headers=headers,
                max_message_size=MAX_MESSAGE_BYTES,
                receive_buffer_size=RECEIVE_BYTES,
                message_queue_size=MESSAGE_QUEUE,
                connect_timeout=timeout,
                disconnect_timeout=CLOSE_TIMEOUT,
            ) as ws:
                opening.deadline = math.inf
                opened = True
                yield ws
        if opening.cancelled_caught and not opened:
            raise ConnectFailed(f"{peer(url)}: no answer to the opening handshake within {timeout:g} s")
    except HandshakeError as exc:
        if opened:
            return  # the peer was too slow to finish the closing handshake: the connection is gone anyway
        status = getattr(exc, "status_code", None)
        if status:
            raise ConnectFailed(f"{peer(url)}: refused with HTTP {status}", status) from None
        cause = exc.__cause__ or exc
        detail = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
        raise ConnectFailed(f"{peer(url)}: {detail}") from None
    except OSError as exc:
        if opened:
            raise
        raise ConnectFailed(f"{peer(url)}: {exc.strerror or exc}") from None
