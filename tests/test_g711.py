"""G.711 and the encoding conversions, bit-exact against audioop over every input."""

import audioop
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rtstream.audio import codec, g711
from rtstream.frames import Encoding

ALL_PCM = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = np.arange(256, dtype=np.uint8)
S16, F32, MULAW, ALAW = Encoding.PCM_S16LE, Encoding.PCM_F32LE, Encoding.PCM_MULAW, Encoding.PCM_ALAW

LAWS = [
    pytest.param(g711.ulaw_encode, g711.ulaw_decode, audioop.lin2ulaw, audioop.ulaw2lin, id="ulaw"),
    pytest.param(g711.alaw_encode, g711.alaw_decode, audioop.lin2alaw, audioop.alaw2lin, id="alaw"),
]


def pieces(array: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    bounds = np.cumsum([0, *sizes])
    return [array[a:b] for a, b in itertools.pairwise(bounds) if a < len(array)] + [array[bounds[-1] :]]


@pytest.mark.parametrize(("encode", "decode", "ref_encode", "ref_decode"), LAWS)
def test_every_pcm16_input_encodes_as_audioop(encode, decode, ref_encode, ref_decode):
    expected = ref_encode(ALL_PCM.tobytes(), 2)
    assert encode(ALL_PCM).tobytes() == expected  # the bulk path
    # the per-frame path, in 60 ms frames and in odd sizes
    assert b"".join(encode(p).tobytes() for p in pieces(ALL_PCM, [480] * 136)) == expected
    assert b"".join(encode(p).tobytes() for p in pieces(ALL_PCM, [1, 7, 333, 1535, 1536, 1537] * 20)) == expected


@pytest.mark.parametrize(("encode", "decode", "ref_encode", "ref_decode"), LAWS)
def test_every_code_decodes_as_audioop(encode, decode, ref_encode, ref_decode):
    assert decode(ALL_CODES).tobytes() == ref_decode(ALL_CODES.tobytes(), 2)
    # the bulk path looks codes up in pairs: every pair, both byte orders within the pair
    pairs = np.stack(np.meshgrid(ALL_CODES, ALL_CODES), axis=-1).reshape(-1)
    assert pairs.size == 2 * 65536
    assert decode(pairs).tobytes() == ref_decode(pairs.tobytes(), 2)


@pytest.mark.parametrize(("encode", "decode", "ref_encode", "ref_decode"), LAWS)
@given(
    data=hnp.arrays(np.int16, st.integers(0, 4000)),
    stereo=st.booleans(),
    step=st.sampled_from([1, 2]),
)
def test_any_array_as_audioop(encode, decode, ref_encode, ref_decode, data, stereo, step):
    """Any length (odd ones fall back from the pair path), stereo shapes, strided views."""
    data = data[::step]
    if stereo:
        data = data[: len(data) // 2 * 2].reshape(-1, 2)
    codes = encode(data)
    assert codes.shape == data.shape and codes.dtype == np.uint8
    assert codes.tobytes() == ref_encode(np.ascontiguousarray(data).tobytes(), 2)
    pcm = decode(codes)
    assert pcm.shape == data.shape and pcm.dtype == np.int16
    assert pcm.tobytes() == ref_decode(codes.tobytes(), 2)
    assert decode(codes[::step]).tobytes() == ref_decode(np.ascontiguousarray(codes[::step]).tobytes(), 2)


@pytest.mark.parametrize(("src", "dst"), [(MULAW, ALAW), (ALAW, MULAW)])
def test_g711_transcoding_equals_decode_then_encode(src, dst):
    to_lin = {MULAW: audioop.ulaw2lin, ALAW: audioop.alaw2lin}[src]
    from_lin = {MULAW: audioop.lin2ulaw, ALAW: audioop.lin2alaw}[dst]
    assert codec.transcode(ALL_CODES, src, dst).tobytes() == from_lin(to_lin(ALL_CODES.tobytes(), 2), 2)


def test_transcode_between_pcm16_and_g711_and_to_itself():
    assert codec.transcode(ALL_PCM, S16, MULAW).tobytes() == audioop.lin2ulaw(ALL_PCM.tobytes(), 2)
    assert codec.transcode(ALL_CODES, ALAW, S16).tobytes() == audioop.alaw2lin(ALL_CODES.tobytes(), 2)
    assert codec.transcode(ALL_CODES, MULAW, MULAW) is ALL_CODES


@pytest.mark.parametrize("encoding", [S16, MULAW, ALAW])
def test_float_round_trip_is_exact_for_every_code(encoding):
    codes = codec.from_int16(ALL_PCM, encoding)
    as_float = codec.to_float32(codes, encoding)
    assert as_float.dtype == np.float32
    assert np.array_equal(as_float * 32768, codec.to_int16(codes, encoding))
    back, clipped = codec.from_float32_counted(as_float, encoding)
    assert clipped == 0 and np.array_equal(back, codes)


def test_quantize_rounds_half_to_even_and_counts_clips_after_rounding():
    x = np.array([0.5, 1.5, -0.5, 32767.4, 32767.5, -32768.5, -32768.6, 1e9], dtype=np.float64) / 32768
    pcm, clipped = codec.quantize(x)
    assert pcm.tolist() == [0, 2, 0, 32767, 32767, -32768, -32768, 32767]
    assert clipped == 3  # 32767.5 rounds to 32768; -32768.6 to -32769; 1e9


def test_float32_output_clips_at_full_scale_and_counts():
    out, clipped = codec.from_float32_counted(np.array([0.25, 1.0, 1.5, -1.0, -3.0], dtype=np.float32), F32)
    assert out.tolist() == [0.25, 1.0, 1.0, -1.0, -1.0] and clipped == 2


def test_nonfinite_samples_are_clamped_and_counted():
    x = np.array([0.5, np.nan, np.inf, -np.inf, -0.25], dtype=np.float32)
    clean, bad = codec.clamp_nonfinite(x)
    assert bad == 3
    assert clean.tolist() == [0.5, 0.0, 32767 / 32768, -1.0, -0.25]
    assert np.isnan(x[1])  # the input is left alone
    assert codec.quantize(clean)[1] == 0  # clamped values fit every encoding
    finite = np.zeros(4, dtype=np.float32)
    assert codec.clamp_nonfinite(finite)[0] is finite
