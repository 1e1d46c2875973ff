"""Process helpers shared by the benchmarks: pinning, CPU time and memory from /proc, simulators.

Linux only (``/proc``, ``sched_setaffinity``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def pin_to(cpus: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins the child to ``cpus`` (None: no pinning)."""
    return None if cpus is None else lambda: os.sched_setaffinity(0, cpus)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far, from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def runqueue_wait_seconds(pid: int) -> float:
    """Time ``pid``'s main thread has spent runnable but waiting for a CPU, from ``/proc/PID/schedstat``."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` now (``VmRSS``), in KB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def start_simulator(
    kind: str, *settings: str, report: Path, cpus: set[int] | None = None, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """``rtstream simulate KIND`` (a listening simulator) in a process of its own: (the process, its URL)."""
    args = [sys.executable, "-P", "-m", "rtstream.cli", "simulate", kind, *settings, "--report", str(report)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, preexec_fn=pin_to(cpus), env=env)
    line = process.stdout.readline() if process.stdout else ""
    if " listening on " not in line:
        process.kill()
        raise SystemExit(f"the {kind} simulator did not start: {line!r}")
    return process, line.split(" listening on ")[1].split()[0]


def stop(process: subprocess.Popen[str], sig: int = signal.SIGINT, timeout: float = 60) -> None:
    """Send ``sig`` (a simulator reports and ends on SIGINT) and wait for the process to end."""
    process.send_signal(sig)
    process.communicate(timeout=timeout)


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, as ``uptime`` shows them."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
