"""G.711 and resampling speed: ours and audioop side by side in one run, best of N.

    python benchmarks/codecs.py [--repeat 15] [--speech FILE.wav]

G.711 rows time one call on a 60 ms frame (480 samples at 8 kHz; every frame of the speech in
turn, since audioop's encoder is faster on quiet frames) and on a 10 s buffer; the ratio is
audioop's time over ours (above 1: ours is faster). Resampling rows time one stream
through ``StreamResampler`` fed 20 ms chunks (a TTS chunk size) or a whole 10 s buffer, then
flushed, in times real time; the converter rows time the whole stage core per 20 ms chunk
(decode, resample, encode, frames). Each figure is the best of ``--repeat`` runs, ours and
the reference interleaved, so that noise from other processes on the machine inflates neither
side. The signal is 10 s of speech (a shared recording when present, else a synthetic one).
"""

from __future__ import annotations

import argparse
import timeit
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soxr
from corpus import SPEECH_DIR

from rtstream.audio import g711
from rtstream.audio.resample import StreamResampler
from rtstream.frames import AudioChunk, AudioFormat, Encoding
from rtstream.stages.converter import ConverterCore
from rtstream.wavfile import read_wav

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

SPEECH = SPEECH_DIR / "speech_a.wav"
SECONDS = 10
BUDGET = 0.02  # seconds per timed run, at least


def speech(rate: int, path: Path) -> tuple[np.ndarray, str]:
    """10 s of speech at ``rate`` as float32, and where it came from."""
    if path.is_file():
        pcm, fmt = read_wav(path)
        x = pcm.astype(np.float32) / 32768
        if x.ndim == 2:
            x = x.mean(axis=1)
        source = path.name
        if fmt.sample_rate != rate:
            x = soxr.resample(x, fmt.sample_rate, rate, "VHQ")
    else:
        x, source = np.zeros(0, dtype=np.float32), "synthetic"
    n = SECONDS * rate
    if len(x) < n:  # synthetic: voiced harmonics under a syllable-rate envelope, plus noise
        t = np.arange(n) / rate
        rng = np.random.default_rng(0)
        voiced = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 12) if 140 * k < rate / 2)
        x = (0.15 * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * voiced + 0.01 * rng.standard_normal(n)).astype(np.float32)
        source = "synthetic"
    return x[:n].astype(np.float32), source


def best_of(repeat: int, *fns: Callable[[], object]) -> list[float]:
    """Seconds per call of each function: best of ``repeat`` interleaved runs."""
    timers = [timeit.Timer(fn) for fn in fns]
    loops = []
    for timer in timers:
        number, _ = timer.autorange()
        loops.append(max(1, round(number * BUDGET / 0.2)))
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, (timer, number) in enumerate(zip(timers, loops, strict=True)):
            best[i] = min(best[i], timer.timeit(number) / number)
    return best


def ns(seconds: float) -> str:
    return f"{seconds * 1e9:,.0f} ns"


def g711_rows(repeat: int, x8k: np.ndarray) -> list[tuple[str, ...]]:
    """60 ms: every 480-sample frame of the speech in turn (loud and quiet ones), time per frame."""
    pcm = np.rint(x8k * 32768).clip(-32768, 32767).astype(np.int16)
    frames = [pcm[i : i + 480].copy() for i in range(0, len(pcm) - 479, 480)]
    rows = []
    for law, encode, decode, ref_encode, ref_decode in (
        ("μ-law", g711.ulaw_encode, g711.ulaw_decode, audioop.lin2ulaw, audioop.ulaw2lin),
        ("A-law", g711.alaw_encode, g711.alaw_decode, audioop.lin2alaw, audioop.alaw2lin),
    ):
        for arrays, label, target in ((frames, "60 ms (480)", 1.0), ([pcm], f"{SECONDS} s ({len(pcm):,})", 3.0)):
            raw = [a.tobytes() for a in arrays]
            codes = [encode(a) for a in arrays]
            coded = [c.tobytes() for c in codes]
            for op, ours_fn, ref_fn, ours_in, ref_in in (
                ("encode", encode, ref_encode, arrays, raw),
                ("decode", decode, ref_decode, codes, coded),
            ):
                ours, ref = best_of(
                    repeat,
                    lambda: [ours_fn(a) for a in ours_in],  # noqa: B023  (timed before the loop moves on)
                    lambda: [ref_fn(b, 2) for b in ref_in],  # noqa: B023
                )
                ours, ref = ours / len(arrays), ref / len(arrays)
                rows.append((f"{law} {op}", label, ns(ours), ns(ref), f"{ref / ours:.2f}×", f"≥ {target:g}×"))
    return rows


def resample_rows(repeat: int, path: Path) -> list[tuple[str, ...]]:
    rows = []
    for in_rate, out_rate in ((24000, 8000), (16000, 8000), (8000, 16000), (48000, 16000)):
        x, _ = speech(in_rate, path)
        name = f"resample {in_rate // 1000}k→{out_rate // 1000}k"
        step = in_rate // 50
        chunks = [x[i : i + step] for i in range(0, len(x), step)]
        resampler = StreamResampler(in_rate, out_rate)

        def streamed(resampler: StreamResampler = resampler, chunks: list[np.ndarray] = chunks) -> None:
            for chunk in chunks:
                resampler.process(chunk)
            resampler.flush()

        def whole(resampler: StreamResampler = resampler, x: np.ndarray = x) -> None:
            resampler.process(x)
            resampler.flush()

        per_stream, per_buffer = best_of(repeat, streamed, whole)
        rows.append(
            (name, "20 ms chunks", ns(per_stream / len(chunks)), "—", f"{SECONDS / per_stream:,.0f}× rt", "≥ 200× rt")
        )
        rows.append((name, f"{SECONDS} s buffer", ns(per_buffer), "—", f"{SECONDS / per_buffer:,.0f}× rt", "≥ 200× rt"))
    return rows


def converter_rows(repeat: int, path: Path) -> list[tuple[str, ...]]:
    rows = []
    for fmt_in, fmt_out in (
        (AudioFormat(Encoding.PCM_S16LE, 24000), AudioFormat(Encoding.PCM_MULAW, 8000)),
        (AudioFormat(Encoding.PCM_MULAW, 8000), AudioFormat(Encoding.PCM_S16LE, 16000)),
    ):
        x, _ = speech(fmt_in.sample_rate, path)
        pcm = np.rint(x * 32768).clip(-32768, 32767).astype(np.int16)
        data = pcm if fmt_in.encoding is Encoding.PCM_S16LE else g711.ulaw_encode(pcm)
        step = fmt_in.sample_rate // 50
        chunks = [AudioChunk(data[i : i + step], fmt_in, pts=i) for i in range(0, len(data), step)]

        def run(
            chunks: list[AudioChunk] = chunks, fmt_in: AudioFormat = fmt_in, fmt_out: AudioFormat = fmt_out
        ) -> None:
            core = ConverterCore(fmt_out, input_format=fmt_in)
            for chunk in chunks:
                core.audio(chunk)
            core.flush()

        [per_stream] = best_of(repeat, run)
        rates = f"{fmt_in.sample_rate // 1000}k→{fmt_out.encoding} {fmt_out.sample_rate // 1000}k"
        name = f"converter {fmt_in.encoding} {rates}"
        rows.append((name, "20 ms chunks", ns(per_stream / len(chunks)), "—", f"{SECONDS / per_stream:,.0f}× rt", "—"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per figure; the best counts")
    parser.add_argument("--speech", type=Path, default=SPEECH, help="a 16-bit WAV of speech (else synthetic)")
    args = parser.parse_args()
    _, source = speech(8000, args.speech)
    rows = [
        *g711_rows(args.repeat, speech(8000, args.speech)[0]),
        *resample_rows(args.repeat, args.speech),
        *converter_rows(args.repeat, args.speech),
    ]
    header = ("case", "input", "ours / call", "audioop / call", "ratio or speed", "target")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    print(
        f"G.711 and resampling: best of {args.repeat} runs; signal: {SECONDS} s of speech ({source}); "
        "ratio = audioop / ours"
    )
    for i, row in enumerate((header, *rows)):
        left = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        print("  ".join(left + [cell.rjust(w) for cell, w in zip(row[2:], widths[2:], strict=True)]))
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
