"""Serving a file's calls: the [server] and [calls.NAME] tables, validate, serve (one process and
workers, over real sockets and signals) and run with a caller dialling in."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from twilio.request_validator import RequestValidator
from websockets.exceptions import ConnectionClosed as PeerClosed
from websockets.sync.client import connect as peer_connect

from rtstream.cli import main
from rtstream.config import parse_config
from rtstream.errors import ConfigError

TIMEOUT = 30

PIPELINES = """
[pipelines.a]
[[pipelines.a.stages]]
type = "telephony_in"
[[pipelines.a.stages]]
type = "null_sink"
[pipelines.b]
[[pipelines.b.stages]]
type = "tone"
[[pipelines.b.stages]]
type = "null_sink"
"""
CALL = '[calls.t]\npath = "/t"\nprotocol = "twilio"\npipelines = ["a"]\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("calls = 3\n" + PIPELINES, r"^p.toml: key 'calls': must be a table of \[calls.NAME\] tables$"),
        (
            PIPELINES + CALL + "pth = 1\n",
            r"^p.toml: calls.t, key 'pth': unknown parameter 'pth' \(did you mean 'path'\?\); a call takes: path, "
            r"protocol, pipelines, answer, auth_token, verify, encoding, sample_rate, start_timeout, "
            r"max_message_bytes$",
        ),
        (
            PIPELINES + '[calls.t]\npath = "/t"\npipelines = ["a"]\n',
            r"^p.toml: calls.t, key 'protocol': required parameter missing: The provider's media-stream protocol.$",
        ),
        (
            PIPELINES + '[calls.t]\npath = "/t"\nprotocol = "twillio"\npipelines = ["a"]\n',
            r"^p.toml: calls.t, key 'protocol': must be one of 'raw', 'twilio', .*, got 'twillio' "
            r"\(did you mean 'twilio'\?\)$",
        ),
        (
            PIPELINES + '[calls.t]\npath = "t"\nprotocol = "twilio"\npipelines = ["a"]\n',
            r"^p.toml: calls.t, key 'path': must be a path starting with '/' \(no query or spaces\), got 't'$",
        ),
        (
            PIPELINES + '[calls.t]\npath = "/t"\nprotocol = "twilio"\npipelines = ["aa"]\n',
            r"^p.toml: calls.t, key 'pipelines': no pipeline named 'aa' \(did you mean 'a'\?\); "
            r"the file defines 'a', 'b'$",
        ),
        (
            PIPELINES + CALL + '[calls.u]\npath = "/t"\nprotocol = "plivo"\npipelines = ["a"]\n',
            r"^p.toml: calls.u, key 'path': '/t' is already the path of calls.t$",
        ),
        (
            PIPELINES + CALL + 'answer = "/health"\n',
            r"^p.toml: calls.t, key 'answer': '/health' is already the health check$",
        ),
        (
            PIPELINES + CALL + 'answer = "/t"\n',
            r"^p.toml: calls.t, key 'answer': '/t' is already the path of calls.t$",
        ),
        (
            PIPELINES + '[calls.t]\npath = "/t"\nprotocol = "telnyx"\npipelines = ["a"]\nanswer = "/t/answer"\n',
            r"^p.toml: calls.t, key 'answer': telnyx has no answer webhook; only twilio, plivo, exotel do$",
        ),
        (
            PIPELINES + CALL + 'auth_token = "${server.url}"\n',
            r"^p.toml: calls.t, key 'auth_token': '\$\{server.url\}': settings take \$\{NAME\} from the "
            r"environment, not services, calls or the server$",
        ),
        (
            PIPELINES + CALL + "[server]\nprot = 1\n",
            r"^p.toml: server, key 'prot': unknown parameter 'prot' \(did you mean 'port'\?\); \[server\] takes: "
            r"host, port, max_calls, max_load, lag_budget_ms, drain, public_url$",
        ),
        (
            PIPELINES + CALL + "[server]\nmax_load = -0.1\n",
            r"^p.toml: server, key 'max_load': must be between 0 and 10, got -0.1$",
        ),
        (
            PIPELINES + CALL + '[server]\nmax_load = "high"\n',
            r"^p.toml: server, key 'max_load': must be a number, got 'high' \(a string\)$",
        ),
        (
            PIPELINES + CALL + "[server]\nlag_budget_ms = 0\n",
            r"^p.toml: server, key 'lag_budget_ms': must be greater than 0 and at most 1000, got 0.0$",
        ),
        (
            PIPELINES + CALL + "[server]\nport = 70000\n",
            r"^p.toml: server, key 'port': must be between 0 and 65535, got 70000$",
        ),
        (
            PIPELINES + CALL + '[server]\npublic_url = "bot.example.com"\n',
            r"^p.toml: server, key 'public_url': must be an https:// \(or http://\) URL with a host and no query, "
            r"got 'bot.example.com'$",
        ),
    ],
)
def test_call_and_server_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text, file="p.toml", environ={})


def _with_path(path: str, *, calls: str = CALL, services: str = "") -> str:
    sink = '[[pipelines.b.stages]]\ntype = "wav_sink"\npath = "' + path + '"'
    return services + PIPELINES.replace('[[pipelines.b.stages]]\ntype = "null_sink"', sink) + calls


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            _with_path("out/${call.stream_id}.wav"),
            r"^p.toml: pipeline 'b', stage 2 \(wav_sink\), key 'path': '\$\{call.stream_id\}' is only known in a "
            r"call: list the pipeline in a \[calls.NAME\] table$",
        ),
        (
            _with_path("out/${server.port}.wav", calls=""),
            r"^p.toml: pipeline 'b', stage 2 \(wav_sink\), key 'path': '\$\{server.port\}' needs a \[server\] table$",
        ),
        (
            _with_path("out/${server.uri}.wav"),
            r"^p.toml: pipeline 'b', stage 2 \(wav_sink\), key 'path': '\$\{server.uri\}': the server has no 'uri' "
            r"\(did you mean 'url'\?\); it has: url, host, port$",
        ),
        (
            _with_path("x.wav", services='[services.c]\ntype = "caller"\nurl = "${call.stream_id}"\n'),
            r"^p.toml: service 'c', key 'url': a service's parameters cannot refer to a call$",
        ),
    ],
)
def test_run_time_references_where_they_can_be_filled(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text, file="p.toml", environ={})


def test_only_a_service_that_dials_may_refer_to_the_server(tmp_path: Path) -> None:
    text = '[services.tts]\ntype = "tts"\napi_key = "${server.port}"\n' + PIPELINES + CALL
    result = invoke("validate", str(write(tmp_path, text)))
    assert (result.exit_code, result.output) == (
        2,
        f"Error: {tmp_path / 'p.toml'}: service 'tts', key 'api_key': only a service that dials (a caller) "
        "may refer to the server\n",
    )


def test_call_pipelines_run_only_in_calls() -> None:
    config = parse_config(PIPELINES + CALL, file="p.toml")
    assert [spec.name for spec in config.select()] == ["b"]
    assert config.server is not None and config.server.host == "127.0.0.1"
    with pytest.raises(ConfigError, match=r"^p.toml: pipeline 'a' runs in the calls of calls.t, not on its own$"):
        config.select(["a"])


SERVED = """
[server]
drain = 20.0

[calls.twilio]
path = "/twilio"
protocol = "twilio"
answer = "/twilio/answer"
pipelines = ["caller", "bot"]

[pipelines.caller]
[[pipelines.caller.stages]]
type = "telephony_in"
[[pipelines.caller.stages]]
type = "null_sink"

[pipelines.bot]
[[pipelines.bot.stages]]
type = "tone"
sample_rate = 8000
duration = 0.2
[[pipelines.bot.stages]]
type = "converter"
[[pipelines.bot.stages]]
type = "chunker"
frame_ms = 20
[[pipelines.bot.stages]]
type = "pacer"
frame_ms = 20
[[pipelines.bot.stages]]
type = "telephony_out"
"""

CALLER = """
[services.caller]
type = "caller"
url = "${server.url}/twilio"
protocol = "twilio"
calls = 2
rate = 20
duration = 0.5
"""

ALONE = """
[pipelines.alone]
[[pipelines.alone.stages]]
type = "tone"
duration = 0.1
[[pipelines.alone.stages]]
type = "null_sink"
"""


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_validate_checks_each_call_in_its_protocol_and_format(tmp_path: Path) -> None:
    result = invoke("validate", str(write(tmp_path, SERVED + ALONE)))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "pipeline 'alone' ok: tone [pcm_s16le 16000 Hz mono 20 ms] -> null_sink",
        "call 'twilio' ok: /twilio (twilio, pcm_mulaw 8000 Hz mono), answer /twilio/answer: pipelines caller, bot",
        "  pipeline 'caller' ok: telephony_in [pcm_mulaw 8000 Hz mono] -> null_sink",
        "  pipeline 'bot' ok: tone [pcm_s16le 8000 Hz mono 20 ms] -> converter [pcm_mulaw 8000 Hz mono 20 ms] -> "
        "chunker [pcm_mulaw 8000 Hz mono 20 ms] -> pacer [pcm_mulaw 8000 Hz mono 20 ms] -> telephony_out",
    ]


def test_validate_names_the_call_whose_pipeline_cannot_be_built(tmp_path: Path) -> None:
    text = SERVED.replace('protocol = "twilio"', 'protocol = "twilio"\nsample_rate = 8000').replace(
        'type = "converter"', 'type = "converter"\nencoding = "pcm_s16le"'
    )
    result = invoke("validate", str(write(tmp_path, text)))
    assert result.exit_code == 2
    assert re.fullmatch(
        r"Error: .*p\.toml: calls\.twilio, pipeline 'bot': stage 2 \(converter\) produces .*, "
        r"but stage 5 \(telephony_out\) accepts only pcm_mulaw 8000 Hz mono\n",
        result.output,
    )


def test_run_serves_the_calls_of_its_caller_beside_the_pipelines(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    result = invoke("run", str(write(tmp_path, SERVED + CALLER + ALONE)), "--report", str(report_path))
    assert result.exit_code == 0, result.output
    assert "pipeline 'alone' completed" in result.output
    assert re.search(r"^call 2 on 'twilio' from 127\.0\.0\.1:\d+ completed after", result.output, re.M)
    assert "service 'caller'" in result.output
    report = json.loads(report_path.read_text())
    assert [p["pipeline"] for p in report["pipelines"]] == ["alone"]
    assert report["server"]["outcomes"] == {"completed": 2}
    [caller, bot] = report["server"]["calls"][0]["report"]["pipelines"]
    assert (caller["pipeline"], caller["status"], bot["status"]) == ("caller", "completed", "completed")
    assert report["services"]["caller"]["completed"] == 2


def test_run_exits_1_when_a_call_fails(tmp_path: Path) -> None:
    plivo_caller = CALLER.replace('protocol = "twilio"', 'protocol = "plivo"')  # the route speaks twilio
    result = invoke("run", str(write(tmp_path, SERVED + plivo_caller)))
    assert result.exit_code == 1, result.output
    assert re.search(r"^call 1 on 'twilio' from .* failed after", result.output, re.M)


def test_run_admits_by_max_calls_only_and_exits_1_when_a_call_is_refused(tmp_path: Path) -> None:
    # max_load so low that `serve` would refuse every call: `run` measures its load but admits by max_calls
    loaded = SERVED.replace("drain = 20.0", "drain = 20.0\nmax_load = 0.001")
    result = invoke("run", str(write(tmp_path, loaded + CALLER)))
    assert result.exit_code == 0, result.output
    full = SERVED.replace("drain = 20.0", "drain = 20.0\nmax_calls = 1")  # the caller's second call is refused
    result = invoke("run", str(write(tmp_path, full + CALLER)))
    assert result.exit_code == 1, result.output
    assert "critical calls_failed at service 'caller': 1 of the calls it placed never began (http_503 1)" in (
        " ".join(result.output.split())
    )


def test_serve_refuses_a_file_without_calls_a_port_in_use_and_bad_options(tmp_path: Path) -> None:
    result = invoke("serve", str(write(tmp_path, ALONE)))
    assert (result.exit_code, result.output) == (
        2,
        f"Error: {tmp_path / 'p.toml'}: declares no calls to serve; add a [calls.NAME] table\n",
    )
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = invoke("serve", str(write(tmp_path, SERVED)), "--port", str(port))
    assert (result.exit_code, result.output) == (
        2,
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use\n",
    )
    result = invoke("serve", str(write(tmp_path, SERVED)), "--public-url", "ftp://x")
    assert result.exit_code == 2
    assert result.output.startswith("Error: --public-url: must be an https:// (or http://) URL")
    result = invoke("serve", str(write(tmp_path, SERVED)), "--max-load", "-1")
    assert (result.exit_code, result.output) == (2, "Error: --max-load: must be between 0 and 10, got -1.0\n")


# ---------------------------------------------------------------------- the real process, signals


def start_serving(path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], int, str]:
    process = subprocess.Popen(
        [sys.executable, "-P", "-m", "rtstream", "serve", str(path), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.fullmatch(r"serving \d+ routes? on http://127\.0\.0\.1:(\d+).*\n", line)
    assert match, line + (process.stderr.read() if process.stderr else "")
    return process, int(match.group(1)), line


def http(port: int, method: str, path: str, body: str = "", headers: str = "") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{headers}"
        if body:
            head += "Content-Type: application/x-www-form-urlencoded\r\n"
        sock.sendall((head + "\r\n" + body).encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status, _, rest = data.partition(b"\r\n\r\n")
    return int(status.split()[1]), rest


class HeldTwilioCall:
    """A Twilio dialler (the websockets library) that starts a call and holds it until told to stop."""

    SID = "MZ00000000000000000000000000000001"

    def __init__(self, url: str) -> None:
        self.url = url
        self.started = threading.Event()
        self.hang_up = threading.Event()
        self.close_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _send(self, ws: Any, event: str, **body: Any) -> None:
        ws.send(json.dumps({"event": event, "streamSid": self.SID, **body}))

    def _run(self) -> None:
        with peer_connect(self.url, open_timeout=TIMEOUT) as ws:
            self._send(ws, "connected", protocol="Call", version="1.0.0")
            fmt = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
            self._send(ws, "start", start={"streamSid": self.SID, "callSid": "CA1", "mediaFormat": fmt})
            payload = base64.b64encode(b"\xff" * 160).decode()
            self._send(ws, "media", media={"track": "inbound", "chunk": "1", "timestamp": "0", "payload": payload})
            self.started.set()
            self.hang_up.wait(TIMEOUT)
            self._send(ws, "stop", stop={"callSid": "CA1"})
            with contextlib.suppress(PeerClosed):
                while True:
                    ws.recv(timeout=TIMEOUT)
            self.close_code = ws.close_code


LOAD = ("load", "max_load", "loop_lag_ms", "loop_lag_max_ms", "cpu")
"""The load fields of /health (rtstream.server.Admission.health)."""


def test_serve_answers_health_and_drains_a_call_on_sigterm(tmp_path: Path) -> None:
    report_path = tmp_path / "serve.json"
    process, port, line = start_serving(write(tmp_path, SERVED), "--report", str(report_path))
    try:
        assert line.endswith("(calls /twilio; answers /twilio/answer; health /health)\n")
        status, body = http(port, "GET", "/health")
        health = json.loads(body)
        assert status == 200 and list(health) == ["status", "active_calls", "max_calls", *LOAD]
        assert (health["status"], health["active_calls"], health["max_calls"]) == ("accepting", 0, 100)
        assert health["max_load"] == 0.7  # [server] max_load by default
        status, twiml = http(port, "POST", "/twilio/answer", "CallSid=CA1")
        assert status == 200 and b'<Stream url="ws://x/twilio">' in twiml
        call = HeldTwilioCall(f"ws://127.0.0.1:{port}/twilio")
        assert call.started.wait(TIMEOUT)
        assert process.stderr is not None
        process.send_signal(signal.SIGTERM)
        for err in process.stderr:  # the server says it drains before the probe can read 503
            if "draining" in err:
                break
        status, body = http(port, "GET", "/health")
        assert (status, json.loads(body)["status"]) == (503, "draining")
        call.hang_up.set()
        call.thread.join(TIMEOUT)
        out, _ = process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
    assert process.returncode == 0
    assert call.close_code == 1000
    assert re.search(r"^call 1 on 'twilio' from 127\.0\.0\.1:\d+ completed after", out, re.M)
    report = json.loads(report_path.read_text())
    assert report["server"]["outcomes"] == {"completed": 1}
    assert report["server"]["requests"] == {"health": 2, "answer": 1}


def test_workers_share_the_port_restart_when_killed_and_drain_together(tmp_path: Path) -> None:
    report_path = tmp_path / "workers.json"
    process, port, line = start_serving(  # admission by load off: 16 calls at once on a busy machine may be refused
        write(tmp_path, SERVED),
        "--workers",
        "2",
        "--log-level",
        "info",
        "--report",
        str(report_path),
        "--max-load",
        "0",
    )
    assert process.stderr is not None
    try:
        assert " with 2 workers (" in line
        pids: dict[int, int] = {}
        for err in process.stderr:
            if found := re.search(r"worker (\d) \(pid (\d+)\): serving", err):
                pids[int(found.group(1))] = int(found.group(2))
                if len(pids) == 2:
                    break
        answered = set()
        for _ in range(200):  # each new connection is hashed to a worker: both answer soon
            status, body = http(port, "GET", "/health")
            assert status == 200
            answered.add(json.loads(body)["pid"])
            assert json.loads(body)["max_load"] == 0  # passed on to each worker
            if answered == set(pids.values()):
                break
        assert answered == set(pids.values())

        subprocess.run(["kill", "-KILL", str(pids[0])], check=True)
        for err in process.stderr:
            if found := re.search(r"worker 0 \(pid (\d+)\): serving", err):
                assert int(found.group(1)) != pids[0]
                break
        calls = [HeldTwilioCall(f"ws://127.0.0.1:{port}/twilio") for _ in range(16)]  # all on one: 1 in 30,000
        assert all(call.started.wait(TIMEOUT) for call in calls)
        process.send_signal(signal.SIGTERM)
        draining = 0
        for err in process.stderr:  # each worker says so as it drains
            draining += "SIGTERM: draining" in err
            if draining == 2:
                break
        assert http(port, "GET", "/health")[0] == 503
        for call in calls:
            call.hang_up.set()
            call.thread.join(TIMEOUT)
        process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
    assert process.returncode == 0
    assert [call.close_code for call in calls] == [1000] * 16
    server = json.loads(report_path.read_text())["server"]
    assert (server["workers"], server["restarts"], server["max_calls"]) == (2, 1, 200)
    assert server["outcomes"] == {"completed": 16}
    assert sorted(server["admitted_per_worker"])[0] > 0
    assert [load["max_load"] for load in server["load"]] == [0, 0]  # one load per worker, not summed


def test_validate_fills_call_references_as_some_call_would(tmp_path: Path) -> None:
    sink = '[[pipelines.caller.stages]]\ntype = "converter"\nencoding = "pcm_s16le"\n'
    sink += '[[pipelines.caller.stages]]\ntype = "wav_sink"\npath = "out/${call.parameters.lang}-KEY.wav"'
    text = SERVED.replace('[[pipelines.caller.stages]]\ntype = "null_sink"', sink)
    assert invoke("validate", str(write(tmp_path, text.replace("KEY", "${call.stream_id}")))).exit_code == 0
    result = invoke("validate", str(write(tmp_path, text.replace("KEY", "${call.stream_ud}"))))
    assert result.exit_code == 2
    assert result.output.endswith(
        ": calls.twilio, pipeline 'caller', stage 3 (wav_sink), key 'path': '${call.stream_ud}': the call has no "
        "'stream_ud' (did you mean 'stream_id'?); it has: call_id, encoding, protocol, route, sample_rate, "
        "stream_id\n"
    )


def test_behind_a_proxy_twilio_is_answered_with_the_public_url_and_signatures_are_checked(tmp_path: Path) -> None:
    text = SERVED.replace('answer = "/twilio/answer"', 'answer = "/twilio/answer"\nauth_token = "${TWILIO_AUTH_TOKEN}"')
    process, port, _ = start_serving(
        write(tmp_path, text), "--public-url", "https://bot.example.com", env={"TWILIO_AUTH_TOKEN": "s3cret-token"}
    )
    try:
        assert http(port, "POST", "/twilio/answer", "CallSid=CA1")[0] == 403
        signature = RequestValidator("s3cret-token").compute_signature(
            "https://bot.example.com/twilio/answer", {"CallSid": "CA1"}
        )
        status, twiml = http(port, "POST", "/twilio/answer", "CallSid=CA1", f"X-Twilio-Signature: {signature}\r\n")
        assert status == 200
        assert b'<Stream url="wss://bot.example.com/twilio"><Parameter name="CallSid" value="CA1"/>' in twiml
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
    assert process.returncode == 0
    assert "refused.bad_signature=1" in out and "s3cret" not in out


def test_sigterm_during_a_run_with_calls_drains_them_and_writes_the_report(tmp_path: Path) -> None:
    long_calls = CALLER.replace("duration = 0.5", "duration = 60")
    path = write(tmp_path, SERVED.replace("drain = 20.0", "drain = 0.5") + long_calls)
    report_path = tmp_path / "run.json"
    process = subprocess.Popen(
        [sys.executable, "-P", "-m", "rtstream", "run", str(path), "--report", str(report_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    try:
        line = process.stderr.readline()
        found = re.fullmatch(r"running 0 pipelines and 1 dialer, serving calls on ws://127\.0\.0\.1:(\d+);.*\n", line)
        assert found, line
        for _ in range(5000):  # until the caller's two calls are in (the probe is the only clock)
            if json.loads(http(int(found.group(1)), "GET", "/health")[1])["active_calls"] == 2:
                break
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
    assert process.returncode == 0
    report = json.loads(report_path.read_text())
    assert report["server"]["outcomes"] == {"cancelled": 2}  # still talking when the drain period ended
    assert report["services"]["caller"]["close_codes"] == {"1000": 2}  # closed the server's way
