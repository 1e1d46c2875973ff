"""Stage parameters: attrs fields that check TOML values and describe themselves.

``param()`` declares one parameter of a stage config: its type, default, range or choices and
help. The same declaration converts and checks the value (with an error that names the field
and the bad value) and feeds ``rtstream inspect``.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Sequence
from typing import Any

import attrs

from .frames import AudioFormat
from .interpolate import EnvStr


class ParamError(ValueError):
    """A parameter value was refused; ``key`` names the parameter."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


_TYPE_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def type_name(tp: Any) -> str:
    """A user-facing name for a parameter type."""
    if isinstance(tp, tuple):
        return f"list of {type_name(tp[0])}s"
    if _is_enum(tp):
        return "choice"
    for base in getattr(tp, "__mro__", (tp,)):
        if base in _TYPE_NAMES:
            return _TYPE_NAMES[base]
    return getattr(tp, "__name__", str(tp))


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def show(value: Any) -> str:
    """A value as the user wrote it; values that came from the environment stay hidden."""
    if isinstance(value, EnvStr):
        return repr(value.source)
    if isinstance(value, enum.Enum):
        return repr(value.value)
    if isinstance(value, tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return repr(value)


def suggest(word: str, options: Sequence[str]) -> str:
    """' (did you mean 'x'?)' when one of ``options`` is close to ``word``, else ''."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


@attrs.frozen
class ParamInfo:
    """What ``rtstream inspect`` shows of one parameter."""

    name: str
    type: str
    default: str | None
    """The default as TOML-ish text; None when the parameter is required."""
    allowed: str
    help: str
    unit: str | None
    secret: bool


def _is_enum(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, enum.Enum)


def _coerce_env(value: EnvStr, tp: Any) -> Any:
    """A whole-string ``${VAR}`` given to a number or boolean parameter is parsed as one."""
    text = value.strip()
    if tp is bool:
        lowered = text.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        return value
    try:
        return tp(text)
    except ValueError:
        return value


def _convert_scalar(name: str, value: Any, tp: Any) -> Any:
    if isinstance(value, EnvStr) and tp in (int, float, bool):
        value = _coerce_env(value, tp)
    if _is_enum(tp):
        if isinstance(value, tp):
            return value
        options = [m.value for m in tp]
        if isinstance(value, str) and value in options:
            return tp(value)
        listed = ", ".join(repr(o) for o in options)
        hint = suggest(value, options) if isinstance(value, str) else ""
        raise ParamError(name, f"must be one of {listed}, got {show(value)}{hint}")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (isinstance(value, bool) and tp is not bool) or not isinstance(value, tp):
        got = type_name(type(value))
        raise ParamError(name, f"must be {_a(type_name(tp))}, got {show(value)} ({_a(got)})")
    return value


def _describe_range(lo: Any, hi: Any, gt: Any) -> str:
    if gt is not None:
        return f"greater than {gt:g}" + (f" and at most {hi:g}" if hi is not None else "")
    if lo is not None and hi is not None:
        return f"between {lo:g} and {hi:g}"
    if lo is not None:
        return f"at least {lo:g}"
    if hi is not None:
        return f"at most {hi:g}"
    return ""


def param(
    default: Any = attrs.NOTHING,
    *,
    help: str,
    type: Any = None,
    min: float | None = None,
    max: float | None = None,
    gt: float | None = None,
    choices: Sequence[Any] | None = None,
    unit: str | None = None,
    optional: bool = False,
    secret: bool = False,
) -> Any:
    """Declare a stage parameter.

    ``type`` defaults to the type of ``default``; a list parameter is written ``(int,)``.
    ``optional`` allows None (the default then is None unless given). ``min``/``max`` are
    inclusive bounds, ``gt`` an exclusive lower bound; ``choices`` restricts to listed values.
    ``secret`` values never appear in reprs, reports or logs.
    """
    if optional and default is attrs.NOTHING:
        default = None
    tp = type
    if tp is None:
        if default is attrs.NOTHING or default is None or isinstance(default, tuple):
            raise TypeError("param() needs a type when its default does not show it")
        tp = default.__class__
    range_text = _describe_range(min, max, gt)
    choice_values = tuple(choices) if choices is not None else None

    def check(value: Any, field: attrs.Attribute) -> Any:
        if value is None and optional:
            return None
        if isinstance(tp, tuple):
            if not isinstance(value, list | tuple):
                raise ParamError(field.name, f"must be {_a(type_name(tp))}, got {show(value)}")
            items = tuple(_convert_scalar(field.name, v, tp[0]) for v in value)
            for item in items:
                _check_bounds(field.name, item)
            return items
        value = _convert_scalar(field.name, value, tp)
        _check_bounds(field.name, value)
        return value

    def _check_bounds(name: str, value: Any) -> None:
        if choice_values is not None and value not in choice_values:
            listed = ", ".join(show(c) for c in choice_values)
            hint = suggest(value, [str(c) for c in choice_values]) if isinstance(value, str) else ""
            raise ParamError(name, f"must be one of {listed}, got {show(value)}{hint}")
        if range_text and not (
            (min is None or value >= min) and (max is None or value <= max) and (gt is None or value > gt)
        ):
            raise ParamError(name, f"must be {range_text}, got {show(value)}")

    if _is_enum(tp):
        allowed = ", ".join(m.value for m in tp)
    elif choice_values is not None:
        allowed = ", ".join(str(c) for c in choice_values)
    else:
        allowed = range_text
    metadata = {
        "help": help,
        "param": {"type": tp, "allowed": allowed, "unit": unit, "secret": secret, "optional": optional},
    }
    return attrs.field(
        default=default,
        converter=attrs.Converter(check, takes_field=True),
        metadata=metadata,
        repr=(lambda v: "***") if secret else True,
    )


def whole_samples(fmt: AudioFormat, ms: float, key: str) -> int:
    """Samples per channel in ``ms`` at ``fmt``; a ParamError on ``key`` unless a whole number.

    For a stage's ``resolve``: a frame or tick length its negotiated input rate cannot divide
    (10 ms at 22050 Hz) is a configuration error before anything starts.
    """
    try:
        return fmt.samples_in(ms)
    except ValueError as exc:
        raise ParamError(key, f"{exc}; the stage's input is {fmt}") from None


def _format_default(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return repr(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "[" + ", ".join(_format_default(v) for v in value) + "]"
    return repr(value)


def params_of(cls: type) -> list[ParamInfo]:
    """The parameters a stage config class declares with ``param()``, in order."""
    infos = []
    for field in attrs.fields(cls):
        meta = field.metadata.get("param")
        if meta is None or not field.init:
            continue
        default = None if field.default is attrs.NOTHING else _format_default(field.default)
        infos.append(
            ParamInfo(
                name=field.name,
                type=type_name(meta["type"]) + (" or none" if meta["optional"] else ""),
                default=default,
                allowed=meta["allowed"],
                help=field.metadata["help"],
                unit=meta["unit"],
                secret=meta["secret"],
            )
        )
    return infos


def param_names(cls: type) -> list[str]:
    """The names a TOML table may set on a stage config class."""
    return [info.name for info in params_of(cls)]
