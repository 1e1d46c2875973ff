"""Services in the engine: [services.NAME], ${services.NAME.KEY}, open_services, and the CLI around them."""

import json
import subprocess
import sys
import textwrap

import pytest
import trio
from click.testing import CliRunner

from rtstream.cli import main
from rtstream.config import parse_config
from rtstream.errors import ConfigError, StageFailed, StageRef
from rtstream.interpolate import EnvStr, Template, interpolate
from rtstream.pipeline import build_pipeline, build_service
from rtstream.runner import open_services

BRIDGE = """
[services.phone]
type = "telephony"
protocol = "twilio"

[services.tts]
type = "tts"

[pipelines.call]
[[pipelines.call.stages]]
type = "tone"
encoding = "pcm_mulaw"
sample_rate = 8000
chunk_ms = 20
duration = 0.3

[[pipelines.call.stages]]
type = "telephony_ws"
name = "phone"
url = "${services.phone.url}"
protocol = "twilio"
"""


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_service_references_become_templates_filled_later():
    t = interpolate("${services.tts.url}?key=${KEY}", {"KEY": "s3cret"})
    assert isinstance(t, Template) and t.source == "${services.tts.url}?key=${KEY}"
    filled = t.fill({"tts": {"url": "ws://127.0.0.1:9/tts"}})
    assert filled == "ws://127.0.0.1:9/tts?key=s3cret" and isinstance(filled, EnvStr)
    assert repr(filled) == "'${services.tts.url}?key=${KEY}'"  # the key never shows
    assert interpolate("$${services.tts.url}") == "${services.tts.url}"


def test_a_pipeline_knows_the_services_it_uses():
    config = parse_config(BRIDGE, file="b.toml")
    assert list(config.services) == ["phone", "tts"]
    assert config.pipelines["call"].services == ("phone",)
    assert config.services["phone"].params == {"protocol": "twilio"}


@pytest.mark.parametrize(
    "text,message",
    [
        (
            BRIDGE.replace("${services.phone.url}", "${services.phnoe.url}"),
            r"^b.toml: pipeline 'call', stage 2 'phone' \(telephony_ws\), key 'url': unknown service 'phnoe' \(did you mean "
            r"'phone'\?\) in '\$\{services.phnoe.url\}'; the file declares: phone, tts$",
        ),
        (
            "[pipelines.p]\n[[pipelines.p.stages]]\ntype = 'tone'\n[[pipelines.p.stages]]\ntype = 'telephony_ws'\n"
            "url = '${services.x.url}'\n",
            r"^b.toml: pipeline 'p', stage 2 \(telephony_ws\), key 'url': unknown service 'x' in '\$\{services.x.url\}'; "
            r"add a \[services.NAME\] table$",
        ),
        (
            "[services.s]\nrtf = 3\n[pipelines.p]\n[[pipelines.p.stages]]\ntype = 'tone'\n",
            r"^b.toml: service 's', key 'type': every service needs a 'type' naming a registered service",
        ),
        (
            "[services.s]\ntype = 'tts'\nurl = '${services.s.url}'\n[pipelines.p]\n[[pipelines.p.stages]]\ntype = 'tone'\n",
            r"^b.toml: service 's', key 'url': a service's parameters cannot refer to services$",
        ),
        (
            "services = 3\n[pipelines.p]\n[[pipelines.p.stages]]\ntype = 'tone'\n",
            r"^b.toml: key 'services': must be a table of \[services.NAME\] tables$",
        ),
    ],
)
def test_config_errors_name_the_place(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(text, file="b.toml")


def test_service_parameters_are_checked_with_file_service_and_key():
    config = parse_config(
        BRIDGE.replace('protocol = "twilio"\n\n[services.tts]', 'protocl = "twilio"\n\n[services.tts]'), file="b.toml"
    )
    with pytest.raises(
        ConfigError,
        match=r"^b.toml: service 'phone', key 'protocl': unknown parameter 'protocl' "
        r"\(did you mean 'protocol'\?\); telephony takes: protocol, ",
    ):
        build_service(config.services["phone"], file="b.toml")
    config = parse_config(BRIDGE.replace('type = "tts"', 'type = "ttss"'), file="b.toml")
    with pytest.raises(
        ConfigError, match=r"^b.toml: service 'tts', key 'type': unknown service type 'ttss' \(did you mean 'tts'\?\)"
    ):
        build_service(config.services["tts"], file="b.toml")


def test_an_unknown_address_key_is_named_when_the_pipeline_is_built():
    config = parse_config(BRIDGE.replace("${services.phone.url}", "${services.phone.uri}"), file="b.toml")
    endpoints = {"phone": build_service(config.services["phone"]).endpoints("127.0.0.1", 0)}
    with pytest.raises(
        ConfigError,
        match=r"^b.toml: pipeline 'call', stage 2 'phone' \(telephony_ws\), key 'url': "
        r"'\$\{services.phone.uri\}': the service has no 'uri' \(did you mean 'url'\?\); "
        r"it has: host, port, url$",
    ):
        build_pipeline(config.pipelines["call"], file="b.toml", endpoints=endpoints)


async def test_open_services_starts_them_on_free_ports_and_stops_them():
    config = parse_config(BRIDGE)
    services = {name: build_service(spec) for name, spec in config.services.items()}
    with trio.fail_after(10):
        async with open_services(services) as endpoints:
            assert endpoints["tts"]["url"].startswith("ws://127.0.0.1:") and endpoints["tts"]["url"].endswith(
                "/tts/websocket"
            )
            assert endpoints["phone"]["url"] == f"ws://127.0.0.1:{endpoints['phone']['port']}/twilio"
            stream = await trio.open_tcp_stream("127.0.0.1", int(endpoints["tts"]["port"]))
            await stream.aclose()
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", int(endpoints["tts"]["port"]))
    assert services["phone"].report()["calls"] == 0


def test_run_starts_the_services_it_needs_and_prints_their_report_after_the_run(tmp_path):
    path = tmp_path / "b.toml"
    path.write_text(BRIDGE)
    report_path = tmp_path / "run.json"
    result = invoke("run", str(path), "--report", str(report_path))
    assert result.exit_code == 0, result.output
    run_part, service_part = result.output.split("service 'phone'\n")
    assert "pipeline 'call' completed" in run_part and "1/1 marks echoed" in run_part
    printed = " ".join(service_part.split())
    assert "calls=1" in printed and "frames=15" in printed and "wrong_size=0" in printed
    assert "per_call=[1 records: see the JSON report]" in printed
    assert "service 'tts'" not in result.output  # declared but used by no pipeline: not started
    saved = json.loads(report_path.read_text())["services"]["phone"]
    assert (saved["calls"], saved["frames"], saved["wrong_size"], saved["marks_echoed"]) == (1, 15, 0, 1)


def test_validate_checks_services_and_references(tmp_path):
    path = tmp_path / "b.toml"
    path.write_text(BRIDGE)
    result = invoke("validate", str(path))
    assert result.exit_code == 0
    assert result.output == "pipeline 'call' ok: tone [pcm_mulaw 8000 Hz mono 20 ms] -> phone\n"
    path.write_text(BRIDGE.replace('type = "tts"', 'type = "tts"\nrtf = -1'))
    result = invoke("validate", str(path))
    assert result.exit_code == 2
    assert result.output == f"Error: {path}: service 'tts', key 'rtf': must be between 0 and 1000, got -1.0\n"


def test_simulate_lists_runs_and_reports(tmp_path):
    listed = invoke("simulate")
    assert listed.exit_code == 0
    names = [line.split()[0] for line in listed.output.splitlines()]
    assert names == ["agent", "caller", "deepgram", "elevenlabs", "telephony", "tts"]
    report_path = tmp_path / "sim.json"
    result = invoke(
        "simulate", "telephony", "protocol=twilio", "report_calls=0", "--duration", "0.05", "--report", str(report_path)
    )
    assert result.exit_code == 0
    first, title, report = result.output.split("\n", 2)
    assert first.startswith("telephony listening on ws://127.0.0.1:") and first.endswith("/twilio (Ctrl-C stops it)")
    assert title == "telephony report" and "calls=0" in report.split()
    assert json.loads(report_path.read_text())["calls"] == 0


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["simulate", "telephon"],
            "Error: unknown service type 'telephon' (did you mean 'telephony'?); 'rtstream simulate' lists them",
        ),
        (["simulate", "tts", "rtf"], "Error: 'rtf' is not a setting; write KEY=VALUE"),
        (["simulate", "tts", "rtf=fast"], "Error: service 'tts', key 'rtf': must be a number, got 'fast' (a string)"),
    ],
)
def test_simulate_usage_errors(args, message):
    result = invoke(*args)
    assert result.exit_code == 2 and result.output.strip().endswith(message)


def test_inspect_describes_a_service_type():
    result = invoke("inspect", "tts")
    assert result.exit_code == 0
    assert result.output.startswith("tts (Service, from rtstream)\n  A Cartesia-protocol TTS simulator")
    assert "  disconnect_after (integer or none, default none)" in result.output


def test_a_stage_error_wrapped_by_its_own_nursery_is_named_itself():
    group = ExceptionGroup("Exceptions from Trio nursery", [ValueError("bad frame")])
    assert str(StageFailed("p", StageRef(1, "x"), group)) == "pipeline 'p', stage 1 (x) failed: ValueError: bad frame"


def test_the_engine_imports_neither_stages_nor_simulators():
    code = textwrap.dedent("""
        import sys
        import rtstream.cli, rtstream.runner, rtstream.pipeline, rtstream.config, rtstream.service
        assert not any(m.split('.')[0] in ('stages', 'simulators') for m in sys.modules), sorted(sys.modules)
    """)
    subprocess.run([sys.executable, "-P", "-c", code], check=True)
