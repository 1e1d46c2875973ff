"""benchmarks/vs_pipecat.py without running the job (a call takes 8 s of real time): its TOML job
builds as rtstream builds it, says what benchmarks/bridge.py says, reaches the simulators as
written, and the harness names the install command when Pipecat is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rtstream.config import parse_toml
from rtstream.frames import AudioFormat, Encoding
from rtstream.pipeline import build_pipeline

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def harness(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import vs_pipecat

    return vs_pipecat


def test_the_job_builds_24_khz_in_8_khz_60_ms_frames_out(harness):
    config = harness.load_config(harness.JOB)
    endpoints = {name: {"url": f"ws://127.0.0.1:9/{name}"} for name in config.services}
    pipeline = build_pipeline(config.pipelines[harness.PIPELINE], endpoints=endpoints)
    assert [ref.type for ref in pipeline.refs] == ["cartesia_tts", "converter", "chunker", "pacer", "telephony_ws"]
    assert pipeline.formats[0] == AudioFormat(Encoding.PCM_S16LE, 24000)
    assert pipeline.formats[-1] == AudioFormat(Encoding.PCM_S16LE, 8000)
    assert pipeline.edges[-1].frame_ms == 60


def test_both_systems_say_bridge_py_s_turns(harness):
    import bridge

    assert harness.script(harness.load_config(harness.JOB)) == (list(bridge.TURNS), 0.5)


def test_the_simulators_get_the_settings_as_written(harness):
    for spec in harness.load_config(harness.JOB).services.values():
        for key, value in spec.params.items():
            read = parse_toml(f"v = {harness.toml_value(value)}")["v"]
            assert read == value, key


def test_without_pipecat_the_harness_names_the_install_command(harness, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "pipecat" else real(name))
    with pytest.raises(
        SystemExit,
        match=r"^vs_pipecat.py: Pipecat is not installed; pip install -e '\.\[pipecat\]' \(or --systems rtstream\)$",
    ):
        harness.require_pipecat()
