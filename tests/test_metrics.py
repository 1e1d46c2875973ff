"""Prometheus metrics: /metrics and /health of a serving process with a call active, workers merged, bounded labels."""

from __future__ import annotations

import base64
import json
import signal
import threading
import time
import urllib.request
from typing import Any

import trio
from prometheus_client.parser import text_string_to_metric_families
from test_serve_calls import PIPELINES
from websockets.sync.client import connect as peer_connect

from rtstream.callrun import call_runner
from rtstream.calls import CallSettings
from rtstream.config import parse_config
from rtstream.httpserver import bound_port, open_listener
from rtstream.metrics import MAX_LABEL_VALUES, OTHER, Monitor, _Labels, merge_expositions, serve_metrics
from rtstream.routes import CallEndpoint
from rtstream.server import Server

TIMEOUT = 20
SID = "MZ0123456789abcdef0123456789abcdef"

FAMILIES = {
    "rtstream_calls_active",
    "rtstream_calls",
    "rtstream_calls_refused",
    "rtstream_frames_sent",
    "rtstream_late_frames",
    "rtstream_underruns",
    "rtstream_in_utterance_underruns",
    "rtstream_dropped_frames",
    "rtstream_dropped_samples",
    "rtstream_pacer_lateness_seconds",
    "rtstream_receiver_deviation_seconds",
    "rtstream_jitter_buffer_current_delay_seconds",
    "rtstream_jitter_buffer_target_seconds",
    "rtstream_jitter_buffer_concealed_samples",
    "rtstream_jitter_buffer_inserted_samples_for_deceleration",
    "rtstream_jitter_buffer_removed_samples_for_acceleration",
    "rtstream_first_audio_seconds",
    "rtstream_turn_latency_seconds",
    "rtstream_barge_in_seconds",
    "rtstream_barge_ins",
    "rtstream_reconnects",
    "rtstream_malformed_messages",
    "rtstream_loop_lag_seconds",
    "rtstream_worker_load",
}


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def hold_a_call(url: str, media_seen: threading.Event, hang_up: threading.Event) -> None:
    """A Twilio caller that hears the bot's reply out, then stays on the line until told to hang up."""
    with peer_connect(url) as ws:
        fmt = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        start = {"streamSid": SID, "callSid": "CA1", "accountSid": "AC1", "tracks": ["inbound"], "mediaFormat": fmt}
        ws.send(json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": SID, "start": start}))
        payload = base64.b64encode(b"\xff" * 160).decode()
        ws.send(json.dumps({"event": "media", "streamSid": SID, "media": {"payload": payload}}))
        ws.send("{not json")
        while json.loads(ws.recv(timeout=TIMEOUT))["event"] != "mark":
            pass  # the bot's reply, to its end
        media_seen.set()
        hang_up.wait(TIMEOUT)
        ws.send(json.dumps({"event": "stop", "sequenceNumber": "9", "streamSid": SID, "stop": {"callSid": "CA1"}}))


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


async def test_a_scrape_with_a_call_active_finds_every_family_and_health_reports_the_load() -> None:
    config = parse_config(PIPELINES)
    settings = CallSettings(path="/twilio", protocol="twilio", pipelines=("caller", "bot"))
    server = Server(
        {"/twilio": CallEndpoint("twilio", settings, call_runner(config, {}, {}), public_url=None)}, max_calls=1
    )
    monitor = Monitor(server=server)
    monitor.attach(server)
    monitor.install()
    media_seen, hang_up = threading.Event(), threading.Event()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            listener = await open_listener("127.0.0.1", 0)
            await nursery.start(server.serve, [listener])
            base = f"http://127.0.0.1:{bound_port(listener)}"
            caller = trio.to_thread.run_sync(
                hold_a_call, f"ws://127.0.0.1:{bound_port(listener)}/twilio", media_seen, hang_up
            )
            nursery.start_soon(lambda: caller)
            await trio.to_thread.run_sync(media_seen.wait, TIMEOUT)
            status, text = await trio.to_thread.run_sync(get, base + "/metrics")
            health_status, health = await trio.to_thread.run_sync(get, base + "/health")
            hang_up.set()
            await server.wait_idle()
            _, after = await trio.to_thread.run_sync(get, base + "/metrics")
            server.abort()
            nursery.cancel_scope.cancel()
    assert status == 200
    found = families(text)
    assert set(found) >= FAMILIES
    active = {s.labels["route"]: s.value for s in found["rtstream_calls_active"].samples}
    assert active == {"twilio": 1.0}
    assert "caller" in {s.labels["pipeline"] for s in found["rtstream_pipelines_active"].samples}
    malformed = {(s.labels["stage"], s.labels["kind"]): s.value for s in found["rtstream_malformed_messages"].samples}
    assert malformed == {}  # the call's link counts its own (below); no stage saw a bad message
    assert health_status == 503  # max_calls is 1, and it is taken
    body = json.loads(health)
    assert (body["status"], body["active_calls"]) == ("full", 1)
    assert set(body) >= {"loop_lag_ms", "loop_lag_max_ms", "cpu"}
    ended = families(after)
    calls = {(s.labels["route"], s.labels["outcome"]): s.value for s in ended["rtstream_calls"].samples}
    assert calls == {("twilio", "completed"): 1.0}
    bad = {(s.labels["route"], s.labels["kind"]): s.value for s in ended["rtstream_call_malformed_messages"].samples}
    assert bad == {("twilio", "bad_json"): 1.0}
    sent = {s.labels["pipeline"]: s.value for s in ended["rtstream_frames_sent"].samples}
    assert sent["bot"] >= 20  # 0.4 s of tone in 20 ms frames, folded in when the call ended
    for family in ended.values():
        for sample in family.samples:
            assert SID not in json.dumps(sample.labels)  # never a call's id as a label


async def test_run_metrics_port_answers_metrics_and_health() -> None:
    monitor = Monitor()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            port = await nursery.start(serve_metrics, monitor, "127.0.0.1", 0)
            status, text = await trio.to_thread.run_sync(get, f"http://127.0.0.1:{port}/metrics")
            health_status, health = await trio.to_thread.run_sync(get, f"http://127.0.0.1:{port}/health")
            missing = await trio.to_thread.run_sync(get, f"http://127.0.0.1:{port}/nope")
            nursery.cancel_scope.cancel()
    assert status == 200 and "rtstream_loop_lag_seconds" in families(text)
    assert health_status == 200 and json.loads(health)["status"] == "running"
    assert missing == (404, "no route for '/nope'\n")


async def test_one_scrape_sees_every_worker(tmp_path) -> None:
    first, second = Monitor(worker=0, shared_dir=tmp_path), Monitor(worker=1, shared_dir=tmp_path)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(second.run)
            while not (tmp_path / "worker-1.prom").exists():
                await trio.sleep(0.01)
            text = (await first.exposition()).decode()
            nursery.cancel_scope.cancel()
    assert not (tmp_path / "worker-1.prom").exists()  # a worker that stops takes its file with it
    lag = families(text)["rtstream_worker_load"]
    assert sorted(s.labels["worker"] for s in lag.samples) == ["0", "1"]
    assert text.count("# TYPE rtstream_worker_load gauge") == 1


def test_merged_expositions_keep_each_family_once() -> None:
    a = '# HELP x_total X.\n# TYPE x_total counter\nx_total{worker="0"} 1.0\n'
    b = '# HELP x_total X.\n# TYPE x_total counter\nx_total{worker="1"} 2.0\n'
    assert merge_expositions([a, b]).decode() == (
        '# HELP x_total X.\n# TYPE x_total counter\nx_total{worker="0"} 1.0\nx_total{worker="1"} 2.0\n'
    )


def test_label_values_are_bounded_one_line_and_short() -> None:
    label = _Labels()
    values = {label("reason", f"reason-{n}") for n in range(MAX_LABEL_VALUES + 10)}
    assert len(values) == MAX_LABEL_VALUES + 1 and OTHER in values
    assert label("kind", "a\nb" + "x" * 200) == "a\\nb" + "x" * 59 + "…(204 characters)"


def test_a_scrape_of_serve_with_workers_sees_every_worker(tmp_path) -> None:
    from test_serve import SERVED, start_serving, write

    process, port, _ = start_serving(write(tmp_path, SERVED), "--workers", "2", "-q")
    try:
        deadline = time.monotonic() + TIMEOUT
        workers: set[str] = set()
        while workers != {"0", "1"} and time.monotonic() < deadline:
            _, text = get(f"http://127.0.0.1:{port}/metrics")
            workers = {s.labels["worker"] for s in families(text)["rtstream_worker_load"].samples}
            time.sleep(0.2)
        assert workers == {"0", "1"}
        assert text.count("# TYPE rtstream_calls_active gauge") == 1
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=TIMEOUT)
