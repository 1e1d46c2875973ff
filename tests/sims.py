"""Simulators on loopback for the socket tests: start one, get its URL."""

from __future__ import annotations

import contextlib
import functools
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import trio

from rtstream.httpserver import Request, Route, Upgrade
from rtstream.simulators.telephony import TelephonyServer, TelephonySettings, serve_telephony
from rtstream.simulators.tts import TtsServer, TtsSettings, serve_tts
from rtstream.websocket import WebSocket


def upgrading(session: Callable[[WebSocket], Awaitable[None]], max_message_size: int = 1 << 20) -> Route:
    """A route that accepts every WebSocket and runs ``session`` on it (a peer scripted in a test)."""

    async def route(request: Request) -> Upgrade:
        return Upgrade(session, max_message_size=max_message_size)

    return route


@contextlib.asynccontextmanager
async def tts_server(settings: TtsSettings | None = None, **kw) -> AsyncIterator[tuple[str, TtsServer]]:
    """A TTS simulator on a free loopback port: (its URL, the server)."""
    settings = settings or TtsSettings(**kw)
    server = TtsServer(settings)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(functools.partial(serve_tts, settings, "127.0.0.1", 0, server=server))
        yield f"ws://127.0.0.1:{port}/tts/websocket?cartesia_version=2026-03-01", server
        nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def telephony_server(record: str | None = None, **kw) -> AsyncIterator[tuple[str, TelephonyServer]]:
    """A telephony simulator on a free loopback port: (its URL, the server)."""
    settings = TelephonySettings(**kw)
    server = TelephonyServer(settings, record=record)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(functools.partial(serve_telephony, settings, "127.0.0.1", 0, server=server))
        yield f"ws://127.0.0.1:{port}/", server
        with trio.move_on_after(2):
            await server.wait_idle()
        nursery.cancel_scope.cancel()


P99_BOUND_MS = 50.0
"""Receiver inter-arrival p99 in the socket tests: generous, for a busy CI machine."""


@contextlib.contextmanager
def simulator_process(kind: str, *settings: str) -> Iterator[str]:
    """``rtstream simulate KIND SETTINGS...`` in a process of its own, for tests that must not share
    this process's CPU with a simulator: yields its URL, stops it with Ctrl-C (SIGINT) after."""
    command = [sys.executable, "-P", "-m", "rtstream.cli", "simulate", kind, *settings]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        if " listening on " not in line:
            raise RuntimeError(
                f"the {kind} simulator did not start: {line!r} {process.stderr.read() if process.stderr else ''}"
            )
        yield line.split(" listening on ")[1].split()[0]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
