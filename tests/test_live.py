"""The live view: the table on a terminal (rich, and under tmux), plain lines elsewhere, and ``rtstream top``."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import time

import pytest
import trio
from click.testing import CliRunner
from rich.console import Console

from rtstream import live
from rtstream.cli import main
from rtstream.config import parse_config
from rtstream.live import PLAIN_EVERY, Row, Status, rows_from_exposition, show, status_of, table
from rtstream.metrics import Monitor, serve_metrics
from rtstream.pipeline import build_pipeline
from rtstream.runner import run_pipelines

TIMEOUT = 20
GAPPY = """
[pipelines.gappy]
[[pipelines.gappy.stages]]
type = "tone"
sample_rate = 8000
duration = 1.0
chunk_ms = 20.0
speed = 0.5
[[pipelines.gappy.stages]]
type = "chunker"
frame_ms = 20
[[pipelines.gappy.stages]]
type = "pacer"
frame_ms = 20
[[pipelines.gappy.stages]]
type = "null_sink"
"""


def pipelines():
    config = parse_config(GAPPY)
    return [build_pipeline(spec) for spec in config.select(())]


async def run_watched(monitor: Monitor) -> None:
    monitor.install()
    await run_pipelines(pipelines())
    await monitor.refresh(issues=True)


def test_the_view_of_a_run_shows_each_pipeline_with_its_figures_and_issues():
    monitor = Monitor()
    trio.run(run_watched, monitor, clock=trio.testing.MockClock(autojump_threshold=0))
    status = status_of(monitor)
    (row,) = status.rows
    assert (row.pipeline, row.active, row.seconds, row.drops) == ("gappy", 0, pytest.approx(2.0, abs=0.03), 0)
    assert row.underruns > 0 and row.issues == {"critical": 1}  # a half-speed source: 2 s sent, half of it silence
    console = Console(force_terminal=True, record=True, width=100, file=io.StringIO())
    console.print(table(status))
    text = console.export_text(clear=False)
    lines = text.splitlines()
    assert lines[0].startswith("rtstream · loop lag ")
    assert lines[1].split() == ["pipeline", "active", "sent", "p99", "late", "in-utt", "underruns", "drops", "issues"]
    assert lines[2].split()[:4] == ["gappy", "0", "2.0", "s"] and lines[2].endswith("1 critical")
    assert "\x1b[31m" in console.export_text(styles=True)  # a critical issue in red


async def test_off_a_terminal_the_view_is_a_line_every_few_seconds(autojump_clock):
    monitor = Monitor()
    monitor.install()
    stream = io.StringIO()
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: show(monitor, stream=stream, task_status=task_status))
        await run_pipelines(pipelines())
        await trio.sleep(PLAIN_EVERY)
        nursery.cancel_scope.cancel()
    first = stream.getvalue().splitlines()[0]
    assert first[8:] == (  # after the time of day
        " status: gappy: 0 active, 2.0 s sent, p99 late -0.5 ms, 50 in-utterance underruns, 0 drops, issues 1 critical; "
        "loop lag 0.0 ms, cpu 0%"
    )


def test_top_reads_the_same_figures_from_metrics():
    monitor = Monitor()

    async def serve_and_scrape() -> str:
        monitor.install()
        await run_pipelines(pipelines())
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_metrics, monitor, "127.0.0.1", 0)
            result = await trio.to_thread.run_sync(
                lambda: CliRunner().invoke(main, ["top", f"http://127.0.0.1:{port}", "--once"])
            )
            nursery.cancel_scope.cancel()
        assert result.exit_code == 0, result.output
        return result.output

    output = trio.run(serve_and_scrape)
    row = next(line for line in output.splitlines() if line.startswith("gappy"))
    assert row.split()[:4] == ["gappy", "0", "2.0", "s"] and "1 critical" in row  # late frames too, on a busy machine
    (status_row,) = status_of(monitor).rows
    assert status_row.underruns == int(row.split()[-4])


def test_an_exposition_is_summed_over_workers():
    text = (
        "# TYPE rtstream_underruns counter\n"
        'rtstream_underruns_total{pipeline="p",worker="0"} 9\n'
        "# TYPE rtstream_in_utterance_underruns counter\n"
        'rtstream_in_utterance_underruns_total{pipeline="p",worker="0"} 2\n'
        'rtstream_in_utterance_underruns_total{pipeline="p",worker="1"} 3\n'
        "# TYPE rtstream_pipelines_active gauge\n"
        'rtstream_pipelines_active{pipeline="p",worker="0"} 1\n'
        "# TYPE rtstream_pacer_lateness_seconds histogram\n"
        'rtstream_pacer_lateness_seconds_bucket{le="0.001",pipeline="p",worker="0"} 98\n'
        'rtstream_pacer_lateness_seconds_bucket{le="0.002",pipeline="p",worker="0"} 100\n'
        'rtstream_pacer_lateness_seconds_bucket{le="+Inf",pipeline="p",worker="0"} 100\n'
        'rtstream_pacer_lateness_seconds_count{pipeline="p",worker="0"} 100\n'
        'rtstream_pacer_lateness_seconds_sum{pipeline="p",worker="0"} 0.05\n'
    )
    assert rows_from_exposition(text) == Status((Row("p", 1, 0.0, 2.0, 5, 0, {}),), 0.0, 0.0, {})


def test_top_refuses_a_url_that_is_not_http():
    result = CliRunner().invoke(main, ["top", "localhost:9464"])
    assert (result.exit_code, result.output) == (
        2,
        "Error: URL must start with http:// or https://, got 'localhost:9464'\n",
    )


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_in_a_terminal_rtstream_run_draws_the_table(tmp_path):
    """Under tmux (a real terminal), the live table is on screen while the run goes on, the report after it."""
    config = tmp_path / "p.toml"
    config.write_text(GAPPY.replace("duration = 1.0", "duration = 4.0"))
    session = f"rtstream-live-{time.monotonic_ns()}"
    command = f"{sys.executable} -P -m rtstream.cli run {config}; sleep 30"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", command], check=True)
    try:
        screens = []
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
            ).stdout
            screens.append(screen)
            if "issues:" in screen:  # the report is printed: the run is over
                break
            time.sleep(0.25)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    during = [s for s in screens if "pipeline  active" in s and "pipeline 'gappy'" not in s]
    assert during, screens[-1]
    assert any("gappy" in s.split("pipeline  active", 1)[1] for s in during)
    final = screens[-1]
    assert "pipeline 'gappy' completed" in final and "critical underruns at stage 3 (pacer)" in final


async def test_the_parent_of_workers_shows_them_all_from_their_shared_files(tmp_path, monkeypatch):
    monkeypatch.setattr(live, "PLAIN_EVERY", 0.01)
    stream = io.StringIO()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for worker in (0, 1):
                nursery.start_soon(Monitor(worker=worker, shared_dir=tmp_path).run)
            while len(list(tmp_path.glob("worker-*.prom"))) < 2:
                await trio.sleep(0.01)
            await nursery.start(lambda task_status: live.show_workers(tmp_path, stream=stream, task_status=task_status))
            while not stream.getvalue():
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert re.fullmatch(r"\d\d:\d\d:\d\d status: loop lag [\d.]+ ms, cpu \d+%\n", stream.getvalue().splitlines(True)[0])
