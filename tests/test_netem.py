"""The seeded network impairment scheduler, pure."""

import itertools

import pytest

from rtstream.simulators.netem import DISCONNECT, Impairments, NetEm


def run(imp: Impairments, n: int = 200, *, seed: int = 1, period: float = 0.01) -> list[tuple[float, object]]:
    net = NetEm(imp, seed)
    out = []
    for i in range(n):
        net.push(i, i * period, media=True)
        out += [(i * period, m) for m in net.pop_due(i * period)]
    net.flush(n * period)
    out += [(float("inf"), m) for m in net.pop_due(float("inf"))]
    return out


def test_no_impairment_delivers_everything_on_time_in_order():
    out = run(Impairments())
    assert [m for _, m in out] == list(range(200))
    assert all(t == i * 0.01 for i, (t, _) in enumerate(out))


def test_same_seed_same_result_and_another_seed_differs():
    imp = Impairments(jitter=0.02, duplicate=0.1, reorder=0.1, drop=0.1, stall_probability=0.02, stall=0.1)
    assert run(imp, seed=7) == run(imp, seed=7)
    assert run(imp, seed=7) != run(imp, seed=8)


def test_jitter_delays_but_never_reorders():
    net = NetEm(Impairments(jitter=0.05), seed=3)
    for i in range(100):
        net.push(i, i * 0.01)
    times = []
    while net.next_due() is not None:
        t = net.next_due()
        times += [(t, m) for m in net.pop_due(t)]
    assert [m for _, m in times] == list(range(100))
    assert all(b[0] >= a[0] for a, b in itertools.pairwise(times))
    assert any(t > m * 0.01 for t, m in times)
    assert all(t <= m * 0.01 + 0.05 or t == times[i - 1][0] for i, (t, m) in enumerate(times))


@pytest.mark.parametrize("what", ["drop", "duplicate", "reorder"])
def test_media_impairments_are_counted(what):
    net = NetEm(Impairments(**{what: 0.2}), seed=5)
    for i in range(500):
        net.push(i, 0.0, media=True)
    net.flush(0.0)
    got = net.pop_due(0.0)
    stats = net.statistics()
    if what == "drop":
        assert 60 < stats.dropped < 140 and len(got) == 500 - stats.dropped
        assert got == sorted(got)
    elif what == "duplicate":
        assert 60 < stats.duplicated < 140 and len(got) == 500 + stats.duplicated
        assert sorted(set(got)) == list(range(500))
    else:
        assert 40 < stats.reordered < 120 and sorted(got) == list(range(500))
        swaps = [i for i in range(499) if got[i] > got[i + 1]]
        assert len(swaps) == stats.reordered
        assert all(got[i] == got[i + 1] + 1 for i in swaps)  # only neighbours swap


def test_control_messages_are_never_dropped_and_release_a_held_chunk_first():
    net = NetEm(Impairments(reorder=1.0, drop=0.0), seed=0)
    net.push("chunk", 0.0, media=True)
    net.push("done", 0.0)
    assert net.pop_due(0.0) == ["chunk", "done"]


def test_disconnect_after_n_media_messages():
    net = NetEm(Impairments(disconnect_after=3), seed=0)
    for i in range(6):
        net.push(f"ts{i}", 0.0)
        net.push(i, 0.0, media=True)
    assert net.pop_due(1.0) == ["ts0", 0, "ts1", 1, "ts2", 2, DISCONNECT]
    assert net.statistics().disconnected


def test_stalls_hold_up_everything_behind():
    net = NetEm(Impairments(stall_probability=1.0, stall=0.5), seed=0)
    net.push("a", 0.0)
    net.push("b", 0.1)
    assert net.next_due() == 0.5
    assert net.pop_due(0.5) == ["a"]
    assert net.pop_due(1.0) == ["b"] and net.statistics().stalls == 2
