"""``${NAME}`` in TOML strings: secrets and per-machine values come from the environment.

``${NAME}`` takes the variable (an error if it is unset), ``${NAME:-fallback}`` falls back when
it is unset or empty, ``$$`` is a literal dollar sign. The fallback is literal text and may hold
balanced braces (``${OUT:-out/call-{call}.wav}``). A string with a reference becomes an
:class:`EnvStr`, which remembers how it was written: error messages show ``${API_KEY}``, never
the key, and a number or boolean parameter parses it whether it came from the environment or
from the fallback (``${PORT:-8080}``). Every value taken from the environment is also given to
:func:`rtstream.redact.remember`, so that it is scrubbed from logs and reports.

``${services.NAME.KEY}``, ``${call.KEY}`` and ``${server.KEY}`` (the dots tell them from a
variable) refer to values known only once the run is under way — a service's address, the ids
of the call a pipeline runs for, the server's address (:class:`Ref`) — so such a string becomes
a :class:`Template`, filled in later with :meth:`Template.fill`.
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
_CALL_REF = re.compile(r"call\.(?P<key>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_.-]+)?)")
_SERVER_REF = re.compile(r"server\.(?P<key>[A-Za-z_][A-Za-z0-9_]*)")


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
class Ref:
    """A value known only once the run is under way.

    ``${services.NAME.KEY}`` (scope ``services``): the address ``KEY`` of the service ``NAME``,
    once it listens; ``${call.KEY}`` (scope ``call``): an id or custom parameter of the call a
    pipeline runs for (``${call.stream_id}``, ``${call.parameters.NAME}``); ``${server.KEY}``
    (scope ``server``): the address of the server the run starts (``${server.url}``).
    """

    scope: str
    name: str
    """The service's name (empty for the call and the server)."""
    key: str

    @property
    def written(self) -> str:
        middle = f"{self.name}." if self.name else ""
        return f"${{{self.scope}.{middle}{self.key}}}"


class Template:
    """A string waiting for run-time values: literal pieces and :class:`Ref` pieces."""

    def __init__(self, parts: Sequence[str | Ref], source: str, secret: bool) -> None:
        self.parts = tuple(parts)
        self.source = source
        """The text as written."""
        self.secret = secret
        """Some of it came from the environment: the filled string hides it too."""

    @property
    def refs(self) -> tuple[Ref, ...]:
        return tuple(p for p in self.parts if isinstance(p, Ref))

    def fill(
        self,
        endpoints: Mapping[str, Mapping[str, str]],
        *,
        call: Mapping[str, str] | None = None,
        server: Mapping[str, str] | None = None,
    ) -> str:
        """The string with the run-time values; InterpolationError names one that is not known."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif part.scope == "services":
                if part.name not in endpoints:
                    raise InterpolationError(f"'{part.written}': service '{part.name}' is not running")
                out.append(_lookup(part, endpoints[part.name], f"the service has no '{part.key}'"))
            elif part.scope == "call":
                if call is None:
                    raise InterpolationError(
                        f"'{part.written}' is only known in a call: list the pipeline in a [calls.NAME] table"
                    )
                out.append(_lookup(part, call, f"the call has no '{part.key}'"))
            else:
                if server is None:
                    raise InterpolationError(f"'{part.written}' needs a [server] table")
                out.append(_lookup(part, server, f"the server has no '{part.key}'"))
        filled = "".join(out)
        return EnvStr(filled, self.source) if self.secret else filled

    def __repr__(self) -> str:
        return repr(self.source)


def _lookup(ref: Ref, known: Mapping[str, str], missing: str) -> str:
    if ref.key in known:
        return known[ref.key]
    listed = ", ".join(sorted(known)) or "nothing"
    raise InterpolationError(f"'{ref.written}': {missing}{suggest(ref.key, list(known))}; it has: {listed}")


def interpolate(text: str, environ: Mapping[str, str] | None = None) -> str | Template:
    """Fill the ``${NAME}`` references in ``text`` from ``environ`` (default ``os.environ``).

    A text with run-time references (:class:`Ref`) comes back as a :class:`Template`.
    """
    if "$" not in text:
        return text
    env = os.environ if environ is None else environ
    used_env = referenced = False
    parts: list[str | Ref] = []
    last = 0
    for start, body, end in _references(text):
        parts.append(text[last:start])
        last = end
        if body is None:
            parts.append("$")
            continue
        referenced = True
        ref = _run_time_ref(body)
        if ref is not None:
            parts.append(ref)
            continue
        name, sep, fallback = body.partition(":-")
        if not _NAME.fullmatch(name):
            raise InterpolationError(
                f"{clip(repr('${' + body + '}'))} is not a valid reference; "
                "write ${NAME}, ${NAME:-default}, ${services.NAME.KEY}, ${call.KEY} or ${server.KEY}"
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
    if any(isinstance(p, Ref) for p in parts):
        return Template(_joined(parts), text, used_env)
    filled = "".join(parts)  # type: ignore[arg-type]  # no Ref is left in parts
    return EnvStr(filled, text, used_env) if referenced else filled


def _run_time_ref(body: str) -> Ref | None:
    """The :class:`Ref` that ``body`` (the inside of ``${...}``) names, if it names one."""
    if match := _SERVICE_REF.fullmatch(body):
        return Ref("services", match.group("service"), match.group("key"))
    if match := _CALL_REF.fullmatch(body):
        return Ref("call", "", match.group("key"))
    if match := _SERVER_REF.fullmatch(body):
        return Ref("server", "", match.group("key"))
    return None


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


def _joined(parts: list[str | Ref]) -> list[str | Ref]:
    """Neighbouring strings merged, empty ones left out."""
    out: list[str | Ref] = []
    for part in parts:
        if isinstance(part, str) and out and isinstance(out[-1], str):
            out[-1] += part
        elif part != "":
            out.append(part)
    return out
