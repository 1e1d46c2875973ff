"""The server's routing, admission, health and drain, over real loopback sockets."""

from __future__ import annotations

import contextlib
import json
import socket as stdlib_socket
from collections.abc import Mapping
from typing import Any

import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as peer_connect

from rtstream import websocket
from rtstream.httpserver import Request, Response, Upgrade, bound_port, open_listener
from rtstream.load import SAMPLE_INTERVAL, Load
from rtstream.metrics import Monitor
from rtstream.server import Server

TIMEOUT = 10
IDLE_LOAD = {"load": 0.0, "max_load": 0.0, "loop_lag_ms": 0.0, "loop_lag_max_ms": 0.0, "cpu": 0.0}
"""The load fields of ``/health`` before the load's second sample (the first is taken 100 ms in)."""


class HoldingCall:
    """A call endpoint whose calls say hello and run until released, the peer leaves, or cancelled."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.started = 0

    async def handle(self, request: Request, server: Server) -> Response | Upgrade:
        async def call(ws: websocket.WebSocket) -> tuple[str, Mapping[str, Any]]:
            self.started += 1
            await ws.send("hello")
            async with trio.open_nursery() as nursery:

                async def read() -> None:
                    with contextlib.suppress(websocket.ConnectionClosed):
                        while True:
                            await ws.receive()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(read)
                await self.release.wait()
                nursery.cancel_scope.cancel()
            return "completed", {"said": "hello"}

        return server.admit("hold", request, call)


def http_get(port: int, path: str) -> tuple[int, bytes]:
    with stdlib_socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def start(server: Server, nursery: trio.Nursery) -> int:
    listener = await open_listener("127.0.0.1", 0)
    await nursery.start(server.serve, [listener])
    return bound_port(listener)


async def test_admission_health_and_drain() -> None:
    endpoint = HoldingCall()
    server = Server({"/hold": endpoint}, max_calls=2, drain=5.0)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await start(server, nursery)
            status, body = await trio.to_thread.run_sync(http_get, port, "/health")
            assert status == 200 and body.endswith(b"\n")
            assert json.loads(body) == {"status": "accepting", "active_calls": 0, "max_calls": 2} | IDLE_LOAD
            first = await websocket.connect(f"ws://127.0.0.1:{port}/hold")
            second = await websocket.connect(f"ws://127.0.0.1:{port}/hold")
            assert [await first.receive(), await second.receive()] == ["hello", "hello"]
            with pytest.raises(websocket.HandshakeFailed, match=r"refused with HTTP 503$"):
                await websocket.connect(f"ws://127.0.0.1:{port}/hold")
            status, body = await trio.to_thread.run_sync(http_get, port, "/health")
            assert (status, json.loads(body)["status"]) == (503, "full")
            assert (await trio.to_thread.run_sync(http_get, port, "/nope"))[0] == 404

            server.drain()
            endpoint.release.set()
            await server.wait_idle()
            for ws in (first, second):
                with pytest.raises(websocket.ConnectionClosed):
                    await ws.receive()
                assert ws.closed is not None and ws.closed.code == 1000
    report = server.report()
    assert report["outcomes"] == {"completed": 2}
    assert report["refused"] == {"full": 1}
    assert report["requests"] == {"health": 2, "not_found": 1}


async def test_drain_cancels_calls_that_outlast_it(autojump_clock: trio.abc.Clock) -> None:
    endpoint = HoldingCall()
    server = Server({"/hold": endpoint}, max_calls=5, drain=3.0)
    async with trio.open_nursery() as nursery:
        port = await start(server, nursery)
        ws = await websocket.connect(f"ws://127.0.0.1:{port}/hold")
        assert await ws.receive() == "hello"
        server.drain()
        with pytest.raises(websocket.HandshakeFailed):
            await websocket.connect(f"ws://127.0.0.1:{port}/hold")
        began = trio.current_time()
        await server.wait_idle()
        assert trio.current_time() - began == pytest.approx(3.0)
    assert server.report()["outcomes"] == {"cancelled": 1}


async def test_an_independent_client_is_refused_when_full() -> None:
    endpoint = HoldingCall()
    server = Server({"/hold": endpoint}, max_calls=1)

    def dial_twice(port: int) -> int:
        with peer_connect(f"ws://127.0.0.1:{port}/hold") as held:
            assert held.recv() == "hello"
            with pytest.raises(InvalidStatus) as refused:
                peer_connect(f"ws://127.0.0.1:{port}/hold")
            return refused.value.response.status_code

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await start(server, nursery)
            assert await trio.to_thread.run_sync(dial_twice, port) == 503
            await server.wait_idle()  # the peer left, so its call ended
            server.abort()
    assert server.report()["outcomes"] == {"completed": 1}


class CPU:
    """A process clock for the server's load sampler: ``share`` of a core, on the trio clock."""

    def __init__(self) -> None:
        self.share = 0.0
        self.used = 0.0
        self.at = 0.0

    def __call__(self) -> float:
        now = trio.current_time()
        self.used += self.share * (now - self.at)
        self.at = now
        return self.used


async def test_an_overloaded_server_refuses_with_503_counts_it_and_admits_again_when_load_falls(
    mock_clock: trio.testing.MockClock,
) -> None:
    """Real sockets; the clock runs at real speed and the test jumps it, the sampler's CPU readings are the test's.

    The lag budget is out of reach (1 s): this machine's loop lag is not what the test is about.
    """
    mock_clock.rate = 1.0
    endpoint, cpu = HoldingCall(), CPU()
    cpu.at, cpu.share = trio.current_time(), 0.9
    server = Server({"/hold": endpoint}, max_calls=10, load=Load(0.7, lag_budget=1.0), cpu_time=cpu)
    monitor = Monitor(server=server)
    monitor.attach(server)

    async def advance(seconds: float) -> None:
        for _ in range(round(seconds / SAMPLE_INTERVAL)):
            mock_clock.jump(SAMPLE_INTERVAL)
            await trio.testing.wait_all_tasks_blocked()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await start(server, nursery)
            await advance(0.3)
            status, body = await trio.to_thread.run_sync(http_get, port, "/health")
            health = json.loads(body)
            assert (status, health["status"], health["load"], health["cpu"]) == (503, "overloaded", 0.9, 0.9)
            with pytest.raises(websocket.HandshakeFailed, match=r"refused with HTTP 503$"):
                await websocket.connect(f"ws://127.0.0.1:{port}/hold")
            assert endpoint.started == 0
            _, metrics = await trio.to_thread.run_sync(http_get, port, "/metrics")
            samples = {
                (s.name, tuple(s.labels.values())): s.value
                for family in text_string_to_metric_families(metrics.decode())
                for s in family.samples
            }
            assert samples["rtstream_calls_refused_total", ("overloaded",)] == 1
            assert samples["rtstream_worker_load", ()] == pytest.approx(0.9, abs=1e-3)
            assert samples["rtstream_cpu_share", ()] == pytest.approx(0.9, abs=1e-3)
            assert samples["rtstream_worker_max_load", ()] == 0.7

            cpu.share = 0.0
            await advance(1.0)  # 0.9 e^-1: 0.33, room for a call again
            status, body = await trio.to_thread.run_sync(http_get, port, "/health")
            assert (status, json.loads(body)["status"]) == (200, "accepting")
            ws = await websocket.connect(f"ws://127.0.0.1:{port}/hold")
            assert await ws.receive() == "hello"
            server.drain()
            endpoint.release.set()
            await server.wait_idle()
    report = server.report()
    assert report["refused"] == {"overloaded": 1}
    assert (report["admitted"], report["outcomes"]) == (1, {"completed": 1})
    assert report["load"]["peak_load"] == pytest.approx(0.9, abs=1e-3) and report["load"]["max_load"] == 0.7
