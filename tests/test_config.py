"""Every config mistake is one clear ConfigError naming file, pipeline, stage, key and value."""

import textwrap

import pytest

from rtstream.config import parse_config
from rtstream.errors import ConfigError, FormatMismatch
from rtstream.pipeline import build_pipeline

GOOD = """
[pipelines.a]
capacity = 3
[[pipelines.a.stages]]
type = "tone"
name = "beep"
sample_rate = 8000
[[pipelines.a.stages]]
type = "null_sink"
capacity = 1
"""


def build(text: str, env=None):
    config = parse_config(textwrap.dedent(text), file="p.toml", environ=env or {})
    return [build_pipeline(spec, file=config.file) for spec in config.select()]


def test_a_good_file_builds():
    [pipeline] = build(GOOD)
    assert pipeline.name == "a"
    assert [r.type for r in pipeline.refs] == ["tone", "null_sink"]
    assert pipeline.refs[0].label == "beep"
    assert pipeline.capacities == (3,)
    assert str(pipeline.formats[0]) == "pcm_s16le 8000 Hz mono"


def stages(*tables: str) -> str:
    body = "".join(f"[[pipelines.a.stages]]\n{t}\n" for t in tables)
    return f"[pipelines.a]\n{body}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[pipelines.a\n",
            r"^p.toml: invalid TOML: Expected '\]' at the end of a table declaration \(at line 1, column 13\)$",
        ),
        ("x = 1\n", r"^p.toml: key 'x': unknown top-level key 'x'; allowed: pipelines, services, server, calls$"),
        ("", r"^p.toml: no pipelines defined; add a \[pipelines.NAME\] table with its stages$"),
        (
            "[pipelines.a]\nstages = []\n",
            r"^p.toml: pipeline 'a': the pipeline has no stages; add \[\[pipelines.NAME.stages\]\] tables$",
        ),
        (
            "[pipelines.a]\nstage = 1\n",
            r"^p.toml: pipeline 'a', key 'stage': unknown pipeline key 'stage' \(did you mean 'stages'\?\); allowed: stages, capacity, description, fuse$",
        ),
        (
            "[pipelines.a]\ncapacity = inf\nstages = [{type='tone'}, {type='null_sink'}]\n",
            r"^p.toml: pipeline 'a', key 'capacity': channel capacity must be a whole number from 0 to 1024 \(channels are bounded\), got inf$",
        ),
        (
            stages('type = "tonne"', 'type = "null_sink"'),
            r"^p.toml: pipeline 'a', stage 1 \(tonne\), key 'type': unknown stage type 'tonne' \(did you mean 'tone'\?\); 'rtstream stages' lists them$",
        ),
        (
            stages("frequency = 3", 'type = "null_sink"'),
            r"^p.toml: pipeline 'a', stage 1 \(\?\), key 'type': every stage needs a 'type' naming a registered stage",
        ),
        (
            stages('type = "tone"\nfrequncy = 3', 'type = "null_sink"'),
            r"^p.toml: pipeline 'a', stage 1 \(tone\), key 'frequncy': unknown parameter 'frequncy' \(did you mean 'frequency'\?\); tone takes: frequency, level",
        ),
        (
            stages('type = "tone"\nfrequency = "high"', 'type = "null_sink"'),
            r"^p.toml: pipeline 'a', stage 1 \(tone\), key 'frequency': must be a number, got 'high' \(a string\)$",
        ),
        (
            stages('type = "tone"\nlevel = 3.0', 'type = "null_sink"'),
            r"^p.toml: pipeline 'a', stage 1 \(tone\), key 'level': must be between -96 and 0, got 3.0$",
        ),
        (
            stages('type = "tone"\nfrequency = 5000.0\nsample_rate = 8000', 'type = "null_sink"'),
            r"^p.toml: pipeline 'a', stage 1 \(tone\), key 'frequency': must be below half the sample rate \(4000 Hz\), got 5000$",
        ),
        (
            stages('type = "wav_source"', 'type = "null_sink"'),
            r"^p.toml: pipeline 'a', stage 1 \(wav_source\), key 'path': required parameter missing: The WAV file",
        ),
        (
            stages('type = "wav_source"\npath = "${NO_SUCH_VAR}"', 'type = "null_sink"'),
            r"^p.toml: pipeline 'a', stage 1 \(wav_source\), key 'path': environment variable NO_SUCH_VAR is not set \(referenced as '\$\{NO_SUCH_VAR\}'\)$",
        ),
        (
            stages('type = "tone"\nencoding = "pcm_mulaw"', 'type = "wav_sink"\nname = "out"\npath = "x.wav"'),
            r"^p.toml: pipeline 'a': stage 1 \(tone\) produces pcm_mulaw 16000 Hz mono, but stage 2 'out' \(wav_sink\) accepts only pcm_s16le, any rate, mono or stereo; add a converter between them$",
        ),
        (
            stages('type = "null_sink"', 'type = "tone"'),
            r"^p.toml: pipeline 'a', stage 1 \(null_sink\): a pipeline starts with a source; null_sink is a sink$",
        ),
        (
            stages('type = "tone"', 'type = "tone"'),
            r"^p.toml: pipeline 'a', stage 2 \(tone\): a pipeline ends with a sink; tone is a source$",
        ),
        (stages('type = "tone"'), r"^p.toml: pipeline 'a': a pipeline needs at least a source and a sink$"),
        (
            stages('type = "tone"\ncapacity = -1', 'type = "null_sink"'),
            r"^p.toml: pipeline 'a', stage 1 \(tone\), key 'capacity': channel capacity must be a whole number",
        ),
    ],
)
def test_config_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        build(text)


def test_format_mismatch_is_its_own_type():
    with pytest.raises(FormatMismatch):
        build(stages('type = "tone"\nencoding = "pcm_alaw"', 'type = "wav_sink"\npath = "x.wav"'))


def test_secret_values_never_appear_in_errors():
    text = stages('type = "tone"\nfrequency = "${FREQ}"', 'type = "null_sink"')
    with pytest.raises(ConfigError) as info:
        build(text, env={"FREQ": "hunter2"})
    assert "hunter2" not in str(info.value)
    assert "'${FREQ}'" in str(info.value)


def test_environment_values_fill_numbers():
    [pipeline] = build(stages('type = "tone"\nfrequency = "${FREQ}"', 'type = "null_sink"'), env={"FREQ": "1000"})
    assert pipeline.stages[0].frequency == 1000.0


def test_selecting_an_unknown_pipeline_suggests_one():
    config = parse_config(GOOD, file="p.toml")
    with pytest.raises(ConfigError, match=r"^p.toml: no pipeline named 'b'; the file defines 'a'$"):
        config.select(["b"])
    assert [s.name for s in config.select(["a"])] == ["a"]
