"""Bad configs, generated from the registry's own parameter descriptions, each refused in one line.

Every parameter of every registered stage and service type gets values its declaration refuses
(wrong types, out of range, non-finite, too long, what its kind forbids), some of them written
through ``${FUZZ_SECRET}``. Each config goes through ``rtstream validate``; the answer must be
exit status 2, exactly one line, no traceback, and never the secret. Values at the declared
bounds must validate, or be refused the same way (a derived quantity may still be out of range).
A new stage or parameter is covered as soon as it is registered; a stage that needs more than
its required parameters to build names them in ``BASE``.
"""

from __future__ import annotations

import enum
import json
import math
import os
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtstream import registry
from rtstream.cli import main
from rtstream.frames import AudioFormat, Encoding
from rtstream.params import INT_LIMIT, ParamInfo
from rtstream.wavfile import write_wav

SECRET = "fuzz-secret-7f3a9c2e"
ENV = {"FUZZ_SECRET": SECRET}

BASE: dict[str, dict[str, Any]] = {
    name: {"transcript": "Hello."} for name in ("cartesia_tts", "elevenlabs_tts", "deepgram_tts")
}
"""Parameters a stage needs besides its required ones (a TTS stage as a source: one of three transcript keys)."""

STAGES = registry.stages()
SERVICES = registry.services()
CASES = [(info, p) for info in [*STAGES, *SERVICES] for p in info.params]
IDS = [f"{info.name}.{p.name}" for info, p in CASES]
BOUNDED = [
    (info, p)
    for info, p in CASES
    if p.choices is not None or (p.value_type[0] if isinstance(p.value_type, tuple) else p.value_type) in (int, float)
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Paths the strategies name: a good WAV, a folder, a FIFO, a plain file, nothing at all."""
    root = tmp_path_factory.mktemp("fuzz")
    wav = root / "good.wav"
    fmt = AudioFormat(Encoding.PCM_S16LE, 8000)
    write_wav(wav, fmt.array(bytes(1600)), fmt)
    (root / "folder").mkdir()
    os.mkfifo(root / "fifo")
    (root / "plain").write_text("not a folder")
    return {
        "wav": str(wav),
        "folder": str(root / "folder"),
        "fifo": str(root / "fifo"),
        "plain": str(root / "plain"),
        "missing": str(root / "missing" / "x.wav"),
        "out": str(root / "out" / "x.wav"),
    }


# -- TOML out ------------------------------------------------------------------------------------


def toml(value: Any) -> str:
    """``value`` as a TOML value (strings escaped so that any text survives)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml(str(k))} = {toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def table(header: str, params: dict[str, Any]) -> str:
    return header + "\n" + "".join(f"{toml(k)} = {toml(v)}\n" for k, v in params.items())


def required(info: Any, files: dict[str, str]) -> dict[str, Any]:
    """Good values for the parameters the type requires, chosen from each one's description."""
    good: dict[str, Any] = dict(BASE.get(info.name, {}))
    for p in info.params:
        if p.default is None and not p.optional and p.name not in good:
            good[p.name] = {"ws_url": "ws://127.0.0.1:9/", "input_file": files["wav"], "output_path": files["out"]}.get(
                p.kind or "", "x"
            )
    return good


def config_for(info: Any, params: dict[str, Any], files: dict[str, str], pipeline: str = "p") -> str:
    """A file where ``info`` (a stage or service type) takes ``params``, everything around it valid."""
    name = toml(pipeline)
    stage = f"[[pipelines.{name}.stages]]"
    source = table(stage, {"type": "tone", "sample_rate": 8000, "duration": 0.1})
    convert = table(stage, {"type": "converter"})
    sink = table(stage, {"type": "null_sink"})
    if isinstance(info, registry.ServiceInfo):
        return table("[services.s]", {"type": info.name, **params}) + f"[pipelines.{name}]\n" + source + sink
    own = table(stage, {"type": info.name, **params})
    role = info.cls.role
    if info.name == "pacer":  # it takes only frames of its frame_ms: a chunker before it cuts them
        given = params.get("frame_ms")
        ms = given if isinstance(given, int | float) and not isinstance(given, bool) else 60.0
        convert += table(stage, {"type": "chunker", "frame_ms": ms})
    body = {"source": [own, sink], "filter": [source, convert, own, sink], "sink": [source, convert, own]}[role]
    text = f"[pipelines.{name}]\n" + "".join(body)
    if info.name in CALL_STAGES:  # they run only in a call, on its socket
        text += table("[calls.c]", {"path": "/c", "protocol": "raw", "pipelines": [pipeline]})
    return text


CALL_STAGES = ("telephony_in", "telephony_out", "agent_in", "agent_out")


# -- the values ----------------------------------------------------------------------------------

ANY_TOML = st.one_of(
    st.text(max_size=8),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.lists(st.integers(0, 9), max_size=2),
    st.dictionaries(st.sampled_from("ab"), st.integers(0, 9), max_size=1),
)


def _accepts(tp: Any, value: Any) -> bool:
    """Whether a value of this Python type is of the parameter's type (before ranges and choices)."""
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return isinstance(value, str)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(value, bool):
        return tp is bool
    return isinstance(value, tp)


def with_secret(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Bad strings, some with the secret spliced in through ``${FUZZ_SECRET}``."""
    return strategy | strategy.map(lambda s: s[: len(s) // 2] + "${FUZZ_SECRET}" + s[len(s) // 2 :])


def bad_numbers(p: ParamInfo, tp: Any) -> list[st.SearchStrategy[Any]]:
    out: list[st.SearchStrategy[Any]] = [st.sampled_from([10**30, -(10**30), INT_LIMIT + 1])]
    if tp is float:
        out.append(st.sampled_from([math.nan, math.inf, -math.inf]))
    low = p.gt if p.gt is not None else p.min
    if low is not None:
        if tp is int:
            top = math.ceil(low) - (0 if p.gt is not None else 1)
            out.append(st.integers(min_value=top - 10**6, max_value=top))
        else:
            out.append(st.floats(max_value=low, exclude_max=p.gt is None, min_value=-1e300))
    if p.max is not None:
        if tp is int:
            out.append(st.integers(min_value=math.floor(p.max) + 1, max_value=math.floor(p.max) + 10**6))
        else:
            out.append(st.floats(min_value=p.max, exclude_min=True, max_value=1e300))
    if p.choices is not None:
        out.append(st.integers(-(10**6), 10**6).filter(lambda v: v not in p.choices))
    return out


def bad_strings(p: ParamInfo, files: dict[str, str]) -> list[st.SearchStrategy[Any]]:
    out: list[st.SearchStrategy[Any]] = []
    if p.max_length is not None:
        out.append(st.integers(1, 50).map(lambda n: "x" * (p.max_length + n)))
    if p.choices is not None:
        out.append(with_secret(st.text(max_size=12).filter(lambda v: v not in p.choices)))
    if p.kind == "ws_url":
        out.append(
            with_secret(
                st.sampled_from(["", "http://h/", "h:80", "ws://", "ws://h:0/", "ws://h:99999/", "ws://h:x/", "ws:/h"])
                | st.text(max_size=12).filter(lambda v: "://" not in v)
            )
        )
    elif p.kind == "input_file":
        out.append(with_secret(st.sampled_from([files["missing"], files["folder"], files["fifo"], ""])))
    elif p.kind == "output_path":
        out.append(st.sampled_from(["", files["folder"], files["fifo"], files["plain"] + "/x.wav", "/proc/x.wav"]))
        out.append(st.just(str(Path(files["out"]).parent / "${FUZZ_SECRET}.wav")))  # a secret as the file name
    elif p.kind == "header":
        out.append(with_secret(st.sampled_from(["a\r\nb", "\n", "a\x00b", "\x7f"])))
    return out


def bad_values(p: ParamInfo, files: dict[str, str]) -> st.SearchStrategy[Any]:
    """Values the declaration of ``p`` refuses."""
    tp = p.value_type
    listed = isinstance(tp, tuple)
    item = tp[0] if listed else tp
    wrong = ANY_TOML.filter(lambda v: not _accepts(item, v))
    wrong_strings = with_secret(st.text(min_size=1, max_size=8).filter(lambda v: not _numeric(v)))
    if item in (int, float, bool):
        # a string is refused, an environment value that does not parse too
        wrong = wrong | wrong_strings | st.just("${FUZZ_SECRET}")
    if isinstance(item, type) and issubclass(item, enum.Enum):
        wrong = wrong | with_secret(st.text(max_size=12).filter(lambda v: v not in {m.value for m in item}))
    scalars = [wrong]
    if item in (int, float):
        scalars += bad_numbers(p, item)
    elif item is str:
        scalars += bad_strings(p, files)
    scalar = st.one_of(scalars)
    if not listed:
        return scalar
    return st.one_of(
        st.lists(scalar, min_size=1, max_size=3),
        ANY_TOML.filter(lambda v: not isinstance(v, list)),
    )


def edge_values(p: ParamInfo) -> st.SearchStrategy[Any]:
    """Values the declaration accepts, at and near its bounds."""
    tp = p.value_type
    item = tp[0] if isinstance(tp, tuple) else tp
    if p.choices is not None:
        values: st.SearchStrategy[Any] = st.sampled_from(p.choices)
    elif item is int:
        lo = int(p.min if p.min is not None else (math.floor(p.gt) + 1 if p.gt is not None else -INT_LIMIT))
        hi = int(p.max if p.max is not None else INT_LIMIT)
        values = st.sampled_from([lo, hi]) | st.integers(lo, hi)
    elif item is float:
        lo = p.min if p.min is not None else (p.gt if p.gt is not None else -1e300)
        hi = p.max if p.max is not None else 1e300
        values = st.floats(lo, hi, exclude_min=p.gt is not None, allow_nan=False)
    else:
        raise AssertionError(f"{p.name} has no bounds")
    return st.lists(values, min_size=2, max_size=2) if isinstance(tp, tuple) else values


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text.strip().lower() in ("true", "false", "yes", "no", "on", "off")
    return True


# -- the checks ----------------------------------------------------------------------------------


def validate(text: str, tmp: Path) -> tuple[int, str, BaseException | None]:
    path = tmp / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["validate", str(path)], env=ENV)
    return result.exit_code, result.output, result.exception


def assert_refused_in_one_line(code: int, output: str, exception: BaseException | None) -> None:
    assert isinstance(exception, SystemExit), f"a traceback, not a message: {exception!r}"
    assert code == 2, output
    assert output.startswith("Error: ") and output.endswith("\n") and output.count("\n") == 1, output
    assert not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in output[:-1]), output
    assert "Traceback" not in output
    assert SECRET not in output


FUZZ = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_every_type_builds_from_its_base_parameters(files, tmp_path):
    """The ground the other tests stand on: each type with only its required (and BASE) values is valid."""
    for info in [*STAGES, *SERVICES]:
        code, output, _ = validate(config_for(info, required(info, files), files), tmp_path)
        assert code == 0, f"{info.name}: {output} (add what it needs to BASE)"


@pytest.mark.parametrize(("info", "p"), CASES, ids=IDS)
@FUZZ
@given(data=st.data())
def test_a_bad_value_is_refused_in_one_line(info, p, data, files, tmp_path):
    value = data.draw(bad_values(p, files), label=p.name)
    code, output, exception = validate(config_for(info, {**required(info, files), p.name: value}, files), tmp_path)
    assert_refused_in_one_line(code, output, exception)
    assert "key '" in output  # it names the key (the given one, or the one a cross-check blames)


@pytest.mark.parametrize(("info", "p"), BOUNDED, ids=[f"{info.name}.{p.name}" for info, p in BOUNDED])
@FUZZ
@given(data=st.data())
def test_a_value_at_the_bounds_validates_or_is_refused_in_one_line(info, p, data, files, tmp_path):
    value = data.draw(edge_values(p), label=p.name)
    code, output, exception = validate(config_for(info, {**required(info, files), p.name: value}, files), tmp_path)
    if code != 0:
        assert_refused_in_one_line(code, output, exception)


NAMES = st.text(min_size=1, max_size=12).filter(lambda s: s.strip() == s and s)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pipeline=NAMES, key=NAMES, label=NAMES)
def test_names_with_control_characters_stay_on_one_line(pipeline, key, label, files, tmp_path):
    text = config_for(registry.get("tone"), {"name": label, key: "${FUZZ_SECRET}\n"}, files, pipeline=pipeline)
    assert_refused_in_one_line(*validate(text, tmp_path))


@pytest.mark.parametrize("depth", [33, 200, 5000])
@pytest.mark.parametrize("shape", ["[{}]", "{{a = {}}}"])
def test_deep_nesting_is_refused_in_one_line(shape, depth, files, tmp_path):
    value = "1"
    for _ in range(depth):
        value = shape.format(value)
    text = config_for(registry.get("tone"), {}, files).replace("[[pipelines", f"x = {value}\n[[pipelines", 1)
    assert_refused_in_one_line(*validate(text, tmp_path))


SUBPROCESS_CASES = [
    ("telephony_ws", {"url": "http://${FUZZ_SECRET}/x"}),
    ("wav_source", {"path": "fifo"}),
    ("chunker", {"frame_ms": 1e-300}),
    ("tone", {"duration": math.inf}),
    ("wav_sink", {"path": "folder"}),
    ("cartesia_tts", {"api_key": "${FUZZ_SECRET}\r\nX: y"}),
]


@pytest.mark.parametrize(("name", "params"), SUBPROCESS_CASES, ids=[n for n, _ in SUBPROCESS_CASES])
def test_through_the_real_command(name, params, files, tmp_path):
    info = registry.get(name)
    params = {k: files.get(v, v) if isinstance(v, str) else v for k, v in params.items()}
    path = tmp_path / "fuzz.toml"
    path.write_text(config_for(info, {**required(info, files), **params}, files), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-P", "-m", "rtstream.cli", "validate", str(path)],
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert_refused_in_one_line(done.returncode, done.stderr, SystemExit(2))


@pytest.mark.slow
@pytest.mark.parametrize(("info", "p"), CASES, ids=IDS)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_many_bad_values_are_refused_in_one_line(info, p, data, files, tmp_path):
    value = data.draw(bad_values(p, files), label=p.name)
    code, output, exception = validate(config_for(info, {**required(info, files), p.name: value}, files), tmp_path)
    assert_refused_in_one_line(code, output, exception)
