"""Caps algebra and negotiation across pass-through and converting stages."""

import attrs
import pytest
from click.testing import CliRunner

from rtstream.caps import ANY_SIZE, Caps, StreamFormat
from rtstream.cli import main
from rtstream.errors import FormatMismatch
from rtstream.frames import AudioFormat, Encoding
from rtstream.pipeline import assemble
from rtstream.stage import Filter, Sink, Source
from rtstream.stages.chunker import Chunker
from rtstream.stages.converter import Converter
from rtstream.stages.jitter.stage import JitterBufferStage
from rtstream.stages.pacer import Pacer
from rtstream.stages.pause_breath import PauseBreath
from rtstream.stages.sequencer import Sequencer
from rtstream.stages.telephony import TelephonySink

S16, MULAW = Encoding.PCM_S16LE, Encoding.PCM_MULAW


class Opens:
    """Negotiation tests only assemble: each stage opens a record of its formats."""

    def open(self, fmt_in, fmt_out):
        return (fmt_in, fmt_out)


@attrs.frozen
class Src(Opens, Source):
    caps: Caps

    def output_caps(self, fmt_in):
        return self.caps


@attrs.frozen
class Pass(Opens, Filter):
    caps: Caps = Caps.ANY

    def input_caps(self):
        return self.caps


@attrs.frozen
class Convert(Opens, Filter):
    produces = Caps.ANY
    target: Caps = Caps.ANY

    def output_caps(self, fmt_in):
        return self.target


@attrs.frozen
class Snk(Opens, Sink):
    caps: Caps = Caps.ANY

    def input_caps(self):
        return self.caps


def test_caps_algebra():
    a = Caps((S16, MULAW), (8000, 16000), None)
    b = Caps((MULAW,), None, (1,))
    assert a & b == Caps((MULAW,), (8000, 16000), (1,))
    assert (a & Caps((Encoding.PCM_ALAW,))).empty
    assert AudioFormat(MULAW, 8000) in a
    assert AudioFormat(MULAW, 48000) not in a
    assert a.fixate().format == AudioFormat(S16, 8000)
    assert a.fixate(prefer=AudioFormat(MULAW, 16000, 2)).format == AudioFormat(MULAW, 16000, 2)
    assert Caps.ANY.fixate().format == AudioFormat(S16, 16000)
    assert str(Caps.of(AudioFormat(MULAW, 8000))) == "pcm_mulaw 8000 Hz mono"
    assert str(Caps.ANY) == "any format"


def test_passthrough_keeps_the_source_format():
    fmt = AudioFormat(S16, 24000)
    p = assemble("t", [Src(Caps.of(fmt)), Pass(), Pass(), Snk()])
    assert p.formats == (fmt, fmt, fmt)


def test_converter_output_is_fixed_by_what_the_sink_accepts():
    src = AudioFormat(S16, 24000)
    sink_caps = Caps((MULAW,), (8000,), (1,))
    p = assemble("t", [Src(Caps.of(src)), Convert(), Pass(), Snk(sink_caps)])
    assert p.formats == (src, AudioFormat(MULAW, 8000), AudioFormat(MULAW, 8000))
    assert p.elements[1] == (src, AudioFormat(MULAW, 8000))


def test_converter_keeps_what_it_is_not_told_to_change():
    src = AudioFormat(S16, 24000, 2)
    p = assemble("t", [Src(Caps.of(src)), Convert(target=Caps(rates=(8000,))), Snk()])
    assert p.formats[1] == AudioFormat(S16, 8000, 2)


def test_a_flexible_source_produces_what_downstream_wants():
    p = assemble("t", [Src(Caps((S16, MULAW), (16000, 8000), (1,))), Pass(), Snk(Caps(rates=(8000,)))])
    assert p.formats[0] == AudioFormat(S16, 8000)


def test_mismatch_names_both_stages_and_formats():
    src = AudioFormat(S16, 24000)
    with pytest.raises(
        FormatMismatch,
        match=r"^stage 1 \(Src\) produces pcm_s16le 24000 Hz mono, but stage 4 \(Snk\) accepts only "
        r"pcm_s16le, 8000 Hz, mono or stereo; add a converter between them$",
    ):
        assemble("t", [Src(Caps.of(src)), Pass(), Pass(), Snk(Caps((S16,), (8000,)))])


def test_mismatch_blames_the_nearest_refusing_stage():
    src = AudioFormat(S16, 8000)
    with pytest.raises(
        FormatMismatch, match=r"^stage 1 \(Src\) produces .*, but stage 2 \(Pass\) accepts only pcm_mulaw"
    ):
        assemble("t", [Src(Caps.of(src)), Pass(Caps((MULAW,))), Snk(Caps((MULAW,)))])


def test_converter_target_that_the_sink_refuses():
    with pytest.raises(
        FormatMismatch,
        match=r"^stage 2 \(Convert\) produces pcm_mulaw, any rate, mono or stereo, but stage 3 \(Snk\) accepts only pcm_s16le",
    ):
        assemble("t", [Src(Caps.of(AudioFormat(S16, 8000))), Convert(target=Caps((MULAW,))), Snk(Caps((S16,)))])


def test_two_pass_through_stages_that_cannot_agree():
    with pytest.raises(
        FormatMismatch,
        match=r"^stage 2 \(Pass\) accepts pcm_mulaw, any rate, mono or stereo and passes it on unchanged, but stage 3 \(Pass\) accepts only pcm_s16le",
    ):
        assemble("t", [Src(Caps.ANY), Pass(Caps((MULAW,))), Pass(Caps((S16,))), Snk()])


# -- caps as a union of structures ---------------------------------------------------------------


def test_a_union_allows_each_structure_and_not_their_product():
    carried = Caps((MULAW,), (8000,), (1,)) | Caps((S16,), (8000, 16000), (1,))
    assert AudioFormat(MULAW, 8000) in carried and AudioFormat(S16, 16000) in carried
    assert AudioFormat(MULAW, 16000) not in carried
    assert str(carried) == "pcm_mulaw 8000 Hz mono; or pcm_s16le, 8000|16000 Hz, mono"
    assert carried & Caps(rates=(16000,)) == Caps((S16,), (16000,), (1,))
    assert (carried & Caps((Encoding.PCM_ALAW,))).empty and str(carried & Caps((Encoding.PCM_ALAW,))) == "no format"
    # fixing a format keeps as much of the preferred one as one structure allows
    assert carried.fixate(prefer=AudioFormat(S16, 24000)) == StreamFormat(AudioFormat(S16, 8000))
    assert carried.fixate(prefer=AudioFormat(MULAW, 16000)) == StreamFormat(AudioFormat(MULAW, 8000))


def test_the_telephony_sink_no_longer_advertises_mulaw_at_24_khz():
    accepts = TelephonySink.accepts
    assert str(accepts) == "pcm_s16le, 8000|16000|24000 Hz, mono; or pcm_mulaw 8000 Hz mono; or pcm_alaw 8000 Hz mono"
    assert AudioFormat(S16, 24000) in accepts and AudioFormat(MULAW, 24000) not in accepts


# -- frame duration ------------------------------------------------------------------------------


def test_a_pass_through_stage_carries_the_frame_duration_both_ways():
    p = assemble("t", [Src(Caps.of(AudioFormat(S16, 8000))), Sequencer(), Pacer(frame_ms=20), Snk()])
    assert [str(e) for e in p.edges] == ["pcm_s16le 8000 Hz mono 20 ms"] * 3
    assert p.formats == (AudioFormat(S16, 8000),) * 3


def test_a_chunker_into_a_pacer_of_another_frame_duration_is_one_sentence():
    with pytest.raises(
        FormatMismatch,
        match=r"^stage 2 \(chunker\) produces frames of 60 ms, but stage 4 \(pacer\) takes only frames of 20 ms$",
    ):
        assemble(
            "t", [Src(Caps.of(AudioFormat(S16, 8000))), Chunker(frame_ms=60), Sequencer(), Pacer(frame_ms=20), Snk()]
        )


def test_chunks_of_any_size_into_a_pacer_ask_for_a_chunker():
    with pytest.raises(
        FormatMismatch,
        match=r"^stage 1 \(Src\) produces chunks of any size, but stage 2 \(pacer\) takes only frames of 20 ms; "
        r"put a chunker between them$",
    ):
        assemble("t", [Src(Caps.of(AudioFormat(S16, 8000), ANY_SIZE)), Pacer(frame_ms=20), Snk()])


def test_a_converter_keeps_frames_unless_it_resamples():
    ticks = Caps.of(AudioFormat(S16, 8000), 20)
    p = assemble("t", [Src(ticks), Converter(encoding=MULAW), Pacer(frame_ms=20), Snk()])
    assert str(p.edges[1]) == "pcm_mulaw 8000 Hz mono 20 ms"
    with pytest.raises(
        FormatMismatch,
        match=r"^stage 2 \(converter\) produces chunks of any size, but stage 3 \(pacer\) takes only frames of 20 ms; "
        r"put a chunker between them$",
    ):
        assemble("t", [Src(ticks), Converter(sample_rate=16000), Pacer(frame_ms=20), Snk()])


def test_stages_that_cut_frames_of_their_own_absorb_the_frame_duration_downstream():
    any_size = Caps.of(AudioFormat(S16, 8000), ANY_SIZE)
    p = assemble("t", [Src(any_size), PauseBreath(), Chunker(frame_ms=20), Pacer(frame_ms=20), Snk()])
    assert [e.frame_ms for e in p.edges] == [ANY_SIZE, ANY_SIZE, 20, 20]
    p = assemble("t", [Src(any_size), JitterBufferStage(tick_ms=20), Pacer(frame_ms=20), Snk()])
    assert [e.frame_ms for e in p.edges] == [ANY_SIZE, 20, 20]


def test_two_pass_through_stages_that_disagree_on_frames():
    with pytest.raises(
        FormatMismatch,
        match=r"^stage 2 \(pacer\) takes frames of 20 ms and passes them on, "
        r"but stage 3 \(pacer\) takes only frames of 60 ms$",
    ):
        assemble("t", [Src(Caps.ANY), Pacer(frame_ms=20), Pacer(frame_ms=60), Snk()])


def test_validate_prints_the_frame_duration_and_rejects_60_ms_into_20_ms(tmp_path):
    path = tmp_path / "p.toml"
    stages = [
        ("tone", "sample_rate = 8000"),
        ("chunker", "frame_ms = 60"),
        ("pacer", "frame_ms = 60"),
        ("null_sink", ""),
    ]
    path.write_text("[pipelines.p]\n" + "".join(f'[[pipelines.p.stages]]\ntype = "{t}"\n{k}\n' for t, k in stages))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0
    assert result.output == (
        "pipeline 'p' ok: tone [pcm_s16le 8000 Hz mono 20 ms] -> chunker [pcm_s16le 8000 Hz mono 60 ms]"
        " -> pacer [pcm_s16le 8000 Hz mono 60 ms] -> null_sink\n"
    )
    path.write_text(path.read_text().replace('type = "pacer"\nframe_ms = 60', 'type = "pacer"\nframe_ms = 20'))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.output == (
        f"Error: {path}: pipeline 'p': stage 2 (chunker) produces frames of 60 ms, "
        "but stage 3 (pacer) takes only frames of 20 ms\n"
    )
