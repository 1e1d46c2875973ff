"""What pause_breath costs: time per frame through its core, and per synthesized breath.

A recording (speech_a.wav, 16 kHz) is cut into words by energy, punctuated by its pauses and
looped to 60 s; it goes through the core in 20 ms chunks. The reference run carries the same
audio with no transcript, so the core only passes it on; the ratio column is each run's time
over the reference's. Printed: per-push time percentiles (µs), total time per second of audio,
and the real-time factor (audio seconds per second of processing).

    python benchmarks/pause_breath_speed.py [--seconds 60] [--wav PATH]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from corpus import SPEECH_DIR
from pause_breath_listen import frames_for, guessed_transcript, segment

from rtstream.audio.breath import breath
from rtstream.frames import UtteranceStart, WordTimings
from rtstream.markup import BREATH_TYPES
from rtstream.stages.pause_breath import PauseBreath
from rtstream.stages.pause_breath.core import PauseBreathCore
from rtstream.stats import Quantiles
from rtstream.wavfile import read_wav


def looped(audio: np.ndarray, spans: list[tuple[float, float]], rate: int, seconds: float):
    """The recording repeated until it lasts ``seconds``, with its word spans repeated alongside."""
    length = len(audio) / rate
    times = max(1, int(seconds // length))
    all_spans = [(a + i * length, b + i * length) for i in range(times) for a, b in spans]
    return np.tile(audio, times), all_spans


def run(frames: list, config: PauseBreath, fmt) -> tuple[Quantiles, float, object]:
    core = PauseBreathCore(config, fmt)
    per_push = Quantiles()
    started = time.perf_counter()
    for frame in frames:
        before = time.perf_counter()
        core.push(frame, 0.0)
        per_push.add(time.perf_counter() - before)
    core.end()
    return per_push, time.perf_counter() - started, core.counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--wav", default=str(SPEECH_DIR / "speech_a.wav"))
    args = parser.parse_args()
    recording, fmt = read_wav(Path(args.wav))
    audio, spans = looped(recording, segment(recording, fmt.sample_rate), fmt.sample_rate, args.seconds)
    text = guessed_transcript(spans)
    shaped = frames_for(text, audio, fmt, spans)
    plain = [UtteranceStart("demo", "") if isinstance(f, UtteranceStart) else f for f in shaped]
    timings = [f for f in shaped if isinstance(f, WordTimings)]
    after = [f for f in shaped if not isinstance(f, WordTimings)]
    after[-1:-1] = timings  # every timing after the audio: the core holds it all
    seconds = len(audio) / fmt.sample_rate
    runs = [
        ("reference: no transcript", plain, PauseBreath()),
        ("timings with the audio", shaped, PauseBreath()),
        ("… and a breath at every sentence end", shaped, PauseBreath(breath_probability=1.0, breath_min_interval=0)),
        ("timings after all the audio", after, PauseBreath(max_hold=min(60.0, seconds + 1))),
    ]
    print(f"{args.wav}: looped to {seconds:.1f} s, {fmt}, {len(spans)} words, 20 ms chunks\n")
    print(
        f"{'run':<38} {'p50 µs':>8} {'p99 µs':>8} {'max µs':>9} {'ms per s':>9} "
        f"{'x real time':>12} {'ratio':>6} {'inserted':>9}"
    )
    reference = None
    for name, frames, config in runs:
        per_push, total, counts = run(frames, config, fmt)
        reference = reference or total
        s = per_push.summary(scale=1e6)
        print(
            f"{name:<38} {s.p50:>8.1f} {s.p99:>8.1f} {s.max:>9.0f} {1000 * total / seconds:>9.2f} "
            f"{seconds / total:>12.0f} {total / reference:>6.2f} {counts.inserted_samples / fmt.sample_rate:>8.1f}s"
        )
    print(f"\n{'breath synthesis':<20} " + " ".join(f"{kind + ' µs':>10}" for kind in BREATH_TYPES))
    rng = np.random.default_rng(0)
    for rate in (8000, 16000, 48000):
        cells = []
        for kind in BREATH_TYPES:
            length = round((0.55 if kind == "sigh" else 0.22) * rate)
            took = Quantiles()
            for _ in range(100):
                before = time.perf_counter()
                breath(kind, length, rate, 0.01, rng)
                took.add(time.perf_counter() - before)
            cells.append(f"{took.percentile(50) * 1e6:>10.0f}")
        print(f"{f'{rate} Hz (p50)':<20} " + " ".join(cells))


if __name__ == "__main__":
    main()
