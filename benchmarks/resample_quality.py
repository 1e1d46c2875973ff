"""soxr quality recipes and sample types for streaming: speed, latency and fidelity, side by side.

    python benchmarks/resample_quality.py [--repeat 5] [--speech FILE.wav]

Per rate pair and recipe (float32 processing, and int16 for HQ), fed 20 ms chunks:
speed in times real time (best of ``--repeat``); held, the most output soxr holds back at once
(the latency it adds); edge, the gain at the top of the telephone band (0.425 × the lower
rate: 3.4 kHz at 8 kHz); alias, what is left of a tone above the new Nyquist frequency
(downsampling) or of the images above the old one (upsampling); SNR against a VHQ float64
one-shot reference on speech, over the band up to the edge frequency; and stream ≠ whole, the largest
difference in PCM16 steps between the streamed output and soxr's one-shot output of the same signal. The int16 rows
include soxr's own rounding and dither, so their alias and SNR figures sit at the PCM16 floor.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import soxr
from corpus import SPEECH_DIR

from rtstream.audio.codec import quantize
from rtstream.wavfile import read_wav

SPEECH = SPEECH_DIR / "speech_b.wav"
PAIRS = ((24000, 8000), (16000, 8000), (8000, 16000), (48000, 16000), (44100, 8000))
RECIPES = (("LQ", "float32"), ("MQ", "float32"), ("HQ", "float32"), ("VHQ", "float32"), ("HQ", "int16"))


def db(ratio: float) -> float:
    return 20 * np.log10(max(ratio, 1e-12))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def band_snr(y: np.ndarray, reference: np.ndarray, rate: int, top: float) -> float:
    """Signal to error in dB over the band up to ``top`` Hz (the recipes differ above it by design)."""
    n = min(len(y), len(reference))
    window = np.hanning(n)
    freqs = np.fft.rfftfreq(n, 1 / rate)
    band = freqs <= top
    signal = np.abs(np.fft.rfft(reference[:n] * window)[band]) ** 2
    error = np.abs(np.fft.rfft((y[:n] - reference[:n]) * window)[band]) ** 2
    return 10 * np.log10(signal.sum() / max(error.sum(), 1e-30))


def load_speech(path: Path) -> tuple[np.ndarray, int]:
    if path.is_file():
        pcm, fmt = read_wav(path)
        return pcm.astype(np.float32).reshape(len(pcm), -1).mean(axis=1).astype(np.float32) / 32768, fmt.sample_rate
    rng = np.random.default_rng(0)  # no recording: band-limited noise under a syllable envelope
    t = np.arange(16000 * 10) / 16000
    noise = soxr.resample(rng.standard_normal(len(t)).astype(np.float32), 16000, 8000)
    noise = soxr.resample(noise, 8000, 16000)[: len(t)]
    return (0.2 * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * noise).astype(np.float32), 16000


def stream(x: np.ndarray, in_rate: int, out_rate: int, quality: str, dtype: str) -> tuple[np.ndarray, float]:
    """Streamed output (as float) and the most output held back, in ms."""
    s = soxr.ResampleStream(in_rate, out_rate, 1, dtype, quality)
    data = quantize(x)[0] if dtype == "int16" else x
    step = in_rate // 50
    out, made, held = [], 0, 0.0
    for i in range(0, len(data), step):
        y = s.resample_chunk(data[i : i + step])
        out.append(y)
        made += len(y)
        held = max(held, (min(i + step, len(data)) * out_rate / in_rate - made) / out_rate * 1000)
    out.append(s.resample_chunk(data[:0], last=True))
    y = np.concatenate(out)
    return (y.astype(np.float32) / 32768 if dtype == "int16" else y), held


def speed(x: np.ndarray, in_rate: int, out_rate: int, quality: str, dtype: str, repeat: int) -> float:
    data = quantize(x)[0] if dtype == "int16" else x
    step = in_rate // 50
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    best = float("inf")
    for _ in range(repeat):
        s = soxr.ResampleStream(in_rate, out_rate, 1, dtype, quality)
        start = time.perf_counter()
        for chunk in chunks:
            s.resample_chunk(chunk)
        s.resample_chunk(data[:0], last=True)
        best = min(best, time.perf_counter() - start)
    return len(x) / in_rate / best


def tone(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(round(rate * seconds)) / rate)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per speed figure; the best counts")
    parser.add_argument("--speech", type=Path, default=SPEECH, help="a 16-bit WAV of speech (else synthetic noise)")
    args = parser.parse_args()
    speech, speech_rate = load_speech(args.speech)
    header = ("pair", "recipe", "speed", "held", "edge", "alias", "SNR", "stream ≠ whole")
    rows = []
    for in_rate, out_rate in PAIRS:
        x = soxr.resample(speech.astype(np.float64), speech_rate, in_rate, "VHQ").astype(np.float32)
        reference = soxr.resample(x.astype(np.float64), in_rate, out_rate, "VHQ")
        settle = slice(out_rate // 10, -out_rate // 10)
        edge_freq = 0.425 * min(in_rate, out_rate)
        for quality, dtype in RECIPES:
            y, held = stream(x, in_rate, out_rate, quality, dtype)
            whole = soxr.resample(quantize(x)[0] if dtype == "int16" else x, in_rate, out_rate, quality)
            whole = whole.astype(np.float32) / 32768 if dtype == "int16" else whole
            n = min(len(y), len(whole))
            lsb = int(np.max(np.abs(quantize(y[:n])[0].astype(np.int32) - quantize(whole[:n])[0])))
            snr = band_snr(y, reference, out_rate, edge_freq)
            edge_out, _ = stream(tone(edge_freq, in_rate), in_rate, out_rate, quality, dtype)
            edge = db(rms(edge_out[settle]) / rms(tone(edge_freq, out_rate)[settle]))
            if out_rate < in_rate:
                above, _ = stream(tone(0.6 * out_rate, in_rate), in_rate, out_rate, quality, dtype)
                alias = db(rms(above[settle]) / (0.5 / np.sqrt(2)))
            else:
                up, _ = stream(tone(1000, in_rate), in_rate, out_rate, quality, dtype)
                spectrum = np.abs(np.fft.rfft(up[settle] * np.hanning(len(up[settle]))))
                freqs = np.fft.rfftfreq(len(up[settle]), 1 / out_rate)
                alias = db(spectrum[freqs > in_rate / 2 + 100].max() / spectrum.max())
            rows.append(
                (
                    f"{in_rate // 1000}k→{out_rate // 1000}k"
                    if in_rate % 1000 == 0
                    else f"{in_rate / 1000:g}k→{out_rate // 1000}k",
                    f"{quality} {dtype}",
                    f"{speed(x, in_rate, out_rate, quality, dtype, args.repeat):,.0f}× rt",
                    f"{held:.0f} ms",
                    f"{edge:+.2f} dB",
                    f"{alias:.0f} dB",
                    f"{snr:.0f} dB",
                    f"{lsb} LSB",
                )
            )
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    print(
        f"soxr recipes, streamed in 20 ms chunks; speech: {args.speech.name if args.speech.is_file() else 'synthetic'}"
    )
    for i, row in enumerate((header, *rows)):
        print(
            "  ".join(
                [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
                + [c.rjust(w) for c, w in zip(row[2:], widths[2:], strict=True)]
            )
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
