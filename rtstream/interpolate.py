"""``${NAME}`` in TOML strings: secrets and per-machine values come from the environment.

``${NAME}`` takes the variable (an error if it is unset), ``${NAME:-fallback}`` falls back when
it is unset or empty, ``$$`` is a literal dollar sign. The fallback is literal text and may hold
balanced braces (``${OUT:-out/call-{call}.wav}``). A string with a reference becomes an
:class:`EnvStr`, which remembers how it was written: error messages show ``${API_KEY}``, never
the key, and a number or boolean parameter parses it whether it came from the environment or
from the fallback (``${PORT:-8080}``). Every value taken from the environment is also given to
:func:`rtstream.redact.remember`, so that it is scrubbed from logs and reports.

``${services.NAME.KEY}`` (the dots tell it from a variable) refers to an address of a service
the run starts, such as its ``url``; it is only known once the service listens, so such a
string becomes a :class:`Template`, filled in later with :meth:`Template.fill`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence

import attrs

from . import redact
from .text import clip, suggest

_BRACE = re.compile(r"[{}]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SERVICE_REF = re.compile(r"services\.(?P<service>[A-Za-z_][A-Za-z0-9_-]*)\.(?P<key>[A-Za-z_][A-Za-z0-9_]*)")


class EnvStr(str):
    """A string written with ``${...}`` references; ``source`` is the text as written.

    ``secret`` is true when some of it came from the environment (not only from fallbacks).
    """

    source: str
    secret: bool

    def __new__(cls, value: str, source: str, secret: bool = True) -> EnvStr:
        self = super().__new__(cls, value)
        self.source = source
        self.secret = secret
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
                listed = ", ".join(sorted(known))
                hint = suggest(part.key, list(known))
                raise InterpolationError(
                    f"'${{services.{part.service}.{part.key}}}': the service has no '{part.key}'{hint}; "
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
    used_env = referenced = False
    parts: list[str | ServiceRef] = []
    last = 0
    for start, body, end in _references(text):
        parts.append(text[last:start])
        last = end
        if body is None:
            parts.append("$")
            continue
        referenced = True
        service = _SERVICE_REF.fullmatch(body)
        if service:
            parts.append(ServiceRef(service.group("service"), service.group("key")))
            continue
        name, sep, fallback = body.partition(":-")
        if not _NAME.fullmatch(name):
            raise InterpolationError(
                f"{clip(repr('${' + body + '}'))} is not a valid reference; "
                "write ${NAME}, ${NAME:-default} or ${services.NAME.KEY}"
            )
        value = env.get(name)
        if value is None or (sep and value == ""):
            if not sep:
                raise InterpolationError(f"environment variable {name} is not set (referenced as '${{{name}}}')")
            value = fallback
        else:
            used_env = True
            redact.remember(name, value)
        parts.append(value)
    parts.append(text[last:])
    if any(isinstance(p, ServiceRef) for p in parts):
        return Template(_joined(parts), text, used_env)
    filled = "".join(parts)  # type: ignore[arg-type]  # no ServiceRef is left in parts
    return EnvStr(filled, text, used_env) if referenced else filled


def _references(text: str) -> Iterator[tuple[int, str | None, int]]:
    """``(start, body, end)`` of each ``${body}`` in ``text`` (body None for ``$$``).

    The body ends at the brace that balances its opening one, so a fallback may hold ``{call}``.
    """
    i = text.find("$")
    while i != -1:
        following = text[i + 1 : i + 2]
        if following == "$":
            yield i, None, i + 2
            i = text.find("$", i + 2)
            continue
        if following != "{":
            i = text.find("$", i + 1)
            continue
        depth, j = 1, i + 2
        while depth:
            brace = _BRACE.search(text, j)
            if brace is None:
                raise InterpolationError(f"{clip(repr(text[i:]))} has no closing '}}'")
            depth += 1 if brace.group() == "{" else -1
            j = brace.end()
        yield i, text[i + 2 : j - 1], j
        i = text.find("$", j)


def _joined(parts: list[str | ServiceRef]) -> list[str | ServiceRef]:
    """Neighbouring strings merged, empty ones left out."""
    out: list[str | ServiceRef] = []
    for part in parts:
        if isinstance(part, str) and out and isinstance(out[-1], str):
            out[-1] += part
        elif part != "":
            out.append(part)
    return out
