"""Listen to pause_breath: speech with word timings through the stage into WAV files.

Two sources of speech with word timings, until the TTS simulator can provide them:

* ``--say TEXT``: espeak-ng speaks the transcript (tags stripped); its word events give each
  word's start, and the last loud 10 ms before the next word gives its end. Needs
  ``apt-get install espeak-ng`` (the library libespeak-ng.so.1).
* ``--wav FILE``: a recording (e.g. ../shared/data/speech/speech_a.wav) cut into words by
  energy (10 ms frames more than 35 dB under the loudest are silence; shorter dips are inside
  a word). Its transcript is unknown, so the words are numbered and the punctuation is taken
  from the speaker's own pauses: a pause of 250 ms or more ends a sentence, 120 ms or more is
  a comma. Give ``--text`` with as many words to use a transcript of your own instead.

Each run writes the input and the shaped output side by side under ``out/pause_breath/`` and
prints where each pause and breath went. Word timings reach the stage one word at a time,
right after the audio chunk holding the word's end, as a streaming TTS would send them.

    python benchmarks/pause_breath_listen.py                       # both demos, default settings
    python benchmarks/pause_breath_listen.py --wav ../shared/data/speech/speech_b.wav --seed 3
"""

from __future__ import annotations

import argparse
import ctypes
import sys
from pathlib import Path

import numpy as np
import trio
from corpus import SPEECH_DIR

from rtstream.frames import AudioChunk, AudioFormat, UtteranceEnd, UtteranceStart, Word, WordTimings
from rtstream.markup import strip_tags
from rtstream.stages.pause_breath import PauseBreath
from rtstream.stages.pause_breath.script import read_script
from rtstream.testing import run_stages
from rtstream.wavfile import read_wav, write_wav

SAY = (
    "Hello, and thanks for calling. [breath] I can help you with your order today. "
    "First, I need your account number; it is on the top of your bill. "
    "Do you have it with you? [pause 400ms] Great! Let me look that up… "
    "[sigh] The system is a little slow — [emphasis] sorry about that. "
    "Okay: I found it. Your order ships tomorrow."
)
FRAME = 0.010
SILENCE_DB = 35.0


def espeak(text: str) -> tuple[np.ndarray, int, list[tuple[float, float]]]:
    """Speak ``text`` with espeak-ng: samples, rate, and (start, end) seconds of each word."""
    try:
        lib = ctypes.CDLL("libespeak-ng.so.1")
    except OSError:
        sys.exit("espeak-ng is not installed: apt-get install espeak-ng (or use --wav)")

    class Event(ctypes.Structure):
        _fields_ = [
            ("type", ctypes.c_int),
            ("unique_identifier", ctypes.c_uint),
            ("text_position", ctypes.c_int),
            ("length", ctypes.c_int),
            ("audio_position", ctypes.c_int),
            ("sample", ctypes.c_int),
            ("user_data", ctypes.c_void_p),
            ("id", ctypes.c_char * 8),
        ]

    pieces: list[bytes] = []
    events_at: list[tuple[int, int]] = []  # (character offset, sample) of each word event

    @ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(Event))
    def collect(wav, count, events):
        if count > 0:
            pieces.append(ctypes.string_at(wav, 2 * count))
        i = 0
        while events[i].type != 0:  # espeakEVENT_LIST_TERMINATED
            if events[i].type == 1:  # espeakEVENT_WORD
                events_at.append((events[i].text_position - 1, events[i].sample))
            i += 1
        return 0

    rate = lib.espeak_Initialize(2, 0, None, 0)  # AUDIO_OUTPUT_SYNCHRONOUS
    lib.espeak_SetSynthCallback(collect)
    encoded = text.encode()
    lib.espeak_Synth(encoded, len(encoded) + 1, 0, 0, 0, 0, None, None)
    lib.espeak_Synchronize()
    audio = np.frombuffer(b"".join(pieces), dtype=np.int16).copy()
    starts = _word_starts(text, events_at, len(audio))
    loud = _loud_frames(audio, rate)
    hop = round(FRAME * rate)
    spans = []
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else len(audio)
        base = start // hop * hop
        frames = np.flatnonzero(loud[start // hop : max(stop // hop, start // hop + 1)])
        first = max(base + frames[0] * hop, start) if frames.size else start
        last = min(base + (frames[-1] + 1) * hop, stop) if frames.size else start
        spans.append((first / rate, max(last, first) / rate))
    return audio, rate, spans


def _word_starts(text: str, events: list[tuple[int, int]], total: int) -> list[int]:
    """The first event sample of each spoken word of ``text``.

    espeak may split a word into two events or join a short word to the one before ("on the");
    a word without an event gets a share of the time from the word before, by letters.
    """
    bounds, at = [], 0
    for word in text.split():
        at = text.index(word, at)
        if any(ch.isalnum() for ch in word):
            bounds.append((at, at + len(word), sum(ch.isalnum() for ch in word)))
        at += len(word)
    found: dict[int, int] = {}
    for offset, sample in events:
        for i, (lo, hi, _) in enumerate(bounds):
            if lo <= offset < hi:
                found.setdefault(i, sample)
    starts = []
    for i in range(len(bounds)):
        if i in found:
            starts.append(found[i])
            continue
        j = next((j for j in range(i + 1, len(bounds)) if j in found), None)  # the next word with an event
        after = found[j] if j is not None else total
        before = starts[-1] if starts else 0
        letters = [bounds[m][2] for m in range(i - 1 if starts else i, j if j is not None else len(bounds))]
        starts.append(before + (after - before) * (letters[0] if starts else 0) // max(sum(letters), 1))
    return starts


def _loud_frames(audio: np.ndarray, rate: int) -> np.ndarray:
    hop = round(FRAME * rate)
    frames = audio[: len(audio) // hop * hop].astype(np.float64).reshape(-1, hop)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-9)
    return level > level.max() - SILENCE_DB


def segment(
    audio: np.ndarray, rate: int, *, min_gap: float = 0.02, min_word: float = 0.05
) -> list[tuple[float, float]]:
    """Word-like stretches of loud audio: dips shorter than ``min_gap`` are inside a word."""
    loud = _loud_frames(audio if audio.ndim == 1 else audio.mean(axis=1), rate)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], loud.astype(np.int8), [0]))))
    runs = [[a * FRAME, b * FRAME] for a, b in zip(edges[::2], edges[1::2], strict=True)]
    merged: list[list[float]] = []
    for run in runs:
        if merged and run[0] - merged[-1][1] < min_gap:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    return [(a, b) for a, b in merged if b - a >= min_word]


def guessed_transcript(spans: list[tuple[float, float]]) -> str:
    """Numbered words, punctuated by the pauses after them."""
    words, capital = [], True
    for i, (_, end) in enumerate(spans):
        pause = spans[i + 1][0] - end if i + 1 < len(spans) else 0.0
        word = f"{'W' if capital else 'w'}{i + 1}"
        capital = pause >= 0.25
        words.append(word + ("." if capital else "," if pause >= 0.12 else ""))
    return " ".join(words)


def frames_for(text: str, audio: np.ndarray, fmt: AudioFormat, spans: list[tuple[float, float]]) -> list:
    """The utterance as a streaming TTS sends it: 20 ms chunks, each word's timing after its end."""
    words = read_script(text).words
    size = fmt.sample_rate // 50
    frames: list = [UtteranceStart("demo", text)]
    k = 0
    for seq, at in enumerate(range(0, len(audio), size)):
        frames.append(AudioChunk(audio[at : at + size], fmt, pts=at, seq=seq, utterance="demo"))
        while k < len(spans) and round(spans[k][1] * fmt.sample_rate) <= at + size:
            frames.append(WordTimings("demo", (Word(words[k].strip(".,;:?!…"), *spans[k]),)))
            k += 1
    return [*frames, UtteranceEnd("demo")]


async def shape(
    name: str, text: str, audio: np.ndarray, fmt: AudioFormat, spans, stage: PauseBreath, out: Path
) -> None:
    words = read_script(text).words
    if len(words) != len(spans):
        sys.exit(f"{name}: the transcript has {len(words)} words but the audio has {len(spans)}")
    collected = await run_stages([stage], frames_for(text, audio, fmt, spans), format=fmt)
    stats = collected.report.stages[1].statistics
    out.mkdir(parents=True, exist_ok=True)
    before, after = out / f"{name}_original.wav", out / f"{name}_shaped.wav"
    write_wav(before, audio, fmt)
    write_wav(after, collected.audio(), fmt)
    rate = fmt.sample_rate
    print(f"\n{name}: {len(audio) / rate:.2f} s of {fmt}, {len(words)} words")
    print(f"  transcript: {text}")
    print(f"  TTS text:   {strip_tags(text)}")
    print(f"  {'after word':<24} {'at (input)':>10} {'inserted':>9}")
    ends = [round(b * rate) for _, b in spans]
    position = 0
    for chunk in collected.chunks:
        if chunk.seq is not None:
            position += chunk.samples
            continue
        k = int(np.searchsorted(ends, position, side="right"))  # inserted chunks carry no sequence number
        print(
            f"  {words[k - 1] if k else '(before the first)':<24} "
            f"{position / rate:>9.2f}s {chunk.samples / rate:>8.3f}s"
        )
    print(f"  pauses {stats['pauses']}, breaths {stats['breaths']}")
    print(
        f"  inserted {stats['seconds_inserted']:.2f} s: "
        f"{len(audio) / rate:.2f} s -> {len(collected.audio()) / rate:.2f} s"
    )
    print(f"  held at most {stats['held_max_seconds'] * 1000:.0f} ms; skipped: {stats['skipped'] or 'none'}")
    print(f"  listen: {before}  then  {after}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--say", help="a transcript (with tags) for espeak-ng to speak")
    parser.add_argument("--wav", help="a 16-bit WAV recording to cut into words by energy")
    parser.add_argument("--text", help="the recording's transcript, one word per energy segment")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--breath-probability", type=float, default=0.7)
    parser.add_argument("--out", default="out/pause_breath")
    args = parser.parse_args()
    # No clock runs here (frames go in as fast as the stage takes them), so max_wait never fires.
    stage = PauseBreath(seed=args.seed, breath_probability=args.breath_probability, breath_min_interval=1.5)
    jobs = []
    if args.say or not args.wav:
        audio, rate, spans = espeak(strip_tags(args.say or SAY))
        jobs.append(("espeak", args.say or SAY, audio, AudioFormat("pcm_s16le", rate), spans))
    if args.wav or not args.say:
        path = Path(args.wav) if args.wav else SPEECH_DIR / "speech_a.wav"
        audio, fmt = read_wav(path)
        spans = segment(audio, fmt.sample_rate)
        jobs.append((path.stem, args.text or guessed_transcript(spans), audio, fmt, spans))
    for name, text, audio, fmt, spans in jobs:
        trio.run(shape, name, text, audio, fmt, spans, stage, Path(args.out))


if __name__ == "__main__":
    main()
