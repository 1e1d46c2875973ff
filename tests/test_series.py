"""Bounded timing series: every point up to the limit, then halved keeping the spikes; marks; histogram buckets."""

from __future__ import annotations

import pytest

from rtstream.series import Marks, Series
from rtstream.stats import Quantiles


def test_a_series_keeps_every_point_up_to_its_limit():
    series = Series(limit=4)
    for n in range(4):
        series.add(n * 0.02, n / 1000)
    assert series.snapshot() == {"every": 1, "count": 4, "t": [0.0, 0.02, 0.04, 0.06], "v": [0.0, 0.001, 0.002, 0.003]}


def test_beyond_its_limit_a_series_halves_and_keeps_the_larger_of_each_pair():
    series = Series(limit=4)
    values = [0.001, 0.009, 0.002, 0.003, 0.004, -0.05, 0.001, 0.001, 0.002]
    for n, v in enumerate(values):
        series.add(float(n), v)
    snap = series.snapshot()
    assert (snap["every"], snap["count"]) == (4, 9)
    assert snap["v"] == [0.009, -0.05, 0.002]  # the spike of each run survives
    assert snap["t"] == [1.0, 5.0, 8.0]


def test_a_long_series_stays_bounded():
    series = Series(limit=2000)
    for n in range(100_000):
        series.add(n * 0.02, 0.0)
    assert len(series.snapshot()["t"]) <= 2001


def test_an_odd_limit_is_refused():
    with pytest.raises(ValueError, match=r"^limit must be even and at least 2, got 3$"):
        Series(limit=3)


def test_marks_keep_the_first_times_and_count_all():
    marks = Marks(limit=2)
    for t in (1.0, 2.5, 3.0):
        marks.add(t)
    assert marks.snapshot() == {"count": 3, "t": [1.0, 2.5]}


def test_cumulative_counts_are_a_histograms_buckets():
    q = Quantiles()
    for v in (-0.001, 0.0004, 0.0006, 0.003, 0.2, 2.0):
        q.add(v)
    assert q.cumulative([0.0005, 0.001, 0.01, 0.5]) == [2, 3, 4, 5]
    assert q.sum == pytest.approx(2.203)
