"""Building a pipeline: stage configs from their tables, roles checked, one format per edge.

Negotiation works like GStreamer caps (unions of structures), in two passes before any task
starts. Backwards from the sink, each edge learns what the stages downstream of it can take (a
stage that passes its format through passes the constraint up; one that converts absorbs it;
one that cuts frames of its own passes the format up but not the frame duration). Forwards
from the source, each stage offers what it can produce, the offer is met with that constraint,
and one format and frame duration are fixed, keeping the upstream ones wherever they are
allowed. When an offer and a constraint do not meet, the error names both stages and both
formats, or both frame durations when only those differ. Then every stage opens its element.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from . import registry
from .caps import ANY_SIZE, Caps, StreamFormat, frames_text
from .config import DEFAULT_CAPACITY, PipelineSpec, ServiceSpec, StageSpec, construct, fill_refs, refers_to
from .errors import ConfigError, FormatMismatch, StageRef
from .frames import AudioFormat
from .interpolate import InterpolationError
from .params import ParamError
from .service import Service
from .stage import Element, Filter, Sink, Source, Stage

Endpoints = Mapping[str, Mapping[str, str]]
"""Per service name, its addresses (``url``, ``host``, ``port``...)."""


@attrs.frozen
class Pipeline:
    """A pipeline ready to run: its stage configs, their opened elements, and per edge its format and capacity."""

    name: str
    stages: tuple[Stage, ...]
    elements: tuple[Element, ...]
    """One running element per stage, opened for this pipeline instance."""
    refs: tuple[StageRef, ...]
    edges: tuple[StreamFormat, ...]
    """``edges[i]`` is what flows between ``stages[i]`` and ``stages[i + 1]``: format and frame duration."""
    capacities: tuple[int, ...]
    instance: int = 1
    services: tuple[str, ...] = ()
    """The services its stages refer to (its report names them, so a plot finds the receiver's calls)."""
    fuse: bool = True
    """Whether the runner fuses untimed stages into the task before them (:mod:`rtstream.fusion`)."""

    @property
    def formats(self) -> tuple[AudioFormat, ...]:
        """The audio format of each edge."""
        return tuple(edge.format for edge in self.edges)


def build_pipeline(
    spec: PipelineSpec,
    *,
    file: str | None = None,
    instance: int = 1,
    endpoints: Endpoints | None = None,
    call: Mapping[str, str] | None = None,
    server: Mapping[str, str] | None = None,
) -> Pipeline:
    """Instantiate every stage of ``spec`` and negotiate formats; ConfigError on any problem.

    ``endpoints`` fills the stages' ``${services.NAME.KEY}`` references, ``call`` their
    ``${call.KEY}`` ones (a pipeline built for a call), ``server`` their ``${server.KEY}`` ones.
    """
    try:
        stages = [_instantiate(s, endpoints or {}, call, server) for s in spec.stages]
        capacities = [s.capacity if s.capacity is not None else spec.capacity for s in spec.stages[:-1]]
        pipeline = assemble(
            spec.name, stages, refs=[s.ref for s in spec.stages], capacities=capacities, instance=instance
        )
        return attrs.evolve(pipeline, services=spec.services, fuse=spec.fuse)
    except ConfigError as exc:
        raise exc.located(file=file, pipeline=spec.name) from None


def assemble(
    name: str,
    stages: Sequence[Stage],
    *,
    refs: Sequence[StageRef] | None = None,
    capacities: Sequence[int] | None = None,
    instance: int = 1,
    fuse: bool = True,
) -> Pipeline:
    """A runnable pipeline from stage configs: roles checked, formats negotiated, elements opened."""
    if refs is None:
        refs = [StageRef(i, s.info.name if hasattr(s, "info") else type(s).__name__) for i, s in enumerate(stages, 1)]
    if capacities is None:
        capacities = [DEFAULT_CAPACITY] * (len(stages) - 1)
    _check_roles(stages, refs)
    edges = negotiate(stages, refs)
    ends: list[AudioFormat | None] = [None, *(edge.format for edge in edges), None]
    elements = []
    for i, stage in enumerate(stages):
        try:
            elements.append(stage.open(ends[i], ends[i + 1]))
        except ParamError as exc:
            raise ConfigError(exc.message, stage=refs[i], key=exc.key) from None
        except ValueError as exc:
            raise ConfigError(str(exc), stage=refs[i]) from None
    return Pipeline(
        name, tuple(stages), tuple(elements), tuple(refs), tuple(edges), tuple(capacities), instance, fuse=fuse
    )


def build_service(spec: ServiceSpec, *, file: str | None = None, server: Mapping[str, str] | None = None) -> Service:
    """Instantiate the service ``spec`` declares; ConfigError naming the file, service and key.

    ``server`` fills its ``${server.KEY}`` references. Only a service that dials (a caller) may
    have them: one that listens starts before the server, so the server's address is not known yet.
    """
    try:
        try:
            info = registry.get_service(spec.type)
        except registry.UnknownService as exc:
            raise ConfigError(str(exc), key="type") from None
        params = {}
        for key, value in spec.params.items():
            if not info.cls.dials and refers_to(value, "server"):
                raise ConfigError("only a service that dials (a caller) may refer to the server", key=key)
            try:
                params[key] = fill_refs(value, {}, server=server)
            except InterpolationError as exc:
                raise ConfigError(str(exc), key=key) from None
        return construct(info.cls, info.name, params)
    except ConfigError as exc:
        raise exc.located(file=file, service=spec.name) from None


def _instantiate(
    spec: StageSpec, endpoints: Endpoints, call: Mapping[str, str] | None, server: Mapping[str, str] | None
) -> Stage:
    try:
        info = registry.get(spec.ref.type)
    except registry.UnknownStage as exc:
        raise ConfigError(str(exc), stage=spec.ref, key="type") from None
    params = {}
    for key, value in spec.params.items():
        try:
            params[key] = fill_refs(value, endpoints, call=call, server=server)
        except InterpolationError as exc:
            raise ConfigError(str(exc), stage=spec.ref, key=key) from None
    try:
        return construct(info.cls, info.name, params)
    except ConfigError as exc:
        raise exc.located(stage=spec.ref) from None


def _check_roles(stages: Sequence[Stage], refs: Sequence[StageRef]) -> None:
    if len(stages) < 2:
        raise ConfigError("a pipeline needs at least a source and a sink")
    want: type[Stage]
    for i, (stage, ref) in enumerate(zip(stages, refs, strict=True)):
        if i == 0:
            want, rule = Source, "a pipeline starts with a source"
        elif i == len(stages) - 1:
            want, rule = Sink, "a pipeline ends with a sink"
        else:
            want, rule = Filter, "the stages between the source and the sink must be filters"
        if not isinstance(stage, want):
            raise ConfigError(f"{rule}; {ref.type} is a {stage.role}", stage=ref)


def negotiate(stages: Sequence[Stage], refs: Sequence[StageRef]) -> list[StreamFormat]:
    """One format per edge, or FormatMismatch naming the two stages that cannot agree."""
    last = len(stages) - 1
    need: list[Caps] = [Caps.ANY] * last
    need[last - 1] = stages[last].input_caps()
    for i in range(last - 1, 0, -1):
        stage = stages[i]
        met = stage.upstream_caps(need[i])
        if met.empty:
            own = stage.input_caps()
            j = _blame(stages, i, own, need[i])
            if _frames_only(own, stages[j].input_caps()):
                raise FormatMismatch(
                    f"{refs[i]} takes {_durations(own)} and passes them on, "
                    f"but {refs[j]} takes only {_durations(stages[j].input_caps())}"
                )
            raise FormatMismatch(
                f"{refs[i]} accepts {own.with_frames(None)} and passes it on unchanged, "
                f"but {refs[j]} accepts only {stages[j].input_caps().with_frames(None)}"
            )
        need[i - 1] = met
    edges: list[StreamFormat] = []
    edge: StreamFormat | None = None
    for i in range(last):
        offered = stages[i].output_caps(edge)
        allowed = offered & need[i]
        if allowed.empty:
            j = _blame(stages, i, offered, need[i])
            theirs = stages[j].input_caps()
            if _frames_only(offered, theirs):
                hint = "; put a chunker between them" if ANY_SIZE in _frame_values(offered) else ""
                raise FormatMismatch(
                    f"{refs[i]} produces {_durations(offered)}, but {refs[j]} takes only {_durations(theirs)}{hint}"
                )
            hint = "; add a converter between them" if stages[i].produces is None or i == 0 else ""
            raise FormatMismatch(
                f"{refs[i]} produces {offered.with_frames(None)}, but {refs[j]} accepts only "
                f"{theirs.with_frames(None)}{hint}"
            )
        edge = allowed.fixate(prefer=edge)
        edges.append(edge)
    return edges


def _blame(stages: Sequence[Stage], i: int, offered: Caps, need: Caps) -> int:
    """The first stage downstream of ``i`` (through pass-through stages) that refuses ``offered``.

    A clash of formats is looked for with frame durations left out, since stages that cut
    frames of their own pass formats through; a clash of frame durations only crosses stages
    that pass frames through.
    """
    if not (offered.with_frames(None) & need.with_frames(None)).empty:
        for j in range(i + 1, len(stages)):
            if (offered & stages[j].input_caps()).empty:
                return j
        return len(stages) - 1
    offered = offered.with_frames(None)
    for j in range(i + 1, len(stages) - 1):
        if (offered & stages[j].input_caps().with_frames(None)).empty or stages[j].produces is not None:
            return j
    return len(stages) - 1


def _frames_only(mine: Caps, theirs: Caps) -> bool:
    """The two caps would meet but for their frame durations."""
    return not (mine.with_frames(None) & theirs.with_frames(None)).empty and (mine & theirs).empty


def _frame_values(caps: Caps) -> list[float]:
    return [ms for s in caps.structures for ms in (s.frame_ms or ())]


def _durations(caps: Caps) -> str:
    return " or ".join(frames_text(ms) for ms in dict.fromkeys(_frame_values(caps)))
