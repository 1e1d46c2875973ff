"""The pause_breath core: where it cuts, what it inserts, what it holds, what it counts."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pause_helpers import EXACT, LENGTH, RATE, SPANS, TEXT, chunks, shape, speech, utterance

from rtstream.audio.splice import fade_in
from rtstream.frames import AudioChunk, AudioFormat, Clear, Gap, UtteranceEnd, UtteranceStart, Word, WordTimings
from rtstream.markup import MarkupError

FADE = 40  # 5 ms at 8 kHz


def _audio(**kw):
    return speech(SPANS, LENGTH, **kw)


def test_insertion_points_and_durations_are_sample_exact():
    audio = _audio()
    out = shape(utterance(TEXT, SPANS, audio), **EXACT)
    # silent gaps: each cut sits in the middle of its gap; comma 0.15 s, period 0.5 s, question 0.6 s
    assert out.cuts() == [(4400, 1200), (8800, 4000), (17200, 4800)]
    total = len(audio) + 1200 + 4000 + 4800
    assert len(out.audio()) == total == out.counts.sent.samples
    assert out.counts.inserted_samples == 10000
    assert np.array_equal(out.without_insertions(), audio)  # the gaps are silent, so the fades change nothing
    inserted = [c for c in out.chunks if c.seq is None]
    assert all(not c.data.any() and c.utterance == "u" for c in inserted)
    # pts run on without a hole: input pts plus what was inserted before
    assert [c.pts for c in out.chunks] == list(np.cumsum([0] + [c.samples for c in out.chunks[:-1]]))
    assert dict(out.counts.pauses) == {"comma": 1, "period": 1, "question": 1}


def test_word_timings_move_by_what_was_inserted_before_each_word():
    out = shape(utterance(TEXT, SPANS, _audio(), place="split"), **EXACT)
    moved = [w for e in out.events if isinstance(e, WordTimings) for w in e.words]
    shift = [0.0, 0.15, 0.65, 0.65, 0.65, 1.25]
    assert [w.text for w in moved] == ["Hello", "world", "How", "are", "you", "Fine"]
    assert [w.start for w in moved] == pytest.approx([a + s for (a, _), s in zip(SPANS, shift, strict=True)])
    assert [w.end for w in moved] == pytest.approx([b + s for (_, b), s in zip(SPANS, shift, strict=True)])
    # the moved times point at the same audio in the output as the original times in the input
    audio, result = _audio(), out.audio()
    for word, (start, end) in zip(moved, SPANS, strict=True):
        a, b = round(start * RATE), round(end * RATE)
        assert np.array_equal(result[round(word.start * RATE) : round(word.end * RATE)], audio[a:b])


@pytest.mark.parametrize("place", ["before", "after", "split"])
@pytest.mark.parametrize("sizes", [160, 7, [1, 999, 30], 100000])
def test_the_output_does_not_depend_on_chunking_or_when_timings_come(place, sizes):
    audio = _audio(floor=300)
    reference = shape(utterance(TEXT, SPANS, audio), seed=4, breath_probability=1.0, breath_min_interval=0)
    out = shape(
        utterance(TEXT, SPANS, audio, sizes=sizes, place=place), seed=4, breath_probability=1.0, breath_min_interval=0
    )
    assert np.array_equal(out.audio(), reference.audio())
    assert out.cuts() == reference.cuts()
    assert out.counts.breaths == reference.counts.breaths and sum(out.counts.breaths.values()) == 2


def test_random_lengths_stay_in_their_ranges_and_follow_the_seed():
    text = " ".join(["One, two."] * 20)
    spans = [(0.1 + 0.5 * i, 0.4 + 0.5 * i) for i in range(40)]
    audio = speech(spans, 20.2)
    one, again, two = (
        shape(utterance(text, spans, audio), seed=seed, reference_rate=0.0, breath_probability=0) for seed in (1, 1, 2)
    )
    assert np.array_equal(one.audio(), again.audio())
    assert one.cuts() != two.cuts()
    lengths = [n for _, n in one.cuts()]
    commas, periods = lengths[0::2], lengths[1::2]
    assert all(0.1 * RATE <= n <= 0.2 * RATE for n in commas) and len(set(commas)) > 10
    assert all(0.4 * RATE <= n <= 0.6 * RATE for n in periods) and len(set(periods)) > 10


def _words_and_gaps(draw_lengths, draw_gaps):
    spans, at = [], draw_gaps[0]
    for length, gap in zip(draw_lengths, draw_gaps[1:], strict=True):
        spans.append((at, at + length))
        at += length + gap
    return spans, at


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(80, 2400), st.sampled_from(["", ",", ".", "?", "!", ";", ":", " —"])),
        min_size=1,
        max_size=8,
    ),
    st.lists(st.integers(0, 1600), min_size=9, max_size=9),
    st.lists(st.integers(1, 900), min_size=1, max_size=4),
    st.sampled_from(["before", "after", "split"]),
    st.sets(st.integers(0, 8), max_size=3),
    st.integers(0, 3),
)
def test_a_cut_never_falls_inside_a_word(words, gaps, sizes, place, tagged, seed):
    # lengths and gaps in samples, so the spans are exact
    spans, end = [], gaps[0]
    for (length, _), gap in zip(words, gaps[1:], strict=False):
        spans.append((end, end + length))
        end += length + gap
    length = end + 200
    tokens = []
    for k, (_, punct) in enumerate(words):
        tokens += (["[breath]"] if k in tagged else []) + [f"w{k}{punct}"]
    text = " ".join(tokens) + (" [sigh]" if len(words) in tagged else "")
    seconds = [(a / RATE, b / RATE) for a, b in spans]
    audio = speech(seconds, length / RATE, floor=100, seed=seed)
    out = shape(
        utterance(text, seconds, audio, sizes=sizes, place=place, words=[f"w{k}" for k in range(len(words))]),
        seed=seed,
        breath_probability=0.5,
        breath_min_interval=0,
    )
    windows = (
        [(0, spans[0][0])] + [(spans[k - 1][1], spans[k][0]) for k in range(1, len(spans))] + [(spans[-1][1], length)]
    )
    for position, _ in out.cuts():
        assert any(lo <= position <= hi for lo, hi in windows), (position, windows)
    assert len(out.audio()) == len(audio) + out.counts.inserted_samples
    # outside the fades the input passes bit-exact
    kept = out.without_insertions()
    near = np.zeros(len(audio), dtype=bool)
    for position, _ in out.cuts():
        near[max(position - FADE, 0) : position + FADE] = True
    assert np.array_equal(kept[~near], audio[~near])
    assert not out.counts.skipped and not out.counts.released_unshaped.frames


def test_every_joint_is_faded_and_no_sharper_than_the_signal():
    # the worst case: a loud tone runs on with no gap between the words, and each boundary is at
    # a crest of the wave (20 + 80 m at 100 Hz), so the cut has to open the wave where it is highest
    t = np.arange(18400) / RATE
    audio = np.rint(20000 * np.sin(2 * np.pi * 100 * t)).astype(np.int16)
    bounds = [(820, 4020), (4020, 8020), (8020, 9600), (9700, 11000), (11000, 14420), (14420, 18000)]
    spans = [(a / RATE, b / RATE) for a, b in bounds]
    out = shape(utterance(TEXT, spans, audio, sizes=[33, 170]), **EXACT)
    assert [p for p, _ in out.cuts()] == [4020, 8020, 14420]
    result = out.audio().astype(np.float64)
    own = np.max(np.abs(np.diff(audio.astype(np.float64))))
    starts = np.cumsum([0] + [c.samples for c in out.chunks])
    joints = [(s, s + c.samples) for s, c in zip(starts, out.chunks, strict=False) if c.seq is None]
    assert len(joints) == 3
    fade = fade_in(FADE)
    for (begin, end), (position, _) in zip(joints, out.cuts(), strict=True):
        before = result[begin - FADE - 1 : begin + 1]
        after = result[end - 1 : end + FADE + 1]
        assert np.max(np.abs(np.diff(before))) <= 1.2 * own
        assert np.max(np.abs(np.diff(after))) <= 1.2 * own
        assert np.array_equal(
            out.audio()[begin - FADE : begin], np.rint(audio[position - FADE : position] * fade[::-1])
        )
        assert np.array_equal(out.audio()[end : end + FADE], np.rint(audio[position : position + FADE] * fade))
    # without the fades the same joints would click: the tone is far from zero at some of them
    assert max(abs(int(audio[p])) for p, _ in out.cuts()) > 1.5 * own


def test_tags_are_honoured_at_their_word():
    text = (
        '[breath] Hello, [pause 300ms] world [emphasis] now. [breath type="deep"] Yes [sigh] ok [breath type="quick"]'
    )
    spans = [(0.2, 0.5), (0.6, 0.9), (1.0, 1.2), (1.4, 1.6), (1.8, 2.0)]
    out = shape(
        utterance(text, spans, speech(spans, 2.4)),
        **EXACT,
        breath_gap=0.05,
        breath_normal=(0.2, 0.2),
        breath_deep=(0.3, 0.3),
        breath_quick=(0.1, 0.1),
        breath_sigh=(0.5, 0.5),
    )
    g = 400  # breath_gap
    assert out.cuts() == [
        (800, 1600 + g),  # [breath] before Hello: in the lead-in silence
        (4400, 2400),  # [pause 300ms] replaces the comma's 0.15 s
        (7600, 2000),  # [emphasis] before "now"
        (10400, 4000 + 2400 + g),  # the period, then the deep breath
        (13600, 4000 + g),  # [sigh] before "ok"
        (17600, 800 + g),  # the quick breath after the last word, in the middle of the trailing silence
    ]
    assert dict(out.counts.breaths) == {"deep": 1, "normal": 1, "quick": 1, "sigh": 1}
    assert dict(out.counts.pauses) == {"emphasis": 1, "period": 1, "tag": 1}
    # a breath is sound, not silence, and it rests at its edges
    segment = [c for c in out.chunks if c.seq is None][3].data
    deep = segment[4000 : 4000 + 2400].astype(np.float64)
    assert np.sqrt(np.mean(deep**2)) > 100 and np.all(segment[:4000] == 0) and np.all(segment[-g:] == 0)


def test_breaths_sit_at_their_level_below_the_speech():
    spans = [(0.1 + 0.6 * i, 0.6 + 0.6 * i) for i in range(6)]
    audio = speech(spans, 3.8, level=6000)
    out = shape(
        utterance("a b c. [breath] D e f", spans, audio), **EXACT, breath_level=-12.0, breath_normal=(0.25, 0.25)
    )
    segment = next(c for c in out.chunks if c.seq is None).data.astype(np.float64)
    breath_rms = np.sqrt(np.mean(segment[4000 : 4000 + 2000] ** 2))
    speech_rms = np.sqrt(np.mean(audio[800:4000].astype(np.float64) ** 2))
    assert 20 * np.log10(breath_rms / speech_rms) == pytest.approx(-12.0, abs=0.5)


def test_sentence_breaths_follow_probability_interval_and_length_of_speech():
    text = " ".join(f"W{i}." for i in range(30))
    spans = [(0.05 + 0.5 * i, 0.45 + 0.5 * i) for i in range(30)]
    audio = speech(spans, 15.1)
    never = shape(utterance(text, spans, audio), breath_probability=0.0)
    always = shape(utterance(text, spans, audio), breath_probability=1.0, breath_min_interval=1.0, deep_breath_after=60)
    deep = shape(utterance(text, spans, audio), breath_probability=1.0, breath_min_interval=0.0, deep_breath_after=0.0)
    some = shape(utterance(text, spans, audio), breath_probability=0.5, breath_min_interval=0.0, seed=3)
    assert not never.counts.breaths
    # 0.4 s of speech per sentence: a breath every third sentence end at the earliest (1.2 s >= 1.0 s)
    assert dict(always.counts.breaths) == {"normal": 9}
    assert dict(deep.counts.breaths) == {"deep": 29}
    assert 8 <= sum(some.counts.breaths.values()) <= 21


def test_faster_speech_gets_shorter_pauses_within_the_limits():
    def comma_after(word_seconds, **kw):
        spans = [(0.1, 0.1 + word_seconds), (0.2 + word_seconds, 0.3 + 2 * word_seconds)]
        out = shape(
            utterance("abcdefghij, abcdefghij", spans, speech(spans, 0.5 + 2 * word_seconds)), **{**EXACT, **kw}
        )
        return out.cuts()[0][1] / RATE

    at_reference = {"reference_rate": 10.0, "rate_scale": (0.6, 2.0), "comma": (0.2, 0.2)}
    assert comma_after(1.0, **at_reference) == pytest.approx(0.2, abs=1 / RATE)  # 10 letters in 1 s: the reference
    assert comma_after(0.5, **at_reference) == pytest.approx(0.2 * 10 / ((10 + 10) / 1.5), abs=1 / RATE)
    assert comma_after(0.1, **at_reference) == pytest.approx(0.12, abs=1 / RATE)  # 0.55 unclamped
    assert comma_after(0.5, **{**at_reference, "reference_rate": 0.0}) == pytest.approx(0.2, abs=1 / RATE)


@pytest.mark.parametrize(
    "fmt", [AudioFormat("pcm_f32le", 48000, 2), AudioFormat("pcm_s16le", 16000, 2), AudioFormat("pcm_f32le", 22050)]
)
def test_float_stereo_and_other_rates(fmt):
    audio = speech(SPANS, LENGTH, fmt=fmt, floor=50)
    frames = utterance(TEXT, SPANS, audio, fmt=fmt, sizes=fmt.sample_rate // 50, place="split")
    out = shape(frames, fmt=fmt, **{**EXACT, "breath_probability": 1.0, "breath_min_interval": 0})
    rate = fmt.sample_rate
    assert [n for _, n in out.cuts()][:1] == [round(0.15 * rate)]
    assert all(c.data.dtype == fmt.encoding.dtype and c.data.shape[1:] == audio.shape[1:] for c in out.chunks)
    assert len(out.audio()) == len(audio) + out.counts.inserted_samples
    assert sum(out.counts.breaths.values()) == 2


def test_text_without_punctuation_or_tags_passes_untouched():
    audio = _audio()
    frames = utterance("hello world how are you fine", SPANS, audio, sizes=[100, 333])
    out = shape(frames)
    assert out.frames == frames  # the very same frames, in the same order
    assert not out.counts.held_max_samples


def test_audio_outside_any_utterance_and_gaps_pass_in_order():
    loose = chunks(np.ones(500, dtype=np.int16), 200, uid=None)
    gap = Gap(seq=3, pts=600, samples=40)
    out = shape([*loose, *utterance(TEXT, SPANS, _audio(), pts=500, place="after"), gap], **EXACT)
    assert out.frames[:3] == loose
    moved = out.events[-1]
    assert moved == Gap(seq=3, pts=600 + 10000, samples=40)


def test_no_timings_means_no_change_and_counts_why():
    audio = _audio()
    frames = utterance(TEXT, SPANS, audio, place="none")
    out = shape(frames, times=[0.02 * i for i in range(len(frames))], max_wait=0.1)
    assert np.array_equal(out.audio(), audio)
    assert dict(out.counts.skipped) == {"missing_timings": 3}
    assert out.counts.released_unshaped.frames > 0


def test_timings_after_their_audio_left_are_late_and_pass_unmoved():
    audio = _audio()
    body = chunks(audio, 160)
    late = WordTimings("u", tuple(Word(w, a, b) for w, (a, b) in zip(["Hello", "world"], SPANS[:2], strict=True)))
    frames = [UtteranceStart("u", "Hello, world"), *body, late, UtteranceEnd("u")]
    times = [0.0] + [0.02 * i for i in range(len(body))] + [10.0, 10.0]
    out = shape(frames, times=times, max_wait=0.2)
    assert np.array_equal(out.audio(), audio)
    assert dict(out.counts.skipped) == {"late_timings": 1}
    assert late in out.events


def test_the_hold_is_bounded_in_audio():
    spans = [(0.1 + 0.5 * i, 0.5 + 0.5 * i) for i in range(20)]
    text = " ".join(f"w{i}," for i in range(20))
    audio = speech(spans, 10.0)
    out = shape(utterance(text, spans, audio, place="after"), max_hold=1.0)  # a burst, all at t=0
    assert out.counts.held_max_samples <= 1.0 * RATE + 160
    assert out.counts.released_unshaped.snapshot()["hold_full"].samples > 7 * RATE
    assert out.counts.skipped["late_timings"] > 10


def test_clear_drops_held_audio_and_counts_it():
    audio = _audio()
    frames = utterance(TEXT, SPANS, audio, place="none")
    cut = frames[:30]
    out = shape([*cut, Clear(), *chunks(np.ones(100, dtype=np.int16), 100, uid="after")])
    held = sum(f.samples for f in cut if isinstance(f, AudioChunk))
    assert out.counts.drops.snapshot()["clear"].samples == held
    assert out.counts.skipped["cleared"] == 3
    assert [type(f).__name__ for f in out.frames] == ["UtteranceStart", "Clear", "AudioChunk"]


def test_a_malformed_tag_leaves_the_utterance_unshaped_or_fails(caplog):
    audio = _audio()
    frames = utterance("Hello, [paws 3s] world. How are you? Fine", SPANS, audio)
    out = shape(frames)
    assert np.array_equal(out.audio(), audio) and out.counts.markup_errors == 1
    assert (
        "utterance 'u': unknown tag (known: breath, sigh, pause, emphasis): '[paws 3s]' at character 7" in caplog.text
    )
    with pytest.raises(MarkupError, match=r"^utterance 'u': unknown tag .*: '\[paws 3s\]' at character 7$"):
        shape(frames, on_bad_markup="fail")


def test_timing_problems_are_counted():
    spans = [(0.1, 0.3), (0.5, 0.7), (0.65, 0.9)]  # the last two overlap
    audio = speech(spans, 1.0)
    words = (
        Word("One", 0.1, 0.3),
        Word("—", 0.35, 0.35),
        Word("tow", 0.5, 0.7),
        Word("three", 0.65, 0.9),
        Word("four", 0.9, 0.95),
    )
    frames = [
        UtteranceStart("u", "One, two; three"),
        WordTimings("u", words),
        *chunks(audio, 160),
        UtteranceEnd("u"),
        WordTimings("nobody", (Word("x", 0, 1),)),
    ]
    out = shape(frames, **EXACT)
    assert dict(out.counts.timing_issues) == {
        "beyond_text": 1,
        "overlapping_words": 1,
        "text_mismatch": 1,
        "unknown_utterance": 1,
    }
    (comma, _), (semicolon, _) = out.cuts()
    assert comma == 3200 and 5200 <= semicolon <= 5600  # in the gap, then where the words overlap


def test_utterances_in_a_row_each_move_their_own_timings_and_pts_run_on():
    audio = _audio()
    first = utterance(TEXT, SPANS, audio, uid="A", place="after")
    second = utterance("One, two", SPANS[:2], audio[:8800], uid="B", place="split", pts=len(audio))
    out = shape([*first, *second[:-1]], **EXACT)  # B never gets its UtteranceEnd: the input just ends
    assert [c.pts for c in out.chunks] == list(np.cumsum([0] + [c.samples for c in out.chunks[:-1]]))
    assert out.cuts() == [(4400, 1200), (8800, 4000), (17200, 4800), (len(audio) + 4400, 1200)]
    timed = {e.utterance: e for e in out.events if isinstance(e, WordTimings) and len(e.words) > 1}
    assert timed["A"].words[-1].start == pytest.approx(SPANS[-1][0] + 1.25)
    second_word = [e for e in out.events if isinstance(e, WordTimings) and e.utterance == "B"][1].words[0]
    assert second_word.start == pytest.approx(SPANS[1][0] + 0.15)  # only B's own comma moves it
    assert [type(f).__name__ for f in out.events].count("UtteranceEnd") == 1


def test_a_new_utterance_ends_the_one_before():
    audio = _audio()
    first = utterance(TEXT, SPANS, audio, uid="A", place="before")[:-1]  # no UtteranceEnd
    out = shape([*first, UtteranceStart("B", ""), *chunks(audio[:100], 100, uid="B", pts=len(audio))], **EXACT)
    assert [p for p, _ in out.cuts()] == [4400, 8800, 17200]
    assert out.chunks[-1].pts == len(audio) + 10000


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 1.5), st.floats(-0.2, 1.5)), max_size=8),
    st.lists(st.sampled_from(["one,", "two.", "Three?", "[breath]", "four", "[pause 50ms]"]), min_size=1, max_size=8),
    st.lists(st.floats(0, 0.3), min_size=1, max_size=12),
    st.sampled_from([7, 160, 333, 700]),
    st.integers(0, 14),
    st.booleans(),
)
def test_any_timings_at_any_time_never_hang_lose_or_reorder(raw, tokens, steps, size, at, ended):
    """Timings that are wrong, partial, overlapping, past the audio, or late: the stream still flows."""
    audio = speech([(0.1, 0.3), (0.5, 0.9)], 1.2, floor=50)
    words = WordTimings("u", tuple(Word(f"w{i}", a, b) for i, (a, b) in enumerate(raw)))
    body = chunks(audio, size)
    frames = (
        [UtteranceStart("u", " ".join(tokens)), *body, UtteranceEnd("u")]
        if ended
        else [UtteranceStart("u", " ".join(tokens)), *body]
    )
    frames.insert(min(at, len(frames)), words)
    frames += [UtteranceStart("v", "Next, please."), *chunks(audio[:400], 160, uid="v", pts=len(audio))]
    times = list(np.cumsum([steps[i % len(steps)] for i in range(len(frames))]))
    out = shape(frames, times=times, max_wait=0.2, max_hold=0.5)
    sent = np.concatenate([f.data for f in frames if isinstance(f, AudioChunk)])
    kept = out.without_insertions()
    assert len(out.audio()) == len(sent) + out.counts.inserted_samples
    near = np.zeros(len(sent), dtype=bool)
    for position, _ in out.cuts():
        near[max(position - FADE, 0) : position + FADE] = True
    assert len(kept) == len(sent) and np.array_equal(kept[~near], sent[~near])  # in order, none lost
    kinds = [type(f).__name__ for f in out.events if not isinstance(f, WordTimings)]
    assert kinds == [type(f).__name__ for f in frames if isinstance(f, UtteranceStart | UtteranceEnd)]
    assert sum(isinstance(f, WordTimings) for f in out.events) == 1


def test_timings_held_back_are_bounded(monkeypatch):
    import rtstream.stages.pause_breath.core as core_module

    monkeypatch.setattr(core_module, "_MAX_PENDING", 2)
    audio = _audio()
    one_by_one = [
        WordTimings("u", (Word(w, a, b),))
        for w, (a, b) in zip(["Hello", "world", "How", "are", "you", "Fine"], SPANS, strict=True)
    ]
    out = shape([UtteranceStart("u", TEXT), *one_by_one, *chunks(audio, 160), UtteranceEnd("u")], **EXACT)
    assert out.counts.timing_issues == {"released_early": 4}
    assert sum(isinstance(e, WordTimings) for e in out.events) == 6
    assert out.cuts() == [(4400, 1200), (8800, 4000), (17200, 4800)]  # the audio is shaped all the same
