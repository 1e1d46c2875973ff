"""``${NAME}`` in TOML strings: secrets and per-machine values come from the environment.

``${NAME}`` takes the variable (an error if it is unset), ``${NAME:-fallback}`` falls back when
it is unset or empty, ``$$`` is a literal dollar sign. A string that took anything from the
environment becomes an :class:`EnvStr`, which remembers how it was written so that error
messages and reports show ``${API_KEY}``, never the key.

``${services.NAME.KEY}`` (the dots tell it from a variable) refers to an address of a service
the run starts, such as its ``url``; it is only known once the service listens, so such a
string becomes a :class:`Template`, filled in later with :meth:`Template.fill`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import attrs

_REFERENCE = re.compile(r"\$(?:\{(?P<body>[^}]*)\}|(?P<dollar>\$))")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SERVICE_REF = re.compile(r"services\.(?P<service>[A-Za-z_][A-Za-z0-9_-]*)\.(?P<key>[A-Za-z_][A-Za-z0-9_]*)")


class EnvStr(str):
    """A string that took a value from the environment; ``source`` is the text as written."""

    source: str

    def __new__(cls, value: str, source: str) -> EnvStr:
        self = super().__new__(cls, value)
        self.source = source
        return self

    def __repr__(self) -> str:
        return repr(self.source)


class InterpolationError(ValueError):
    """A ``${...}`` reference could not be filled."""


@attrs.frozen
class ServiceRef:
    """``${services.NAME.KEY}``: the address ``KEY`` of the service ``NAME``."""

    service: str
    key: str


class Template:
    """A string waiting for service addresses: literal pieces and :class:`ServiceRef` pieces."""

    def __init__(self, parts: Sequence[str | ServiceRef], source: str, secret: bool) -> None:
        self.parts = tuple(parts)
        self.source = source
        """The text as written."""
        self.secret = secret
        """Some of it came from the environment: the filled string hides it too."""

    @property
    def refs(self) -> tuple[ServiceRef, ...]:
        return tuple(p for p in self.parts if isinstance(p, ServiceRef))

    def fill(self, endpoints: Mapping[str, Mapping[str, str]]) -> str:
        """The string with each service's address; InterpolationError names an unknown one."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            if part.service not in endpoints:
                raise InterpolationError(
                    f"'${{services.{part.service}.{part.key}}}': service '{part.service}' is not running"
                )
            known = endpoints[part.service]
            if part.key not in known:
                from .params import suggest  # params imports this module

                listed = ", ".join(sorted(known))
                raise InterpolationError(
                    f"'${{services.{part.service}.{part.key}}}': the service has no '{part.key}'{suggest(part.key, list(known))}; "
                    f"it has: {listed}"
                )
            out.append(known[part.key])
        filled = "".join(out)
        return EnvStr(filled, self.source) if self.secret else filled

    def __repr__(self) -> str:
        return repr(self.source)


def interpolate(text: str, environ: Mapping[str, str] | None = None) -> str | Template:
    """Fill the ``${NAME}`` references in ``text`` from ``environ`` (default ``os.environ``).

    A text with ``${services.NAME.KEY}`` references comes back as a :class:`Template`.
    """
    if "$" not in text:
        return text
    env = os.environ if environ is None else environ
    used_env = False
    parts: list[str | ServiceRef] = []
    last = 0
    for match in _REFERENCE.finditer(text):
        parts.append(text[last : match.start()])
        last = match.end()
        if match.group("dollar"):
            parts.append("$")
            continue
        body = match.group("body")
        service = _SERVICE_REF.fullmatch(body)
        if service:
            parts.append(ServiceRef(service.group("service"), service.group("key")))
            continue
        name, sep, fallback = body.partition(":-")
        if not _NAME.fullmatch(name):
            raise InterpolationError(
                f"'${{{body}}}' is not a valid reference; write ${{NAME}}, ${{NAME:-default}} or ${{services.NAME.KEY}}"
            )
        value = env.get(name)
        if value is None or (sep and value == ""):
            if not sep:
                raise InterpolationError(f"environment variable {name} is not set (referenced as '${{{name}}}')")
            value = fallback
        else:
            used_env = True
        parts.append(value)
    parts.append(text[last:])
    if any(isinstance(p, ServiceRef) for p in parts):
        return Template(_joined(parts), text, used_env)
    filled = "".join(parts)  # type: ignore[arg-type]
    return EnvStr(filled, text) if used_env else filled


def _joined(parts: list[str | ServiceRef]) -> list[str | ServiceRef]:
    """Neighbouring strings merged, empty ones left out."""
    out: list[str | ServiceRef] = []
    for part in parts:
        if isinstance(part, str) and out and isinstance(out[-1], str):
            out[-1] += part
        elif part != "":
            out.append(part)
    return out
