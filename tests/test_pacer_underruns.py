"""In-utterance underruns on virtual time: a gap between two frames of a reply counts, nothing else does."""

import pytest
import trio
from test_pacer import frames, stats_of

from rtstream.control import CURRENT_CONTROL, CallControl
from rtstream.frames import AudioChunk, Clear, UtteranceEnd, UtteranceStart
from rtstream.stages.pacer import Pacer
from rtstream.testing import run_stage

P = 0.06


def counts(out) -> tuple[int, int, int]:
    stats = stats_of(out.report)
    return stats.underruns, stats.starting_underruns, stats.in_utterance_underruns


def frame_of(utterance: str, seq: int) -> AudioChunk:
    return frames(1, utterance, start=seq)[0]


@pytest.mark.parametrize("policy", ["silence", "comfort_noise", "skip"])
async def test_a_stall_inside_a_reply_counts_every_slot_it_emptied(autojump_clock, policy):
    script = [UtteranceStart("a"), *frames(3)] + [(0.5, f) for f in frames(3, start=3)] + [UtteranceEnd("a")]
    out = await run_stage(Pacer(margin_ms=0, underrun=policy), script)
    assert counts(out) == (6, 0, 6)  # slots 3-8 (0.18-0.48); the frame that came at 0.5 took slot 9
    assert stats_of(out.report).in_utterance_underrun_ms == pytest.approx(6 * P * 1000)


async def test_the_wait_for_a_replys_first_audio_is_not_damage(autojump_clock):
    script = [frame_of("x", 0), UtteranceEnd("x")]  # the grid's anchor
    script += [UtteranceStart("a"), (0.31, frame_of("a", 1)), *frames(3, start=2), UtteranceEnd("a")]
    out = await run_stage(Pacer(margin_ms=0), script)
    underruns, starting, inside = counts(out)
    assert underruns == starting > 0 and inside == 0


async def test_the_tail_before_a_replys_end_and_the_gap_to_the_next_reply_are_not_damage(autojump_clock):
    # a's end comes 0.3 s after its last frame (a TTS slow to say done), then a late frame of it;
    # b follows after idle; c follows a2's frames with no event between them (not one run of speech)
    script = [UtteranceStart("a"), *frames(3), (0.5, UtteranceEnd("a")), (0.7, frame_of("a", 3))]
    script += [(1.0, UtteranceStart("b")), *frames(3, "b", start=3), UtteranceEnd("b")]
    script += [(1.53, UtteranceStart("a2")), *frames(2, "a2", start=6), (2.0, frame_of("c", 8))]
    out = await run_stage(Pacer(margin_ms=0), script)
    underruns, starting, inside = counts(out)
    assert underruns > 0 and starting == 0 and inside == 0
    assert stats_of(out.report).idle_slots > 0


async def test_an_in_band_clear_ends_the_run(autojump_clock):
    script = [UtteranceStart("a"), *frames(3), (0.31, Clear()), (0.5, frame_of("a", 3))]
    out = await run_stage(Pacer(margin_ms=0), script)
    assert counts(out)[2] == 0 and counts(out)[0] > 0


async def test_a_barge_in_cut_ends_the_run_and_the_next_reply_counts_afresh(autojump_clock):
    control = CallControl()

    async def barge_in() -> None:
        await trio.sleep_until(0.27)  # slots 3 and 4 (0.18, 0.24) were empty: the tail of a cut reply
        control.clear("barge-in", now=trio.current_time())

    script = [UtteranceStart("a"), *frames(3), (0.5, frame_of("a", 3)), (0.56, frame_of("a", 4))]
    script += [(1.0, UtteranceStart("b")), *frames(2, "b", start=5), (1.53, frame_of("b", 7)), UtteranceEnd("b")]
    token = CURRENT_CONTROL.set(control)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(barge_in)
            out = await run_stage(Pacer(margin_ms=0), script)
    finally:
        CURRENT_CONTROL.reset(token)
    b = [round(t / P) for t, f in out.received if isinstance(f, AudioChunk) and f.utterance == "b"]
    underruns, starting, inside = counts(out)
    assert inside == b[-1] - b[1] - 1 > 0  # only b's own stall, between its second and third frames
    assert underruns == 2 + inside and starting == 0


async def _stall(clock, at: float, seconds: float) -> None:
    await trio.sleep_until(at)
    clock.jump(seconds)


@pytest.mark.parametrize("late", ["burst", "drop"])
async def test_slots_a_machine_stall_passed_while_the_reply_had_nothing_count(autojump_clock, late):
    script = [UtteranceStart("a"), *frames(3), (1.0, frame_of("a", 3)), UtteranceEnd("a")]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stall, autojump_clock, 0.31, 0.33)  # the pacer wakes at 0.64, slots 0.18-0.60 past
        out = await run_stage(Pacer(margin_ms=0, late=late, max_burst=2), script)
    (t,) = [t for t, f in out.received if isinstance(f, AudioChunk) and f.seq == 3]
    assert counts(out) == (round(t / P) - 3, 0, round(t / P) - 3)
