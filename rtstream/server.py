"""The media server: routes providers' requests to calls, admits calls, drains on shutdown.

A route is an :class:`Endpoint` at a path. A call endpoint answers the provider's WebSocket
upgrade and runs one call per connection; an answer endpoint answers a webhook (TwiML, Plivo
XML) that sends the provider to a call endpoint. ``/health`` reports whether the server is
accepting, for a load balancer's readiness probe, and the process's load; with a
:class:`rtstream.metrics.Monitor` attached, ``/metrics`` is its Prometheus exposition.

Admission happens before the upgrade, where refusing is cheap and the provider can try another
host: while draining, when ``max_calls`` calls are running, or when one more call would take
the process's load (:mod:`rtstream.load`, sampled by a task of the server) above
``max_load``, the upgrade gets HTTP 503. Every refusal is counted by reason.

Stopping is two-step, like :class:`rtstream.runner.RunControl`: :meth:`Server.drain` stops
admitting calls, lets running calls finish within the drain period, then cancels what is
left; the listeners stay open meanwhile, so a load balancer's ``/health`` probe reads 503
(draining) rather than a refused connection, and close when the last call has ended.
:meth:`Server.abort` cancels every call at once. Either way each call ends through its own
teardown, which closes its WebSocket the provider's way.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
import trio

from .httpserver import Request, Response, Upgrade, serve
from .load import SAMPLE_INTERVAL, Load, sample_load
from .websocket import MAX_MESSAGE_BYTES, WebSocket

log = logging.getLogger(__name__)

HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
KEPT_CALL_REPORTS = 1000
"""Per-call reports kept for the final report; older ones are folded into the totals only."""


class Monitoring(Protocol):
    """What a metrics monitor gives the server: the ``/metrics`` text; it is told of each call's end."""

    async def exposition(self) -> bytes: ...

    def call_ended(self, record: CallRecord) -> None: ...


class Endpoint(Protocol):
    """What serves one path."""

    async def handle(self, request: Request, server: Server) -> Response | Upgrade:
        """Answer ``request`` or upgrade it; call :meth:`Server.admit` before upgrading to a call."""
        ...


class Admission:
    """Which calls may start: none while draining, at most ``max_calls`` at once, none without headroom.

    ``load`` is measured by the server; with its ``max_load`` 0 (the default) it never refuses.
    """

    def __init__(self, max_calls: int, load: Load | None = None) -> None:
        if max_calls < 1:
            raise ValueError(f"max_calls must be at least 1, got {max_calls}")
        self.max_calls = max_calls
        self.load = load if load is not None else Load()
        self.active = 0
        self.admitted = 0
        self.draining = False
        self.refused: Counter[str] = Counter()

    def refusal(self) -> str | None:
        """Why a new call would be refused now (``draining``, ``full``, ``overloaded``), or None."""
        if self.draining:
            return "draining"
        if self.active >= self.max_calls:
            return "full"
        if not self.load.room():
            return "overloaded"
        return None

    def enter(self, now: float) -> str | None:
        """Take a slot for a call starting at ``now``; the refusal (counted) when there is none."""
        reason = self.refusal()
        if reason is not None:
            self.refused[reason] += 1
            return reason
        self.active += 1
        self.admitted += 1
        self.load.reserve(now)
        return None

    def leave(self, admitted: float) -> None:
        """Give back a slot taken by :meth:`enter` at ``admitted``."""
        self.active -= 1
        self.load.release(admitted)

    def health(self) -> tuple[int, dict[str, Any]]:
        """The ``/health`` answer: 200 while accepting, 503 when full, overloaded or draining; the load."""
        reason = self.refusal()
        status = "accepting" if reason is None else reason
        load = self.load.statistics()
        body = {
            "status": status,
            "active_calls": self.active,
            "max_calls": self.max_calls,
            "load": round(load.load, 3),
            "max_load": load.max_load,
            "loop_lag_ms": round(load.loop_lag_ms, 3),
            "loop_lag_max_ms": round(load.loop_lag_max_ms, 3),
            "cpu": round(load.cpu, 3),
        }
        return (200 if reason is None else 503), body


@attrs.frozen
class CallRecord:
    """One finished call, as the server saw it; ``report`` is what the call's endpoint returned."""

    route: str
    peer: str
    outcome: str
    duration: float
    report: Mapping[str, Any]


class Server:
    """Routes, admission and the lifecycle of the calls of one process."""

    def __init__(
        self,
        endpoints: Mapping[str, Endpoint],
        *,
        max_calls: int,
        drain: float = 10.0,
        identity: Mapping[str, Any] | None = None,
        load: Load | None = None,
        sample_interval: float = SAMPLE_INTERVAL,
        cpu_time: Callable[[], float] = time.process_time,
    ) -> None:
        self.endpoints = dict(endpoints)
        self.identity = dict(identity or {})
        """Added to every ``/health`` answer: which worker process answered (``--workers``)."""
        self.admission = Admission(max_calls, load)
        self.load = self.admission.load
        """Sampled every ``sample_interval`` seconds (CPU time from ``cpu_time``) while serving."""
        self._sampling = functools.partial(sample_load, self.load, sample_interval, cpu_time=cpu_time)
        self.drain_period = drain
        self.requests: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.route_outcomes: Counter[tuple[str, str]] = Counter()
        """Calls ended, by (route, outcome): routes come from the config, outcomes from the code."""
        self.active_routes: Counter[str] = Counter()
        self.monitor: Monitoring | None = None
        """Set by :meth:`rtstream.metrics.Monitor.attach`."""
        self.calls: deque[CallRecord] = deque(maxlen=KEPT_CALL_REPORTS)
        self._call_scopes: set[trio.CancelScope] = set()
        self._accepting: trio.CancelScope | None = None
        self._drain_deadline = math.inf
        self._released = trio.Event()

    # ------------------------------------------------------------------ routing

    async def route(self, request: Request) -> Response | Upgrade:
        """The answer to one request (the :data:`rtstream.httpserver.Route` of this server)."""
        if request.path == HEALTH_PATH:
            self.requests["health"] += 1
            status, body = self.admission.health()
            body.update(self.identity)
            return Response(status, (json.dumps(body) + "\n").encode(), content_type="application/json")
        if request.path == METRICS_PATH and self.monitor is not None:
            self.requests["metrics"] += 1
            return Response(200, await self.monitor.exposition(), content_type=METRICS_CONTENT_TYPE)
        endpoint = self.endpoints.get(request.path)
        if endpoint is None:
            self.requests["not_found"] += 1
            return Response.text(404, f"no route for {request.path[:200]!r}")
        return await endpoint.handle(request, self)

    def refuse(self, reason: str, response: Response) -> Response:
        """Count a refused request under ``reason`` and return ``response``."""
        self.admission.refused[reason] += 1
        return response

    def admit(
        self,
        route: str,
        request: Request,
        call: Callable[[WebSocket], Awaitable[tuple[str, Mapping[str, Any]]]],
        *,
        subprotocols: Sequence[str] = (),
        max_message_size: int = MAX_MESSAGE_BYTES,
    ) -> Response | Upgrade:
        """Upgrade to ``call`` if a slot is free, else 503.

        ``call`` runs the call on the open WebSocket and returns its outcome (``completed``,
        ``failed``…) and report; the slot is given back whether it ran or the upgrade failed.
        """
        admitted = trio.current_time()
        reason = self.admission.enter(admitted)
        if reason is not None:
            log.info("%s: call on %s refused (%s)", request.peer, route, reason)
            return Response.text(503, f"not accepting calls ({reason})")

        async def session(ws: WebSocket) -> None:
            started = trio.current_time()
            outcome: str = "failed"
            report: Mapping[str, Any] = {}
            self.active_routes[route] += 1
            try:
                with trio.CancelScope(deadline=self._drain_deadline) as scope:
                    self._call_scopes.add(scope)
                    try:
                        outcome, report = await call(ws)
                    finally:
                        self._call_scopes.discard(scope)
                if scope.cancelled_caught:
                    outcome = "cancelled"
            finally:
                self.active_routes[route] -= 1
                self.outcomes[outcome] += 1
                self.route_outcomes[route, outcome] += 1
                record = CallRecord(route, request.peer, outcome, trio.current_time() - started, report)
                self.calls.append(record)
                if self.monitor is not None:
                    self.monitor.call_ended(record)
                self._release(admitted)

        return Upgrade(
            session,
            subprotocols=tuple(subprotocols),
            max_message_size=max_message_size,
            abandoned=functools.partial(self._release, admitted),
        )

    def _release(self, admitted: float) -> None:
        self.admission.leave(admitted)
        self._released.set()
        self._released = trio.Event()
        if self.admission.draining and not self.admission.active:
            self._stop_accepting()

    def _stop_accepting(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()

    # ------------------------------------------------------------------ lifecycle

    async def serve(
        self, listeners: Sequence[trio.SocketListener], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept until drained or aborted, then return once every call has ended; sample the load meanwhile."""
        async with trio.open_nursery() as sampling:
            await sampling.start(self._sampling)
            async with trio.open_nursery() as calls:
                with trio.CancelScope() as accepting:
                    self._accepting = accepting
                    if self.admission.draining and not self.admission.active:
                        accepting.cancel()
                    await serve(listeners, self.route, handler_nursery=calls, task_status=task_status)
            sampling.cancel_scope.cancel()

    def drain(self) -> None:
        """Admit no more calls; cancel those still running ``drain`` seconds from now; close when none is left."""
        if self.admission.draining:
            return
        self.admission.draining = True
        if not self.admission.active:
            self._stop_accepting()
        self._drain_deadline = trio.current_time() + self.drain_period
        for scope in self._call_scopes:
            scope.deadline = min(scope.deadline, self._drain_deadline)
        log.log(
            logging.WARNING if self.admission.active else logging.INFO,
            "draining: not accepting calls; %d running, ended in at most %.1f s",
            self.admission.active,
            self.drain_period,
        )

    def abort(self) -> None:
        """End every call now."""
        self.admission.draining = True
        self._drain_deadline = -math.inf
        self._stop_accepting()
        for scope in self._call_scopes:
            scope.cancel()

    async def wait_idle(self) -> None:
        """Return when no call is running."""
        while self.admission.active:
            await self._released.wait()

    def report(self) -> dict[str, Any]:
        """What the server did: requests, admissions and refusals, outcomes, and the kept per-call reports."""
        return {
            "max_calls": self.admission.max_calls,
            "admitted": self.admission.admitted,
            "active": self.admission.active,
            "refused": dict(self.admission.refused),
            "load": attrs.asdict(self.load.statistics()),
            "requests": dict(self.requests),
            "outcomes": dict(self.outcomes),
            "calls": [attrs.asdict(c) for c in self.calls],
        }
