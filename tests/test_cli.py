"""The command line through click's CliRunner, plus real processes for plugins and Ctrl-C."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from rtstream.cli import main

TONE = """
[pipelines.beep]
[[pipelines.beep.stages]]
type = "tone"
duration = 0.2
speed = 0
[[pipelines.beep.stages]]
type = "null_sink"

[pipelines.other]
[[pipelines.other.stages]]
type = "tone"
duration = 0.1
speed = 0
[[pipelines.other.stages]]
type = "null_sink"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(TONE)
    return path


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_run_prints_a_report_and_writes_json(config, tmp_path):
    report_path = tmp_path / "report.json"
    result = invoke("run", str(config), "--report", str(report_path))
    assert result.exit_code == 0, result.output
    assert "pipeline 'beep' completed" in result.output
    assert re.search(r"^  2  null_sink +- +10  0\.20 s +0$", result.output, re.MULTILINE), result.output
    report = json.loads(report_path.read_text())
    assert [p["pipeline"] for p in report["pipelines"]] == ["beep", "other"]
    assert report["pipelines"][0]["stages"][1]["statistics"]["received"]["samples"] == 3200


def test_run_chooses_pipelines_and_instances(config, tmp_path):
    report_path = tmp_path / "report.json"
    result = invoke("run", str(config), "-p", "other", "--instances", "3", "--report", str(report_path))
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert [(p["pipeline"], p["instance"]) for p in report["pipelines"]] == [("other", 1), ("other", 2), ("other", 3)]
    assert "pipeline 'other#2' completed" in result.output


def test_validate(config):
    result = invoke("validate", str(config))
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "pipeline 'beep' ok: tone [pcm_s16le 16000 Hz mono 20 ms] -> null_sink",
        "pipeline 'other' ok: tone [pcm_s16le 16000 Hz mono 20 ms] -> null_sink",
    ]


@pytest.mark.parametrize("command", ["run", "validate"])
def test_config_errors_are_one_line_and_exit_2(tmp_path, command):
    bad = tmp_path / "bad.toml"
    bad.write_text("[pipelines.a]\n[[pipelines.a.stages]]\ntype = 'tonee'\n")
    result = invoke(command, str(bad))
    assert result.exit_code == 2
    assert (
        result.output
        == f"Error: {bad}: pipeline 'a', stage 1 (tonee), key 'type': unknown stage type 'tonee' (did you mean 'tone'?); 'rtstream stages' lists them\n"
    )


def test_missing_file_and_unknown_pipeline(config, tmp_path):
    result = invoke("validate", str(tmp_path / "nope.toml"))
    assert (result.exit_code, result.output) == (2, f"Error: {tmp_path / 'nope.toml'}: file not found\n")
    result = invoke("run", str(config), "-p", "beeep")
    assert result.exit_code == 2
    assert (
        result.output
        == f"Error: {config}: no pipeline named 'beeep' (did you mean 'beep'?); the file defines 'beep', 'other'\n"
    )


def test_a_failed_run_exits_1(tmp_path):
    config = tmp_path / "p.toml"
    config.write_text(
        textwrap.dedent(
            """
        [pipelines.a]
        [[pipelines.a.stages]]
        type = "tone"
        duration = 0.1
        speed = 0
        [[pipelines.a.stages]]
        type = "telephony_ws"
        url = "ws://127.0.0.1:1/"
        reconnect_attempts = 0
    """
        )
    )
    result = invoke("run", str(config))
    assert result.exit_code == 1
    assert "pipeline 'a' failed after" in result.output
    assert "stage 2 (telephony_ws) failed: LinkFailed: ws://127.0.0.1:1: Connection refused;" in result.output


def test_stages_and_inspect():
    result = invoke("stages")
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines()]
    assert {"tone", "wav_source", "wav_sink", "null_sink"} <= set(names)
    sinks = invoke("stages", "--klass", "sink").output
    assert all(line.split()[1].startswith("Sink/") for line in sinks.splitlines())
    result = invoke("inspect", "tone")
    assert result.exit_code == 0
    assert "tone (Source/Audio, from rtstream)" in result.output
    assert (
        "  frequency (number Hz, default 440.0)\n      Frequency of the sine.\n      allowed: greater than 0 and at most 20000\n"
        in result.output
    )
    assert "produces: pcm_s16le|pcm_f32le|pcm_mulaw|pcm_alaw" in result.output
    result = invoke("inspect", "wav_sink")
    assert "accepts:  pcm_s16le, any rate, mono or stereo" in result.output
    assert "path (string, required)" in result.output


def test_every_registered_stage_documents_every_statistics_field():
    from rtstream import registry
    from rtstream.stats import fields_of

    for info in registry.stages():
        record = info.cls.statistics_type
        assert record is not None, f"{info.name} declares no statistics record"
        undocumented = [f.name for f in fields_of(record) if not f.help]
        assert not undocumented, f"{info.name}: {undocumented}"


def test_inspect_prints_statistics_with_their_meaning_and_every_choice():
    output = invoke("inspect", "chunker").output
    assert "  remainder (string, default 'pad')" in output and "      allowed: pad, hold, drop\n" in output
    assert (
        "  produces: the format it receives\n  frames:   makes frames of frame_ms out of chunks of any size\n" in output
    )
    statistics = output[output.index("\nStatistics\n") :]
    assert statistics.startswith(
        "\nStatistics\n  chunks_in (int)\n      Audio chunks taken in.\n  samples_in (int)\n"
        "      Samples per channel taken in.\n"
    )
    assert "  drops (dict[str, DropCount])\n      Dropped audio by reason: remainder" in statistics
    nested = invoke("inspect", "null_sink").output
    assert "  received (Throughput)\n      Audio received.\n      .chunks (int): Audio chunks.\n" in nested
    from rtstream import registry

    for info in registry.stages():
        shown = invoke("inspect", info.name).output
        for p in info.params:
            assert f"  {p.name} (" in shown
            if p.allowed:
                assert f"      allowed: {p.allowed}\n" in shown


def test_inspect_unknown_stage():
    result = invoke("inspect", "tonne")
    assert (result.exit_code, result.output) == (
        2,
        "Error: unknown stage type 'tonne' (did you mean 'tone'?); 'rtstream stages' lists them\n",
    )


def test_version_and_bad_usage():
    assert invoke("--version").output.startswith("rtstream, version ")
    assert invoke("run").exit_code == 2


PLUGIN = '''
import attrs
from rtstream.registry import register
from rtstream.stage import Core, CoreElement, Filter
from rtstream.stats import stat

@attrs.frozen
class ShoutStatistics:
    frames: int = stat(help="Frames passed on.")

class Loud(Core):
    def __init__(self):
        self.frames = 0
    def push(self, frame, now):
        self.frames += 1
        return (frame,)
    def statistics(self):
        return ShoutStatistics(self.frames)

@register("shout", klass="Filter/Test")
@attrs.frozen(kw_only=True)
class Shout(Filter):
    """Passes audio through, loudly."""
    statistics_type = ShoutStatistics
    def open(self, fmt_in, fmt_out):
        return CoreElement(Loud())
'''


def _install_fake_plugins(root: Path) -> dict[str, str]:
    (root / "shoutplugin.py").write_text(PLUGIN)
    (root / "brokenplugin.py").write_text("raise RuntimeError('plugin bug')\n")
    for name, module in (("shoutplugin", "shoutplugin"), ("brokenplugin", "brokenplugin")):
        info = root / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[rtstream.stages]\n{name} = {module}\n")
    return {**os.environ, "PYTHONPATH": str(root)}


def test_third_party_stages_load_through_the_entry_point_group(tmp_path):
    env = _install_fake_plugins(tmp_path)
    rtstream = [sys.executable, "-P", "-m", "rtstream.cli"]
    listed = subprocess.run([*rtstream, "stages"], env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0
    assert ["shout", "Filter/Test", "Passes", "audio", "through,", "loudly."] in [
        line.split() for line in listed.stdout.splitlines()
    ]
    assert "could not load stage plugin 'brokenplugin' (brokenplugin): RuntimeError: plugin bug" in listed.stderr
    shown = subprocess.run([*rtstream, "inspect", "shout"], env=env, capture_output=True, text=True, timeout=60)
    assert "shout (Filter/Test, from shoutplugin)" in shown.stdout
    assert shown.stdout.endswith("Statistics\n  frames (int)\n      Frames passed on.\n")


def test_ctrl_c_stops_the_sources_and_drains_then_a_second_cancels(tmp_path):
    config = tmp_path / "p.toml"
    config.write_text(
        textwrap.dedent("""
        [pipelines.endless]
        [[pipelines.endless.stages]]
        type = "tone"
        duration = "none"
        [[pipelines.endless.stages]]
        type = "null_sink"
    """).replace('"none"', "1000.0")
    )
    report = tmp_path / "r.json"
    cmd = [sys.executable, "-P", "-m", "rtstream.cli", "run", str(config), "--report", str(report)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr.readline() == "running 1 pipeline; Ctrl-C stops the sources and drains, twice cancels\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "interrupted: stopping the sources" in err
    assert "pipeline 'endless' stopped after" in out
    data = json.loads(report.read_text())
    tone, sink = data["pipelines"][0]["stages"]
    assert tone["statistics"]["sent"]["samples"] == sink["statistics"]["received"]["samples"] > 0


def test_a_corrupt_wav_is_a_config_error_before_anything_starts(tmp_path):
    wav = tmp_path / "broken.wav"
    wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    config = tmp_path / "p.toml"
    config.write_text(
        f'[pipelines.a]\n[[pipelines.a.stages]]\ntype = "wav_source"\npath = "{wav}"\n'
        '[[pipelines.a.stages]]\ntype = "null_sink"\n'
    )
    result = invoke("run", str(config))
    assert result.exit_code == 2
    assert result.output.startswith(
        f"Error: {config}: pipeline 'a', stage 1 (wav_source), key 'path': not a readable PCM WAV file"
    )
    assert result.output.count("\n") == 1
