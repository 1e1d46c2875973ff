"""The TTS simulators' WebSocket server: one sans-I/O session per connection, counted.

:class:`SpeechServer` is what every TTS protocol's server shares (the connection count, the
idle event, the report summed over sessions); a protocol says only how a connection request
is answered (:meth:`SpeechServer.open`: a session, or a :class:`Refusal` before the upgrade).
:class:`TtsServer` is Cartesia's: the path ``/tts/websocket``, the key by ``X-API-Key``,
``Authorization: Bearer`` or ``?api_key=``, the version by ``Cartesia-Version`` or
``?cartesia_version=`` (the query wins), each checked before the upgrade.
"""

from __future__ import annotations

import functools
import itertools
import json
import ssl
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import attrs
import trio

from rtstream.httpserver import Request, Response, Upgrade
from rtstream.websocket import WebSocket
from rtstream.wire.cartesia import read_handshake

from ..websocket import converse, serve
from .protocol import DOC_URL, ContextLimiter, TtsSession
from .settings import TtsSettings

PATH = "/tts/websocket"
MAX_REQUEST_BYTES = 1 << 20
VERSIONS = ("2024-06-10", "2024-11-13", "2025-04-16", "2026-03-01", "2026-08-14")
"""The Cartesia-Version values the simulator accepts (the official SDK 4.2 sends 2026-08-14)."""


@attrs.frozen
class Refusal:
    """A connection request answered with an HTTP error before the upgrade; ``reason`` is the counter key."""

    status: int
    reason: str
    body: bytes
    content_type: bytes = b"application/json"


class SpeechServer:
    """Runs one session per accepted connection and sums what the sessions counted."""

    peer = "tts simulator"

    def __init__(self, settings: TtsSettings) -> None:
        self.settings = settings
        self._numbers = itertools.count()
        self.active = 0
        self._idle = trio.Event()
        self._idle.set()
        self._totals: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()

    def open(self, target: str, headers: Sequence[tuple[bytes, bytes]], number: int) -> Any:
        """The session for a connection request (path with query, headers), or a :class:`Refusal`."""
        raise NotImplementedError

    async def route(self, request: Request) -> Response | Upgrade:
        number = next(self._numbers)
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in request.headers.items()]
        session = self.open(request.target, headers, number)
        if isinstance(session, Refusal):
            self._totals[f"rejected_{session.reason}"] += 1
            return Response(session.status, session.body, session.content_type.decode("latin-1"))
        return Upgrade(functools.partial(self.handle, session), max_message_size=MAX_REQUEST_BYTES)

    async def handle(self, session: Any, ws: WebSocket) -> None:
        self.active += 1
        self._idle = trio.Event()
        try:
            await converse(ws, session, peer=self.peer)
        finally:
            session.close()
            self._count(session.statistics())
            self.active -= 1
            if not self.active:
                self._idle.set()

    def _count(self, stats: Any) -> None:
        totals = self._totals
        totals["connections"] += 1
        for name, value in attrs.asdict(stats, recurse=False).items():
            if name == "errors":
                self._errors.update(value)
            elif name == "network":
                for net_name, net_value in attrs.asdict(value).items():
                    totals[f"net_{net_name}"] += int(net_value)
            elif isinstance(value, int) and not isinstance(value, bool):
                totals[name] += value

    async def wait_idle(self) -> None:
        """Return once no connection is open."""
        await self._idle.wait()

    def report(self) -> dict[str, Any]:
        """What the server did, summed over its connections (those still open not included)."""
        return {
            **dict(sorted(self._totals.items())),
            "active": self.active,
            "errors_sent": dict(sorted(self._errors.items())),
        }


def json_body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


class TtsServer(SpeechServer):
    """The Cartesia TTS simulator: one :class:`TtsSession` per connection on ``/tts/websocket``."""

    def __init__(
        self, settings: TtsSettings, *, api_key: str | None = None, versions: Iterable[str] | None = VERSIONS
    ) -> None:
        super().__init__(settings)
        self._api_key = api_key
        self._versions = None if versions is None else tuple(versions)
        self._limiter = ContextLimiter(settings.max_contexts)

    def open(self, target: str, headers: Sequence[tuple[bytes, bytes]], number: int) -> TtsSession | Refusal:
        path = urlsplit(target).path
        if path != PATH:
            return Refusal(404, "not_found", f"no such endpoint {path}; use {PATH}".encode(), b"text/plain")
        shake = read_handshake(target, headers)
        request_id = f"sim-{number:08d}"
        if self._api_key is not None and shake.api_key != self._api_key:
            return Refusal(
                401,
                "unauthorized",
                _error(401, "unauthorized", "Unauthorized", "invalid or missing API key", request_id),
            )
        if self._versions is not None and shake.version not in self._versions:
            detail = (
                "the Cartesia-Version header or cartesia_version query parameter is required"
                if shake.version is None
                else f"unsupported Cartesia-Version {shake.version!r}; use one of {', '.join(self._versions)}"
            )
            return Refusal(400, "bad_version", _error(400, "invalid_version", "Invalid version", detail, request_id))
        return TtsSession(self.settings, seed=self.settings.seed + number, limiter=self._limiter, request_id=request_id)


def _error(status: int, code: str, title: str, message: str, request_id: str) -> bytes:
    """The body of a refused handshake, in the shape of Cartesia's error messages."""
    return json_body(
        status_code=status, error_code=code, title=title, message=message, doc_url=DOC_URL, request_id=request_id
    )


async def serve_tts(
    settings: TtsSettings,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    server: SpeechServer | None = None,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a TTS simulator (Cartesia unless ``server`` says otherwise) until cancelled; start with the port."""
    server = server or TtsServer(settings)
    await serve(server.route, host, port, ssl_context=ssl_context, task_status=task_status)
