import attrs
import pytest

from rtstream.frames import Encoding
from rtstream.interpolate import EnvStr, InterpolationError, interpolate
from rtstream.params import ParamError, param, params_of


@attrs.frozen(kw_only=True)
class Example:
    count: int = param(3, min=1, max=10, help="How many.")
    ratio: float = param(0.5, gt=0, help="A ratio.")
    mode: str = param("pad", choices=("pad", "hold", "drop"), help="Remainder policy.")
    encoding: Encoding = param(Encoding.PCM_S16LE, help="Encoding.")
    sizes: tuple[int, ...] = param((500, 300), type=(int,), min=1, help="Sizes.")
    name: str = param(type=str, help="Required name.")
    limit: float | None = param(type=float, optional=True, help="Optional limit.")
    flag: bool = param(False, help="A flag.")
    key: str = param("", secret=True, help="A secret.")


def make(**kw):
    return Example(**{"name": "x", **kw})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 0}, r"^count: must be between 1 and 10, got 0$"),
        ({"count": "3"}, r"^count: must be an integer, got '3' \(a string\)$"),
        ({"count": True}, r"^count: must be an integer, got True \(a boolean\)$"),
        ({"ratio": 0}, r"^ratio: must be greater than 0, got 0.0$"),
        ({"mode": "pads"}, r"^mode: must be one of 'pad', 'hold', 'drop', got 'pads' \(did you mean 'pad'\?\)$"),
        (
            {"encoding": "mulaw"},
            r"^encoding: must be one of 'pcm_s16le', 'pcm_f32le', 'pcm_mulaw', 'pcm_alaw', got 'mulaw'",
        ),
        ({"sizes": [500, 0]}, r"^sizes: must be at least 1, got 0$"),
        ({"sizes": 5}, r"^sizes: must be a list of integers, got 5$"),
        ({"flag": 1}, r"^flag: must be a boolean, got 1 \(an integer\)$"),
    ],
)
def test_bad_values_name_the_field_and_value(kwargs, message):
    with pytest.raises(ParamError, match=message):
        make(**kwargs)


def test_conversions():
    e = make(ratio=2, encoding="pcm_mulaw", sizes=[1, 2], limit=None)
    assert e.ratio == 2.0 and isinstance(e.ratio, float)
    assert e.encoding is Encoding.PCM_MULAW
    assert e.sizes == (1, 2)
    assert make(limit=3).limit == 3.0


def test_values_from_the_environment_are_parsed_for_numbers_and_hidden():
    e = make(count=EnvStr("7", "${COUNT}"), flag=EnvStr("yes", "${FLAG}"), key=EnvStr("s3cr3t", "${KEY}"))
    assert (e.count, e.flag) == (7, True)
    assert "s3cr3t" not in repr(e)
    with pytest.raises(ParamError, match=r"^count: must be an integer, got '\$\{COUNT\}' \(a string\)$"):
        make(count=EnvStr("seven", "${COUNT}"))


def test_params_describe_themselves():
    info = {p.name: p for p in params_of(Example)}
    assert info["count"].allowed == "between 1 and 10"
    assert info["count"].default == "3"
    assert info["name"].default is None
    assert info["limit"].type == "number or none"
    assert info["encoding"].allowed == "pcm_s16le, pcm_f32le, pcm_mulaw, pcm_alaw"
    assert info["sizes"].type == "list of integers"
    assert info["key"].secret


def test_interpolation():
    env = {"A": "1", "EMPTY": ""}
    assert interpolate("x${A}y", env) == "x1y"
    assert interpolate("${MISSING:-dflt}", env) == "dflt"
    assert interpolate("${EMPTY:-dflt}", env) == "dflt"
    assert interpolate("cost $$5", env) == "cost $5"
    assert interpolate("plain", env) == "plain" and not isinstance(interpolate("plain", env), EnvStr)
    filled = interpolate("${A}", env)
    assert isinstance(filled, EnvStr) and repr(filled) == "'${A}'"
    with pytest.raises(
        InterpolationError, match=r"^environment variable MISSING is not set \(referenced as '\$\{MISSING\}'\)$"
    ):
        interpolate("${MISSING}", env)
    with pytest.raises(InterpolationError, match=r"^'\$\{1BAD\}' is not a valid reference"):
        interpolate("${1BAD}", env)
