"""The receivers' in-utterance underruns: fill and dry playout between the speech frames of a reply.

The counter must see what a starved pacer sends (digital silence in every encoding, its comfort
noise), and must not see the pauses of speech: the recordings' and the synthesized speech's.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtstream.audio.codec import from_float32
from rtstream.audio.noise import comfort_noise
from rtstream.audio.resample import StreamResampler
from rtstream.frames import AudioFormat, Encoding
from rtstream.simulators.speech import synthesize
from rtstream.simulators.telephony import TelephonyCall, TelephonySettings
from rtstream.simulators.telephony.underruns import ReplyUnderruns
from rtstream.wavfile import read_wav
from rtstream.wire.telephony import PROTOCOLS, SendMark, SendMedia

ULAW = AudioFormat(Encoding.PCM_MULAW, 8000)
ENCODINGS = [Encoding.PCM_S16LE, Encoding.PCM_MULAW, Encoding.PCM_ALAW]
SPEECH = "/work/shared/data/speech/speech_{}.wav"
TEXT = (
    "Hello, and thanks for calling. Your order left our warehouse on Monday. It should arrive tomorrow. Anything else?"
)


def fmt(encoding: Encoding) -> AudioFormat:
    return AudioFormat(encoding, 8000)


def frames_of(samples: np.ndarray, f: AudioFormat, frame_ms: float) -> list[bytes]:
    """Float32 samples at 8 kHz in ``f``, cut into whole frames."""
    n = f.samples_in(frame_ms)
    data = from_float32(samples[: len(samples) // n * n], f.encoding).tobytes()
    size = n * f.frame_bytes
    return [data[i : i + size] for i in range(0, len(data), size)]


def at_8k(samples: np.ndarray, rate: int) -> np.ndarray:
    if rate == 8000:
        return samples
    resampler = StreamResampler(rate, 8000)
    return np.concatenate([resampler.process(samples.astype(np.float32)), resampler.flush()])


def speech(source: str) -> np.ndarray:
    """Speech at 8 kHz from its first loud sample to its last: the recordings, or the synthesizer (24 kHz, resampled)."""
    if source == "synthesized":
        samples = at_8k(synthesize(TEXT, 24000)[0], 24000)
    else:
        pcm, wav = read_wav(SPEECH.format(source))
        samples = at_8k(pcm.astype(np.float32) / 32768, wav.sample_rate)
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return samples[loud[0] : loud[-1] + 1]


def counter(f: AudioFormat, reply_idle: float = 0.7) -> ReplyUnderruns:
    return ReplyUnderruns(f, reply_idle=reply_idle, noise_level=-60.0, noise_seed=0)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_fill_is_digital_silence_or_the_pacers_comfort_noise(encoding):
    f = fmt(encoding)
    c = counter(f)
    silence = f.silence(160).tobytes()
    assert c.is_fill(silence)
    if encoding is not Encoding.PCM_S16LE:  # a quiet pause rounds to zero codes of both signs: not fill
        assert not c.is_fill(from_float32(np.tile(np.float32([1e-4, -1e-4]), 80), encoding).tobytes())
    noise = comfort_noise(f, 160, -60.0, 0)
    assert all(c.is_fill(frame.tobytes()) for frame in noise)
    assert all(c.is_fill(frame.tobytes()) for frame in comfort_noise(f, 480, -60.0, 0))  # any frame size
    assert not any(c.is_fill(frame.tobytes()) for frame in comfort_noise(f, 160, -60.0, 1))  # another pacer's seed
    one_sample = from_float32(np.r_[np.float32(0.01), np.zeros(159, np.float32)], encoding).tobytes()
    assert not c.is_fill(one_sample)
    assert not ReplyUnderruns(f, reply_idle=0.7).is_fill(noise[0].tobytes())  # comfort noise not looked for


@pytest.mark.parametrize("source", ["a", "b", "c", "synthesized"])
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("frame_ms", [20, 60])
def test_the_pauses_of_speech_are_never_fill(source, encoding, frame_ms):
    f = fmt(encoding)
    frames = frames_of(speech(source), f, frame_ms)
    c = counter(f)
    assert [i for i, frame in enumerate(frames) if c.is_fill(frame)] == []
    for frame in frames:
        c.media(frame, frame_ms / 1000, 0.0)
    c.end_reply(mark=True)
    assert c.report() | {"speech_ms": 0} == {
        "frames": 0, "ms": 0.0, "fill_frames": 0, "fill_ms": 0.0, "gaps": 0, "gap_ms": 0.0, "replies": 1, "speech_ms": 0
    }  # fmt: skip
    assert c.report()["speech_ms"] == pytest.approx(len(frames) * frame_ms)


def test_before_the_room_tone_the_synthesizers_pauses_were_digital_silence():
    """The check the room tone answers: zeros in the pauses would be counted as fill (18 frames here)."""
    samples = speech("synthesized")
    zeroed = np.where(np.abs(samples) < 40 / 32768, np.float32(0), samples)  # the tone taken out again
    f = fmt(Encoding.PCM_S16LE)
    assert sum(counter(f).is_fill(frame) for frame in frames_of(zeroed, f, 60)) > 10


def reply(c: ReplyUnderruns, pattern: str, *, frame: float = 0.02, gaps: dict[int, float] | None = None) -> None:
    """Feed ``pattern``: ``s`` a speech frame, ``.`` a frame of fill, ``|`` a mark, ``x`` a clear."""
    f = c.format
    loud = from_float32(np.full(160, 0.1, np.float32), f.encoding).tobytes()
    quiet = f.silence(160).tobytes()
    for i, ch in enumerate(pattern):
        if ch in "|x":
            c.end_reply(mark=ch == "|")
        else:
            c.media(loud if ch == "s" else quiet, frame, (gaps or {}).get(i, 0.0))


@pytest.mark.parametrize(
    "pattern,fill,replies",
    [
        ("sssssssss|", 0, 1),  # healthy
        ("...sss..ss.s...|....sss|", 3, 2),  # a starved reply; the waits before and the tails after do not count
        ("sss...x..sss|", 0, 2),  # a clear ends the reply: what follows is the next one's wait
        ("|ss" + "." * 60 + "ss|", 60, 1),  # once marks come, a stall of any length inside a reply is damage
    ],
)
def test_fill_counts_between_speech_frames_of_one_reply(pattern, fill, replies):
    c = counter(fmt(Encoding.PCM_MULAW))
    reply(c, pattern)
    r = c.report()
    assert (r["fill_frames"], r["fill_ms"], r["frames"], r["replies"]) == (
        fill,
        pytest.approx(fill * 20),
        fill,
        replies,
    )


def test_without_marks_a_long_quiet_is_the_line_between_two_replies():
    c = counter(fmt(Encoding.PCM_S16LE), reply_idle=0.3)
    reply(c, "ss" + "." * 14 + "ss" + "." * 15 + "ss")  # 280 ms of fill inside, 300 ms between
    assert (c.report()["fill_frames"], c.replies) == (14, 2)
    reply(c, "|ss" + "." * 20 + "ss")  # once a mark came, marks alone end replies
    assert (c.report()["fill_frames"], c.replies) == (34, 3)


def test_dry_playout_inside_a_reply_counts_as_a_gap_in_ms_and_frames():
    c = counter(fmt(Encoding.PCM_S16LE))
    reply(c, "ssssss|ss", gaps={1: 0.05, 3: 0.01, 7: 0.2})  # the gap before the reply's first frame does not count
    r = c.report()
    assert (r["gaps"], r["gap_ms"], r["fill_frames"]) == (2, pytest.approx(60.0), 0)
    assert (r["frames"], r["ms"]) == (3, pytest.approx(60.0))  # 60 ms of 20 ms frames


@given(st.lists(st.sampled_from("s."), max_size=60))
def test_fill_counted_is_the_fill_between_the_first_and_last_speech(pattern):
    c = counter(fmt(Encoding.PCM_ALAW), reply_idle=100.0)
    reply(c, "".join(pattern) + "|")
    text = "".join(pattern).strip(".")
    assert c.report()["fill_frames"] == text.count(".")


@pytest.mark.parametrize("policy", ["silence", "comfort_noise"])
def test_the_telephony_simulator_reports_the_fill_between_marks(policy):
    call = TelephonyCall(TelephonySettings(protocol="twilio"), 1)
    side = PROTOCOLS["twilio"].bridge(ULAW)
    side.receive(call.opening()[1])  # the bridge learns the stream id
    loud = from_float32(np.full(160, 0.1, np.float32), Encoding.PCM_MULAW).tobytes()
    fill = ULAW.silence(160).tobytes() if policy == "silence" else comfort_noise(ULAW, 160, -60.0, 0)[7].tobytes()
    for n, payload in enumerate([fill, loud, fill, fill, loud, loud, fill]):
        call.receive(side.send(SendMedia(payload)), n * 0.02)
    call.receive(side.send(SendMark("utt-1")), 0.14)
    r = call.report()["in_utterance_underruns"]
    assert (r["fill_frames"], r["fill_ms"], r["replies"], r["gaps"]) == (2, pytest.approx(40.0), 1, 0)
