"""Stage parameters: attrs fields that check TOML values and describe themselves.

``param()`` declares one parameter of a stage config: its type, default, range or choices and
help. The same declaration converts and checks the value (with an error that names the field
and the bad value) and feeds ``rtstream inspect``.
"""

from __future__ import annotations

import enum
import math
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from .frames import AudioFormat
from .interpolate import EnvStr
from .text import clip, one_line
from .text import suggest as suggest  # re-exported: stages and the engine import it from here

MAX_TEXT = 4096
"""Characters a string parameter (or one item of a list of strings) may hold unless it says otherwise."""
MAX_ITEMS = 1000
"""Items a list parameter may hold unless it says otherwise."""
MAX_FILE = 64 << 20
"""Bytes an input file may hold unless its parameter says otherwise."""
INT_LIMIT = (1 << 63) - 1
"""Integers beyond a signed 64-bit word are refused everywhere (numpy, trio and sockets cannot take them)."""


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
    """A value as the user wrote it, on one line and cut if long; values with ``${...}`` as written."""
    if isinstance(value, EnvStr):
        return clip(repr(value.source))
    if isinstance(value, enum.Enum):
        return repr(value.value)
    if isinstance(value, tuple | list):
        return clip("[" + ", ".join(show(v) for v in value[:20]) + ("]" if len(value) <= 20 else ", ...]"))
    if isinstance(value, dict):
        return clip(repr({k: "..." for k in list(value)[:5]}) if value else "{}")
    return clip(repr(value))


def show_path(path: str) -> str:
    """A path for a message, unquoted as in the OS's own messages; as written when it came from the environment."""
    return clip(one_line(path.source if isinstance(path, EnvStr) else str(path)), 200)


def number(value: float) -> str:
    """A bound as text: integers in full (8388608), other numbers short (0.001, 1e-06)."""
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e16):
        return str(int(value))
    return f"{value:g}"


@attrs.frozen
class ParamInfo:
    """What ``rtstream inspect`` shows of one parameter, and what the fuzz tests generate from."""

    name: str
    type: str
    default: str | None
    """The default as TOML-ish text; None when the parameter is required."""
    allowed: str
    help: str
    unit: str | None
    secret: bool
    value_type: Any = None
    """The declared type: ``int``, ``float``, ``str``, ``bool``, an Enum, or ``(T,)`` for a list of T."""
    optional: bool = False
    min: float | None = None
    max: float | None = None
    gt: float | None = None
    """An exclusive lower bound."""
    choices: tuple[Any, ...] | None = None
    kind: str | None = None
    """A check beyond the type (see :data:`KINDS`)."""
    max_length: int | None = None
    """For strings, the most characters."""


def _is_enum(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, enum.Enum)


def _coerce_env(value: EnvStr, tp: Any) -> Any:
    """A whole-string ``${VAR}`` (or its fallback) given to a number or boolean parameter is parsed as one."""
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


def _convert_scalar(name: str, value: Any, tp: Any, max_length: int) -> Any:
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
        if abs(value) > INT_LIMIT:
            raise ParamError(name, f"must be a finite number of sensible size, got {show(value)}")
        value = float(value)
    if (isinstance(value, bool) and tp is not bool) or not isinstance(value, tp):
        got = type_name(type(value))
        raise ParamError(name, f"must be {_a(type_name(tp))}, got {show(value)} ({_a(got)})")
    if tp is float and not math.isfinite(value):
        raise ParamError(name, f"must be a finite number, got {show(value)}")
    if tp is str and len(value) > max_length:
        raise ParamError(name, f"must be at most {max_length} characters, got {len(value)}")
    return value


def _describe_range(lo: Any, hi: Any, gt: Any) -> str:
    if gt is not None:
        return f"greater than {number(gt)}" + (f" and at most {number(hi)}" if hi is not None else "")
    if lo is not None and hi is not None:
        return f"between {number(lo)} and {number(hi)}"
    if lo is not None:
        return f"at least {number(lo)}"
    if hi is not None:
        return f"at most {number(hi)}"
    return ""


# -- kinds: checks of what a string names, made before anything starts ----------------------------


def _ws_url(value: str, max_size: int) -> str | None:
    wanted = f"must be a ws:// or wss:// URL with a host, got {show(value)}"
    if not value.isprintable() or " " in value:
        return wanted
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return f"{wanted} (its port must be a number from 1 to 65535)"
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        return wanted
    if port == 0:
        return f"{wanted} (its port must be a number from 1 to 65535)"
    return None


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _what(mode: int) -> str:
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


def _input_file(value: str, max_size: int) -> str | None:
    """A regular, readable file of bounded size; never opened here (a FIFO would block)."""
    shown = show_path(value)
    if not value:
        return "must name a file, got ''"
    try:
        info = os.stat(value)
    except FileNotFoundError:
        return f"file not found: {shown}"
    except (OSError, ValueError) as exc:
        return f"cannot read {shown}: {getattr(exc, 'strerror', None) or exc}"
    if not stat.S_ISREG(info.st_mode):
        return f"is {_what(info.st_mode)}, not a regular file: {shown}"
    if not os.access(value, os.R_OK):
        return f"is not readable: {shown}"
    if info.st_size > max_size:
        return f"is {info.st_size} bytes, more than the {max_size} read: {shown}"
    return None


def _writable_dir(info: os.stat_result, path: str) -> bool:
    # os.access is always true for root; a directory without any write bit (/proc, a read-only mount) is not
    return bool(info.st_mode & 0o222) and os.access(path, os.W_OK | os.X_OK)


def output_path_problem(value: str, max_size: int = 0) -> str | None:
    """What stops ``value`` being written: a directory, a FIFO, a folder that cannot be written; None if nothing."""
    shown = show_path(value)
    if not value:
        return "must name a file, got ''"
    if isinstance(value, EnvStr) and value.secret and "${" in os.path.basename(value.source):
        return (
            f"takes its file name from the environment ({shown}), which would put that value on disk; "
            "take only the folder from the environment"
        )
    if value.endswith(("/", os.sep)):
        return f"names a directory, not a file: {shown}"
    not_a_folder = f"cannot be created: a part of its folder is not a directory: {shown}"
    try:
        info = os.stat(value)
    except FileNotFoundError:
        info = None
    except NotADirectoryError:
        return not_a_folder
    except (OSError, ValueError) as exc:
        return f"cannot write {shown}: {getattr(exc, 'strerror', None) or exc}"
    if info is not None:
        if not stat.S_ISREG(info.st_mode):
            return f"is {_what(info.st_mode)}, not a file that can be written: {shown}"
        if not os.access(value, os.W_OK):
            return f"is not writable: {shown}"
        return None
    folder = Path(value).parent
    while True:
        try:
            info = os.stat(folder)
            break
        except FileNotFoundError:
            folder = folder.parent
        except NotADirectoryError:
            return not_a_folder
        except OSError as exc:
            return f"cannot write {shown}: {exc.strerror or exc}"
    if not stat.S_ISDIR(info.st_mode):
        return not_a_folder
    if not _writable_dir(info, str(folder)):
        return f"cannot be created: its folder is not writable: {shown}"
    return None


def _header(value: str, max_size: int) -> str | None:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return f"must not hold control characters (it is sent in a header), got {show(value)}"
    return None


KINDS: dict[str, Callable[[str, int], str | None]] = {
    "ws_url": _ws_url,
    "input_file": _input_file,
    "output_path": output_path_problem,
    "header": _header,
}
"""Checks of a string parameter beyond its type, by name: each returns what is wrong, or None.

``ws_url``: a ws:// or wss:// URL with a host and a port from 1 to 65535. ``input_file``: an
existing regular file, readable, at most ``max_size`` bytes (it is not opened: a FIFO would
block). ``output_path``: a file that can be created or overwritten, its file name not taken
from the environment. ``header``: no control characters (the value goes into a header).
"""


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
    kind: str | None = None,
    max_length: int = MAX_TEXT,
    max_items: int = MAX_ITEMS,
    max_size: int = MAX_FILE,
) -> Any:
    """Declare a stage parameter.

    ``type`` defaults to the type of ``default``; a list parameter is written ``(int,)``.
    ``optional`` allows None (the default then is None unless given). ``min``/``max`` are
    inclusive bounds, ``gt`` an exclusive lower bound; ``choices`` restricts to listed values.
    Numbers are finite, integers fit 64 bits, strings hold at most ``max_length`` characters
    and lists ``max_items`` items. ``kind`` adds a check of what a string names (:data:`KINDS`;
    ``max_size`` bounds an ``input_file``). ``secret`` values never appear in reprs, reports or logs.
    """
    if optional and default is attrs.NOTHING:
        default = None
    tp = type
    if tp is None:
        if default is attrs.NOTHING or default is None or isinstance(default, tuple):
            raise TypeError("param() needs a type when its default does not show it")
        tp = default.__class__
    if kind is not None and kind not in KINDS:
        raise TypeError(f"param(kind={kind!r}): kinds are {', '.join(KINDS)}")
    range_text = _describe_range(min, max, gt)
    choice_values = tuple(choices) if choices is not None else None
    kind_check = KINDS[kind] if kind is not None else None

    def check(value: Any, field: attrs.Attribute) -> Any:
        if value is None and optional:
            return None
        if isinstance(tp, tuple):
            if not isinstance(value, list | tuple):
                raise ParamError(field.name, f"must be {_a(type_name(tp))}, got {show(value)}")
            if len(value) > max_items:
                raise ParamError(field.name, f"must hold at most {max_items} items, got {len(value)}")
            items = tuple(_convert_scalar(field.name, v, tp[0], max_length) for v in value)
            for item in items:
                _check_bounds(field.name, item)
            return items
        value = _convert_scalar(field.name, value, tp, max_length)
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
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_LIMIT:
            raise ParamError(name, f"must fit in 64 bits (at most {INT_LIMIT} either side of 0), got {show(value)}")
        if kind_check is not None:
            problem = kind_check(value, max_size)
            if problem is not None:
                raise ParamError(name, problem)

    if _is_enum(tp):
        allowed = ", ".join(m.value for m in tp)
    elif choice_values is not None:
        allowed = ", ".join(str(c) for c in choice_values)
    else:
        allowed = range_text
    metadata = {
        "help": help,
        "param": {
            "type": tp,
            "allowed": allowed,
            "unit": unit,
            "secret": secret,
            "optional": optional,
            "min": min,
            "max": max,
            "gt": gt,
            "choices": choice_values,
            "kind": kind,
            "max_length": max_length if tp is str or tp == (str,) else None,
        },
    }
    return attrs.field(
        default=default,
        converter=attrs.Converter(check, takes_field=True),
        metadata=metadata,
        repr=(lambda v: "***") if secret else True,
    )


def require_at_least(key: str, value: float, other_key: str, other: float) -> None:
    """A ParamError on ``key`` unless ``value`` is at least ``other`` (the value of ``other_key``).

    For bounds between parameters: a chunk limit below the chunk unit, say, would leave a core
    with no size it may send, looping or stalling at run time.
    """
    if value < other:
        raise ParamError(key, f"must be at least {other_key} ({number(other)}), got {number(value)}")


def whole_samples(fmt: AudioFormat, ms: float, key: str) -> int:
    """Samples per channel in ``ms`` at ``fmt``; a ParamError on ``key`` unless a whole number.

    For a stage's ``resolve``: a frame or tick length its negotiated input rate cannot divide
    (10 ms at 22050 Hz) is a configuration error before anything starts.
    """
    try:
        samples = fmt.samples_in(ms)
    except ValueError as exc:
        raise ParamError(key, f"{exc}; the stage's input is {fmt}") from None
    if samples < 1:
        raise ParamError(key, f"{ms:g} ms at {fmt.sample_rate} Hz is less than one sample; the stage's input is {fmt}")
    return samples


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
                value_type=meta["type"],
                optional=meta["optional"],
                min=meta["min"],
                max=meta["max"],
                gt=meta["gt"],
                choices=meta["choices"],
                kind=meta["kind"],
                max_length=meta["max_length"],
            )
        )
    return infos


def param_names(cls: type) -> list[str]:
    """The names a TOML table may set on a stage config class."""
    return [info.name for info in params_of(cls)]
