"""What the WebSocket client stages share: backoff with jitter, connecting, naming the peer."""

from __future__ import annotations

import random
from urllib.parse import urlsplit

import trio
from trio_websocket import HandshakeError, WebSocketConnection, connect_websocket_url

MAX_MESSAGE_BYTES = 16 << 20
"""The library's hard bound on one incoming message; stages count smaller oversize limits themselves."""


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


async def connect(
    nursery: trio.Nursery, url: str, *, headers: list[tuple[bytes, bytes]] | None = None, timeout: float
) -> WebSocketConnection:
    """Open a client connection to ``url`` (its reader runs in ``nursery``); ConnectFailed if it cannot be."""
    try:
        with trio.fail_after(timeout):
            return await connect_websocket_url(nursery, url, extra_headers=headers, max_message_size=MAX_MESSAGE_BYTES)
    except trio.TooSlowError:
        raise ConnectFailed(f"{peer(url)}: no connection within {timeout:g} s") from None
    except HandshakeError as exc:
        status = getattr(exc, "status_code", None)
        detail = f"refused with HTTP {status}" if status else str(exc) or type(exc).__name__
        raise ConnectFailed(f"{peer(url)}: {detail}", status) from None
    except OSError as exc:
        raise ConnectFailed(f"{peer(url)}: {exc.strerror or exc}") from None
