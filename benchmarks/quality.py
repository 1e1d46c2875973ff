"""Speech quality through the jitter buffer, in PESQ, against zero-fill and a G.711 Appendix I port.

    python benchmarks/quality.py [--speech DIR] [--seed N]

Needs the ``bench`` extra (``pip install '.[bench]'``, the ``pesq`` package). Every recording in
DIR (16 kHz mono WAV; default ../shared/data/speech) runs through each trace at 8 kHz
(narrowband, resampled with soxr) and 16 kHz (wideband), in 20 ms packets, on simulated time:
the jitter buffer core gets the time passed in, so the figures do not depend on machine load.

Inbound traces (network packets: random loss, Gilbert-Elliott bursts, jitter) compare three
receivers: **zero-fill** and **G.711 App. I** play a static buffer whose delay is set so that
its mean playout delay equals ours (a fair latency budget), filling missing packets with
silence or with the Appendix's concealment; **ours** is ``JitterBuffer(direction="inbound")``.
Jitter is i.i.d. uniform in [0, J] on a 30 ms path, so at J = 200 ms packets also reorder.

The outbound trace is a TTS speaking sentence by sentence: each sentence (1-2.5 s) comes in
chunks of 10-120 ms at 8x real time after a stall of 0.4-1.6 s. The baselines play what has
arrived on a 10 ms clock from the first chunk on (silence or concealment while nothing has);
ours buffers with backpressure at 500 ms. Nothing is lost, so stalls show as interruptions.

"stretch" rows use no loss and no jitter: the buffer starts 180 ms above its target and
drains it (in pauses while within 100 ms of the band, inside speech beyond that). The kernel
row runs ``TimeStretch`` alone, alternating 1.05 and 0.95 every 2 s inside speech, to show
what PESQ makes of continuous stretching.

PESQ is P.862 (narrowband, MOS-LQO) and P.862.2 (wideband), against the clean input. Figures
are means over the recordings; interruptions (concealment of 150 ms or more) are totals.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import attrs
import numpy as np
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus import SPEECH_DIR

from rtstream.audio.stretch import TimeStretch
from rtstream.frames import AudioChunk, AudioFormat, UtteranceEnd, UtteranceStart
from rtstream.stages.jitter.core import JitterBuffer, JitterSettings
from rtstream.wavfile import read_wav

try:
    from pesq import pesq
except ImportError:  # pragma: no cover
    sys.exit("benchmarks/quality.py needs the pesq package: pip install '.[bench]'")

PACKET = 0.020
PATH = 0.030
INTERRUPTION = 0.150


# --------------------------------------------------------------------- the reference PLC


class AppendixI:
    """A plain port of the G.711 Appendix I reference concealment (10 ms frames, any rate multiple of 8 kHz)."""

    def __init__(self, rate: int) -> None:
        s = rate // 8000
        self.pitch_min, self.pitch_max = 40 * s, 120 * s
        self.overlap_max = self.pitch_max >> 2
        self.hist_len = self.pitch_max * 3 + self.overlap_max
        self.corr_len = 160 * s
        self.frame = 80 * s
        self.ola_incr = 32 * s
        self.ndec = 2 * s
        self.min_power = 250.0 * s
        self.history = np.zeros(self.hist_len)
        self.pitchbuf = np.zeros(self.hist_len)
        self.lastq = np.zeros(self.overlap_max)
        self.erasecnt = 0
        self.pitch = self.poverlap = self.poffset = self.pitchblen = 0

    def _save(self, x: np.ndarray) -> np.ndarray:
        self.history = np.concatenate((self.history[self.frame :], x))
        start = self.hist_len - self.frame - self.overlap_max
        return self.history[start : start + self.frame].copy()

    def good(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        if self.erasecnt:
            olen = min(self.poverlap + (self.erasecnt - 1) * self.ola_incr, self.frame)
            f = self._get(olen)
            gain = max(0.0, 1.0 - (self.erasecnt - 1) * 0.2)
            incr = 1.0 / olen
            lw = (1.0 - incr * np.arange(1, olen + 1)) * gain
            rw = incr * np.arange(1, olen + 1)
            x[:olen] = np.clip(lw * f + rw * x[:olen], -32768, 32767)
            self.erasecnt = 0
        return self._save(x)

    def _get(self, n: int) -> np.ndarray:
        out = np.empty(n)
        start = self.hist_len - self.pitchblen
        for i in range(n):
            out[i] = self.pitchbuf[start + self.poffset]
            self.poffset = (self.poffset + 1) % self.pitchblen
        return out

    @staticmethod
    def _ola(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        n = len(left)
        incr = 1.0 / n
        return (1 - incr * np.arange(1, n + 1)) * left + incr * np.arange(1, n + 1) * right

    def _scale(self, out: np.ndarray) -> np.ndarray:
        g = 1.0 - (self.erasecnt - 1) * 0.2 - 0.2 / self.frame * np.arange(self.frame)
        return out * g

    def bad(self) -> np.ndarray:
        end = self.hist_len
        if self.erasecnt == 0:
            self.pitchbuf = self.history.copy()
            self.pitch = self._findpitch()
            self.poverlap = self.pitch >> 2
            self.lastq = self.pitchbuf[end - self.poverlap :].copy()
            self.poffset = 0
            self.pitchblen = self.pitch
            s = end - self.pitchblen
            self.pitchbuf[end - self.poverlap :] = self._ola(self.lastq, self.pitchbuf[s - self.poverlap : s])
            self.history[end - self.poverlap :] = self.pitchbuf[end - self.poverlap :]
            out = self._get(self.frame)
        elif self.erasecnt in (1, 2):
            save = self.poffset
            tmp = self._get(self.poverlap)
            self.poffset = save
            while self.poffset > self.pitch:
                self.poffset -= self.pitch
            self.pitchblen += self.pitch
            s = end - self.pitchblen
            self.pitchbuf[end - self.poverlap :] = self._ola(self.lastq, self.pitchbuf[s - self.poverlap : s])
            out = self._get(self.frame)
            out[: self.poverlap] = self._ola(tmp, out[: self.poverlap])
            out = self._scale(out)
        elif self.erasecnt > 5:
            out = np.zeros(self.frame)
        else:
            out = self._scale(self._get(self.frame))
        self.erasecnt += 1
        return self._save(out)

    def _findpitch(self) -> int:
        buf = self.pitchbuf
        ell = buf[self.hist_len - self.corr_len :]
        r0 = self.hist_len - self.corr_len - self.pitch_max
        diff = self.pitch_max - self.pitch_min

        def score(j: int, step: int) -> float:
            seg = buf[r0 + j : r0 + j + self.corr_len : step]
            energy = max(float(seg @ seg), self.min_power)
            return float(seg @ ell[::step]) / math.sqrt(energy)

        best = max(range(0, diff + 1, self.ndec), key=lambda j: (score(j, self.ndec), j))
        lo, hi = max(best - self.ndec + 1, 0), min(best + self.ndec - 1, diff)
        best = max(range(lo, hi + 1), key=lambda j: (score(j, 1), -j))
        return self.pitch_max - best


# --------------------------------------------------------------------- traces


@attrs.frozen
class Trace:
    name: str
    lost: np.ndarray
    delay: np.ndarray
    """Network delay beyond the path's 30 ms, per packet."""


def loss_trace(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    return rng.random(n) < rate


def gilbert_elliott(
    n: int, rng: np.random.Generator, *, p: float = 0.025, r: float = 0.35, h: float = 0.9
) -> np.ndarray:
    """Bursty loss: good/bad states (bad entered with p, left with r), loss h in bad, none in good."""
    lost = np.zeros(n, bool)
    bad = False
    for k in range(n):
        bad = rng.random() < (1 - r if bad else p)
        lost[k] = bad and rng.random() < h
    return lost


def traces(n: int, rng: np.random.Generator) -> list[Trace]:
    zero = np.zeros(n)
    none = np.zeros(n, bool)
    return [
        Trace("loss 2%", loss_trace(n, 0.02, rng), zero),
        Trace("loss 5%", loss_trace(n, 0.05, rng), zero),
        Trace("loss 10%", loss_trace(n, 0.10, rng), zero),
        Trace("bursty G-E", gilbert_elliott(n, rng), zero),
        Trace("jitter 0", none, zero),
        Trace("jitter 50", none, rng.uniform(0, 0.050, n)),
        Trace("jitter 200", none, rng.uniform(0, 0.200, n)),
        Trace("jitter 50 + 5%", loss_trace(n, 0.05, rng), rng.uniform(0, 0.050, n)),
    ]


# --------------------------------------------------------------------- receivers


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def play_static(x: np.ndarray, size: int, missing: np.ndarray, rate: int, conceal: bool) -> np.ndarray:
    """A static playout: each packet plays on time or is replaced (silence or Appendix I)."""
    plc = AppendixI(rate) if conceal else None
    out = []
    frame = rate // 100
    for k in range(len(missing)):
        packet = x[k * size : (k + 1) * size].astype(np.float64)
        for f in range(size // frame):
            piece = packet[f * frame : (f + 1) * frame]
            if plc is None:
                out.append(np.zeros(frame) if missing[k] else piece)
            else:
                out.append(plc.bad() if missing[k] else plc.good(piece))
    return to_int16(np.concatenate(out))


def run_ours(x: np.ndarray, fmt: AudioFormat, trace: Trace, **settings) -> tuple[np.ndarray, object]:
    size = fmt.samples_in(PACKET * 1000)
    n = len(trace.lost)
    send = np.arange(n) * PACKET
    arrival = send + PATH + trace.delay
    order = [k for k in np.argsort(arrival, kind="stable") if not trace.lost[k]]
    jb = JitterBuffer(fmt, JitterSettings(direction="inbound", **settings))
    out, i, t = [], 0, 0.0
    while not jb.finished and t < arrival.max() + 5:
        while i < len(order) and arrival[order[i]] <= t + 1e-9:
            k = order[i]
            jb.put(AudioChunk(x[k * size : (k + 1) * size], fmt, pts=k * size, seq=k, arrival=arrival[k]), t)
            i += 1
        if i == len(order):
            jb.close()
        out += [f.data for f in jb.pull(t) if isinstance(f, AudioChunk)]
        t += PACKET
    return np.concatenate(out), jb.statistics()


def tts_schedule(n_samples: int, rate: int, rng: np.random.Generator) -> list[tuple[float, int, int]]:
    """(ready time, start, end): sentences of 1-2.5 s, each synthesized at 8x real time in chunks
    of 10-120 ms after a stall of 0.4-1.6 s (the LLM thinking): about 1.3x real time on average,
    with stalls that can outlast what was buffered."""
    chunks, pos, t = [], 0, 0.2
    while pos < n_samples:
        sentence_end = min(n_samples, pos + int(rng.uniform(1.0, 2.5) * rate))
        while pos < sentence_end:
            size = min(int(rng.uniform(0.010, 0.120) * rate), sentence_end - pos)
            t += size / rate / 8
            chunks.append((t, pos, pos + size))
            pos += size
        t += rng.uniform(0.4, 1.6)
    return chunks


def play_naive(x: np.ndarray, schedule, rate: int, conceal: bool) -> tuple[np.ndarray, int]:
    """No buffer: from the first chunk, each 10 ms plays what has arrived, else silence or concealment."""
    frame = rate // 100
    ready = np.zeros(len(x))
    for at, s, e in schedule:
        ready[s:e] = at
    plc = AppendixI(rate) if conceal else None
    out, pos, t, run, interruptions = [], 0, schedule[0][0], 0, 0
    while pos < len(x) // frame * frame:
        if ready[pos + frame - 1] <= t:
            piece = x[pos : pos + frame].astype(np.float64)
            out.append(plc.good(piece) if plc else piece)
            pos += frame
            interruptions += run * 0.010 >= INTERRUPTION
            run = 0
        else:
            out.append(plc.bad() if plc else np.zeros(frame))
            run += 1
        t += 0.010
    return to_int16(np.concatenate(out)), interruptions


def run_ours_tts(x: np.ndarray, fmt: AudioFormat, schedule) -> tuple[np.ndarray, object]:
    jb = JitterBuffer(fmt, JitterSettings(direction="outbound"))
    jb.event(UtteranceStart("u"), 0.0)
    out, i, t = [], 0, 0.0
    while not jb.finished and t < 60:
        while i < len(schedule) and schedule[i][0] <= t + 1e-9 and not jb.full:
            _, s, e = schedule[i]
            jb.put(AudioChunk(x[s:e], fmt, pts=s), t)
            i += 1
        if i == len(schedule) and not jb.closed:
            jb.event(UtteranceEnd("u"), t)
            jb.close()
        out += [f.data for f in jb.pull(t) if isinstance(f, AudioChunk)]
        t += PACKET
    return np.concatenate(out), jb.statistics()


def stretch_kernel(x: np.ndarray, rate: int) -> np.ndarray:
    st = TimeStretch(rate)
    tick = rate // 50
    src = (x.astype(np.float32) / 32768)[:, None]
    out = np.zeros((len(x) * 2, 1), np.float32)
    pos = produced = 0
    while pos + tick + st.lookahead <= len(src):
        speed = 1.05 if int(produced / rate / 2) % 2 == 0 else 0.95
        pos += st.render(
            out[max(0, produced - 500) : produced],
            src[pos : pos + tick + st.lookahead],
            out[produced : produced + tick],
            speed,
        )
        produced += tick
    return to_int16(out[:produced, 0] * 32768)


# --------------------------------------------------------------------- the table


def score(rate: int, ref: np.ndarray, deg: np.ndarray) -> float:
    return pesq(rate, ref, deg, "nb" if rate == 8000 else "wb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speech", default=str(SPEECH_DIR))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    files = sorted(Path(args.speech).glob("*.wav"))
    if not files:
        sys.exit(f"no WAV files in {args.speech}")
    head = f"{'rate':>5} {'trace':<15} {'loss%':>5} {'zero':>5} {'AppI':>5} {'ours':>5} {'+zero':>6} {'late% ours/static':>17} {'delay ms':>8} {'intr':>5} {'conc%':>5} {'acc%':>5} {'dec%':>5}"
    print(f"PESQ MOS-LQO, mean of {len(files)} recordings; seed {args.seed}")
    print(head)
    print("-" * len(head))
    for rate in (8000, 16000):
        fmt = AudioFormat("pcm_s16le", rate)
        size = fmt.samples_in(PACKET * 1000)
        clips = []
        for f in files:
            data, wav_fmt = read_wav(f)
            if wav_fmt.sample_rate != rate:
                data = to_int16(soxr.resample(data.astype(np.float32), wav_fmt.sample_rate, rate))
            clips.append(data[: len(data) // size * size])
        rows: dict[str, list] = {}
        for ci, x in enumerate(clips):
            rng = np.random.default_rng(args.seed * 1000 + ci)
            n = len(x) // size
            for trace in traces(n, rng):
                y, s = run_ours(x, fmt, trace)
                arrival_late = trace.delay > (s.delay_ms.mean / 1000 + float(np.mean(trace.delay[~trace.lost])))
                missing = trace.lost | arrival_late
                zero = play_static(x, size, missing, rate, conceal=False)
                appi = play_static(x, size, missing, rate, conceal=True)
                rows.setdefault(trace.name, []).append(
                    (
                        trace.lost.mean(),
                        score(rate, x, zero),
                        score(rate, x, appi),
                        score(rate, x, y),
                        s.late_losses / n,
                        arrival_late[~trace.lost].mean(),
                        s.delay_ms.mean,
                        s.interruptions,
                        s.concealment_rate,
                        s.accelerate_rate,
                        s.decelerate_rate,
                    )
                )
            schedule = tts_schedule(len(x), rate, rng)
            zero, zi = play_naive(x, schedule, rate, conceal=False)
            appi, _ = play_naive(x, schedule, rate, conceal=True)
            y, s = run_ours_tts(x, fmt, schedule)
            rows.setdefault("TTS stalls", []).append(
                (
                    0.0,
                    score(rate, x, zero),
                    score(rate, x, appi),
                    score(rate, x, y),
                    0.0,
                    0.0,
                    s.delay_ms.mean,
                    s.interruptions,
                    s.concealment_rate,
                    s.accelerate_rate,
                    s.decelerate_rate,
                    zi,
                )
            )
            clean = Trace("clean", np.zeros(n, bool), np.zeros(n))
            y, s = run_ours(x, fmt, clean, start_delay=0.2)
            rows.setdefault("stretch: drain", []).append(
                (
                    0.0,
                    math.nan,
                    math.nan,
                    score(rate, x, y),
                    0.0,
                    0.0,
                    s.delay_ms.mean,
                    s.interruptions,
                    s.concealment_rate,
                    s.accelerate_rate,
                    s.decelerate_rate,
                )
            )
            rows.setdefault("stretch: kernel", []).append(
                (
                    0.0,
                    math.nan,
                    math.nan,
                    score(rate, x, stretch_kernel(x, rate)),
                    0.0,
                    0.0,
                    math.nan,
                    0,
                    0.0,
                    0.05,
                    0.05,
                )
            )
        for name, values in rows.items():
            v = np.array([r[:11] for r in values], dtype=float)
            m = v.mean(axis=0)
            intr = int(v[:, 7].sum())
            extra = f"  (no buffer: {sum(r[11] for r in values)} interruptions)" if name == "TTS stalls" else ""
            late = f"{100 * m[4]:.2f}/{100 * m[5]:.2f}" if name.startswith(("loss", "bursty", "jitter")) else "-"

            def fmt(value: float, spec: str) -> str:
                width = int("".join(ch for ch in spec.split(".")[0] if ch.isdigit()))
                return "-".rjust(width) if math.isnan(value) else format(value, spec)

            print(
                f"{rate:>5} {name:<15} {100 * m[0]:>5.1f} {fmt(m[1], '>5.2f')} {fmt(m[2], '>5.2f')} {m[3]:>5.2f} "
                f"{fmt(m[3] - m[1], '>+6.2f')} {late:>17} {fmt(m[6], '>8.0f')} {intr:>5} {100 * m[8]:>5.1f} "
                f"{100 * m[9]:>5.2f} {100 * m[10]:>5.2f}{extra}"
            )


if __name__ == "__main__":
    main()
