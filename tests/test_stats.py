import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtstream.stats import BoundedCounter, Drops, Quantiles
from rtstream.text import clip, one_line


def test_quantiles_match_numpy_within_the_bucket_width():
    values = np.random.default_rng(3).lognormal(-7, 1.5, 20000)
    q = Quantiles()
    for v in values:
        q.add(float(v))
    for p in (50, 90, 99):
        assert q.percentile(p) == pytest.approx(np.percentile(values, p), rel=0.03)
    summary = q.summary(scale=1000)
    assert summary.max == pytest.approx(values.max() * 1000)
    assert summary.count == 20000


@given(st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=200))
def test_quantiles_stay_within_the_range_and_keep_sign(values):
    q = Quantiles()
    for v in values:
        q.add(v)
    for p in (0, 50, 99, 100):
        assert min(values) <= q.percentile(p) <= max(values)
    if all(v < -1e-6 for v in values):
        assert q.percentile(50) < 0


@given(st.lists(st.floats(-1, 1, allow_nan=False) | st.sampled_from([0.0, 1e-9, -3e-8]), min_size=1, max_size=300))
def test_every_percentile_is_the_bucket_of_that_rank_whatever_the_order_and_sign(values):
    q = Quantiles()
    for v in values:
        q.add(v)
    ordered = sorted(values)
    for p in (0, 1, 25, 50, 75, 99, 100):
        truth = ordered[math.floor(p / 100 * (len(values) - 1))]
        assert q.percentile(p) == pytest.approx(truth, rel=0.023, abs=2e-7)


def test_a_lateness_series_is_held_in_a_few_kilobytes():
    values = np.random.default_rng(7).lognormal(-7, 1.2, 20000) * np.where(np.arange(20000) % 5, 1, -1)
    tracemalloc.start()
    try:
        q = Quantiles()
        for v in values:
            q.add(float(v))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert q.buckets > 600  # a dict of counts held these in 40 KB
    assert held < 10_000


def test_empty_quantiles():
    assert Quantiles().summary().p50 is None
    assert Quantiles().percentile(50) is None


def test_drops_by_reason():
    drops = Drops()
    drops.add("late", samples=480)
    drops.add("late", samples=480)
    drops.add("overflow", samples=10, frames=2)
    assert (drops.frames, drops.samples) == (4, 970)
    snap = drops.snapshot()
    assert list(snap) == ["late", "overflow"]
    assert (snap["late"].frames, snap["late"].samples) == (2, 960)


def test_merged_quantiles_equal_one_series_of_both():
    a, b, both = Quantiles(), Quantiles(), Quantiles()
    for i, v in enumerate(np.random.default_rng(5).lognormal(-5, 1, 1000)):
        (a if i % 3 else b).add(float(v))
        both.add(float(v))
    a.merge(b)
    merged, whole = a.summary(), both.summary()
    assert (merged.count, merged.p50, merged.p99, merged.max) == (whole.count, whole.p50, whole.p99, whole.max)
    assert merged.mean == pytest.approx(whole.mean)
    with pytest.raises(ValueError, match=r"^cannot merge quantiles of resolution"):
        a.merge(Quantiles(resolution=1e-3))


@given(
    st.lists(
        st.sampled_from(["media", "mark", "x" * 8, "x" * 9, "x" * 7 + "…(9 characters)", "a\nb", "a\\nb"]), max_size=60
    )
)
def test_a_bounded_counter_keys_each_name_on_one_short_line_and_folds_the_rest(names):
    counter = BoundedCounter(limit=4, max_key=8)
    expected: dict[str, int] = {}
    for name in names:
        counter.add(name)
        key = clip(one_line(name), 8)
        if key not in expected and len(expected) >= 4:
            key = "other"
        expected[key] = expected.get(key, 0) + 1
    assert counter.snapshot() == dict(sorted(expected.items()))
