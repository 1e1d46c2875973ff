"""The ``rtstream`` command: run, serve, validate, simulate, stages, inspect."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import attrs
import click

from . import __version__, registry
from .calls import ServerSettings, current_call, server_variables, validation_call
from .config import Config, PipelineSpec, ServiceSpec, load_config, parse_toml, service_spec
from .errors import ConfigError
from .params import ParamError, ParamInfo, output_path_problem
from .pipeline import Endpoints, Pipeline, build_pipeline, build_service
from .realtime import quiet_gc
from .redact import RedactingFormatter, clean
from .report import format_fields, plain
from .service import Service
from .stats import fields_of

if TYPE_CHECKING:
    import trio

LOOPBACK = "127.0.0.1"
PLACEHOLDER_PORT = 1
"""The port in the addresses stages are checked with before the services listen (0 is no port to dial)."""
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)


class Problem(click.ClickException):
    """A usage or configuration error: one line on stderr (secrets redacted), exit status 2."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(clean(message))


@attrs.frozen
class _Plan:
    """A checked pipelines file: the chosen pipelines, whether its calls are served, the services to start."""

    config: Config
    specs: list[PipelineSpec]
    """The pipelines that run on their own."""
    services: dict[str, Service]
    """The services that listen and that the chosen pipelines (and served calls) use."""
    calls: bool = False
    """The file's calls are served (``serve``, and ``run`` when no pipeline is named)."""
    dialers: dict[str, ServiceSpec] = attrs.field(factory=dict)
    """Services that dial the server (a caller), built once the server's address is known."""

    def pipelines(
        self, endpoints: Endpoints, instances: int = 1, server: dict[str, str] | None = None
    ) -> list[Pipeline]:
        return [
            build_pipeline(spec, file=self.config.file, instance=k, endpoints=endpoints, server=server)
            for spec in self.specs
            for k in range(1, instances + 1)
        ]

    def call_pipelines(self, endpoints: Endpoints, server: dict[str, str]) -> dict[str, list[Pipeline]]:
        """Per call template, its pipelines built as for a call of it (placeholder ids, the template's format)."""
        built = {}
        for name, settings in self.config.calls.items():
            try:
                with current_call(validation_call(name, settings)) as call:
                    built[name] = [
                        build_pipeline(
                            self.config.pipelines[p], endpoints=endpoints, call=call.variables(), server=server
                        )
                        for p in settings.pipelines
                    ]
            except ConfigError as exc:
                raise exc.located(file=self.config.file, call=name) from None
        return built

    def build_dialers(self, server: dict[str, str]) -> dict[str, Service]:
        return {name: build_service(spec, file=self.config.file, server=server) for name, spec in self.dialers.items()}

    def placeholder_endpoints(self) -> dict[str, dict[str, str]]:
        """Addresses for checking the stages before the services listen."""
        return {name: service.endpoints(LOOPBACK, PLACEHOLDER_PORT) for name, service in self.services.items()}


PLACEHOLDER_SERVER = server_variables(LOOPBACK, PLACEHOLDER_PORT)
"""The server's address that stages and callers are checked with before it listens."""


def _plan(file: str, names: tuple[str, ...] = (), instances: int = 1, *, serve: bool = False) -> _Plan:
    """Everything in FILE checked (services, pipelines, calls), or a Problem naming what is wrong.

    ``serve``: only the calls (``rtstream serve``); otherwise the chosen pipelines, and the calls
    with the services that dial them when no pipeline is named.
    """
    try:
        config = load_config(file)
        if serve and not config.calls:
            raise ConfigError("declares no calls to serve; add a [calls.NAME] table", file=config.file)
        specs = [] if serve else config.select(names)
        calls = serve or (not names and config.server is not None)
        placeholder = PLACEHOLDER_SERVER if config.server is not None else None
        in_calls = [config.pipelines[p] for c in config.calls.values() for p in c.pipelines] if calls else []
        used = {name for spec in [*specs, *in_calls] for name in spec.services}
        built = {  # with pipelines named, only the services they use are checked and started
            name: build_service(spec, file=config.file, server=placeholder)
            for name, spec in config.services.items()
            if not names or name in used
        }
        plan = _Plan(
            config,
            specs,
            {name: s for name, s in built.items() if name in used and not s.dials},
            calls=calls,
            dialers={n: config.services[n] for n, s in built.items() if s.dials and calls and not serve},
        )
        plan.pipelines(plan.placeholder_endpoints(), instances, server=placeholder)
        if calls:
            plan.call_pipelines(plan.placeholder_endpoints(), PLACEHOLDER_SERVER)
    except ConfigError as exc:
        raise Problem(str(exc)) from None
    return plan


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rtstream")
@click.option(
    "--log-level",
    type=LOG_LEVELS,
    default="warning",
    show_default=True,
    help="How much to log (to stderr).",
)
def main(log_level: str) -> None:
    """Stream real-time voice audio between speech services and telephony."""
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    for handler in logging.getLogger().handlers:  # every record, the libraries' too, redacted and on one line
        if not isinstance(handler.formatter, RedactingFormatter):
            handler.setFormatter(RedactingFormatter(LOG_FORMAT))


pipeline_option = click.option(
    "-p", "--pipeline", "names", multiple=True, metavar="NAME", help="Only this pipeline (repeatable); all by default."
)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@pipeline_option
@click.option(
    "--instances",
    type=click.IntRange(1, 100_000),
    default=1,
    show_default=True,
    help="Copies of each pipeline, run concurrently (one per call).",
)
@click.option("--duration", type=click.FloatRange(0, min_open=True), help="Stop the sources after this many seconds.")
@click.option(
    "--grace",
    type=click.FloatRange(0),
    default=2.0,
    show_default=True,
    help="Seconds to drain after a stop before cancelling.",
)
@click.option(
    "--report", "report_path", type=click.Path(dir_okay=False), help="Also write the run report as JSON to this file."
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve Prometheus /metrics (and /health) on this loopback port during the run (0: a free one).",
)
@click.option("-q", "--quiet", is_flag=True, help="No live status on stderr (the report is still printed).")
def run(
    file: str,
    names: tuple[str, ...],
    instances: int,
    duration: float | None,
    grace: float,
    report_path: str | None,
    metrics_port: int | None,
    quiet: bool,
) -> NoReturn:
    """Run the pipelines of FILE and print a report.

    A file with calls also serves them, offline: the services that listen start first, then
    the server on a free loopback port (``${server.url}``), then the services that dial it (a
    caller) beside the pipelines; once the dialers and pipelines are done the server drains.
    Naming pipelines (-p) runs only those.

    Ctrl-C or SIGTERM stops the sources and lets the rest drain for the grace period (calls:
    the server's drain period); a second one cancels at once. The report is printed (and
    written) either way. While it runs, stderr shows a live status: a table on a terminal, a
    line every few seconds otherwise.
    """
    import trio

    from .httpserver import bound_port, open_listener
    from .issues import receiver_issues
    from .live import open_monitoring
    from .metrics import Monitor, serve_metrics
    from .report import RunReport, format_text
    from .runner import open_services, run_pipelines
    from .serving import build_server, run_beside_server

    plan = _plan(file, names, instances)
    if report_path:
        _check_writable(report_path)

    async def run_all() -> RunReport | ConfigError:
        async with open_monitoring(services=plan.services, live=not quiet) as monitor, trio.open_nursery() as nursery:
            if metrics_port is not None:
                port = await nursery.start(serve_metrics, monitor, LOOPBACK, metrics_port)
                print(f"metrics on http://{LOOPBACK}:{port}/metrics", file=sys.stderr, flush=True)
            result = await run_monitored(monitor)
            nursery.cancel_scope.cancel()
            return result

    async def run_monitored(monitor: Monitor) -> RunReport | ConfigError:
        async with open_services(plan.services, host=LOOPBACK, grace=grace) as endpoints:
            if not plan.calls:
                try:
                    pipelines = plan.pipelines(endpoints, instances)
                except ConfigError as exc:
                    return exc
                report = await run_pipelines(
                    pipelines,
                    grace=grace,
                    stop_after=duration,
                    handle_signals=True,
                    task_status=_Running(len(pipelines)),
                )
                dialers: dict[str, Service] = {}
            else:
                listener = await open_listener(LOOPBACK, 0)
                variables = server_variables(LOOPBACK, bound_port(listener))
                try:
                    pipelines = plan.pipelines(endpoints, instances, server=variables)
                    dialers = plan.build_dialers(variables)
                except ConfigError as exc:
                    return exc
                assert plan.config.server is not None
                settings = attrs.evolve(plan.config.server, host=LOOPBACK, public_url=None)
                server = build_server(plan.config, endpoints, variables, settings, admit_by_load=False)
                monitor.attach(server)
                ready = _Running(len(pipelines), dialers=len(dialers), url=variables["url"])
                report = await run_beside_server(
                    server, listener, pipelines, dialers, grace=grace, duration=duration, task_status=ready
                )
        services = {**plan.services, **dialers}
        reports = {name: r for name, service in services.items() if (r := service.report()) is not None}
        found = {name: tuple(receiver_issues(f"service '{name}'", r)) for name, r in reports.items()}
        issues = {name: seen for name, seen in found.items() if seen}
        return attrs.evolve(report, services=reports, issues=issues)

    with quiet_gc():
        report = trio.run(run_all)
    if isinstance(report, ConfigError):
        raise Problem(str(report))
    click.echo(format_text(report))
    if report_path:
        _write_report(report_path, report.to_json())
    sys.exit(1 if report.failed else 0)


class _Running:
    """Says on stderr, once everything has started, that the run is under way (scripts wait for it)."""

    def __init__(self, count: int, *, dialers: int = 0, url: str | None = None) -> None:
        self.count = count
        self.dialers = dialers
        self.url = url

    def started(self, value: None = None) -> None:
        what = f"{self.count} pipeline{'' if self.count == 1 else 's'}"
        if self.url is not None:
            what += f" and {self.dialers} dialer{'' if self.dialers == 1 else 's'}, serving calls on {self.url}"
        message = f"running {what}; Ctrl-C stops the sources and drains, twice cancels"
        print(message, file=sys.stderr, flush=True)  # through the live view's stderr (click.echo would go around it)


def _check_writable(path: str) -> None:
    """Before the run: the report's path can be written (a Problem, exit 2, if not)."""
    problem = output_path_problem(path)
    if problem is not None:
        raise Problem(f"--report: {problem}")


def _write_report(path: str, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: a temporary file beside it, renamed over it."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)  # as open() would have made it, not mkstemp's 0600
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as exc:
        click.echo(clean(f"Error: cannot write the report to {path}: {exc.strerror or exc}"), err=True)
        sys.exit(1)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--host", help="Address to listen on (default: [server] host, else 127.0.0.1); 0.0.0.0 for all.")
@click.option("--port", type=click.IntRange(0, 65535), help="Port for HTTP and WebSocket (default: [server] port).")
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Server processes on the one port (SO_REUSEPORT), restarted if they die.",
)
@click.option("--drain", type=click.FloatRange(0, 3600), help="Seconds calls may finish after the first signal.")
@click.option("--max-calls", type=click.IntRange(1, 100_000), help="Calls at once per process; more get HTTP 503.")
@click.option(
    "--max-load",
    type=float,
    help="Refuse calls when one more would take the load above this (default: [server] max_load, 0.7); 0: off.",
)
@click.option("--public-url", help="The https:// address providers reach this server by (a proxy or tunnel).")
@click.option(
    "--report", "report_path", type=click.Path(dir_okay=False), help="Also write the report as JSON to this file."
)
@click.option("--log-level", type=LOG_LEVELS, help="How much to log (to stderr); overrides the global option.")
@click.option("-q", "--quiet", is_flag=True, help="No live status on stderr.")
@click.option("--reuse-port", is_flag=True, hidden=True)
@click.option("--worker-index", type=click.IntRange(0), hidden=True)
@click.option("--metrics-dir", type=click.Path(file_okay=False), hidden=True)
def serve(
    file: str,
    host: str | None,
    port: int | None,
    workers: int,
    drain: float | None,
    max_calls: int | None,
    max_load: float | None,
    public_url: str | None,
    report_path: str | None,
    log_level: str | None,
    quiet: bool,
    reuse_port: bool,
    worker_index: int | None,
    metrics_dir: str | None,
) -> None:
    """Serve the calls of FILE: the providers' media WebSockets, answer webhooks and /health.

    Prints one line on stdout once it accepts calls. The first Ctrl-C or SIGTERM stops
    accepting and lets calls finish within the drain period, a second ends them at once;
    then the report is printed (and written).
    """
    from .report import format_server

    if log_level:
        logging.getLogger().setLevel(log_level.upper())
    plan = _plan(file, serve=True)
    assert plan.config.server is not None
    overrides: dict[str, Any] = {
        "host": host,
        "port": port,
        "drain": drain,
        "max_calls": max_calls,
        "max_load": max_load,
        "public_url": public_url,
    }
    try:
        settings = attrs.evolve(plan.config.server, **{k: v for k, v in overrides.items() if v is not None})
    except ParamError as exc:
        raise Problem(f"--{exc.key.replace('_', '-')}: {exc.message}") from None
    if report_path:
        _check_writable(report_path)
    if worker_index is None:
        _warn_unsigned(plan.config)
    if workers > 1:
        report = _serve_workers(file, plan, settings, workers, quiet=quiet)
    else:
        report = _serve_one(
            plan, settings, reuse_port=reuse_port, worker_index=worker_index, quiet=quiet, metrics_dir=metrics_dir
        )
    if worker_index is None:  # a worker's stdout carries its readiness line only: its parent prints
        lines = format_server(report["server"])
        for name, service_report in report["services"].items():
            lines += [f"service '{name}'", *format_fields(service_report, indent="    ")]
        click.echo("\n".join(clean(line) for line in lines))
    if report_path:
        _write_report(report_path, json.dumps(plain(report), indent=2, allow_nan=False))


def _warn_unsigned(config: Config) -> None:
    """Say which routes take calls nobody signed: anyone who finds the URL can open one."""
    from .routes import SIGNING_PROTOCOLS

    for name, call in config.calls.items():
        if call.protocol in SIGNING_PROTOCOLS and (not call.auth_token or not call.verify):
            logging.getLogger(__name__).warning(
                "calls.%s: %s's request signatures are not checked (no auth_token, or verify = false)",
                name,
                call.protocol,
            )


def _announce(plan: _Plan, settings: ServerSettings, port: int, extra: str = "") -> None:
    """The readiness line on stdout, flushed: scripts and the workers' parent wait for it."""
    from .serving import describe_routes

    count, listed = describe_routes(plan.config.calls)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    click.echo(clean(f"serving {count} on http://{host}:{port}{extra} ({listed})"))
    sys.stdout.flush()


def _serve_one(
    plan: _Plan,
    settings: ServerSettings,
    *,
    reuse_port: bool,
    worker_index: int | None,
    quiet: bool = False,
    metrics_dir: str | None = None,
) -> dict[str, Any]:
    """Serve in this process until drained; a worker (``worker_index``) answers only SIGTERM."""
    import trio

    from .httpserver import open_listener
    from .runner import STOP_SIGNALS
    from .serving import serve_process

    worker = worker_index is not None

    async def serve() -> dict[str, Any] | str:
        try:
            listener = await open_listener(settings.host, settings.port, reuse_port=reuse_port)
        except OSError as exc:
            return f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
        return await serve_process(
            plan.config,
            plan.services,
            settings,
            listener,
            ready=lambda port: _announce(plan, settings, port),
            identity={"worker": worker_index, "pid": os.getpid()} if worker else None,
            signals=(signal.SIGTERM,) if worker else STOP_SIGNALS,
            live=not (worker or quiet),
            worker=worker_index,
            metrics_dir=metrics_dir,
        )

    if worker:  # the parent passes the terminal's Ctrl-C on as SIGTERM: once, not twice
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    with quiet_gc():
        outcome = trio.run(serve)
    if isinstance(outcome, str):
        raise Problem(outcome)
    return outcome


def _serve_workers(file: str, plan: _Plan, settings: ServerSettings, workers: int, *, quiet: bool) -> dict[str, Any]:
    """Hold the port and run ``workers`` copies of ``rtstream serve FILE`` on it; their merged report."""
    import trio

    from .serving import metrics_dir, serve_workers
    from .workers import reserve_port, worker_command

    try:
        reserved = reserve_port(settings.host, settings.port)
    except OSError as exc:
        raise Problem(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}") from None
    port = reserved.getsockname()[1]
    level = logging.getLevelName(logging.getLogger().level).lower()

    def command(index: int, report: Path) -> list[str]:
        argv = ["serve", file, "--host", settings.host, "--port", str(port), "--drain", str(settings.drain)]
        argv += ["--max-calls", str(settings.max_calls), "--max-load", repr(settings.max_load)]
        argv += ["--reuse-port", "--worker-index", str(index)]
        argv += ["--report", str(report), "--log-level", level, "--metrics-dir", str(metrics_dir(report.parent))]
        if settings.public_url:
            argv += ["--public-url", settings.public_url]
        return worker_command(argv)

    with reserved, quiet_gc():
        return trio.run(
            lambda: serve_workers(
                workers,
                command,
                ready=lambda: _announce(plan, settings, port, f" with {workers} workers"),
                live=not quiet,
            )
        )


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@pipeline_option
def validate(file: str, names: tuple[str, ...]) -> None:
    """Check FILE (services, parameters, stage order, formats, calls) without running anything.

    Each call template's pipelines are built as for one of its calls, in the template's
    protocol and format; -p checks only the named pipelines.
    """
    plan = _plan(file, names)
    for pipeline in plan.pipelines(plan.placeholder_endpoints(), server=PLACEHOLDER_SERVER):
        click.echo(clean(f"pipeline '{pipeline.name}' ok: {_chain(pipeline)}"))
    if not plan.calls:
        return
    for name, pipelines in plan.call_pipelines(plan.placeholder_endpoints(), PLACEHOLDER_SERVER).items():
        settings = plan.config.calls[name]
        answer = f", answer {settings.answer}" if settings.answer else ""
        listed = ", ".join(settings.pipelines)
        where = f"{settings.path} ({settings.protocol}, {settings.format}){answer}"
        click.echo(clean(f"call '{name}' ok: {where}: pipelines {listed}"))
        for pipeline in pipelines:
            click.echo(clean(f"  pipeline '{pipeline.name}' ok: {_chain(pipeline)}"))


def _chain(pipeline: Pipeline) -> str:
    """The stages of a built pipeline with the format of each edge."""
    return " -> ".join(
        f"{ref.label or ref.type}" + (f" [{edge}]" if edge is not None else "")
        for ref, edge in zip(pipeline.refs, [*pipeline.edges, None], strict=True)
    )


@main.command()
@click.option("--klass", default="", metavar="PREFIX", help="Only stages whose klass starts with PREFIX (e.g. Filter).")
def stages(klass: str) -> None:
    """List the registered stage types."""
    found = [s for s in registry.stages() if s.klass.lower().startswith(klass.lower())]
    if not found:
        raise Problem(f"no stage has a klass starting with '{klass}'")
    width = max(len(s.name) for s in found)
    kwidth = max(len(s.klass) for s in found)
    for info in found:
        click.echo(f"{info.name:<{width}}  {info.klass:<{kwidth}}  {info.description}")


@main.command()
@click.argument("service_type", required=False, metavar="[TYPE]")
@click.argument("settings", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--host", default=LOOPBACK, show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="Port to listen on; 0 takes a free one."
)
@click.option(
    "--duration", type=click.FloatRange(0, min_open=True), help="Stop after this many seconds (default: at Ctrl-C)."
)
@click.option(
    "--report", "report_path", type=click.Path(dir_okay=False), help="Also write the report as JSON to this file."
)
def simulate(
    service_type: str | None,
    settings: tuple[str, ...],
    host: str,
    port: int,
    duration: float | None,
    report_path: str | None,
) -> None:
    """Run one service (a simulator) alone until Ctrl-C or SIGTERM, then print its report.

    Settings are the service's parameters as KEY=VALUE with TOML values, e.g.
    'rtstream simulate telephony protocol=twilio' or 'rtstream simulate tts rtf=1 pattern=[320,640]';
    'rtstream inspect TYPE' lists them. With no TYPE, list the service types. A service that
    dials (caller) runs until its calls end instead, and a bare URL is what it dials:
    'rtstream simulate caller ws://127.0.0.1:8080/twilio protocol=twilio calls=5 rate=2'.
    """
    import trio

    from .runner import STOP_SIGNALS

    if service_type is None:
        for info in registry.services():
            click.echo(f"{info.name:<12}  {info.description}")
        return
    try:
        registry.get_service(service_type)
        service = build_service(service_spec(service_type, {"type": service_type, **_key_values(settings)}))
    except (registry.UnknownService, ConfigError) as exc:
        raise Problem(str(exc)) from None
    if report_path:
        _check_writable(report_path)

    async def dial() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(_stop_on_signal, nursery.cancel_scope)
            click.echo(f"{service_type} dialling (Ctrl-C stops it)")
            sys.stdout.flush()
            with trio.move_on_after(duration or math.inf):
                await service.run()
            nursery.cancel_scope.cancel()

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(service.serve, host, port)
            click.echo(f"{service_type} listening on {service.endpoints(host, bound)['url']} (Ctrl-C stops it)")
            sys.stdout.flush()
            with trio.open_signal_receiver(*STOP_SIGNALS) as signals, trio.move_on_after(duration or math.inf):
                async for _ in signals:
                    break
            nursery.cancel_scope.cancel()

    with quiet_gc():
        trio.run(dial if service.dials else serve)
    report = service.report()
    if report is not None:
        click.echo(f"{service_type} report")
        click.echo("\n".join(format_fields(report, indent="    ")))
        if report_path:
            _write_report(report_path, json.dumps(plain(report), indent=2, allow_nan=False))


async def _stop_on_signal(scope: trio.CancelScope, *, task_status: trio.TaskStatus[None]) -> None:
    """Cancel ``scope`` at the first Ctrl-C or SIGTERM (watching from when it has started)."""
    import trio

    from .runner import STOP_SIGNALS

    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        task_status.started()
        async for _ in signals:
            scope.cancel()
            return


def _key_values(settings: tuple[str, ...]) -> dict[str, Any]:
    """KEY=VALUE words as a table; a value is read as TOML, or as a bare string if it is not TOML.

    A bare ws:// or wss:// URL is the ``url`` setting (what a dialing service dials).
    """
    table: dict[str, Any] = {}
    for word in settings:
        if word.startswith(("ws://", "wss://")):
            table["url"] = word
            continue
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise Problem(f"'{word}' is not a setting; write KEY=VALUE")
        try:
            table[key] = parse_toml(f"v = {value}")["v"]
        except ConfigError:
            table[key] = value
    return table


@main.command()
@click.argument("name", metavar="TYPE")
def inspect(name: str) -> None:
    """Describe a stage type (klass, formats, parameters) or a service type."""
    try:
        info = registry.get(name)
    except registry.UnknownStage as exc:
        try:
            service = registry.get_service(name)
        except registry.UnknownService:
            raise Problem(str(exc)) from None
        click.echo(f"{service.name} (Service, from {service.origin})")
        click.echo(f"  {service.description}")
        _echo_params(service.params)
        return
    cls = info.cls
    click.echo(f"{info.name} ({info.klass}, from {info.origin})")
    click.echo(f"  {info.description}")
    click.echo("")
    click.echo("Formats")
    if cls.role != "source":
        click.echo(f"  accepts:  {cls.accepts}")
    if cls.role != "sink":
        click.echo(f"  produces: {'the format it receives' if cls.produces is None else cls.produces}")
    if cls.frames_help:
        click.echo(f"  frames:   {cls.frames_help}")
    _echo_params(info.params)
    _echo_statistics(cls.statistics_type)


def _echo_statistics(record: type | None) -> None:
    click.echo("")
    click.echo("Statistics")
    if record is None:
        click.echo("  (none declared)")
        return
    for field in fields_of(record):
        inner = field.name.partition(".")[2]
        if inner:
            click.echo(f"      .{inner} ({field.type}): {field.help}")
        else:
            click.echo(f"  {field.name} ({field.type})")
            click.echo(f"      {field.help}")


def _echo_params(params: list[ParamInfo]) -> None:
    click.echo("")
    click.echo("Parameters")
    if not params:
        click.echo("  (none)")
    for p in params:
        default = "required" if p.default is None else f"default {p.default}"
        unit = f" {p.unit}" if p.unit else ""
        click.echo(f"  {p.name} ({p.type}{unit}, {default})")
        click.echo(f"      {p.help}")
        if p.allowed:
            click.echo(f"      allowed: {p.allowed}")


@main.command()
@click.argument("url")
@click.option(
    "--interval", type=click.FloatRange(0.1), default=1.0, show_default=True, help="Seconds between two scrapes."
)
@click.option("--once", is_flag=True, help="Scrape once, print the table and exit.")
def top(url: str, interval: float, once: bool) -> None:
    """Watch a running server (or a run with --metrics-port) through its /metrics at URL."""
    import urllib.request

    from .live import is_terminal, line, render_text, table, watch

    if not url.startswith(("http://", "https://")):
        raise Problem(f"URL must start with http:// or https://, got {url!r}")
    target = url if url.rstrip("/").endswith("/metrics") else url.rstrip("/") + "/metrics"

    def fetch(address: str) -> str:
        try:
            with urllib.request.urlopen(address, timeout=max(interval, 2.0)) as answer:
                return answer.read().decode()
        except (OSError, ValueError) as exc:
            raise click.ClickException(clean(f"cannot read {address}: {exc}")) from None

    statuses = watch(target, interval=interval, once=once, fetch=fetch)
    if once:
        click.echo(render_text(next(iter(statuses)), width=120), nl=False)
        return
    if not is_terminal(sys.stdout):
        for status in statuses:
            click.echo(line(status))
        return
    from rich.live import Live

    with Live(auto_refresh=False) as live:
        for status in statuses:
            live.update(table(status, title=target), refresh=True)


@main.command()
@click.argument("report", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The PNG to write.")
def plot(report: str, output: str) -> None:
    """Plot a run's JSON REPORT: per pipeline, lateness and receiver deviation, jitter-buffer delay and target."""
    try:
        from .plot import plot_report
    except ImportError as exc:
        raise Problem(f"rtstream plot needs matplotlib: pip install 'rtstream[plot]' ({exc})") from None
    problem = output_path_problem(output)
    if problem is not None:
        raise Problem(f"--output: {problem}")
    try:
        data = json.loads(Path(report).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Problem(f"cannot read {report}: {exc}") from None
    try:
        panels = plot_report(data, output)
    except ValueError as exc:
        raise Problem(str(exc)) from None
    click.echo(f"wrote {output}: {panels}")


def entry() -> None:
    """Console-script entry: a stray Ctrl-C outside a run exits quietly."""
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    entry()
