"""Building a pipeline: stage configs from their tables, roles checked, one format per edge.

Negotiation works like GStreamer caps, in two passes before any task starts. Backwards from
the sink, each edge learns what the stages downstream of it can take (a stage that passes its
format through passes the constraint up; one that converts absorbs it). Forwards from the
source, each stage offers what it can produce, the offer is met with that constraint, and one
format is fixed, keeping the upstream format wherever it is allowed. When an offer and a
constraint do not meet, the error names both stages and both formats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from . import registry
from .caps import Caps
from .config import DEFAULT_CAPACITY, PipelineSpec, ServiceSpec, StageSpec, fill_services
from .errors import ConfigError, FormatMismatch, StageRef
from .frames import AudioFormat
from .interpolate import InterpolationError
from .params import ParamError, params_of, suggest
from .service import Service
from .stage import Filter, Sink, Source, Stage

Endpoints = Mapping[str, Mapping[str, str]]
"""Per service name, its addresses (``url``, ``host``, ``port``...)."""


@attrs.frozen
class Pipeline:
    """A pipeline ready to run: resolved stages and, per edge, its format and channel capacity."""

    name: str
    stages: tuple[Stage, ...]
    refs: tuple[StageRef, ...]
    formats: tuple[AudioFormat, ...]
    """``formats[i]`` is the format between ``stages[i]`` and ``stages[i + 1]``."""
    capacities: tuple[int, ...]
    instance: int = 1


def build_pipeline(
    spec: PipelineSpec, *, file: str | None = None, instance: int = 1, endpoints: Endpoints | None = None
) -> Pipeline:
    """Instantiate every stage of ``spec`` and negotiate formats; ConfigError on any problem.

    ``endpoints`` fills the stages' ``${services.NAME.KEY}`` references.
    """
    try:
        stages = [_instantiate(s, endpoints or {}) for s in spec.stages]
        capacities = [s.capacity if s.capacity is not None else spec.capacity for s in spec.stages[:-1]]
        return assemble(spec.name, stages, refs=[s.ref for s in spec.stages], capacities=capacities, instance=instance)
    except ConfigError as exc:
        raise exc.located(file=file, pipeline=spec.name) from None


def assemble(
    name: str,
    stages: Sequence[Stage],
    *,
    refs: Sequence[StageRef] | None = None,
    capacities: Sequence[int] | None = None,
    instance: int = 1,
) -> Pipeline:
    """A runnable pipeline from stage objects: roles checked, formats negotiated and resolved."""
    if refs is None:
        refs = [StageRef(i, s.info.name if hasattr(s, "info") else type(s).__name__) for i, s in enumerate(stages, 1)]
    if capacities is None:
        capacities = [DEFAULT_CAPACITY] * (len(stages) - 1)
    _check_roles(stages, refs)
    formats = negotiate(stages, refs)
    ends: list[AudioFormat | None] = [None, *formats, None]
    resolved = []
    for i, stage in enumerate(stages):
        try:
            resolved.append(stage.resolve(ends[i], ends[i + 1]))
        except ParamError as exc:
            raise ConfigError(exc.message, stage=refs[i], key=exc.key) from None
        except ValueError as exc:
            raise ConfigError(str(exc), stage=refs[i]) from None
    return Pipeline(name, tuple(resolved), tuple(refs), tuple(formats), tuple(capacities), instance)


def build_service(spec: ServiceSpec, *, file: str | None = None) -> Service:
    """Instantiate the service ``spec`` declares; ConfigError naming the file, service and key."""
    try:
        try:
            info = registry.get_service(spec.type)
        except registry.UnknownService as exc:
            raise ConfigError(str(exc), key="type") from None
        return _construct(info.cls, info.name, spec.params)
    except ConfigError as exc:
        raise exc.located(file=file, service=spec.name) from None


def _instantiate(spec: StageSpec, endpoints: Endpoints) -> Stage:
    try:
        info = registry.get(spec.ref.type)
    except registry.UnknownStage as exc:
        raise ConfigError(str(exc), stage=spec.ref, key="type") from None
    params = {}
    for key, value in spec.params.items():
        try:
            params[key] = fill_services(value, endpoints)
        except InterpolationError as exc:
            raise ConfigError(str(exc), stage=spec.ref, key=key) from None
    try:
        return _construct(info.cls, info.name, params)
    except ConfigError as exc:
        raise exc.located(stage=spec.ref) from None


def _construct(cls: type, type_name: str, given: Mapping[str, Any]) -> Any:
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


def _check_roles(stages: Sequence[Stage], refs: Sequence[StageRef]) -> None:
    if len(stages) < 2:
        raise ConfigError("a pipeline needs at least a source and a sink")
    for i, (stage, ref) in enumerate(zip(stages, refs, strict=True)):
        if i == 0:
            want, rule = Source, "a pipeline starts with a source"
        elif i == len(stages) - 1:
            want, rule = Sink, "a pipeline ends with a sink"
        else:
            want, rule = Filter, "the stages between the source and the sink must be filters"
        if not isinstance(stage, want):
            raise ConfigError(f"{rule}; {ref.type} is a {stage.role}", stage=ref)


def negotiate(stages: Sequence[Stage], refs: Sequence[StageRef]) -> list[AudioFormat]:
    """One format per edge, or FormatMismatch naming the two stages that cannot agree."""
    last = len(stages) - 1
    need: list[Caps] = [Caps.ANY] * last
    need[last - 1] = stages[last].input_caps()
    for i in range(last - 1, 0, -1):
        stage = stages[i]
        own = stage.input_caps()
        if type(stage).produces is None:
            met = own & need[i]
            if met.empty:
                j = _blame(stages, i, own)
                raise FormatMismatch(
                    f"{refs[i]} accepts {own} and passes it on unchanged, "
                    f"but {refs[j]} accepts only {stages[j].input_caps()}"
                )
            need[i - 1] = met
        else:
            need[i - 1] = own
    formats: list[AudioFormat] = []
    fmt_in: AudioFormat | None = None
    for i in range(last):
        offered = stages[i].output_caps(fmt_in)
        allowed = offered & need[i]
        if allowed.empty:
            j = _blame(stages, i, offered)
            hint = "; add a converter between them" if type(stages[i]).produces is None or i == 0 else ""
            raise FormatMismatch(
                f"{refs[i]} produces {offered}, but {refs[j]} accepts only {stages[j].input_caps()}{hint}"
            )
        fmt_in = allowed.fixate(prefer=fmt_in)
        formats.append(fmt_in)
    return formats


def _blame(stages: Sequence[Stage], i: int, offered: Caps) -> int:
    """The first stage downstream of ``i`` (through pass-through stages) that refuses ``offered``."""
    for j in range(i + 1, len(stages) - 1):
        if (offered & stages[j].input_caps()).empty or type(stages[j]).produces is not None:
            return j
    return len(stages) - 1
