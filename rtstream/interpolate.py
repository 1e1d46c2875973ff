"""``${NAME}`` in TOML strings: secrets and per-machine values come from the environment.

``${NAME}`` takes the variable (an error if it is unset), ``${NAME:-fallback}`` falls back when
it is unset or empty, ``$$`` is a literal dollar sign. A string that took anything from the
environment becomes an :class:`EnvStr`, which remembers how it was written so that error
messages and reports show ``${API_KEY}``, never the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

_REFERENCE = re.compile(r"\$(?:\{(?P<body>[^}]*)\}|(?P<dollar>\$))")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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


def interpolate(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Fill the ``${NAME}`` references in ``text`` from ``environ`` (default ``os.environ``)."""
    if "$" not in text:
        return text
    env = os.environ if environ is None else environ
    used_env = False

    def fill(match: re.Match[str]) -> str:
        nonlocal used_env
        if match.group("dollar"):
            return "$"
        body = match.group("body")
        name, sep, fallback = body.partition(":-")
        if not _NAME.fullmatch(name):
            raise InterpolationError(f"'${{{body}}}' is not a valid reference; write ${{NAME}} or ${{NAME:-default}}")
        value = env.get(name)
        if value is None or (sep and value == ""):
            if not sep:
                raise InterpolationError(f"environment variable {name} is not set (referenced as '${{{name}}}')")
            return fallback
        used_env = True
        return value

    filled = _REFERENCE.sub(fill, text)
    return EnvStr(filled, text) if used_env else filled
