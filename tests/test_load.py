"""The load core (CPU share, loop lag, reservations) and its sampling task, on virtual time."""

from __future__ import annotations

import functools
import math

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from rtstream.load import IDLE_AFTER, PRIOR_CALL_LOAD, PRIOR_CALLS, SAMPLE_INTERVAL, WARMUP, Load, sample_load

TAU = 1.0
CHEAP = 0.02
"""A prior low enough to admit ten calls at once (for tests of what happens next)."""
TOLERANCE = 0.005
"""How far past the threshold a storm may take the true load: the averages see spans, not instants."""


class Process:
    """A process whose CPU use is ``base`` plus ``per_call`` for each running call (from ``onset`` seconds
    after its admission), integrated exactly for calls costing from the start."""

    def __init__(
        self, load: Load, *, base: float = 0.0, per_call: float = 0.0, lag: float = 0.0, onset: float = 0.0
    ) -> None:
        self.load = load
        self.base = base
        self.per_call = per_call
        self.lag = lag
        self.onset = onset
        self.now = 0.0
        self.cpu = 0.0
        self.calls: list[float] = []

    @property
    def costing(self) -> int:
        return sum(1 for t in self.calls if self.now - t >= self.onset - 1e-12)

    @property
    def true_load(self) -> float:
        return max(self.base + self.per_call * self.costing, self.lag / self.load.lag_budget)

    def advance(self, dt: float) -> None:
        self.cpu += (self.base + self.per_call * self.costing) * dt
        self.now += dt

    def sample(self) -> None:
        self.load.sample(self.now, self.lag, self.cpu)

    def run(self, seconds: float, interval: float = SAMPLE_INTERVAL) -> None:
        for _ in range(round(seconds / interval)):
            self.advance(interval)
            self.sample()

    def admit(self) -> bool:
        if not self.load.room():
            return False
        self.load.reserve(self.now)
        self.calls.append(self.now)
        return True

    def hang_up(self) -> None:
        self.load.release(self.calls.pop(0))


def test_an_idle_process_has_no_load_and_room() -> None:
    process = Process(Load(0.7))
    process.run(2.0)
    assert (process.load.load, process.load.cpu, process.load.lag) == (0.0, 0.0, 0.0)
    assert process.load.room()
    assert process.load.samples == 20


@pytest.mark.parametrize(("share", "lag", "expected"), [(0.4, 0.002, 0.4), (0.1, 0.006, 0.6), (0.9, 0.0, 0.9)])
def test_load_is_the_larger_of_cpu_share_and_lag_over_its_budget(share: float, lag: float, expected: float) -> None:
    process = Process(Load(0.7, lag_budget=0.010), base=share, lag=lag)
    process.run(0.2)  # bias-corrected: a steady load reads as itself from the first span on
    assert process.load.cpu == pytest.approx(share)
    assert process.load.lag == pytest.approx(lag)
    assert process.load.load == pytest.approx(expected)


@given(
    st.lists(st.floats(0.001, 0.5), min_size=1, max_size=30),
    st.lists(st.floats(0.001, 0.5), min_size=1, max_size=30),
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
)
def test_the_averages_weigh_time_not_samples(before: list[float], after: list[float], a: float, b: float) -> None:
    """A step from share a to b, sampled at any instants: the same exponentially time-weighted mean."""
    load = Load(time_constant=TAU)
    now = cpu = 0.0
    load.sample(now, 0.0, cpu)
    for share, spans in ((a, before), (b, after)):
        for span in spans:
            now += span
            cpu += share * span
            load.sample(now, 0.0, cpu)
    t1, t2 = sum(before), sum(after)
    expected = (a * -math.expm1(-t1 / TAU) * math.exp(-t2 / TAU) + b * -math.expm1(-t2 / TAU)) / -math.expm1(
        -(t1 + t2) / TAU
    )
    assert load.cpu == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_a_sample_no_later_than_the_last_counts_its_cpu_in_the_next() -> None:
    load = Load()
    load.sample(1.0, 0.0, 0.0)
    load.sample(1.1, 0.0, 0.05)
    load.sample(1.1, 0.003, 0.07)  # the clock did not move: only its lag is kept, in the histogram
    load.sample(1.2, 0.0, 0.10)
    assert load.cpu == pytest.approx(0.5)
    assert load.lag == 0.0 and load.lag_max == 0.003 and load.lags.count == 4


def test_the_load_follows_a_drop_with_the_time_constant() -> None:
    process = Process(Load(0.7), base=0.9)
    process.run(5.0)
    process.base = 0.0
    process.run(1.0)
    assert process.load.cpu == pytest.approx(0.9 * math.exp(-1.0), rel=0.01)
    assert process.load.peak == pytest.approx(0.9)


def test_without_a_threshold_load_never_refuses() -> None:
    process = Process(Load(0.0), base=5.0)
    process.run(1.0)
    assert process.load.load == pytest.approx(5.0)
    assert all(process.admit() for _ in range(1000))


def test_a_call_is_admitted_only_if_the_load_with_it_stays_at_or_below_the_threshold() -> None:
    process = Process(Load(0.7), base=0.75)
    process.run(1.0)
    assert not process.load.room()
    process.base = 0.7 - PRIOR_CALL_LOAD + 0.01  # idle, but one call's (prior) load from the threshold
    process.run(10.0)
    assert not process.load.room()
    process.base = 0.7 - PRIOR_CALL_LOAD - 0.01
    process.run(10.0)
    assert process.load.room()


def test_a_storm_reserves_the_prior_for_each_call_before_any_shows() -> None:
    load = Load(0.7, prior=0.02)
    admitted = 0
    while load.room():
        load.reserve(0.0)
        admitted += 1
    # each new call must fit with all the reserved ones: 0.02 * (n + 1) <= 0.7
    assert admitted == max(n for n in range(100) if 0.02 * (n + 1) <= 0.7) + 1
    assert load.reserved() == admitted and load.active == admitted


def test_reservations_fade_as_the_average_takes_the_calls_in() -> None:
    process = Process(Load(0.7, prior=CHEAP), per_call=0.01)
    process.run(0.3)
    for _ in range(10):
        assert process.admit()
    assert process.load.reserved() == 10
    process.run(1.0)  # held whole while the calls warm up
    assert process.load.reserved() == pytest.approx(10)
    process.run(1.0)
    assert process.load.reserved() == pytest.approx(10 * math.exp(-1.0), rel=1e-9)
    process.run(4.0)  # faded below 1 %: dropped
    assert process.load.reserved() == 0


def test_a_call_that_ends_takes_its_reservation_with_it() -> None:
    process = Process(Load(0.7))
    process.run(0.2)
    assert process.admit() and process.admit()
    process.hang_up()
    assert (process.load.active, process.load.reserved()) == (1, 1)
    process.run(10.0)
    process.hang_up()  # its reservation faded long ago
    assert (process.load.active, process.load.reserved()) == (0, 0)


def test_one_calls_load_is_learned_from_the_running_calls_and_shrunk_to_the_prior() -> None:
    process = Process(Load(0.7), per_call=0.005)
    process.run(1.0)
    assert process.load.call_load() == PRIOR_CALL_LOAD  # nothing measured yet
    while len(process.calls) < 30:
        process.admit()
        process.run(SAMPLE_INTERVAL)
    process.run(10.0)  # every reservation faded: the averages show all 30
    learned = (30 * 0.005 + PRIOR_CALLS * PRIOR_CALL_LOAD) / (30 + PRIOR_CALLS)
    assert process.load.call_load() == pytest.approx(learned, rel=1e-4)  # e^-10 of the idle second is left
    assert 0.005 < learned < PRIOR_CALL_LOAD


def test_a_busy_machines_idle_lag_is_not_counted_against_the_calls() -> None:
    process = Process(Load(0.7, prior=CHEAP), lag=0.004, per_call=0.01)  # idle: load 0.4, other processes' lag
    process.run(IDLE_AFTER * TAU)
    assert process.load.idle_load == pytest.approx(0.4)
    for _ in range(10):
        assert process.admit()
    process.run(6.0)
    # the load is still the lag's 0.4 (the calls' 0.1 of CPU is below it): nothing above idle to share out
    assert process.load.call_load() == pytest.approx(PRIOR_CALLS * CHEAP / (10 + PRIOR_CALLS))
    for _ in range(10):
        process.hang_up()
    process.lag = 0.002
    process.run(IDLE_AFTER * TAU - SAMPLE_INTERVAL)  # the calls' tail is still in the averages: not idle yet
    assert process.load.idle_load == pytest.approx(0.4)
    process.run(5.0)
    assert process.load.idle_load == pytest.approx(0.2, rel=0.05)


@settings(max_examples=25, deadline=None)
@given(
    per_call=st.floats(0.002, PRIOR_CALL_LOAD),
    base=st.floats(0.0, 0.3),
    rate=st.sampled_from([10.0, 40.0, 100.0, 1000.0]),
)
def test_a_storm_of_calls_never_takes_the_true_load_over_the_threshold(
    per_call: float, base: float, rate: float
) -> None:
    """Twice the capacity arrives far faster than the averages move, each call costing at most the prior:
    none takes the load past 0.7, and once the averages have caught up most of the room is used."""
    process = Process(Load(0.7), base=base, per_call=per_call)
    process.run(1.0)
    capacity = (0.7 - base) / per_call
    gap = 1.0 / rate
    next_sample = process.now + SAMPLE_INTERVAL
    highest = 0.0
    for _ in range(round(2 * capacity)):
        step = min(gap, next_sample - process.now)
        process.advance(step)
        if process.now >= next_sample - 1e-12:
            process.sample()
            next_sample += SAMPLE_INTERVAL
        process.admit()
        highest = max(highest, process.true_load)
    for _ in range(100):  # then, for ten seconds (warmups and fades), calls offered at every sample
        process.run(SAMPLE_INTERVAL)
        while process.admit():
            highest = max(highest, process.true_load)
    assert highest <= 0.7 + TOLERANCE
    assert len(process.calls) >= 0.8 * capacity - 1


@settings(max_examples=25, deadline=None)
@given(per_call=st.floats(0.01, PRIOR_CALL_LOAD), onset=st.floats(0.0, WARMUP))
def test_a_storm_of_calls_that_cost_nothing_at_first_is_held_back_all_the_same(per_call: float, onset: float) -> None:
    """Calls whose load starts up to the warmup after their admission (a handshake, then the bot's first
    reply) look free to the averages meanwhile: their reservations, held whole, still keep the load below 0.7."""
    process = Process(Load(0.7), per_call=per_call, onset=onset)
    process.run(1.0)
    highest = 0.0
    for _ in range(100):  # 100 calls offered over 5 s, far more than fit
        process.run(0.05, interval=0.05)
        process.admit()
        highest = max(highest, process.true_load)
    for _ in range(30):
        process.run(SAMPLE_INTERVAL)
        highest = max(highest, process.true_load)
    assert highest <= 0.7 + TOLERANCE
    assert process.costing == len(process.calls) > 0


def test_a_storm_of_late_costing_calls_overran_without_the_warmup() -> None:
    """The same storm against reservations that fade from admission: the load goes past the threshold."""
    process = Process(Load(0.7, warmup=0.0), per_call=PRIOR_CALL_LOAD / 2, onset=WARMUP)
    process.run(1.0)
    for _ in range(100):
        process.run(0.05, interval=0.05)
        process.admit()
    process.run(3.0)
    assert process.true_load > 0.7 + TOLERANCE


def test_bad_settings_say_which_and_what() -> None:
    with pytest.raises(ValueError, match=r"^max_load must be 0 \(off\) or more, got -1$"):
        Load(-1)
    with pytest.raises(ValueError, match=r"^max_load must be 0 \(off\) or more, got nan$"):
        Load(math.nan)
    with pytest.raises(ValueError, match=r"^lag_budget must be more than 0 s, got 0$"):
        Load(0.7, 0)


def test_statistics_report_the_load_and_what_admission_made_of_it() -> None:
    process = Process(Load(0.7, lag_budget=0.02), base=0.3, lag=0.002)
    process.run(1.0)
    process.admit()
    stats = process.load.statistics()
    assert stats.load == pytest.approx(0.3) and stats.cpu == pytest.approx(0.3)
    assert stats.loop_lag_ms == pytest.approx(2.0) and stats.loop_lag_max_ms == pytest.approx(2.0)
    assert (stats.max_load, stats.lag_budget_ms, stats.samples, stats.reserved) == (0.7, 20.0, 10, 1)
    assert stats.peak_load == pytest.approx(0.3) and stats.idle_load == pytest.approx(0.3)  # no call before


async def test_the_sampling_task_feeds_lag_and_cpu_time_on_the_trio_clock(autojump_clock: trio.abc.Clock) -> None:
    load = Load(0.7)
    used = 0.25  # a quarter of a core, on the virtual clock
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(sample_load, load, 0.1, cpu_time=lambda: used * trio.current_time()))
        await trio.sleep(1.05)
        nursery.cancel_scope.cancel()
    assert load.samples == 10
    assert load.cpu == pytest.approx(0.25) and load.lag == 0.0  # virtual time wakes every task on time
