"""Several server processes on one port: a parent that starts, restarts and stops its workers.

One trio loop is one core. ``rtstream serve --workers N`` runs N worker processes, each a
whole server with its own loop, all listening on the same port with SO_REUSEPORT so the
kernel spreads new connections across them. The parent holds the port (bound, not listening,
so it takes no connections itself), restarts a worker that dies with backoff, turns the first
SIGTERM or Ctrl-C into a drain of every worker and a second into an abort, and merges the
workers' reports into one.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

log = logging.getLogger(__name__)

RESTART_DELAY = 0.5
RESTART_DELAY_MAX = 30.0
HEALTHY_AFTER = 30.0
"""A worker that ran this long before dying restarts after the shortest delay again."""


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind ``host:port`` with SO_REUSEPORT without listening: the port is ours, the workers share it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class Supervisor:
    """Runs ``count`` copies of a worker command until told to stop; see the module docstring.

    ``command(index, report)`` is the argv of worker ``index``, which writes its JSON report to
    ``report`` when it ends. Each worker prints one line on standard output once it listens.
    """

    def __init__(self, count: int, command: Any, report_dir: Path) -> None:
        self.count = count
        self.command = command
        self.report_dir = report_dir
        self.restarts = 0
        self.stopping = False
        self._processes: dict[int, trio.Process] = {}
        self._ready = [trio.Event() for _ in range(count)]

    def report_path(self, index: int) -> Path:
        return self.report_dir / f"worker-{index}.json"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the workers until they have all ended after :meth:`stop`."""
        async with trio.open_nursery() as nursery:
            for index in range(self.count):
                nursery.start_soon(self._keep_running, index)
            for ready in self._ready:
                await ready.wait()
            task_status.started()

    async def _keep_running(self, index: int) -> None:
        delay = RESTART_DELAY
        while True:
            started = trio.current_time()
            process = await trio.lowlevel.open_process(
                self.command(index, self.report_path(index)), stdout=subprocess.PIPE
            )
            self._processes[index] = process
            try:
                await self._wait_ready(index, process)
                code = await process.wait()
            finally:
                del self._processes[index]
            self._ready[index].set()  # a worker that died before it listened does not hold up the start
            if self.stopping:
                return
            ran = trio.current_time() - started
            delay = RESTART_DELAY if ran >= HEALTHY_AFTER else min(delay * 2, RESTART_DELAY_MAX)
            self.restarts += 1
            log.warning(
                "worker %d ended with exit status %s after %.1f s; restarting in %.1f s", index, code, ran, delay
            )
            await trio.sleep(delay)

    async def _wait_ready(self, index: int, process: trio.Process) -> None:
        assert process.stdout is not None
        async with process.stdout:
            line = b""
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(256)
                if not chunk:
                    return
                line += chunk
            log.info("worker %d (pid %d): %s", index, process.pid, line.decode(errors="replace").strip())
            self._ready[index].set()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Pass ``sig`` to every worker (the first drains, a second aborts) and restart none."""
        self.stopping = True
        for process in self._processes.values():
            process.send_signal(sig)


PER_WORKER = ("load",)
"""Server report fields that are figures of one process, not counts: listed by worker, not summed."""


def merge_reports(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One server report from the workers' reports: counters summed, calls concatenated, loads listed."""
    merged: dict[str, Any] = {"workers": len(reports)}
    for report in reports:
        for key, value in report.items():
            if key in PER_WORKER:
                merged.setdefault(key, []).append(value)
            elif isinstance(value, bool):
                merged[key] = merged.get(key, False) or value
            elif isinstance(value, int | float):
                merged[key] = merged.get(key, 0) + value
            elif isinstance(value, Mapping):
                inner = merged.setdefault(key, {})
                for name, count in value.items():
                    inner[name] = inner.get(name, 0) + count if isinstance(count, int | float) else count
            elif isinstance(value, list):
                merged.setdefault(key, []).extend(value)
    return merged


def read_reports(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The workers' reports that were written (a worker killed outright writes none)."""
    reports = []
    for path in paths:
        try:
            reports.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            log.warning("no report from %s: %s", path.name, exc)
    return reports


def worker_command(argv: Sequence[str]) -> list[str]:
    """The command line that runs ``rtstream`` with ``argv`` in a new interpreter."""
    return [sys.executable, "-P", "-m", "rtstream", *argv]
