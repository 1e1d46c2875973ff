"""Caps algebra and negotiation across pass-through and converting stages."""

import attrs
import pytest

from rtstream.caps import Caps
from rtstream.errors import FormatMismatch
from rtstream.frames import AudioFormat, Encoding
from rtstream.pipeline import assemble
from rtstream.stage import Filter, Sink, Source

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
