import itertools

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from rtstream.audio.payload import PayloadAligner
from rtstream.frames import AudioFormat


@given(st.binary(max_size=400), st.lists(st.integers(0, 50), max_size=30), st.sampled_from([1, 2]))
def test_any_split_yields_the_same_samples_and_carries_the_rest(data, cuts, channels):
    fmt = AudioFormat("pcm_s16le", 8000, channels)
    aligner = PayloadAligner(fmt)
    bounds = [*np.cumsum([0, *cuts]).clip(max=len(data)).tolist(), len(data)]
    pieces = [aligner.feed(data[a:b]) for a, b in itertools.pairwise(bounds)]
    whole = len(data) - len(data) % fmt.frame_bytes
    assert np.concatenate([p.reshape(-1) for p in pieces]).tobytes() == data[:whole]
    assert all(p.ndim == (1 if channels == 1 else 2) for p in pieces)
    assert aligner.carried == len(data) - whole
    assert aligner.reset() == len(data) - whole
    assert aligner.carried == 0


def test_an_odd_byte_is_carried_into_the_next_payload():
    aligner = PayloadAligner(AudioFormat("pcm_s16le", 8000))
    assert aligner.feed(b"\x01\x00\x02").tolist() == [1]
    assert aligner.carried == 1
    assert aligner.feed(b"\x00\x03\x00").tolist() == [2, 3]
    assert aligner.carried == 0
