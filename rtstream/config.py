"""Reading a pipelines file: TOML in, checked pipeline specs out.

A file holds one or more pipelines::

    [pipelines.demo]
    description = "a tone into a WAV file"
    capacity = 2                        # channel capacity between stages (optional)
    fuse = true                         # untimed stages run in the task before them (false: a task each)

    [[pipelines.demo.stages]]
    type = "tone"                       # the registered stage type
    name = "beep"                       # an optional label for errors and reports
    frequency = 440.0                   # the stage's parameters
    ...

A file may also declare services: servers that ``rtstream run`` starts in-process on free
loopback ports before the pipelines, and stops after them (the simulators, say)::

    [services.tts]
    type = "tts"                        # a registered service type
    rtf = 3.0                           # its parameters

A file may also serve calls: ``[calls.NAME]`` tables are call templates (the path a provider
dials, its protocol, the pipelines each call runs; :class:`~rtstream.calls.CallSettings`), and an
optional ``[server]`` table says where ``rtstream serve`` listens (:class:`~rtstream.calls.ServerSettings`)::

    [server]
    max_calls = 50

    [calls.twilio]
    path = "/twilio"
    protocol = "twilio"
    pipelines = ["twilio_in", "twilio_out"]
    auth_token = "${TWILIO_AUTH_TOKEN}"

A pipeline that a call names runs only in calls, never on its own.

Strings may use ``${NAME}`` to take values from the environment, ``${services.NAME.KEY}``
for an address of a declared service (``url``, ``host``, ``port``), ``${call.KEY}`` in the
pipelines of a call for its ids and custom parameters, and ``${server.KEY}`` for the server's
address (``url``, ``host``, ``port``; a caller service dials it). Everything read is checked
here, so that errors name the file, table, pipeline, stage and key before anything starts.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from .answers import ANSWER_PROTOCOLS
from .calls import CallSettings, ServerSettings
from .errors import ConfigError, StageRef
from .interpolate import InterpolationError, Ref, Template, interpolate
from .params import ParamError, params_of, show, suggest
from .server import HEALTH_PATH

DEFAULT_CAPACITY = 2
MAX_CAPACITY = 1024
MAX_DEPTH = 32
"""Most levels of tables and arrays within each other; a pipelines file needs about six."""
MAX_FILE_BYTES = 16 << 20

_TOP_KEYS = ("pipelines", "services", "server", "calls")
SERVER_KEYS = ("url", "host", "port")
"""What ``${server.KEY}`` may name."""
_PIPELINE_KEYS = ("stages", "capacity", "description", "fuse")
STAGE_KEYS = ("type", "name", "capacity")
"""Keys of a stage table that are not parameters of the stage."""


@attrs.frozen
class StageSpec:
    """One stage as written: its type, label, output channel capacity and raw parameters."""

    ref: StageRef
    params: Mapping[str, Any]
    capacity: int | None


@attrs.frozen
class PipelineSpec:
    """One pipeline as written, checked for shape but not yet built."""

    name: str
    description: str
    capacity: int
    stages: tuple[StageSpec, ...]
    services: tuple[str, ...] = ()
    """The services its stages refer to."""
    fuse: bool = True
    """Untimed stages run in the task of the stage before them (:mod:`rtstream.fusion`); False keeps a task each."""


@attrs.frozen
class ServiceSpec:
    """One service as written: its name, type and raw parameters."""

    name: str
    type: str
    params: Mapping[str, Any]


@attrs.frozen
class Config:
    """A whole pipelines file."""

    file: str
    pipelines: Mapping[str, PipelineSpec]
    services: Mapping[str, ServiceSpec] = attrs.field(factory=dict)
    server: ServerSettings | None = None
    """The ``[server]`` table; the defaults when the file has calls but no such table; None for neither."""
    calls: Mapping[str, CallSettings] = attrs.field(factory=dict)

    def call_of(self, pipeline: str) -> str | None:
        """The first call template that runs ``pipeline``, or None for a pipeline that runs on its own."""
        return next((name for name, call in self.calls.items() if pipeline in call.pipelines), None)

    def select(self, names: Iterable[str] = ()) -> list[PipelineSpec]:
        """The named pipelines (when none are named, all that run on their own), in file order.

        A call's pipelines run only in its calls: they need the call's connection and ids.
        """
        chosen = list(names)
        for name in chosen:
            if name not in self.pipelines:
                known = ", ".join(repr(n) for n in self.pipelines)
                hint = suggest(name, list(self.pipelines))
                raise ConfigError(f"no pipeline named '{name}'{hint}; the file defines {known}", file=self.file)
            call = self.call_of(name)
            if call is not None:
                raise ConfigError(
                    f"pipeline '{name}' runs in the calls of calls.{call}, not on its own", file=self.file
                )
        return [
            spec for name, spec in self.pipelines.items() if (name in chosen if chosen else self.call_of(name) is None)
        ]


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and check a pipelines file."""
    file = str(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the read, a directory cannot be read
            raise ConfigError("not a regular file", file=file)
        if info.st_size > MAX_FILE_BYTES:
            raise ConfigError(f"is {info.st_size} bytes; a pipelines file may hold {MAX_FILE_BYTES}", file=file)
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=file) from None
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError, and so is a NUL in the path
        raise ConfigError(f"cannot read the file: {getattr(exc, 'strerror', None) or exc}", file=file) from None
    return parse_config(text, file=file, environ=environ)


def parse_config(text: str, *, file: str = "<string>", environ: Mapping[str, str] | None = None) -> Config:
    """Check the text of a pipelines file; ``file`` names it in errors."""
    document = parse_toml(text, file=file)
    try:
        _reject_unknown(document, _TOP_KEYS, "top-level key")
        calls = _tables(document, "calls")
        call_settings = {name: call_settings_of(name, table, environ) for name, table in calls.items()}
        server = document.get("server")
        if server is not None:
            server = server_settings_of(server, environ)
        elif call_settings:
            server = ServerSettings()
        services = _tables(document, "services")
        service_specs = {name: service_spec(name, table, environ) for name, table in services.items()}
        pipelines = document.get("pipelines")
        if not isinstance(pipelines, dict) or not pipelines:
            raise ConfigError("no pipelines defined; add a [pipelines.NAME] table with its stages")
        specs = {name: _pipeline(name, table, environ, list(service_specs)) for name, table in pipelines.items()}
        config = Config(file=file, pipelines=specs, services=service_specs, server=server, calls=call_settings)
        _check_calls(config)
        _check_run_time_refs(config)
    except ConfigError as exc:
        raise exc.located(file=file) from None
    return config


def _tables(document: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The ``[KEY.NAME]`` tables of the document (none when absent)."""
    tables = document.get(key, {})
    if not isinstance(tables, dict):
        raise ConfigError(f"must be a table of [{key}.NAME] tables", key=key)
    return tables


def construct(cls: type, type_name: str, given: Mapping[str, Any]) -> Any:
    """``cls(**given)``, checked: unknown and missing parameters and bad values are ConfigErrors."""
    params = params_of(cls)
    names = [p.name for p in params]
    for key in given:
        if key not in names:
            listed = ", ".join(names) or "none"
            raise ConfigError(f"unknown parameter '{key}'{suggest(key, names)}; {type_name} takes: {listed}", key=key)
    for p in params:
        if p.default is None and p.name not in given:
            raise ConfigError(f"required parameter missing: {p.help}", key=p.name)
    try:
        return cls(**given)
    except ParamError as exc:
        raise ConfigError(exc.message, key=exc.key) from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def server_settings_of(table: Any, environ: Mapping[str, str] | None = None) -> ServerSettings:
    """Check the ``[server]`` table."""
    try:
        if not isinstance(table, dict):
            raise ConfigError(f"must be a table ([server]), got {show(table)}")
        settings: ServerSettings = construct(ServerSettings, "[server]", _settings(table, environ))
    except ConfigError as exc:
        raise exc.located(table="server") from None
    return settings


def call_settings_of(name: str, table: Any, environ: Mapping[str, str] | None = None) -> CallSettings:
    """Check one ``[calls.NAME]`` table (its own keys; :func:`parse_config` checks it against the rest)."""
    try:
        if not isinstance(table, dict):
            raise ConfigError(f"must be a table ([calls.{name}]), got {show(table)}")
        settings: CallSettings = construct(CallSettings, "a call", _settings(table, environ))
    except ConfigError as exc:
        raise exc.located(call=name) from None
    return settings


def _settings(table: Mapping[str, Any], environ: Mapping[str, str] | None) -> dict[str, Any]:
    """A settings table with ``${NAME}`` filled from the environment; run-time references are refused."""
    values = {}
    for key, value in table.items():
        try:
            values[key] = _interpolated(value, environ)
        except InterpolationError as exc:
            raise ConfigError(str(exc), key=key) from None
        templates = _templates(values[key])
        if templates:
            raise ConfigError(
                f"{templates[0].source!r}: settings take ${{NAME}} from the environment, "
                "not services, calls or the server",
                key=key,
            )
    return values


def _check_calls(config: Config) -> None:
    """Each call's pipelines exist, and no two routes (calls, answers, ``/health``) share a path."""
    paths = {HEALTH_PATH: "the health check"}
    for name, call in config.calls.items():
        for pipeline in call.pipelines:
            if pipeline not in config.pipelines:
                known = ", ".join(repr(n) for n in config.pipelines)
                raise ConfigError(
                    f"no pipeline named '{pipeline}'{suggest(pipeline, list(config.pipelines))}; "
                    f"the file defines {known}",
                    call=name,
                    key="pipelines",
                )
        if call.answer is not None and call.protocol not in ANSWER_PROTOCOLS:
            raise ConfigError(
                f"{call.protocol} has no answer webhook; only {', '.join(ANSWER_PROTOCOLS)} do",
                call=name,
                key="answer",
            )
        for key, path in (("path", call.path), ("answer", call.answer)):
            if path is None:
                continue
            if path in paths:
                raise ConfigError(f"'{path}' is already {paths[path]}", call=name, key=key)
            paths[path] = f"the {'path' if key == 'path' else 'answer path'} of calls.{name}"


def _check_run_time_refs(config: Config) -> None:
    """``${call.*}`` only in the pipelines of calls, ``${server.*}`` only with a server and known keys."""
    for name, spec in config.pipelines.items():
        in_call = config.call_of(name) is not None
        for stage in spec.stages:
            for key, value in stage.params.items():
                for template in _templates(value):
                    for ref in template.refs:
                        try:
                            if ref.scope == "call" and not in_call:
                                raise InterpolationError(
                                    f"'{ref.written}' is only known in a call: "
                                    "list the pipeline in a [calls.NAME] table"
                                )
                            _check_server_ref(ref, config)
                        except InterpolationError as exc:
                            raise ConfigError(str(exc), pipeline=name, stage=stage.ref, key=key) from None
    for name, service in config.services.items():
        for key, value in service.params.items():
            for template in _templates(value):
                for ref in template.refs:
                    try:
                        _check_server_ref(ref, config)
                    except InterpolationError as exc:
                        raise ConfigError(str(exc), service=name, key=key) from None


def _check_server_ref(ref: Ref, config: Config) -> None:
    if ref.scope != "server":
        return
    if config.server is None:
        raise InterpolationError(f"'{ref.written}' needs a [server] table")
    if ref.key not in SERVER_KEYS:
        raise InterpolationError(
            f"'{ref.written}': the server has no '{ref.key}'{suggest(ref.key, list(SERVER_KEYS))}; "
            f"it has: {', '.join(SERVER_KEYS)}"
        )


def parse_toml(text: str, *, file: str | None = None) -> dict[str, Any]:
    """TOML text as a document at most :data:`MAX_DEPTH` levels deep, or a one-line ConfigError.

    tomllib recurses once per level of nesting: a file nested thousands deep exhausts the stack
    inside it, so that is caught here, at the boundary, and reported as what it is.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=file) from None
    except RecursionError:
        raise ConfigError(f"nested too deeply (at most {MAX_DEPTH} levels of arrays and tables)", file=file) from None
    place = _too_deep(document)
    if place is not None:
        raise ConfigError(
            f"nested too deeply at {show(place)} (at most {MAX_DEPTH} levels of arrays and tables)", file=file
        )
    return document


def _too_deep(document: dict[str, Any]) -> str | None:
    """The dotted path of the first value nested deeper than :data:`MAX_DEPTH`, else None (no recursion)."""
    pending: list[tuple[Any, str, int]] = [(document, "", 0)]
    while pending:
        value, path, depth = pending.pop()
        if depth > MAX_DEPTH:
            return path
        if isinstance(value, dict):
            pending.extend((v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            pending.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
    return None


def service_spec(name: str, table: Any, environ: Mapping[str, str] | None = None) -> ServiceSpec:
    """Check one ``[services.NAME]`` table (its ``type`` and parameters)."""
    if not isinstance(table, dict):
        raise ConfigError(f"must be a table ([services.{name}]), got {show(table)}", service=name)
    kind = table.get("type")
    if not isinstance(kind, str) or not kind:
        raise ConfigError(
            "every service needs a 'type' naming a registered service ('rtstream simulate' lists them)",
            service=name,
            key="type",
        )
    params = {}
    for key, value in table.items():
        if key == "type":
            continue
        try:
            params[key] = _interpolated(value, environ)
        except InterpolationError as exc:
            raise ConfigError(str(exc), service=name, key=key) from None
        for template in _templates(params[key]):
            scopes = {ref.scope for ref in template.refs}
            if "services" in scopes:
                raise ConfigError("a service's parameters cannot refer to services", service=name, key=key)
            if "call" in scopes:
                raise ConfigError("a service's parameters cannot refer to a call", service=name, key=key)
    return ServiceSpec(name=name, type=kind, params=params)


def _reject_unknown(table: Mapping[str, Any], allowed: Iterable[str], what: str, **where: Any) -> None:
    allowed = list(allowed)
    for key in table:
        if key not in allowed:
            listed = ", ".join(allowed)
            raise ConfigError(f"unknown {what} '{key}'{suggest(key, allowed)}; allowed: {listed}", **where, key=key)


def _capacity(value: Any, **where: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CAPACITY:
        raise ConfigError(
            f"channel capacity must be a whole number from 0 to {MAX_CAPACITY} (channels are bounded), "
            f"got {show(value)}",
            key="capacity",
            **where,
        )
    return value


def _pipeline(name: str, table: Any, environ: Mapping[str, str] | None, services: list[str]) -> PipelineSpec:
    if not isinstance(table, dict):
        raise ConfigError(f"must be a table ([pipelines.{name}]), got {show(table)}", pipeline=name)
    _reject_unknown(table, _PIPELINE_KEYS, "pipeline key", pipeline=name)
    capacity = _capacity(table.get("capacity", DEFAULT_CAPACITY), pipeline=name)
    description = table.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"must be a string, got {show(description)}", pipeline=name, key="description")
    fuse = table.get("fuse", True)
    if not isinstance(fuse, bool):
        raise ConfigError(f"must be true or false, got {show(fuse)}", pipeline=name, key="fuse")
    stages = table.get("stages")
    if stages is None or stages == []:
        raise ConfigError("the pipeline has no stages; add [[pipelines.NAME.stages]] tables", pipeline=name)
    if not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
        raise ConfigError("must be a list of stage tables", pipeline=name, key="stages")
    stage_specs = tuple(_stage(name, i, s, environ, services) for i, s in enumerate(stages, start=1))
    used = {
        ref.name
        for spec in stage_specs
        for value in spec.params.values()
        for t in _templates(value)
        for ref in t.refs
        if ref.scope == "services"
    }
    return PipelineSpec(
        name=name,
        description=description,
        capacity=capacity,
        stages=stage_specs,
        services=tuple(s for s in services if s in used),
        fuse=fuse,
    )


def _stage(
    pipeline: str, index: int, table: dict[str, Any], environ: Mapping[str, str] | None, services: list[str]
) -> StageSpec:
    kind = table.get("type")
    if not isinstance(kind, str) or not kind:
        raise ConfigError(
            "every stage needs a 'type' naming a registered stage ('rtstream stages' lists them)",
            pipeline=pipeline,
            stage=StageRef(index, "?"),
            key="type",
        )
    label = table.get("name")
    ref = StageRef(index, kind, label if isinstance(label, str) else None)
    if label is not None and not isinstance(label, str):
        raise ConfigError(f"must be a string, got {show(label)}", pipeline=pipeline, stage=ref, key="name")
    capacity = table.get("capacity")
    if capacity is not None:
        capacity = _capacity(capacity, pipeline=pipeline, stage=ref)
    params = {}
    for key, value in table.items():
        if key in STAGE_KEYS:
            continue
        try:
            params[key] = _interpolated(value, environ)
        except InterpolationError as exc:
            raise ConfigError(str(exc), pipeline=pipeline, stage=ref, key=key) from None
        for template in _templates(params[key]):
            for service in (r.name for r in template.refs if r.scope == "services"):
                if service not in services:
                    known = f"the file declares: {', '.join(services)}" if services else "add a [services.NAME] table"
                    raise ConfigError(
                        f"unknown service '{service}'{suggest(service, services)} in {template.source!r}; {known}",
                        pipeline=pipeline,
                        stage=ref,
                        key=key,
                    )
    return StageSpec(ref=ref, params=params, capacity=capacity)


def _templates(value: Any) -> list[Template]:
    """The service templates in a parameter value (a string, or a list or table of them)."""
    if isinstance(value, Template):
        return [value]
    if isinstance(value, list):
        return [t for v in value for t in _templates(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _templates(v)]
    return []


def refers_to(value: Any, scope: str) -> bool:
    """Whether a parameter value holds a ``${SCOPE.…}`` reference (``services``, ``call``, ``server``)."""
    return any(ref.scope == scope for template in _templates(value) for ref in template.refs)


def fill_refs(
    value: Any,
    endpoints: Mapping[str, Mapping[str, str]],
    *,
    call: Mapping[str, str] | None = None,
    server: Mapping[str, str] | None = None,
) -> Any:
    """``value`` with every run-time reference filled (InterpolationError if one cannot be)."""
    if isinstance(value, Template):
        return value.fill(endpoints, call=call, server=server)
    if isinstance(value, list):
        return [fill_refs(v, endpoints, call=call, server=server) for v in value]
    if isinstance(value, dict):
        return {k: fill_refs(v, endpoints, call=call, server=server) for k, v in value.items()}
    return value


def _interpolated(value: Any, environ: Mapping[str, str] | None) -> Any:
    if isinstance(value, str):
        return interpolate(value, environ)
    if isinstance(value, list):
        return [_interpolated(v, environ) for v in value]
    if isinstance(value, dict):
        return {k: _interpolated(v, environ) for k, v in value.items()}
    return value
