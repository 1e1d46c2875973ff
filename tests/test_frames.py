import numpy as np
import pytest

from rtstream.frames import AudioChunk, AudioFormat, Encoding


@pytest.mark.parametrize(
    ("encoding", "rate", "expected"),
    [
        ("pcm_s16le", 8000, 960),
        ("pcm_s16le", 16000, 1920),
        ("pcm_mulaw", 8000, 480),
        ("pcm_alaw", 8000, 480),
        ("pcm_f32le", 24000, 5760),
        ("pcm_s16le", 22050, 2646),
    ],
)
def test_sixty_ms_frame_sizes(encoding, rate, expected):
    assert AudioFormat(encoding, rate).bytes_in(60) == expected


def test_stereo_frame_bytes_and_arrays():
    fmt = AudioFormat("pcm_s16le", 16000, 2)
    assert fmt.frame_bytes == 4
    assert fmt.bytes_in(10) == 640
    assert fmt.array(bytes(8)).shape == (2, 2)
    assert fmt.silence(3).shape == (3, 2)


def test_fractional_sample_count_is_a_clear_error():
    with pytest.raises(ValueError, match=r"^10 ms at 22050 Hz is 220.5 samples, not a whole number$"):
        AudioFormat("pcm_s16le", 22050).samples_in(10)


def test_bad_rate_and_channels():
    with pytest.raises(ValueError, match=r"^sample rate 11025 is not supported; use one of 8000, 16000"):
        AudioFormat("pcm_s16le", 11025)
    with pytest.raises(ValueError, match=r"^3 channels is not supported; use 1 \(mono\) or 2 \(stereo\)$"):
        AudioFormat("pcm_s16le", 8000, 3)
    with pytest.raises(
        ValueError, match=r"^encoding 'pcm_s8' is not supported; use one of pcm_s16le, pcm_f32le, pcm_mulaw, pcm_alaw$"
    ):
        AudioFormat("pcm_s8", 8000)


@pytest.mark.parametrize(("encoding", "code"), [("pcm_mulaw", 0xFF), ("pcm_alaw", 0xD5), ("pcm_s16le", 0)])
def test_silence_codes(encoding, code):
    silence = AudioFormat(encoding, 8000).silence(4)
    assert silence.dtype == Encoding(encoding).dtype
    assert (silence == code).all()


def test_chunk_properties_and_equality():
    fmt = AudioFormat("pcm_s16le", 8000)
    data = np.arange(80, dtype=np.int16)
    chunk = AudioChunk(data, fmt, pts=160)
    assert (chunk.samples, chunk.end_pts, chunk.duration) == (80, 240, 0.01)
    assert chunk == AudioChunk(data.copy(), fmt, pts=160)
    assert chunk != AudioChunk(data.astype(np.int32), fmt, pts=160)
    assert chunk.tobytes() == data.astype("<i2").tobytes()
    assert str(fmt) == "pcm_s16le 8000 Hz mono"
