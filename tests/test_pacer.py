"""pacer on virtual time: the grid, each underrun, idle and late policy, lead, Clear, cancellation."""

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import trio
import trio.testing
from helpers import PCM8K, pcm_chunk
from hypothesis import given, settings
from hypothesis import strategies as st

from rtstream.frames import AudioChunk, Clear, UtteranceEnd, UtteranceStart
from rtstream.pipeline import assemble
from rtstream.runner import RunControl, run_pipeline
from rtstream.stages.chunker import Chunker
from rtstream.stages.null import NullSink
from rtstream.stages.pacer import FramePacer, Pacer, shared_grid
from rtstream.stages.tone import Tone
from rtstream.testing import CollectingSink, ScriptedSource, collected, run_stage, run_stages, run_virtual

P = 0.06
_DATA = pcm_chunk(480).data


def frame(seq: int, utterance: str = "a") -> AudioChunk:
    return AudioChunk(_DATA, PCM8K, pts=seq * 480, seq=seq, utterance=utterance)


def frames(n: int, utterance: str = "a", start: int = 0) -> list[AudioChunk]:
    return [frame(start + i, utterance) for i in range(n)]


def sent(out) -> list[tuple[float, int | None]]:
    """(time, seq) of every audio frame out; fills have seq None."""
    return [(t, f.seq) for t, f in out.received if isinstance(f, AudioChunk)]


def stats_of(report, stage: str = "pacer") -> SimpleNamespace:
    """The statistics of the (resolved) stage that ran, from the run report."""
    return SimpleNamespace(**next(s.statistics for s in report.stages if s.type == stage))


def grid(*slots: int) -> list[float]:
    return [pytest.approx(k * P, abs=1e-9) for k in slots]


async def test_ten_minutes_of_bursty_chunks_leave_exactly_on_the_grid(autojump_clock):
    rng = np.random.default_rng(4)
    total = 600 * 8000
    sizes = rng.integers(40, 4000, total // 1000)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), total)]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    audio = rng.integers(-3000, 3000, int(sizes.sum()), dtype=np.int16)
    # a TTS-like source: chunks of any size, in bursts three times faster than real time
    script = [(0.0, UtteranceStart("u"))]
    script += [
        (s / 8000 / 3, AudioChunk(audio[s : s + n], PCM8K, utterance="u")) for s, n in zip(starts, sizes, strict=True)
    ]
    script.append(UtteranceEnd("u"))
    pacer = Pacer(margin_ms=0)
    out = await run_stages([Chunker(), pacer], script)

    times = [t for t, f in out.received if isinstance(f, AudioChunk)]
    t0 = times[0]
    assert len(times) == -(-len(audio) // 480) > 9990
    assert times == [t0 + n * P for n in range(len(times))]  # exact: an absolute grid cannot drift
    assert np.array_equal(out.audio()[: len(audio)], audio)
    stats = stats_of(out.report)
    assert (stats.underruns, stats.late_frames, stats.fill_frames, stats.stalls, stats.drops) == (0, 0, 0, 0, {})
    assert (stats.lateness_ms.count, stats.lateness_ms.max) == (len(times), 0.0)
    assert [c.pts for c in out.chunks] == [n * 480 for n in range(len(times))]
    assert isinstance(out.frames[-1], UtteranceEnd)


async def test_the_margin_sends_that_much_early(autojump_clock):
    pacer = Pacer(margin_ms=0.5)
    out = await run_stage(pacer, frames(20))
    assert [t for t, _ in sent(out)] == [0.0] + [pytest.approx(n * P - 0.0005, abs=1e-9) for n in range(1, 20)]
    assert stats_of(out.report).lateness_ms.p50 == pytest.approx(-0.5, rel=0.02)


async def test_t0_snaps_to_the_shared_grid_and_every_slot_stays_on_it(autojump_clock):
    out = await run_stage(Pacer(margin_ms=0), [(0.0123, frame(0)), *frames(4, start=1)])
    assert [t for t, _ in sent(out)] == [pytest.approx(0.015 + n * P, abs=1e-9) for n in range(5)]
    assert stats_of(out.report).lateness_ms.max == pytest.approx(0, abs=1e-6)


async def test_align_0_starts_the_clock_at_the_first_frame(autojump_clock):
    out = await run_stage(Pacer(margin_ms=0, align_ms=0), [(0.0123, frame(0)), *frames(4, start=1)])
    assert [t for t, _ in sent(out)] == [pytest.approx(0.0123 + n * P, abs=1e-9) for n in range(5)]


def test_pacers_started_apart_share_their_wake_ups():
    a, b = (FramePacer(PCM8K, 480, grid=shared_grid(60, 5)) for _ in range(2))
    a.push(frame(0), 10.0007)
    b.push(frame(0), 10.0648)  # 64.1 ms later: the same 5 ms phase of the 60 ms period
    wakes = set()
    for pacer in (a, b):
        for _ in range(50):
            wakes.add(round(pacer.deadline, 9))
            pacer.poll(pacer.deadline, lambda: frame(1))
    assert len(wakes) == 51  # one slot in every 60 ms from 10.005 on, shared by both


@pytest.mark.parametrize(
    ("frame_ms", "align_ms", "grid"), [(60, 5, 0.005), (20, 5, 0.005), (22.5, 5, 0.0025), (7, 5, 0.001), (60, 0, 0.0)]
)
def test_the_grid_divides_the_period(frame_ms, align_ms, grid):
    assert shared_grid(frame_ms, align_ms) == pytest.approx(grid)


@pytest.mark.parametrize("policy", ["silence", "comfort_noise", "skip"])
async def test_underrun_policies(autojump_clock, policy):
    pacer = Pacer(margin_ms=0, underrun=policy, noise_level=-50.0)
    script = [UtteranceStart("a"), *frames(5)] + [(0.5, f) for f in frames(5, start=5)]
    out = await run_stage(pacer, script)
    audio = sent(out)
    real = [(t, s) for t, s in audio if s is not None]
    fills = [f for f in out.chunks if f.seq is None]
    assert real == list(zip(grid(0, 1, 2, 3, 4, 9, 10, 11, 12, 13), range(10), strict=True))
    stats = stats_of(out.report)
    assert (stats.underruns, stats.frames_sent, stats.idle_slots) == (4, 10, 0)
    if policy == "skip":
        assert fills == [] and stats.fill_frames == 0
        return
    assert [t for t, s in audio if s is None] == grid(5, 6, 7, 8)
    assert all(f.samples == 480 and f.utterance == "a" for f in fills) and stats.fill_frames == 4
    levels = [np.sqrt(np.mean(f.data.astype(np.float64) ** 2)) / 32768 for f in fills]
    if policy == "silence":
        assert levels == [0.0] * 4
    else:
        assert 20 * np.log10(levels) == pytest.approx([-50.0] * 4, abs=1.0)
        assert len({f.data.tobytes() for f in fills}) == 4
    assert [c.pts for c in out.chunks] == [n * 480 for n in range(14)]


@pytest.mark.parametrize(("idle", "lead"), [("silence", 0), ("comfort_noise", 0), ("stop", 0), ("stop", 1)])
async def test_idle_policies_between_utterances(autojump_clock, idle, lead):
    pacer = Pacer(margin_ms=0, idle=idle, lead=lead)
    script = [UtteranceStart("a"), *frames(3), UtteranceEnd("a")]
    script += [(0.5, UtteranceStart("b")), *frames(3, "b", start=3), UtteranceEnd("b")]
    out = await run_stage(pacer, script)
    real = [(t, s) for t, s in sent(out) if s is not None]
    fills = [(t, f) for t, f in out.received if isinstance(f, AudioChunk) and f.seq is None]
    events = [(t, type(f).__name__) for t, f in out.received if not isinstance(f, AudioChunk)]
    stats = stats_of(out.report)
    assert stats.underruns == 0
    if lead:
        assert real == list(zip(grid(0, 0, 1, 9, 9, 10), range(6), strict=True))
    else:
        assert real == list(zip(grid(0, 1, 2, 9, 10, 11), range(6), strict=True))
    if idle == "stop":
        # nothing between the utterances; b resumes on a's grid, its start passed on at once
        assert fills == [] and stats.idle_slots == (7 if lead else 6) and stats.spurts == 2
        assert events[:3] == [(0.0, "UtteranceStart"), (pytest.approx(2 * P if lead else 3 * P), "UtteranceEnd"),
                              (pytest.approx(0.5), "UtteranceStart")]  # fmt: skip
    else:
        assert [t for t, _ in fills] == grid(3, 4, 5, 6, 7, 8) and stats.idle_slots == 6 and stats.spurts == 1
        assert all(f.utterance is None for _, f in fills)
        assert (np.abs(fills[0][1].data).max() == 0) == (idle == "silence")


async def test_lead_frames_leave_at_once_as_they_come(autojump_clock):
    pacer = Pacer(margin_ms=0, lead=2)
    out = await run_stage(pacer, [frame(0), (0.01, frame(1)), (0.02, frame(2)), (0.1, frame(3)), frame(4)])
    assert sent(out) == [(0.0, 0), (pytest.approx(0.01), 1), (pytest.approx(0.02), 2),
                         (pytest.approx(0.06), None), (pytest.approx(0.12), 3), (pytest.approx(0.18), 4)]  # fmt: skip


async def test_an_unfilled_lead_gives_way_to_the_cadence(autojump_clock):
    pacer = Pacer(margin_ms=0, lead=3, underrun="skip")
    out = await run_stage(pacer, [frame(0), (0.01, frame(1)), (0.2, frame(2))])
    assert sent(out) == [(0.0, 0), (pytest.approx(0.01), 1), (pytest.approx(0.24), 2)]
    assert stats_of(out.report).underruns == 3


async def test_clear_passes_at_once_when_idle_and_restarts_the_lead(autojump_clock):
    pacer = Pacer(margin_ms=0, lead=1, idle="stop")
    script = [UtteranceStart("a"), *frames(6), Clear(), *frames(3, "b", start=6), UtteranceEnd("b"), (1.03, Clear())]
    out = await run_stage(pacer, script)
    assert sent(out) == list(zip(grid(0, 0, 1, 2, 3, 4, 5, 5, 6), range(9), strict=True))
    clears = [t for t, f in out.received if isinstance(f, Clear)]
    assert clears == [pytest.approx(5 * P), pytest.approx(1.03)]
    stats = stats_of(out.report)
    assert (stats.clears, stats.spurts, stats.events) == (2, 2, 4)


async def _stall(clock, at: float, seconds: float) -> None:
    """The whole process stops for ``seconds`` (a GC pause, a starved CPU): time jumps."""
    await trio.sleep_until(at)
    clock.jump(seconds)


@pytest.mark.parametrize(
    ("late", "max_burst", "burst", "dropped"),
    [("burst", 5, [11, 12, 13, 14, 15], []), ("burst", 2, [13, 14, 15], [11, 12]), ("drop", 5, [15], [11, 12, 13, 14])],
)
async def test_late_policies_after_a_stall(autojump_clock, late, max_burst, burst, dropped):
    pacer = Pacer(margin_ms=0, late=late, max_burst=max_burst)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stall, autojump_clock, 0.61, 0.33)
        out = await run_stage(pacer, [UtteranceStart("a"), *frames(20)])
    audio = sent(out)
    assert audio[:11] == list(zip(grid(*range(11)), range(11), strict=True))
    assert audio[11 : 11 + len(burst)] == [(pytest.approx(0.94), s) for s in burst]
    # then straight back on the grid, never re-anchored
    rest = audio[11 + len(burst) :]
    assert rest == list(zip(grid(*range(16, 16 + len(rest))), range(16, 20), strict=True))
    stats = stats_of(out.report)
    assert stats.stalls == 1 and stats.late_frames == len(burst)
    assert set(stats.drops) == ({"late"} if dropped else set())
    if dropped:
        assert (stats.drops["late"].frames, stats.drops["late"].samples) == (len(dropped), 480 * len(dropped))
    assert stats.frames_sent == 20 - len(dropped) and stats.lateness_ms.max == pytest.approx(
        (0.94 - burst[0] * P) * 1000, rel=0.02
    )


async def test_a_stall_while_idle_costs_nothing(autojump_clock):
    pacer = Pacer(margin_ms=0, idle="silence")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stall, autojump_clock, 0.31, 0.33)
        out = await run_stage(pacer, [UtteranceStart("a"), *frames(2), UtteranceEnd("a"), (0.5, frame(2, "b"))])
    assert [s for _, s in sent(out) if s is not None] == [0, 1, 2]
    stats = stats_of(out.report)
    assert stats.stalls == 1 and stats.drops == {} and stats.underruns == 0


async def test_a_frame_of_the_wrong_size_is_dropped_and_counted(autojump_clock, caplog):
    pacer = Pacer(margin_ms=0)
    with caplog.at_level(logging.WARNING):
        out = await run_stage(pacer, [frame(0), pcm_chunk(160), pcm_chunk(100), frame(1)])
    assert sent(out) == [(0.0, 0), (pytest.approx(P), 1)]
    assert stats_of(out.report).drops["frame_size"].samples == 260
    warning = (
        "pacer: dropping a frame of 160 samples of pcm_s16le 8000 Hz mono; it paces frames of 480 samples of "
        "pcm_s16le 8000 Hz mono (put a chunker with the same frame_ms before it)"
    )
    assert [r.getMessage() for r in caplog.records if r.name == "rtstream.stages.pacer"] == [warning]
    assert [r.getMessage() for r in caplog.records if r.name == "rtstream.runner"] == [
        "pipeline 'test': critical drops at stage 2 (pacer): 50.0% of the frames dropped (2 of 4: frame_size); "
        "see the stage's drops in the JSON report: each reason names the bound that was hit"
    ]


def _tasks() -> set:
    found, todo = set(), [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        found.add(task)
        todo.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return found


@pytest.mark.parametrize(
    ("script", "lead"),
    [
        pytest.param([UtteranceStart("a"), *frames(100)], 0, id="streaming"),
        pytest.param([], 0, id="waiting-for-the-first-frame"),
        pytest.param([frame(0), (5.0, frame(1))], 2, id="filling-the-lead"),
        pytest.param([frame(0), UtteranceEnd("a"), (5.0, frame(1))], 0, id="stopped-while-idle"),
    ],
)
async def test_cancelling_mid_stream_leaves_no_task_behind(autojump_clock, script, lead):
    before = _tasks()
    control = RunControl()
    source = ScriptedSource(script=[*script, (60.0, frame(999))], format=PCM8K)
    pacer = Pacer(lead=lead, idle="stop")
    pipeline = assemble("call", [source, pacer, NullSink()])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_abort_at, control, 1.0)
        report = await run_pipeline(pipeline, control)
    assert report.status == "cancelled" and trio.current_time() == pytest.approx(1.0)
    await trio.sleep(2)  # the shared timer ends a second after its last sleeper
    assert _tasks() == before


async def _abort_at(control: RunControl, at: float) -> None:
    await trio.sleep_until(at)
    control.abort()


async def test_stopping_drains_what_is_in_flight_on_the_grid(autojump_clock):
    control = RunControl(grace=5.0)
    pipeline = assemble(
        "call", [Tone(sample_rate=8000, duration=None, speed=4.0), Chunker(), Pacer(margin_ms=0), CollectingSink()]
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_at, control, 1.0)
        report = await run_pipeline(pipeline, control)
    assert report.status == "stopped"
    stats = stats_of(report)
    times = [t for t, f in collected(pipeline) if isinstance(f, AudioChunk)]
    assert stats.frames_sent == len(times) > 1.0 / P
    assert times == [times[0] + n * P for n in range(len(times))]
    assert (stats.underruns, stats.late_frames, stats.lateness_ms.max) == (0, 0, 0.0)
    # the pacer saw the end of its input at the slot after the last frame
    assert report.duration == pytest.approx(times[-1] + P, abs=1e-6)


async def _stop_at(control: RunControl, at: float) -> None:
    await trio.sleep_until(at)
    control.stop()


_SPURTS = st.lists(st.tuples(st.integers(0, 30), st.integers(0, 6), st.booleans()), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(
    spurts=_SPURTS,
    underrun=st.sampled_from(["silence", "comfort_noise", "skip"]),
    idle=st.sampled_from(["silence", "comfort_noise", "stop"]),
)
def test_any_arrival_schedule_keeps_order_grid_and_counts(spurts, underrun, idle):
    """Utterances of frames arriving at random times: every send on the grid, nothing lost or reordered."""
    script, seq, at = [], 0, 0.0
    for i, (gap, count, ended) in enumerate(spurts):
        at += gap * 0.013
        script.append((at, UtteranceStart(f"u{i}")))
        for _ in range(count):
            at += 0.013 * (seq % 7)
            script.append((at, frame(seq, f"u{i}")))
            seq += 1
        if ended:
            script.append((at, UtteranceEnd(f"u{i}")))
    out = run_virtual(run_stage, Pacer(margin_ms=0, underrun=underrun, idle=idle), script)
    stats = stats_of(out.report)

    assert [f.seq for f in out.chunks if f.seq is not None] == list(range(seq))
    assert [f for f in out.events] == [f for _, f in script if not isinstance(f, AudioChunk)]
    times = [t for t, f in out.received if isinstance(f, AudioChunk)]
    slots = [(t - times[0]) / P for t in times]
    assert all(abs(s - round(s)) < 1e-6 for s in slots) and len(set(map(round, slots))) == len(slots)
    assert [f.pts for f in out.chunks] == [n * 480 for n in range(len(out.chunks))]
    assert (stats.frames_in, stats.frames_sent, stats.drops, stats.late_frames) == (seq, seq, {}, 0)
    assert stats.fill_frames == len(out.chunks) - seq
    # in-utterance underruns: the slots between an utterance's first and last frames that no frame of it took
    spans: dict[str, list[int]] = {}
    for t, f in out.received:
        if isinstance(f, AudioChunk) and f.seq is not None:
            spans.setdefault(f.utterance, []).append(round((t - times[0]) / P))
    assert stats.in_utterance_underruns == sum(s[-1] - s[0] + 1 - len(s) for s in spans.values())
    assert stats.in_utterance_underruns + stats.starting_underruns <= stats.underruns
    if underrun == "skip" and idle == "stop":
        assert stats.fill_frames == 0
    # an event leaves after the audio that came before it, and before the audio that came after it
    before = {id(f): sum(isinstance(g, AudioChunk) for _, g in script[:i]) for i, (_, f) in enumerate(script)}
    seen = 0
    for f in out.frames:
        if isinstance(f, AudioChunk):
            seen += f.seq is not None
        else:
            assert seen == before[id(f)]


async def test_underruns_before_a_replys_first_audio_are_told_apart_and_every_one_is_marked(autojump_clock):
    script = [frame(0, "a"), UtteranceEnd("a"), (0.31, UtteranceStart("b")), (0.5, frame(1, "b")), (0.7, frame(2, "b"))]
    out = await run_stage(Pacer(margin_ms=0), script)
    stats = stats_of(out.report)
    assert (stats.underruns, stats.starting_underruns) == (5, 3)  # 0.36, 0.42, 0.48 wait for b; 0.60, 0.66 inside it
    assert (stats.in_utterance_underruns, stats.in_utterance_underrun_ms) == (2, pytest.approx(120.0))
    series = next(s.series for s in out.report.stages if s.type == "pacer")
    assert series["underruns"] == {"count": 5, "t": grid(6, 7, 8, 10, 11)}
    assert series["lateness"]["t"] == grid(*range(13)) and set(series["lateness"]["v"]) == {0.0}
