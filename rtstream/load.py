"""The process's load, and whether one more call fits before the running ones degrade.

Two signs that a trio process is short of time: the CPU it uses (a trio loop runs on one
core, so a share of one core near 1 leaves nothing for another call), and how late the loop
wakes a task that asked to wake at a given time (the pacers' frames are that late; it also
shows a core taken by other processes, which the CPU share cannot). :class:`Load` keeps
time-weighted moving averages of both, fed with samples taken every ~100 ms by
:func:`sample_load`, and calls the larger of the two, each as a fraction of what the process
can bear, its *load*: ``max(cpu, loop lag / lag budget)``, so 1 is a saturated loop or a
loop as late as the budget. LiveKit's workers report their CPU the same way (a moving
average over 2.5 s) and stop taking jobs above 0.7.

A moving average lags the calls it measures: a storm of arrivals would all be admitted
before the first of them shows. So each admitted call *reserves* its estimated load, and the
reservation fades as the average takes the call in. A call's load does not start at its
admission: its first second is a handshake and a wait for the bot's first reply, so the
reservation is held whole for ``warmup`` (1 s) and then fades as
``exp(-(age - warmup) / time_constant)``, the part a step of load started then has not yet
reached in the average. One call's load is learned from the running calls: the load above the idle
process's (measured while no call runs: a busy machine's loop lag is not the calls') over
the calls the average shows, shrunk towards a prior when few run (a noisy load over one or
two calls says little): ``(load - idle + k * prior) / (calls + k)``.

The averages are bias-corrected (divided by the weight their samples have had so far, as
Adam's moments are), so the first second reads the load measured, not a ramp up from 0.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Callable

import attrs
import trio

from .stats import Quantiles, stat

SAMPLE_INTERVAL = 0.1
"""Seconds between two samples: a trio sleep, a clock read and a few multiplications."""
TIME_CONSTANT = 1.0
"""Seconds over which the averages follow a change (63 % of a step after one, 95 % after three)."""
PRIOR_CALL_LOAD = 0.04
"""A call's load before any is measured: 40 ms of CPU per call-second, about three times what a two-way served
call costs now (13-15 ms at 10-40 calls). It holds a storm back only with the warmup (:data:`WARMUP`): at 40 ms
with reservations fading from admission, ``benchmarks/serve.py --offer 2 --capacity 30`` saw all 60 calls admitted
and broken; with the warmup, 12 admitted and none damaged (10 of 40 at capacity 20; at 100 ms, 6)."""
PRIOR_CALLS = 2
"""How many calls the prior weighs as, against the calls measured."""
IDLE_AFTER = 3
"""Time constants after the last call before the load counts as the idle process's (5 % of the calls' left)."""
WARMUP = 1.0
"""Seconds after admission before a call costs what it will: a storm measured in its first second looks cheap."""
FORGOTTEN = 0.01
"""A reservation whose remaining weight is below this share of a call is dropped."""


@attrs.frozen
class LoadStatistics:
    """The load as of the last sample, what admission made of it, and the averages it comes from."""

    load: float = stat(help="max(cpu, loop lag / lag budget), moving averages: 1 is a saturated loop.")
    cpu: float = stat(help="Share of one core the process used (moving average).")
    loop_lag_ms: float = stat(help="How late the loop woke the sampling task (moving average).")
    loop_lag_max_ms: float = stat(help="The latest it woke it.")
    peak_load: float = stat(help="The largest load seen.")
    call_load: float = stat(help="One call's estimated load, learned from the running calls.")
    idle_load: float = stat(help="The load while no call ran (moving average): what is not the calls'.")
    reserved: float = stat(help="Calls admitted but not yet in the averages, in calls (their fading reservations).")
    max_load: float = stat(help="The load above which calls are refused (0: never by load).")
    lag_budget_ms: float = stat(help="The loop lag that counts as a load of 1.")
    samples: int = stat(help="Samples taken.")


class Load:
    """Moving averages of CPU share and loop lag, reservations for admitted calls; time is passed in.

    ``max_load`` 0 turns admission by load off (the load is still measured and reported):
    every other value is a threshold, and above 1 one that only a loop later than
    ``lag_budget`` crosses.
    """

    def __init__(
        self,
        max_load: float = 0.0,
        lag_budget: float = 0.010,
        *,
        time_constant: float = TIME_CONSTANT,
        prior: float = PRIOR_CALL_LOAD,
        warmup: float = WARMUP,
    ) -> None:
        if not max_load >= 0:
            raise ValueError(f"max_load must be 0 (off) or more, got {max_load}")
        if not lag_budget > 0:
            raise ValueError(f"lag_budget must be more than 0 s, got {lag_budget}")
        self.max_load = max_load
        self.lag_budget = lag_budget
        self.time_constant = time_constant
        self.prior = prior
        self.warmup = warmup
        self.active = 0
        """Calls running: reserved and not yet released."""
        self._cpu = 0.0
        self._lag = 0.0
        self._idle = 0.0
        self._weight = 0.0
        """How much of the averages' weight the samples have had so far (0 to 1)."""
        self._idle_weight = 0.0
        self._busy_at = -math.inf
        """The last sample with a call running: the averages show calls for a few time constants after it."""
        self.lag_max = 0.0
        self.peak = 0.0
        self.lags = Quantiles()
        """Every lag sampled, in seconds (the loop-lag histogram)."""
        self.samples = 0
        self._at: float | None = None
        self._cpu_time = 0.0
        self._reservations: deque[float] = deque()
        """Admission times of the calls whose reservation has not faded yet, oldest first."""

    @property
    def cpu(self) -> float:
        """Share of one core, moving average."""
        return self._cpu / self._weight if self._weight else 0.0

    @property
    def lag(self) -> float:
        """Seconds, moving average."""
        return self._lag / self._weight if self._weight else 0.0

    @property
    def load(self) -> float:
        return max(self.cpu, self.lag / self.lag_budget)

    @property
    def idle_load(self) -> float:
        """The load while no call ran (0 until it has been measured)."""
        return self._idle / self._idle_weight if self._idle_weight else 0.0

    def sample(self, now: float, lag: float, cpu_time: float) -> None:
        """Take one sample: the loop woke ``lag`` seconds late at ``now``; the process has used ``cpu_time``.

        The first sample sets the origin of the averages; a sample no later than the one
        before adds its lag to the histogram only, and its CPU counts in the next.
        """
        self.lags.add(lag)
        self.lag_max = max(self.lag_max, lag)
        self.samples += 1
        if self._at is None:
            self._at, self._cpu_time = now, cpu_time
            return
        span = now - self._at
        if span <= 0:
            return
        weight = -math.expm1(-span / self.time_constant)
        self._cpu += weight * ((cpu_time - self._cpu_time) / span - self._cpu)
        self._lag += weight * (lag - self._lag)
        self._weight += weight * (1 - self._weight)
        self._at, self._cpu_time = now, cpu_time
        load = self.load
        self.peak = max(self.peak, load)
        if self.active:
            self._busy_at = now
        elif now - self._busy_at >= IDLE_AFTER * self.time_constant:
            self._idle += weight * (load - self._idle)
            self._idle_weight += weight * (1 - self._idle_weight)
        horizon = now - self.warmup + self.time_constant * math.log(FORGOTTEN)
        reservations = self._reservations
        while reservations and reservations[0] < horizon:
            reservations.popleft()

    def reserved(self) -> float:
        """How many admitted calls the averages do not show yet (fractions of calls)."""
        if self._at is None:
            return float(len(self._reservations))
        at, tau, warmup = self._at, self.time_constant, self.warmup
        return sum(math.exp(-max(at - t - warmup, 0.0) / tau) for t in self._reservations)

    def call_load(self) -> float:
        """One call's load: the load above idle over the calls the averages show, shrunk to the prior."""
        return self._call_load(self.reserved())

    def _call_load(self, reserved: float) -> float:
        shown = max(self.active - reserved, 0.0)
        return (max(self.load - self.idle_load, 0.0) + PRIOR_CALLS * self.prior) / (shown + PRIOR_CALLS)

    def room(self) -> bool:
        """Whether one more call keeps the load, reservations included, at or below ``max_load``."""
        if not self.max_load:
            return True
        reserved = self.reserved()
        return self.load + self._call_load(reserved) * (reserved + 1) <= self.max_load

    def reserve(self, now: float) -> None:
        """A call was admitted at ``now``: reserve its load until the averages show it."""
        self.active += 1
        self._reservations.append(now)

    def release(self, admitted: float) -> None:
        """The call admitted at ``admitted`` ended: what is left of its reservation goes with it.

        So the reservations are never more than the calls running.
        """
        self.active -= 1
        with contextlib.suppress(ValueError):  # already faded
            self._reservations.remove(admitted)

    def statistics(self) -> LoadStatistics:
        return LoadStatistics(
            load=self.load,
            cpu=self.cpu,
            loop_lag_ms=self.lag * 1000,
            loop_lag_max_ms=self.lag_max * 1000,
            peak_load=self.peak,
            call_load=self.call_load(),
            idle_load=self.idle_load,
            reserved=self.reserved(),
            max_load=self.max_load,
            lag_budget_ms=self.lag_budget * 1000,
            samples=self.samples,
        )


async def sample_load(
    load: Load,
    interval: float = SAMPLE_INTERVAL,
    *,
    cpu_time: Callable[[], float] = time.process_time,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Feed ``load`` a sample every ``interval`` seconds: how late this task woke, and ``cpu_time()``.

    Times are the trio clock's: under a mock clock the lag is 0 and the CPU share is real
    CPU over virtual time, so tests of admission inject ``cpu_time`` or samples.
    """
    task_status.started()
    while True:
        due = trio.current_time() + interval
        await trio.sleep_until(due)
        now = trio.current_time()
        load.sample(now, max(now - due, 0.0), cpu_time())
