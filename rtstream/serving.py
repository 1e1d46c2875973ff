"""Serving a file's calls: in one process, in N worker processes, or beside a run's pipelines.

``rtstream serve`` runs :func:`serve_process` (one trio loop) or, with ``--workers``,
:func:`serve_workers` (a parent that supervises N such processes on one port). ``rtstream run``
of a file with calls runs :func:`run_beside_server`: the server on a loopback port, the
services that dial it (the caller simulator) and the standalone pipelines, until the dialers
and pipelines are done; then the server drains.

Signals work the same everywhere: the first Ctrl-C or SIGTERM drains (no new calls, running
ones get the drain period), a second ends everything at once.
"""

from __future__ import annotations

import logging
import signal
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from .callrun import call_runner
from .calls import CallSettings, ServerSettings, server_variables
from .config import Config
from .httpserver import bound_port
from .live import open_monitoring, show_workers
from .load import Load
from .pipeline import Endpoints, Pipeline
from .report import RunReport
from .routes import call_routes
from .runner import LOOPBACK, STOP_SIGNALS, RunControl, open_services, run_pipelines
from .server import HEALTH_PATH, Server
from .service import Service
from .workers import Supervisor, merge_reports, read_reports

log = logging.getLogger(__name__)


def build_server(
    config: Config,
    endpoints: Endpoints,
    server: Mapping[str, str],
    settings: ServerSettings,
    *,
    identity: Mapping[str, Any] | None = None,
    admit_by_load: bool = True,
) -> Server:
    """The server for ``config``'s call templates, each call run by :func:`~rtstream.callrun.call_runner`.

    Without ``admit_by_load`` the load is measured and reported but refuses nothing: ``rtstream
    run`` serves beside its own simulators and pipelines, whose load is the harness's, not the calls'.
    """
    routes = call_routes(config.calls, call_runner(config, endpoints, server), public_url=settings.public_url)
    load = Load(settings.max_load if admit_by_load else 0.0, settings.lag_budget_ms / 1000)
    return Server(routes, max_calls=settings.max_calls, drain=settings.drain, identity=identity, load=load)


def describe_routes(calls: Mapping[str, CallSettings]) -> tuple[str, str]:
    """``("N routes", "calls /a, /b; answers /a/answer; health /health")``, for the readiness line."""
    paths = [c.path for c in calls.values()]
    answers = [c.answer for c in calls.values() if c.answer is not None]
    parts = [f"calls {', '.join(paths)}"]
    if answers:
        parts.append(f"answers {', '.join(answers)}")
    parts.append(f"health {HEALTH_PATH}")
    count = len(paths) + len(answers)
    return f"{count} route{'' if count == 1 else 's'}", "; ".join(parts)


async def _drain_on_signals(
    server: Server, signals: Sequence[int], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.open_signal_receiver(*signals) as received:
        task_status.started()
        async for signum in received:
            name = signal.Signals(signum).name
            if server.admission.draining:
                log.warning("%s again: ending every call now", name)
                server.abort()
            else:
                log.warning("%s: draining (again to end every call now)", name)
                server.drain()


async def serve_process(
    config: Config,
    services: Mapping[str, Service],
    settings: ServerSettings,
    listener: trio.SocketListener,
    *,
    ready: Callable[[int], None],
    identity: Mapping[str, Any] | None = None,
    signals: Sequence[int] = STOP_SIGNALS,
    live: bool = False,
    worker: int | None = None,
    metrics_dir: str | None = None,
) -> dict[str, Any]:
    """Serve ``config``'s calls on ``listener`` until a signal drains the server; return the report.

    ``services`` (the simulators the calls' pipelines use) start first, on loopback;
    ``ready(port)`` is called once the server accepts. The server answers ``/metrics`` and
    reports its load in ``/health``; with ``live``, stderr shows the live view. A ``worker``
    shares its metrics through ``metrics_dir``, so a scrape of any worker sees all of them.
    """
    port = bound_port(listener)
    async with open_services(services, host=LOOPBACK) as endpoints:
        variables = server_variables(settings.host, port, settings.public_url)
        server = build_server(config, endpoints, variables, settings, identity=identity)
        monitoring = open_monitoring(server, services=services, worker=worker, shared_dir=metrics_dir, live=live)
        async with monitoring, trio.open_nursery() as nursery:
            await nursery.start(_drain_on_signals, server, signals)

            async def serving(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                await server.serve([listener], task_status=task_status)
                nursery.cancel_scope.cancel()

            await nursery.start(serving)
            ready(port)
    reports = {name: s.report() for name, s in services.items()}
    return {"server": server.report(), "services": {name: r for name, r in reports.items() if r is not None}}


async def serve_workers(
    count: int, command: Callable[[int, Path], list[str]], *, ready: Callable[[], None], live: bool = False
) -> dict[str, Any]:
    """Run ``count`` workers under a :class:`Supervisor` until a signal; return their merged report.

    The first Ctrl-C or SIGTERM is passed to every worker as SIGTERM (each drains), a second
    likewise (each ends its calls). Workers ignore SIGINT themselves, so a Ctrl-C that the
    terminal sends to the whole process group reaches them once, through here. The workers
    share their metrics in :func:`metrics_dir` of their reports' folder; with ``live`` the
    parent shows all of them on stderr.
    """
    with tempfile.TemporaryDirectory(prefix="rtstream-workers-") as directory:
        supervisor = Supervisor(count, command, Path(directory))
        metrics_dir(Path(directory)).mkdir()
        async with trio.open_nursery() as nursery:
            await nursery.start(_forward_signals, supervisor)
            if live:
                nursery.start_soon(show_workers, metrics_dir(Path(directory)))

            async def supervising(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                await supervisor.run(task_status=task_status)
                nursery.cancel_scope.cancel()

            await nursery.start(supervising)
            ready()
        reports = read_reports([supervisor.report_path(i) for i in range(count)])
    merged = merge_reports([r["server"] for r in reports])
    merged["restarts"] = supervisor.restarts
    merged["admitted_per_worker"] = [r["server"]["admitted"] for r in reports]  # how evenly the kernel spread them
    services = {f"{name}#{index}": report for index, r in enumerate(reports) for name, report in r["services"].items()}
    return {"server": merged, "services": services}


def metrics_dir(reports: Path) -> Path:
    """Where the workers whose reports go to ``reports`` share their metrics."""
    return reports / "metrics"


async def _forward_signals(
    supervisor: Supervisor, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.open_signal_receiver(*STOP_SIGNALS) as received:
        task_status.started()
        async for signum in received:
            log.warning("%s: passing SIGTERM to the workers", signal.Signals(signum).name)
            supervisor.stop(signal.SIGTERM)


class _Stopper:
    """Stops a run that serves calls: :meth:`stop` drains, :meth:`abort` ends everything."""

    def __init__(self, control: RunControl, server: Server, dialing: trio.CancelScope) -> None:
        self.control = control
        self.server = server
        self.dialing = dialing

    def stop(self) -> None:
        """Stop the sources, drain the server; end the dialers a grace period after the server ends its calls.

        The dialers outlast the drain so that the calls end the server's way (the provider's
        close), not by the simulated provider hanging up at the same moment.
        """
        if self.control.stopping:
            return
        self.control.stop()
        self.server.drain()
        end = trio.current_time() + self.server.drain_period + self.control.grace
        self.dialing.deadline = min(self.dialing.deadline, end)

    def abort(self) -> None:
        self.control.abort()
        self.server.abort()
        self.dialing.cancel()


async def _stop_on(
    stopper: _Stopper, duration: float | None, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Stop after ``duration`` or at the first signal; abort at a signal after that."""

    async def stop_after(seconds: float) -> None:
        await trio.sleep(seconds)
        log.info("stopping after %.1f s", seconds)
        stopper.stop()

    async with trio.open_nursery() as nursery:
        if duration is not None:
            nursery.start_soon(stop_after, duration)
        with trio.open_signal_receiver(*STOP_SIGNALS) as received:
            task_status.started()
            async for signum in received:
                name = signal.Signals(signum).name
                if stopper.control.stopping:
                    log.warning("%s again: ending everything now", name)
                    stopper.abort()
                else:
                    log.warning("%s: stopping the sources and draining the calls (again to end now)", name)
                    stopper.stop()


async def run_beside_server(
    server: Server,
    listener: trio.SocketListener,
    pipelines: Sequence[Pipeline],
    dialers: Mapping[str, Service],
    *,
    grace: float,
    duration: float | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> RunReport:
    """Serve on ``listener`` while ``dialers`` place their calls and ``pipelines`` run; then drain.

    ``task_status.started()`` once the server accepts, every dialer has begun and every
    pipeline has started. The report holds the pipelines and the server's calls.
    """
    control = RunControl(grace)
    reports: list[RunReport] = []

    async def run_standalone(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        reports.append(await run_pipelines(pipelines, control=control, task_status=task_status))

    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, [listener])
        dialing = trio.CancelScope()
        stopper = _Stopper(control, server, dialing)
        await nursery.start(_stop_on, stopper, duration)
        async with trio.open_nursery() as jobs:
            await jobs.start(run_standalone)

            async def dial(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                with dialing:
                    async with trio.open_nursery() as dialler_nursery:
                        for dialer in dialers.values():
                            await dialler_nursery.start(dialer.run)
                        task_status.started()

            await jobs.start(dial)
            task_status.started()
        server.drain()
        await server.wait_idle()
        nursery.cancel_scope.cancel()
    return RunReport(reports[0].pipelines, server=server.report())
