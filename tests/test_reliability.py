"""Bad input caught before start, one line each, no secret in any output; runs that deliver nothing fail."""

import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap

import attrs
import pytest
import trio
from click.testing import CliRunner
from helpers import PCM8K, pcm_chunk

from rtstream import redact
from rtstream.caps import Caps
from rtstream.cli import main
from rtstream.config import parse_config, parse_toml
from rtstream.errors import ConfigError, StageRef
from rtstream.frames import AudioFormat, Encoding
from rtstream.interpolate import EnvStr, InterpolationError, interpolate
from rtstream.params import ParamError, param, params_of, whole_samples
from rtstream.pipeline import assemble, build_pipeline
from rtstream.report import PipelineReport, RunReport, StageReport, format_text
from rtstream.runner import RunControl, run_pipeline, watch_signals
from rtstream.stage import Sink, Source, run_core
from rtstream.stats import BoundedCounter, Throughput
from rtstream.testing import CollectingSink, Collector

# -- TOML depth ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["[" * 5000 + "]" * 5000, "{a = " * 3000 + "1" + "}" * 3000])
def test_nesting_that_exhausts_the_parser_is_a_config_error(value):
    with pytest.raises(ConfigError, match=r"^p.toml: nested too deeply \(at most 32 levels of arrays and tables\)$"):
        parse_toml(f"x = {value}", file="p.toml")


def test_nesting_the_parser_survives_is_refused_by_depth():
    with pytest.raises(
        ConfigError,
        match=r"^p.toml: nested too deeply at 'x\[0\][\[\]0]*…\(99 characters\) "
        r"\(at most 32 levels of arrays and tables\)$",
    ):
        parse_toml("x = " + "[" * 40 + "]" * 40, file="p.toml")
    assert parse_toml("x = " + "[" * 31 + "]" * 31)  # 32 levels, counting the document


def test_a_fifo_as_the_pipelines_file_is_refused_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "p.toml")
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "p.toml")])
    assert (result.exit_code, result.output) == (2, f"Error: {tmp_path / 'p.toml'}: not a regular file\n")


# -- ${NAME:-default} ----------------------------------------------------------------------------


def test_a_default_may_hold_balanced_braces():
    assert interpolate("${SIM_RECORD:-/tmp/x/bridge-{call}.wav}", {}) == "/tmp/x/bridge-{call}.wav"
    assert interpolate("a-${X:-{b}}-${Y:-c}", {"Y": "y"}) == "a-{b}-y"
    with pytest.raises(InterpolationError, match=r"^'\$\{X:-\{b\}' has no closing '\}'$"):
        interpolate("${X:-{b}", {})


def test_defaults_parse_as_numbers_like_environment_values():
    @attrs.frozen(kw_only=True)
    class Numbers:
        port: int = param(1, min=1, max=65535, help="A port.")
        ratio: float = param(0.5, help="A ratio.")
        on: bool = param(False, help="A flag.")

    filled = Numbers(
        port=interpolate("${PORT:-8080}", {}), ratio=interpolate("${R:-0.25}", {}), on=interpolate("${O:-yes}", {})
    )
    assert (filled.port, filled.ratio, filled.on) == (8080, 0.25, True)
    from_default = interpolate("${PORT:-8080}", {})
    assert isinstance(from_default, EnvStr) and not from_default.secret
    with pytest.raises(ParamError, match=r"^port: must be between 1 and 65535, got 99999$"):
        Numbers(port=interpolate("${PORT:-99999}", {}))


def test_a_default_number_in_a_pipelines_file():
    config = parse_config(
        '[pipelines.a]\n[[pipelines.a.stages]]\ntype = "tone"\nfrequency = "${RT_UNSET:-60}"\n'
        '[[pipelines.a.stages]]\ntype = "null_sink"\n',
        environ={},
    )
    [spec] = config.select()
    assert build_pipeline(spec).stages[0].frequency == 60.0


# -- parameters ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Checked:
    size: int = param(1024, min=1024, max=8 << 20, help="A size.")
    ratio: float = param(1.0, gt=0, help="A ratio.")
    count: int = param(0, help="Any count.")
    text: str = param("", max_length=8, help="Short text.")
    words: tuple[str, ...] = param((), type=(str,), max_items=2, help="A few words.")
    url: str = param("ws://h/", kind="ws_url", help="A URL.")
    source: str | None = param(type=str, optional=True, kind="input_file", max_size=10, help="A file to read.")
    target: str | None = param(type=str, optional=True, kind="output_path", help="A file to write.")
    header: str = param("", kind="header", help="A header value.")


def test_integer_bounds_print_as_integers():
    [size] = [p for p in params_of(Checked) if p.name == "size"]
    assert size.allowed == "between 1024 and 8388608"
    with pytest.raises(ParamError, match=r"^size: must be between 1024 and 8388608, got 8388609$"):
        Checked(size=(8 << 20) + 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": float("inf")}, r"^ratio: must be a finite number, got inf$"),
        ({"ratio": float("nan")}, r"^ratio: must be a finite number, got nan$"),
        ({"ratio": 10**400}, r"^ratio: must be a finite number of sensible size, got 1000000000.*\(\d+ characters\)$"),
        (
            {"count": 10**30},
            r"^count: must fit in 64 bits \(at most 9223372036854775807 either side of 0\), got 10{30}$",
        ),
        ({"size": 10**30}, r"^size: must be between 1024 and 8388608, got 10{30}$"),
        ({"text": "x" * 9}, r"^text: must be at most 8 characters, got 9$"),
        ({"words": ["a", "b", "c"]}, r"^words: must hold at most 2 items, got 3$"),
        ({"url": ""}, r"^url: must be a ws:// or wss:// URL with a host, got ''$"),
        ({"url": "http://h/"}, r"^url: must be a ws:// or wss:// URL with a host, got 'http://h/'$"),
        ({"url": "ws:///x"}, r"^url: must be a ws:// or wss:// URL with a host, got 'ws:///x'$"),
        ({"url": "ws://h x/"}, r"^url: must be a ws:// or wss:// URL with a host, got 'ws://h x/'$"),
        (
            {"url": "ws://h:99999/"},
            r"^url: must be a ws:// or wss:// URL with a host, got 'ws://h:99999/' "
            r"\(its port must be a number from 1 to 65535\)$",
        ),
        (
            {"url": "ws://h:0/"},
            r"^url: must be a ws:// or wss:// URL with a host, got 'ws://h:0/' "
            r"\(its port must be a number from 1 to 65535\)$",
        ),
        (
            {"header": "a\r\nb"},
            r"^header: must not hold control characters \(it is sent in a header\), got 'a\\r\\nb'$",
        ),
    ],
)
def test_values_refused_by_type_range_length_and_kind(kwargs, message):
    with pytest.raises(ParamError, match=message):
        Checked(**kwargs)


def test_input_files_are_checked_without_being_opened(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "big").write_bytes(b"x" * 11)
    (tmp_path / "ok").write_bytes(b"x" * 10)
    assert Checked(source=str(tmp_path / "ok")).source
    for name, message in [
        ("fifo", f"is a FIFO, not a regular file: {tmp_path}/fifo"),
        ("missing", f"file not found: {tmp_path}/missing"),
        ("", f"is a directory, not a regular file: {tmp_path}/"),
        ("big", f"is 11 bytes, more than the 10 read: {tmp_path}/big"),
    ]:
        with pytest.raises(ParamError) as caught:
            Checked(source=str(tmp_path / name) + ("/" if not name else ""))
        assert caught.value.message == message


def test_output_paths_are_checked_before_anything_is_written(tmp_path):
    (tmp_path / "plain").write_text("a file")
    os.mkfifo(tmp_path / "fifo")
    assert Checked(target=str(tmp_path / "new" / "deeper" / "x.wav")).target  # folders are created when written
    for target, message in [
        ("", "must name a file, got ''"),
        (str(tmp_path), f"is a directory, not a file that can be written: {tmp_path}"),
        (f"{tmp_path}/", f"names a directory, not a file: {tmp_path}/"),
        (str(tmp_path / "fifo"), f"is a FIFO, not a file that can be written: {tmp_path}/fifo"),
        (
            str(tmp_path / "plain" / "x.wav"),
            f"cannot be created: a part of its folder is not a directory: {tmp_path}/plain/x.wav",
        ),
        ("/proc/nope/{call}.wav", "cannot be created: its folder is not writable: /proc/nope/{call}.wav"),
    ]:
        with pytest.raises(ParamError) as caught:
            Checked(target=target)
        assert caught.value.message == message
    assert not list(tmp_path.glob("new"))


def test_a_file_name_from_the_environment_is_refused_a_folder_is_not(tmp_path):
    env = {"KEY": "sk-secret-123456", "DIR": str(tmp_path)}
    assert Checked(target=interpolate("${DIR}/x.wav", env)).target == f"{tmp_path}/x.wav"
    with pytest.raises(ParamError) as caught:
        Checked(target=interpolate(f"{tmp_path}/${{KEY}}-{{call}}.wav", env))
    assert caught.value.message == (
        f"takes its file name from the environment ({tmp_path}/${{KEY}}-{{call}}.wav), which would put that value "
        "on disk; take only the folder from the environment"
    )


def test_a_frame_must_hold_a_sample():
    fmt = AudioFormat(Encoding.PCM_S16LE, 8000)
    with pytest.raises(
        ParamError,
        match=r"^frame_ms: 1e-300 ms at 8000 Hz is less than one sample; the stage's input is pcm_s16le 8000 Hz mono$",
    ):
        whole_samples(fmt, 1e-300, "frame_ms")


# -- one line ------------------------------------------------------------------------------------


def test_names_and_values_are_escaped_into_one_line():
    error = ConfigError(
        "must be a number, got 'x'",
        file="p.toml",
        pipeline="a\nb",
        stage=StageRef(1, "tone", "\x1b[31mred"),
        key="k\r\u2028",
    )
    assert str(error) == (
        r"p.toml: pipeline 'a\nb', stage 1 '\x1b[31mred' (tone), key 'k\r\u2028': must be a number, got 'x'"
    )


def test_a_huge_name_or_value_is_not_echoed_whole():
    assert len(str(ConfigError("bad", pipeline="p" * 10_000))) < 100
    assert len(str(ConfigError(f"unknown parameter '{'k' * 10_000}'"))) < 1100


# -- secrets -------------------------------------------------------------------------------------

SECRET = "sk-live-0123456789abcdef"


def test_environment_values_are_redacted_from_text_and_log_records(caplog):
    interpolate("ws://host/x/${API_KEY}", {"API_KEY": SECRET})
    assert redact.redact(f"GET ws://host/x/{SECRET}?k={SECRET}") == "GET ws://host/x/${API_KEY}?k=${API_KEY}"
    record = logging.LogRecord("trio-websocket", logging.DEBUG, __file__, 1, "connecting to %s\n", (SECRET,), None)
    assert (
        redact.RedactingFormatter("%(name)s: %(message)s").format(record)
        == r"trio-websocket: connecting to ${API_KEY}\n"
    )
    interpolate("${SHORT}", {"SHORT": "8080"})
    assert redact.redact("port 8080") == "port 8080"  # too short to scrub from free text


def test_reports_are_redacted_text_and_json():
    interpolate("${API_KEY}", {"API_KEY": SECRET})
    stage = StageReport(1, "x", None, "Sink", None, None, {"peer": f"ws://h/{SECRET}", f"k{SECRET}\n": 1})
    report = RunReport((PipelineReport("a", 1, "failed", f"bad {SECRET}", 0.0, (stage,)),))
    assert SECRET not in format_text(report) and SECRET not in report.to_json()
    assert json.loads(report.to_json())["pipelines"][0]["stages"][0]["statistics"] == {
        "peer": "ws://h/${API_KEY}",
        "k${API_KEY}\\n": 1,
    }


def test_no_secret_in_any_output_of_a_failed_run(tmp_path):
    """A secret in a URL path: the error, the report, report.json and the libraries' debug logs hide it."""
    config = tmp_path / "p.toml"
    config.write_text(
        '[pipelines.a]\n[[pipelines.a.stages]]\ntype = "tone"\nsample_rate = 8000\nduration = 0.1\nspeed = 0\n'
        '[[pipelines.a.stages]]\ntype = "telephony_ws"\nurl = "ws://127.0.0.1:1/x/${API_KEY}"\nreconnect_attempts = 0\n'
    )
    report = tmp_path / "r.json"
    done = subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "rtstream.cli",
            "--log-level",
            "debug",
            "run",
            str(config),
            "--report",
            str(report),
        ],
        env={**os.environ, "API_KEY": SECRET},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "LinkFailed: ws://127.0.0.1:1: " in done.stdout  # the peer is named by host and port only
    for text in (done.stdout, done.stderr, report.read_text()):
        assert SECRET not in text


# -- reports and signals -------------------------------------------------------------------------

TONE = """
[pipelines.endless]
[[pipelines.endless.stages]]
type = "tone"
duration = 1000.0
[[pipelines.endless.stages]]
type = "null_sink"
"""


def test_an_unwritable_report_is_refused_before_the_run(tmp_path):
    config = tmp_path / "p.toml"
    config.write_text(TONE)
    (tmp_path / "plain").write_text("a file")
    result = CliRunner().invoke(main, ["run", str(config), "--report", str(tmp_path / "plain" / "r.json")])
    assert (result.exit_code, result.output) == (
        2,
        f"Error: --report: cannot be created: a part of its folder is not a directory: {tmp_path}/plain/r.json\n",
    )


def test_sigterm_drains_like_ctrl_c_and_the_report_is_written_whole(tmp_path):
    config = tmp_path / "p.toml"
    config.write_text(TONE)
    report = tmp_path / "r.json"
    report.write_text("the previous report")
    cmd = [
        sys.executable,
        "-P",
        "-m",
        "rtstream.cli",
        "--log-level",
        "info",
        "run",
        str(config),
        "--report",
        str(report),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:  # wait for the run to be ready for signals
            if "Ctrl-C or SIGTERM stops the sources" in line:
                break
        assert report.read_text() == "the previous report"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "interrupted: stopping the sources, draining for up to 2.0 s (SIGTERM; again to cancel now)" in err
    assert "pipeline 'endless' stopped after" in out
    assert json.loads(report.read_text())["pipelines"][0]["status"] == "stopped"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.toml", "r.json"]  # no temporary file left


# -- nothing delivered ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Chunks(Source):
    """Sends ``count`` chunks; reports them as a Throughput (the runner's default test)."""

    count: int = 0
    sent: list = attrs.field(factory=list, eq=False)

    def output_caps(self, fmt_in):
        return Caps.of(PCM8K)

    def open(self, fmt_in, fmt_out):
        return self  # a test stage, its own element: what it keeps is the test's log

    async def run(self, tx, *, task_status=trio.TASK_STATUS_IGNORED):
        async with tx:
            task_status.started()
            for n in range(self.count):
                await tx.send(pcm_chunk(80, pts=80 * n))
                self.sent.append(n)

    def statistics(self):
        return {"sent": Throughput(len(self.sent), 80 * len(self.sent), 0.01 * len(self.sent))}


@attrs.frozen(kw_only=True)
class Judged(Sink):
    """A sink whose element says itself whether it delivered (the optional hook); its own element."""

    says: bool | None = None

    def open(self, fmt_in, fmt_out):
        return self

    async def run(self, rx, *, task_status=trio.TASK_STATUS_IGNORED):
        await run_core(Collector(), rx, task_status=task_status)

    def statistics(self):
        return {}

    def delivered(self):
        return self.says


async def test_a_pipeline_whose_source_sent_nothing_fails(autojump_clock):
    report = await run_pipeline(assemble("p", [Chunks(count=0), CollectingSink()]))
    assert (report.status, report.error) == (
        "failed",
        "pipeline 'p', nothing delivered: stage 1 (Chunks) passed on no audio, so stage 2 (CollectingSink) got none",
    )


async def test_a_sink_that_says_it_delivered_nothing_fails_the_pipeline(autojump_clock):
    report = await run_pipeline(assemble("p", [Chunks(count=3), Judged(says=False)]))
    assert (report.status, report.error) == (
        "failed",
        "pipeline 'p', nothing delivered: stage 2 (Judged) delivered no audio",
    )
    for says in (True, None):
        assert (await run_pipeline(assemble("p", [Chunks(count=3), Judged(says=says)]))).status == "completed"


async def test_a_stage_that_cannot_tell_does_not_fail_the_pipeline(autojump_clock):
    assert (await run_pipeline(assemble("p", [Chunks(count=2), CollectingSink()]))).status == "completed"


def test_a_tts_that_never_sends_audio_fails_the_run(tmp_path):
    """The service answers every request but its audio is lost: exit 1, not "completed"."""
    config = tmp_path / "p.toml"
    config.write_text(
        textwrap.dedent("""
        [services.tts]
        type = "tts"
        drop = 1.0
        [pipelines.a]
        [[pipelines.a.stages]]
        type = "cartesia_tts"
        url = "${services.tts.url}"
        transcript = "Hello there."
        response_timeout = 0.2
        reconnect_attempts = 0
        [[pipelines.a.stages]]
        type = "null_sink"
        """)
    )
    result = CliRunner().invoke(main, ["run", str(config)])
    assert result.exit_code == 1
    assert re.match(
        r"^pipeline 'a' failed after 0\.2\d s: pipeline 'a', stage 1 \(cartesia_tts\) failed: LinkFailed: "
        r"ws://127\.0\.0\.1:\d+: no answer within 0\.2 s; gave up after 1 failed attempt in a row$",
        result.stdout.splitlines()[0],
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_a_first_signal_stops_and_a_second_cancels_at_once(signum, autojump_clock):
    control = RunControl(grace=100.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(watch_signals, control)
        with control.pipeline_scope() as scope, scope:
            os.kill(os.getpid(), signum)
            await trio.sleep(1.0)
            assert control.stopping and not scope.cancel_called  # draining, within its grace period
            os.kill(os.getpid(), signum)
            await trio.sleep(1000)
        assert scope.cancelled_caught and trio.current_time() < 2
        nursery.cancel_scope.cancel()


# -- bounded counts ------------------------------------------------------------------------------


def test_peer_chosen_names_are_bounded():
    counts = BoundedCounter(limit=3, max_key=10)
    for name in ["a", "b", "a", "x" * 10_000, "c\n", "d", "e"]:
        counts.add(name)
    assert counts.snapshot() == {"a": 2, "b": 1, "other": 3, "xxxxxxxxx…(10000 characters)": 1}
    assert counts.total == 7


# -- cross-checks the stages declare -------------------------------------------------------------


def test_an_exotel_limit_below_the_chunk_unit_is_refused():
    """The regrouper could send no size at all (it looped, growing 7.5 MB/s): refused before start."""
    from rtstream.simulators.telephony import TelephonySettings
    from rtstream.stages.telephony import TelephonySink

    bounds = {"exotel_max_bytes": 100, "exotel_min_bytes": 0, "exotel_multiple": 320}
    message = r"^exotel_max_bytes: must be at least exotel_multiple \(320\), got 100$"
    with pytest.raises(ParamError, match=message):
        TelephonySink(url="ws://h/", protocol="exotel", **bounds)
    with pytest.raises(ParamError, match=message):
        TelephonySettings(protocol="exotel", **bounds)
