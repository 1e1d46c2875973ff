"""The registry: every stage type and service type by name, each describing itself.

Built-in stages and third-party ones arrive the same way: a package lists a module in the
entry-point group ``rtstream.stages``; importing it runs its ``@register`` decorators. Service
types (servers a run can start, such as the simulators) do the same with
``@register_service`` and the group ``rtstream.services``. The engine never imports a stage
or service module by name.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from importlib.metadata import entry_points

import attrs

from .params import ParamInfo, params_of, suggest
from .service import Service
from .stage import Filter, Sink, Source, Stage

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "rtstream.stages"
SERVICE_ENTRY_POINT_GROUP = "rtstream.services"
_ROLE_OF_KLASS = {"Source": Source, "Filter": Filter, "Sink": Sink}


@attrs.frozen
class StageInfo:
    """What a stage type says of itself (what ``rtstream inspect`` prints)."""

    name: str
    klass: str
    """A GStreamer-style path: ``Source/...``, ``Filter/...`` or ``Sink/...``."""
    description: str
    cls: type[Stage]
    origin: str
    """The distribution whose entry point registered it."""

    @property
    def params(self) -> list[ParamInfo]:
        return params_of(self.cls)


class UnknownStage(LookupError):
    """No stage type of that name is registered."""


@attrs.frozen
class ServiceInfo:
    """What a service type says of itself."""

    name: str
    description: str
    cls: type[Service]
    origin: str

    @property
    def params(self) -> list[ParamInfo]:
        return params_of(self.cls)


class UnknownService(LookupError):
    """No service type of that name is registered."""


_stages: dict[str, StageInfo] = {}
_services: dict[str, ServiceInfo] = {}
_origin = "rtstream"
_loaded: set[str] = set()


def _is_attrs(cls: type) -> bool:
    """Whether ``cls`` is an attrs class (a plain bool: ``attrs.has`` would narrow the type away)."""
    return attrs.has(cls)


def register(name: str, *, klass: str) -> Callable[[type[Stage]], type[Stage]]:
    """Class decorator: register a stage config class under ``name``.

    The one-line description is the first line of the class docstring.
    """

    def decorate(cls: type[Stage]) -> type[Stage]:
        if not (isinstance(cls, type) and issubclass(cls, Stage) and _is_attrs(cls)):
            raise TypeError(f"stage '{name}': {cls!r} is not an attrs subclass of Source, Filter or Sink")
        family = klass.split("/", 1)[0]
        role = _ROLE_OF_KLASS.get(family)
        if role is None or not issubclass(cls, role):
            raise TypeError(f"stage '{name}': klass {klass!r} must start with the class's role ({cls.role.title()}/)")
        doc = inspect.getdoc(cls)
        if not doc:
            raise TypeError(f"stage '{name}': the class needs a docstring (its first line is the description)")
        existing = _stages.get(name)
        if existing is not None and existing.cls is not cls:
            raise TypeError(f"stage '{name}' is registered twice: by {existing.origin} and by {_origin}")
        info = StageInfo(name=name, klass=klass, description=doc.splitlines()[0], cls=cls, origin=_origin)
        cls.info = info
        _stages[name] = info
        return cls

    return decorate


def register_service(name: str) -> Callable[[type[Service]], type[Service]]:
    """Class decorator: register a service config class under ``name`` (description: first docstring line)."""

    def decorate(cls: type[Service]) -> type[Service]:
        if not (isinstance(cls, type) and issubclass(cls, Service) and _is_attrs(cls)):
            raise TypeError(f"service '{name}': {cls!r} is not an attrs subclass of Service")
        doc = inspect.getdoc(cls)
        if not doc:
            raise TypeError(f"service '{name}': the class needs a docstring (its first line is the description)")
        existing = _services.get(name)
        if existing is not None and existing.cls is not cls:
            raise TypeError(f"service '{name}' is registered twice: by {existing.origin} and by {_origin}")
        info = ServiceInfo(name=name, description=doc.splitlines()[0], cls=cls, origin=_origin)
        cls.info = info
        _services[name] = info
        return cls

    return decorate


def load_plugins(group: str = ENTRY_POINT_GROUP) -> None:
    """Import every module listed in the entry-point ``group``, once.

    A plugin that fails to import is logged and skipped: one broken package does not take
    down the others.
    """
    global _origin
    if group in _loaded:
        return
    _loaded.add(group)
    for entry in entry_points(group=group):
        _origin = entry.dist.name if entry.dist is not None else entry.value
        try:
            entry.load()
        except Exception as exc:  # a plugin's own bug must not stop rtstream
            kind = "stage" if group == ENTRY_POINT_GROUP else "service"
            log.warning(
                "could not load %s plugin %r (%s): %s: %s", kind, entry.name, entry.value, type(exc).__name__, exc
            )
        finally:
            _origin = "rtstream"


def get(name: str) -> StageInfo:
    """The registered stage type ``name``; :class:`UnknownStage` with a suggestion if none."""
    load_plugins()
    try:
        return _stages[name]
    except KeyError:
        hint = suggest(name, list(_stages))
        raise UnknownStage(f"unknown stage type '{name}'{hint}; 'rtstream stages' lists them") from None


def stages() -> list[StageInfo]:
    """Every registered stage type, by name."""
    load_plugins()
    return [_stages[name] for name in sorted(_stages)]


def get_service(name: str) -> ServiceInfo:
    """The registered service type ``name``; :class:`UnknownService` with a suggestion if none."""
    load_plugins(SERVICE_ENTRY_POINT_GROUP)
    try:
        return _services[name]
    except KeyError:
        hint = suggest(name, list(_services))
        raise UnknownService(f"unknown service type '{name}'{hint}; 'rtstream simulate' lists them") from None


def services() -> list[ServiceInfo]:
    """Every registered service type, by name."""
    load_plugins(SERVICE_ENTRY_POINT_GROUP)
    return [_services[name] for name in sorted(_services)]
