"""tone, wav_source, wav_sink and null_sink on virtual time."""

import numpy as np
import pytest

from rtstream.frames import AudioFormat, Encoding, UtteranceEnd, UtteranceStart
from rtstream.params import ParamError
from rtstream.pipeline import assemble
from rtstream.runner import run_pipeline
from rtstream.stages.null import NullSink
from rtstream.stages.tone import Tone
from rtstream.stages.wav import WavSink, WavSource
from rtstream.testing import run_stage
from rtstream.wavfile import WavError, read_wav, write_wav


async def test_tone_in_real_time_is_exact(autojump_clock):
    out = await run_stage(Tone(duration=1.0, sample_rate=8000, chunk_ms=20))
    assert isinstance(out.frames[0], UtteranceStart) and isinstance(out.frames[-1], UtteranceEnd)
    assert [c.samples for c in out.chunks] == [160] * 50
    assert [c.pts for c in out.chunks] == list(range(0, 8000, 160))
    # chunk n leaves at n * 20 ms
    chunk_times = [t for t, f in out.received if f in out.chunks]
    assert chunk_times == pytest.approx([n * 0.02 for n in range(50)])


async def test_tone_frequency_and_level():
    out = await run_stage(Tone(duration=1.0, frequency=1000.0, level=-6.0, sample_rate=16000, speed=0))
    audio = out.audio().astype(np.float64) / 32768
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.argmax(spectrum) == 1000  # 1 Hz bins over one second
    assert np.max(np.abs(audio)) == pytest.approx(10 ** (-6 / 20), rel=1e-3)


@pytest.mark.parametrize("encoding", list(Encoding))
async def test_tone_in_every_encoding(encoding):
    out = await run_stage(Tone(duration=0.1, encoding=encoding, sample_rate=8000, channels=2, speed=0))
    fmt = AudioFormat(encoding, 8000, 2)
    assert all(c.format == fmt and c.data.dtype == encoding.dtype and c.data.shape[1] == 2 for c in out.chunks)
    assert sum(c.samples for c in out.chunks) == 800


async def test_tone_speed_runs_faster_than_real_time(autojump_clock):
    out = await run_stage(Tone(duration=3.0, speed=3.0))
    assert out.times[-1] == pytest.approx((3.0 - 0.02) / 3)  # the last 20 ms chunk, and the end with it


@pytest.fixture
def speech_wav(tmp_path):
    samples = np.random.default_rng(1).integers(-20000, 20000, 16000, dtype=np.int16)
    path = tmp_path / "speech.wav"
    write_wav(path, samples, AudioFormat("pcm_s16le", 16000))
    return path, samples


async def test_wav_source_fixed_chunks(speech_wav):
    path, samples = speech_wav
    out = await run_stage(WavSource(path=str(path), chunk_bytes=1001, speed=0))
    assert {c.samples for c in out.chunks[:-1]} == {500}
    assert np.array_equal(out.audio(), samples)
    assert [c.pts for c in out.chunks] == list(range(0, 16000, 500))


async def test_wav_source_random_chunks_are_seeded(speech_wav):
    path, samples = speech_wav
    one = await run_stage(WavSource(path=str(path), chunking="random", min_bytes=2, max_bytes=3000, seed=7, speed=0))
    two = await run_stage(WavSource(path=str(path), chunking="random", min_bytes=2, max_bytes=3000, seed=7, speed=0))
    sizes = [c.samples for c in one.chunks]
    assert sizes == [c.samples for c in two.chunks]
    assert len(set(sizes)) > 10 and min(sizes) >= 1 and max(sizes) <= 1500
    assert np.array_equal(one.audio(), samples)


async def test_wav_round_trip_through_the_sink(speech_wav, tmp_path):
    path, samples = speech_wav
    target = tmp_path / "out" / "copy.wav"
    sink = WavSink(path=str(target))
    report = await run_pipeline(assemble("copy", [WavSource(path=str(path), speed=0), sink]))
    assert report.status == "completed"
    copied, fmt = read_wav(target)
    assert fmt == AudioFormat("pcm_s16le", 16000)
    assert np.array_equal(copied, samples)
    assert report.stages[1].statistics["written"].samples == 16000


def _write_raw_wav(path, *, width=2, channels=1, rate=16000):
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(bytes(width * channels * 100))


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, r"^file not found: .*missing.wav$"),
        (lambda p: p.write_bytes(b"RIFF1234WAVEjunk"), r"^not a readable PCM WAV file \(.*\): "),
        (lambda p: p.write_text("hello"), r"^not a readable PCM WAV file \(it ends inside its header\): "),
        (
            lambda p: p.write_text("hello, this is not a WAV file"),
            r"^not a readable PCM WAV file \(file does not start with RIFF id\): ",
        ),
        (lambda p: _write_raw_wav(p, width=1), r"^has 8-bit samples; rtstream reads 16-bit PCM WAV files: "),
        (lambda p: _write_raw_wav(p, channels=3), r"^has 3 channels; use a mono or stereo file: "),
        (lambda p: _write_raw_wav(p, rate=11025), r"^has a sample rate of 11025 Hz; use one of 8000, 16000"),
    ],
)
def test_wav_problems_are_named(tmp_path, setup, message):
    path = tmp_path / "missing.wav"
    setup(path)
    with pytest.raises(WavError, match=message):
        read_wav(path)
    with pytest.raises(ParamError, match=r"^path: " + message.lstrip("^")):
        WavSource(path=str(path))


async def test_null_sink_counts(autojump_clock):
    pipeline = assemble("n", [Tone(duration=0.5, sample_rate=8000), NullSink()])
    await run_pipeline(pipeline)
    stats = pipeline.elements[1].statistics()
    assert (stats.received.chunks, stats.received.samples, stats.received.seconds) == (25, 4000, pytest.approx(0.5))
    assert stats.events == {"UtteranceEnd": 1, "UtteranceStart": 1}
