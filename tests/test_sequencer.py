"""The sequencer: stamping on the sender side, reordering and gap finding on the receiver side."""

import attrs
import pytest
from helpers import pcm_chunk
from hypothesis import given, settings
from hypothesis import strategies as st

from rtstream.frames import AudioChunk, ChunkFlags, Gap, UtteranceEnd, UtteranceStart
from rtstream.params import ParamError
from rtstream.stages.sequencer import Receiver, Reorderer, Sequencer, Stamper
from rtstream.testing import run_stage


def chunks(frames):
    return [f for f in frames if isinstance(f, AudioChunk)]


def push_all(core, frames):
    out = []
    for f in frames:
        out += core.push(f, 0.0)
    return out + core.end()


def test_sender_numbers_stamps_and_flags():
    core = Stamper(start_seq=7)
    out = push_all(
        core,
        [
            UtteranceStart("a"),
            pcm_chunk(160, pts=0, utterance="a"),
            pcm_chunk(80, pts=160, utterance="a"),
            pcm_chunk(160, pts=400, utterance="a"),
            UtteranceEnd("a"),
            UtteranceStart("b"),
            pcm_chunk(160, pts=0, utterance="b"),
        ],
    )
    cs = chunks(out)
    assert [c.seq for c in cs] == [7, 8, 9, 10]
    assert [c.pts for c in cs] == [0, 160, 400, 560]  # the input's 160-sample gap is kept, utterance b follows on
    assert [c.flags for c in cs] == [
        ChunkFlags.FIRST,
        ChunkFlags.CONTINUATION,
        ChunkFlags.CONTINUATION,
        ChunkFlags.FIRST,
    ]
    assert isinstance(out[0], UtteranceStart) and isinstance(out[4], UtteranceEnd)


def test_sender_retransmission_keeps_its_number():
    core = Stamper()
    first = pcm_chunk(160, pts=0, utterance="a", seed=1)
    out = push_all(
        core, [first, pcm_chunk(160, pts=160, utterance="a"), first, pcm_chunk(160, pts=-999, utterance="a")]
    )
    cs = chunks(out)
    assert [c.seq for c in cs] == [0, 1, 0]
    assert cs[2].flags & ChunkFlags.RETRANSMIT and cs[2].pts == 0
    assert core.retransmits == 1 and core.drops.snapshot()["stale_retransmit"].frames == 1


def test_sender_marks_last_when_asked():
    core = Stamper(mark_last=True)
    out = push_all(
        core,
        [UtteranceStart("a"), pcm_chunk(10, utterance="a"), pcm_chunk(10, pts=10, utterance="a"), UtteranceEnd("a")],
    )
    cs = chunks(out)
    assert cs[0].flags == ChunkFlags.FIRST and cs[1].flags == ChunkFlags.CONTINUATION | ChunkFlags.LAST
    assert [type(f) for f in out] == [UtteranceStart, AudioChunk, AudioChunk, UtteranceEnd]


def received(seqs, *, bits=64, window=3, unit="packets", size=160):
    core = Reorderer(wire_bits=bits, window=window, unit=unit)
    out = []
    for i, s in enumerate(seqs):
        out += core.push(pcm_chunk(size, pts=(s % (1 << bits)) * size, seq=s % (1 << bits)), float(i))
    return out + core.end(), core


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, (1 << 16) - 1), st.lists(st.integers(0, 2), min_size=5, max_size=40), st.sampled_from([16, 32, 64])
)
def test_reordering_within_the_window_restores_order_across_a_wrap(start, shifts, bits):
    n = len(shifts)
    # each packet moves back by up to two places: reordering within a 3-packet window
    # (the first packet to arrive starts the stream, as an RTP receiver takes it)
    order = [0, *sorted(range(1, n), key=lambda i: i + shifts[i] + 0.5 * (i % 2))]
    seqs = [(start + i) % (1 << bits) if bits < 64 else start + i for i in order]
    out, core = received(seqs, bits=bits, window=3)
    got = [c.seq for c in chunks(out)]
    assert got == sorted(got) and len(got) == n
    assert got[-1] - got[0] == n - 1  # unwrapped into one 64-bit run
    s = core.statistics()
    assert s.lost == 0 and s.gaps == 0 and s.released == n
    assert s.reordered == sum(1 for i, k in enumerate(order) if k < max(order[: i + 1]))


def test_duplicates_and_late_packets_are_dropped_and_counted():
    out, core = received([0, 1, 1, 3, 4, 5, 6, 2, 0])
    assert [c.seq for c in chunks(out)] == [0, 1, 3, 4, 5, 6]
    gap = [f for f in out if isinstance(f, Gap)]
    assert gap == [Gap(seq=2, count=1, pts=320, samples=160, reason="lost")]
    s = core.statistics()
    assert s.duplicates == 2 and s.late == 1 and s.lost == 1 and s.reordered == 0
    assert core.drops.snapshot()["late"].samples == 160


def test_a_gap_sits_where_the_missing_audio_was():
    out, _ = received([0, 1, 4, 5, 6, 7], window=3)
    kinds = [(type(f).__name__, getattr(f, "seq", None)) for f in out]
    assert kinds == [
        ("AudioChunk", 0),
        ("AudioChunk", 1),
        ("Gap", 2),
        ("AudioChunk", 4),
        ("AudioChunk", 5),
        ("AudioChunk", 6),
        ("AudioChunk", 7),
    ]
    assert out[2].count == 2 and out[2].samples == 320


def test_a_restarted_sender_resynchronizes():
    out, core = received([100000, 100001, 5, 6])
    assert [c.seq for c in chunks(out)] == [100000, 100001, 5, 6]
    assert core.statistics().resyncs == 1


async def test_receiver_reports_a_gap_after_the_window_and_holds_nothing(autojump_clock):
    script = [
        (0.0, pcm_chunk(160, pts=0, seq=0)),
        (0.02, pcm_chunk(160, pts=320, seq=2)),
        (0.5, pcm_chunk(160, pts=160, seq=1)),
    ]
    out = await run_stage(Sequencer(mode="receiver", window=60.0), script)
    assert [(type(f).__name__, f.seq) for f in out.frames] == [
        ("AudioChunk", 0),
        ("AudioChunk", 2),
        ("Gap", 1),
        ("AudioChunk", 1),
    ]
    assert out.times == pytest.approx([0.0, 0.02, 0.08, 0.5])  # each chunk at once; the gap 60 ms after 2 came
    assert out.frames[2] == Gap(seq=1, count=1, pts=160, samples=160, reason="missing")
    stats = out.report.stages[1].statistics
    assert stats["receiver"].late == 1 and stats["receiver"].max_held == 0 and stats["mode"] == "receiver"


async def test_reorder_mode_holds_and_drops_what_comes_after_its_gap(autojump_clock):
    script = [
        (0.0, pcm_chunk(160, pts=0, seq=0)),
        (0.02, pcm_chunk(160, pts=320, seq=2)),
        (0.5, pcm_chunk(160, pts=160, seq=1)),
    ]
    out = await run_stage(Sequencer(mode="receiver", window=60.0, reorder=True), script)
    assert [type(f).__name__ for f in out.frames] == ["AudioChunk", "Gap", "AudioChunk"]
    assert out.times[1] == pytest.approx(0.08)  # 60 ms after the chunk behind the hole arrived
    assert out.report.stages[1].statistics["receiver"].late == 1


def passed(seqs, *, window=3, unit="packets", size=160):
    core = Receiver(window=window, unit=unit)
    out = []
    for i, s in enumerate(seqs):
        out += core.push(pcm_chunk(size, pts=s * size, seq=s), float(i))
    return out + core.end(), core


@settings(max_examples=60, deadline=None)
@given(st.permutations(range(12)), st.lists(st.integers(0, 11), max_size=6))
def test_receiver_passes_every_chunk_once_in_arrival_order(order, again):
    seqs = list(order) + again  # any reordering, then some duplicates
    out, core = passed(seqs, window=100)
    assert [c.seq for c in chunks(out)] == list(order)
    s = core.statistics()
    assert s.duplicates == len(again) and s.released == 12 and s.max_held == 0
    assert s.lost == s.late and not any(isinstance(f, Gap) and f.count <= 0 for f in out)


def test_receiver_reports_losses_with_their_span_and_forwards_late_chunks():
    out, core = passed([0, 1, 4, 5, 6, 7, 2, 7], window=3)
    kinds = [(type(f).__name__, f.seq) for f in out]
    assert kinds == [("AudioChunk", s) for s in (0, 1, 4, 5, 6)] + [("Gap", 2), ("AudioChunk", 7), ("AudioChunk", 2)]
    assert out[5] == Gap(seq=2, count=2, pts=320, samples=320, reason="missing")
    s = core.statistics()
    assert (s.lost, s.late, s.gaps, s.duplicates, s.reordered) == (2, 1, 1, 1, 1)


def test_receiver_takes_a_first_chunk_that_came_second():
    out, core = passed([1, 0, 2])
    assert [c.seq for c in chunks(out)] == [1, 0, 2] and core.statistics().lost == 0


async def test_sender_stage_and_unsequenced_chunks():
    out = await run_stage(
        Sequencer(mode="sender", start_seq=5), [UtteranceStart("u"), pcm_chunk(10), pcm_chunk(10, pts=10)]
    )
    assert [c.seq for c in out.chunks] == [5, 6]
    passed = await run_stage(Sequencer(mode="receiver"), [pcm_chunk(10)])
    assert passed.chunks[0].seq is None
    assert passed.report.stages[1].statistics["receiver"].unsequenced == 1


def test_bad_parameters_name_the_key():
    with pytest.raises(ParamError, match=r"^wire_bits: must be one of 16, 32, 64, got 24$"):
        Sequencer(wire_bits=24)
    with pytest.raises(ParamError, match=r"^window_unit: "):
        Sequencer(window_unit="seconds")
    assert attrs.has(Sequencer)


def test_restamping_gives_pts_in_sequence_order_to_chunks_timed_by_arrival():
    # as a TTS source numbers them: pts follow arrival, so seq 2 (arrived before 1) got pts 100
    sizes = {0: 100, 1: 200, 2: 300, 3: 50}
    arrived = [(0, 0), (2, 100), (1, 400), (1, 600), (3, 800)]  # (seq, pts by arrival); a duplicate of 1
    core = Reorderer(restamp=True)
    out = []
    for seq, pts in arrived:
        out += core.push(pcm_chunk(sizes[seq], pts=pts, seq=seq, seed=seq), 0.0)
    cs = chunks(out)
    assert [c.seq for c in cs] == [0, 1, 2, 3]
    assert [c.pts for c in cs] == [0, 100, 300, 600]  # contiguous in sequence order
    assert all(c.data.tolist() == pcm_chunk(sizes[c.seq], seed=c.seq).data.tolist() for c in cs)
    assert core.statistics().duplicates == 1 and core.statistics().reordered == 1


def test_restamping_gives_a_loss_the_length_of_the_chunk_before_it():
    core = Reorderer(restamp=True, window=2, unit="packets")
    out = []
    for seq, pts in [(0, 0), (2, 160), (3, 320)]:  # 1 is lost
        out += core.push(pcm_chunk(160, pts=pts, seq=seq), 0.0)
    [gap] = [f for f in out if isinstance(f, Gap)]
    assert (gap.seq, gap.count, gap.pts, gap.samples) == (1, 1, 160, 160)
    assert [c.pts for c in chunks(out)] == [0, 320, 480]
