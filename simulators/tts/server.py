"""The TTS simulator's WebSocket server: a thin trio shell around :class:`TtsSession`."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import trio
from trio_websocket import WebSocketRequest

from ..websocket import converse, serve
from .protocol import ContextLimiter, TtsSession, TtsSettings

PATH = "/tts/websocket"
MAX_REQUEST_BYTES = 1 << 20


class TtsServer:
    """Accepts connections on the Cartesia path, runs one :class:`TtsSession` per connection."""

    def __init__(self, settings: TtsSettings, *, api_key: str | None = None) -> None:
        self.settings = settings
        self._api_key = api_key
        self._limiter = ContextLimiter(settings.max_contexts)
        self._numbers = itertools.count()
        self.active = 0
        self._idle = trio.Event()
        self._idle.set()
        self._totals: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()

    async def handle(self, request: WebSocketRequest) -> None:
        url = urlsplit(request.path)
        if url.path != PATH:
            await request.reject(404, body=f"no such endpoint {url.path}; use {PATH}".encode())
            return
        if self._api_key is not None and _api_key(request) != self._api_key:
            self._totals["rejected_unauthorized"] += 1
            await request.reject(401, body=b"invalid or missing API key")
            return
        ws = await request.accept()
        number = next(self._numbers)
        session = TtsSession(self.settings, seed=self.settings.seed + number, limiter=self._limiter)
        self.active += 1
        self._idle = trio.Event()
        try:
            await converse(ws, session, peer="tts simulator")
        finally:
            session.close()
            self._count(session)
            self.active -= 1
            if not self.active:
                self._idle.set()

    def _count(self, session: TtsSession) -> None:
        stats = session.statistics()
        totals = self._totals
        totals["connections"] += 1
        for name in (
            "requests",
            "contexts_opened",
            "contexts_done",
            "contexts_cancelled",
            "contexts_expired",
            "chunks",
            "audio_bytes",
        ):
            totals[name] += getattr(stats, name)
        for name, value in attrs.asdict(stats.network).items():
            totals[f"net_{name}"] += int(value)
        self._errors.update(stats.errors)

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


def _api_key(request: WebSocketRequest) -> str | None:
    for name, value in request.headers:
        if name.lower() == b"x-api-key":
            return value.decode("latin-1")
    keys = parse_qs(urlsplit(request.path).query).get("api_key")
    return keys[0] if keys else None


async def serve_tts(
    settings: TtsSettings,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    server: TtsServer | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the TTS simulator until cancelled; ``task_status.started(port)`` once listening."""
    server = server or TtsServer(settings)
    await serve(server.handle, host, port, max_message_size=MAX_REQUEST_BYTES, task_status=task_status)
