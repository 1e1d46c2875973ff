"""What the WebSocket client stages share: connecting, backoff with jitter, naming the peer.

Connections are :mod:`rtstream.websocket`'s: no reader task behind the stage's back, and a
Close frame sent whenever the stage leaves the connection, cancelled or not.

A link fails when its attempts fail in a row, and an attempt has failed unless its connection
carried media: a peer that accepts every handshake and closes at once (or never answers)
must not look like a healthy link whose every connection merely dropped. :class:`Backoff`
counts the failures and forgets them only once media has flowed (for ``settle`` seconds).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Sequence

from rtstream.text import clip, one_line
from rtstream.websocket import CloseReason, HandshakeFailed, WebSocket, connect, peer

__all__ = [
    "MAX_MESSAGE_BYTES",
    "SETTLE",
    "Backoff",
    "ConnectFailed",
    "LinkFailed",
    "ended",
    "open_connection",
    "peer",
]

MAX_MESSAGE_BYTES = 16 << 20
"""The hard bound on one incoming message (closed with 1009); stages count smaller oversize limits themselves."""
SETTLE = 1.0
"""Seconds a connection must carry media before its link counts as healthy again (telephony_ws).

A peer that closes at once still takes the first sends into the kernel's buffer, so one media
message sent proves nothing; a second later it would have been seen to close."""


class ConnectFailed(Exception):
    """A connection could not be opened; the message names the peer (scheme://host:port) and why.

    ``status`` is the HTTP status when the server refused the handshake (401: a bad key).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LinkFailed(Exception):
    """A link's attempts failed in a row, none carrying media; the message says the last failure."""


_JITTER = random.Random()
"""The jitter of every link without an ``rng`` of its own: one generator, not 2.5 KB of state per call."""


class Backoff:
    """Exponential backoff with jitter, and the count of failures in a row that bounds a link's retries.

    Attempt n waits between half and all of ``initial * 2**n``, capped at ``maximum``; after
    ``attempts`` retries have failed too, :meth:`failed` raises LinkFailed. :meth:`carried`
    forgets the failures once the current connection has carried media for ``settle`` seconds.
    """

    def __init__(
        self,
        initial: float,
        maximum: float,
        attempts: int,
        *,
        settle: float = SETTLE,
        rng: random.Random | None = None,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempts = attempts
        self.settle = settle
        self._rng = rng or _JITTER
        self.attempt = 0
        """Failures in a row since media last flowed (the exponent of the next delay)."""
        self._carrying_since: float | None = None

    def connected(self) -> None:
        """A new connection: its media must flow for ``settle`` seconds of its own."""
        self._carrying_since = None

    def carried(self, now: float) -> None:
        """Media crossed the current connection at ``now``."""
        if self._carrying_since is None:
            self._carrying_since = now
        if now - self._carrying_since >= self.settle:
            self.attempt = 0

    def failed(self, why: str) -> float:
        """Count a failed attempt (``why``: one line naming the peer); the delay before the next one.

        LinkFailed when it was the last attempt allowed.
        """
        self._carrying_since = None
        if self.attempt >= self.attempts:
            tries = self.attempt + 1
            raise LinkFailed(f"{why}; gave up after {tries} failed attempt{'s' * (tries != 1)} in a row")
        ceiling = min(self.maximum, self.initial * 2**self.attempt)
        self.attempt += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)


@contextlib.asynccontextmanager
async def open_connection(
    url: str,
    *,
    headers: Sequence[tuple[bytes, bytes]] | None = None,
    timeout: float,
    max_message_size: int = MAX_MESSAGE_BYTES,
) -> AsyncIterator[WebSocket]:
    """A client connection to ``url`` for the body of the block; ConnectFailed if it cannot be opened.

    Leaving the block closes the connection with a Close frame, even when cancelled. Errors
    raised in the body (a ConnectionClosed, say) come out as they are.
    """
    try:
        ws = await connect(
            url,
            headers=[(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers or ()],
            timeout=timeout,
            max_message_size=max_message_size,
        )
    except HandshakeFailed as exc:
        raise ConnectFailed(str(exc), exc.status) from None
    try:
        yield ws
    finally:
        await ws.close()


def ended(url: str, closed: CloseReason | None) -> str:
    """One line for a connection that ended: the peer, who closed it, the code and (cut) reason."""
    if closed is None or closed.code == 1006:
        return f"{peer(url)}: connection lost (1006)"
    reason = f" ({clip(one_line(closed.reason), 80)})" if closed.reason else ""
    return f"{peer(url)}: {'we' if closed.local else 'the peer'} closed the connection with {closed.code}{reason}"
