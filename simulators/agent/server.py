"""The voice-agent simulator's WebSocket server: a thin trio shell around :class:`AgentSession`."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import attrs
import trio

from rtstream.httpserver import Request, Response, Upgrade
from rtstream.stats import Quantiles
from rtstream.websocket import WebSocket
from rtstream.wire.agent import MAX_MESSAGE_BYTES

from ..websocket import converse, serve
from .protocol import AgentSession, AgentSessionStatistics, AgentSettings

PATH = "/agent"


class AgentServer:
    """Accepts connections on :data:`PATH` (``Authorization: Bearer KEY`` when a key is set), one session each."""

    def __init__(self, settings: AgentSettings, *, api_key: str | None = None, report_calls: int = 20) -> None:
        self.settings = settings
        self._api_key = api_key
        self._report_calls = report_calls
        self._numbers = itertools.count()
        self.active = 0
        self._idle = trio.Event()
        self._idle.set()
        self._totals: Counter[str] = Counter()
        self._malformed: Counter[str] = Counter()
        self._latency = Quantiles()
        self.sessions: list[AgentSessionStatistics] = []
        """The first ``report_calls`` sessions that ended."""

    async def route(self, request: Request) -> Response | Upgrade:
        if request.path != PATH:
            return Response(404, f"no such endpoint {request.path}; use {PATH}".encode())
        if self._api_key is not None and _bearer(request) != self._api_key:
            self._totals["rejected_unauthorized"] += 1
            return Response(401, b"invalid or missing API key")
        return Upgrade(self.handle, max_message_size=MAX_MESSAGE_BYTES)

    async def handle(self, ws: WebSocket) -> None:
        number = next(self._numbers)
        session = AgentSession(self.settings, seed=self.settings.seed + number)
        self.active += 1
        self._idle = trio.Event()
        try:
            dropped = await converse(ws, session, peer="agent simulator")
            self._totals["disconnects"] += dropped
        finally:
            self._count(session.statistics())
            self.active -= 1
            if not self.active:
                self._idle.set()

    def _count(self, stats: AgentSessionStatistics) -> None:
        totals = self._totals
        totals["connections"] += 1
        for name in ("turns", "barge_ins", "barge_ins_heard", "reply_bytes_sent", "reply_bytes_dropped"):
            totals[name] += getattr(stats, name)
        totals["stopped"] += stats.stopped
        self._malformed.update(stats.malformed)
        for record in stats.turn_log:
            if record.latency_ms is not None:
                self._latency.add(record.latency_ms)
        if len(self.sessions) < self._report_calls:
            self.sessions.append(stats)

    async def wait_idle(self) -> None:
        """Return once no connection is open."""
        await self._idle.wait()

    def report(self) -> dict[str, Any]:
        """What the agent did, summed over its connections (those still open not included)."""
        return {
            **dict(sorted(self._totals.items())),
            "active": self.active,
            "malformed": dict(sorted(self._malformed.items())),
            "latency_ms": attrs.asdict(self._latency.summary()),
            "calls": [
                {
                    "call_id": s.call_id,
                    "turns": [attrs.asdict(t) for t in s.turn_log],
                    "barge_ins": s.barge_ins,
                    "dtmf": s.dtmf,
                }
                for s in self.sessions
            ],
        }


def _bearer(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key if scheme.lower() == "bearer" else None


async def serve_agent(
    settings: AgentSettings,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    server: AgentServer | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the agent simulator until cancelled; ``task_status.started(port)`` once listening."""
    server = server or AgentServer(settings)
    await serve(server.route, host, port, task_status=task_status)
