"""Speech quality through the inbound chain as configured, on virtual time, in PESQ.

    python benchmarks/quality.py [--speech DIR] [--seeds 1,2,3,4] [--rates 8000,16000]
                                 [--traces SUBSTR,...] [--clips N] [--chain FILE]

Needs the ``bench`` extra (``pip install '.[bench]'``, the ``pesq`` package). Every recording in
DIR (16 kHz mono WAV; default ../shared/data/speech) runs through each trace at 8 kHz
(narrowband, resampled with soxr) and 16 kHz (wideband), in 20 ms packets.

Four receivers per inbound trace (network packets: loss, bursts, jitter, duplicates, a spike,
clock skew):

* **chain**: the recommended inbound chain, :data:`INBOUND_CHAIN` (the TOML of the README's
  jitter section, or ``--chain FILE`` holding ``[[stages]]`` tables), built the way
  ``rtstream run`` builds a pipeline and run as stages between a scripted source and a
  collecting sink on trio's MockClock: packets enter at their arrival times, the buffer plays
  on its own tick;
* **stage**: the ``jitter_buffer`` stage of that chain alone;
* **core**: that stage's ``JitterBuffer`` driven directly, without trio, with the stage's own
  timing (each packet put at its arrival, a tick pulled at each of the shell's deadlines), so
  the stage and the sequencer before it are measured against the buffer alone, not against a
  driver that sees packets at other times;
* **zero** and **AppI**: a static buffer whose mean playout delay equals the chain's, filling
  missing and late packets with silence or with a plain port of G.711 Appendix I. For jitter
  rows the AppI column is the static-buffer-at-the-same-delay baseline.

The outbound row ("TTS stalls") runs the ``sequencer`` and ``jitter_buffer`` tables of the
``jitter`` pipeline in pipelines.toml (with ``clock = "tick"``, standing in for the pacer) on a
TTS that speaks sentence by sentence at 8x real time after stalls of 0.5-3 s, with 5 % of its
chunks swapped and 3 % duplicated; its baselines play what has arrived on a 10 ms clock.

Columns: ``late%`` is late losses of the chain / of the static buffer at the same delay;
``delay`` the chain's mean arrival-to-playout delay; ``@late`` the mean delay of the static
buffer that would lose the same share of packets late; ``intr`` interruptions (concealment of
150 ms or more) in total, over those the network forces (runs of lost packets of 150 ms or
more, which every receiver must conceal: the goal is none beyond them); ``recov`` (spike row)
the seconds from the end of the spike until the target is back within twice its value before
it; ``dmax`` the largest buffer delay seen.
PESQ is P.862 (narrowband) and P.862.2 (wideband) against the clean input, mean over the
recordings and the trace seeds (``--seeds``, four by default: on one seed a clip's score swings
by up to 1 MOS with where its few late packets fall, so one seed can hide or invent a gap of a
few tenths). The figures do not depend on machine load. The script prints; it never asserts.
"""

from __future__ import annotations

import argparse
import math
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import soxr
import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus import SPEECH_DIR

from rtstream.config import PipelineSpec, StageSpec
from rtstream.errors import StageRef
from rtstream.frames import AudioChunk, AudioFormat, UtteranceEnd, UtteranceStart
from rtstream.pipeline import assemble, build_pipeline
from rtstream.runner import run_pipeline
from rtstream.stage import Stage
from rtstream.stages.jitter.core import JitterBuffer, JitterSettings
from rtstream.stages.jitter.stage import JitterBufferStage, Playout
from rtstream.testing import CollectingSink, ScriptedSource, collected
from rtstream.wavfile import read_wav

try:
    from pesq import pesq
except ImportError:  # pragma: no cover
    sys.exit("benchmarks/quality.py needs the pesq package: pip install '.[bench]'")

PACKET = 0.020
PATH = 0.030
INTERRUPTION = 0.150
PIPELINES = Path(__file__).resolve().parents[1] / "pipelines.toml"
INBOUND_CHAIN = """
[[stages]]
type = "sequencer"
mode = "receiver"                 # number, drop duplicates, report gaps; never holds audio

[[stages]]
type = "jitter_buffer"
direction = "inbound"
"""
"""The inbound chain the README recommends (caller -> telephony in -> here -> voice service)."""


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
    send: np.ndarray
    """Send time of each packet (the sender's clock may be skewed)."""
    duplicate: np.ndarray
    spike: tuple[float, float] | None = None
    """(start, end) of a delay spike, seconds."""


def gilbert_elliott(n: int, rng: np.random.Generator, *, loss: float = 0.05, burst: float = 3.0) -> np.ndarray:
    """Bursty loss: every packet in the bad state is lost; bursts last ``burst`` packets on average."""
    r = 1 / burst
    p = loss * r / (1 - loss)
    lost = np.zeros(n, bool)
    bad = False
    for k in range(n):
        bad = rng.random() < (1 - r if bad else p)
        lost[k] = bad
    return lost


def traces(n: int, rng: np.random.Generator) -> list[Trace]:
    zero, none, send = np.zeros(n), np.zeros(n, bool), np.arange(n) * PACKET

    def trace(name: str, lost=none, delay=zero, duplicate=none, **kw: Any) -> Trace:
        return Trace(name, lost, delay, kw.pop("send", send), duplicate, **kw)

    p99 = 0.200
    spike_at = min(3.0, n * PACKET / 3)
    spike = np.where((send >= spike_at) & (send < spike_at + 0.4), spike_at + 0.4 - send, 0.0)
    return [
        trace("clean"),
        trace("loss 5%", lost=rng.random(n) < 0.05),
        trace("bursty G-E 5%", lost=gilbert_elliott(n, rng)),
        trace("jitter 50", delay=rng.uniform(0, 0.050, n)),
        trace("jitter U200", delay=rng.uniform(0, p99 / 0.99, n)),
        trace("jitter exp200", delay=rng.exponential(p99 / math.log(100), n)),
        trace(
            "j50+5%+dup3%", lost=rng.random(n) < 0.05, delay=rng.uniform(0, 0.050, n), duplicate=rng.random(n) < 0.03
        ),
        trace("spike 400", delay=spike, spike=(spike_at, spike_at + 0.4)),
    ]


def skew_trace(n: int, skew: float) -> Trace:
    """The sender's clock runs ``skew`` fast (positive) or slow: packets come that much more often."""
    send = np.arange(n) * PACKET / (1 + skew)
    return Trace(f"skew {skew:+.1%} 60s", np.zeros(n, bool), np.zeros(n), send, np.zeros(n, bool))


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


def arrivals(trace: Trace) -> list[tuple[float, int]]:
    """(arrival, packet) in arrival order, duplicates included, lost packets left out."""
    arrival = trace.send + PATH + trace.delay
    items = [(float(arrival[k]), int(k)) for k in range(len(arrival)) if not trace.lost[k]]
    items += [(float(arrival[k]) + PACKET, int(k)) for k in np.flatnonzero(trace.duplicate & ~trace.lost)]
    return sorted(items)


def run_core(x: np.ndarray, fmt: AudioFormat, trace: Trace, settings: JitterSettings) -> tuple[np.ndarray, Any]:
    """The chain's buffer as a core alone, with the stage's own timing but no trio: each packet put
    at its arrival, a tick pulled at each of the shell's deadlines (:class:`Playout`), so the core
    sees packets exactly when the stage would."""
    size = fmt.samples_in(PACKET * 1000)
    items = arrivals(trace)
    playout = Playout(JitterBuffer(fmt, settings), pull=False)
    out, i = [], 0
    while i < len(items) or playout.deadline < math.inf:
        if i < len(items) and items[i][0] <= playout.deadline:
            at, k = items[i]
            playout.push(AudioChunk(x[k * size : (k + 1) * size], fmt, pts=k * size, seq=k), at)
            i += 1
            if i == len(items):
                playout.end()
            continue
        now = max(playout.deadline, items[i - 1][0] if i else 0.0)
        out += [f.data for f in playout.poll(now) if isinstance(f, AudioChunk)]
    return np.concatenate(out), playout.statistics()


@attrs.frozen
class ChainRun:
    audio: np.ndarray
    jitter: Any
    """The jitter buffer's statistics (a JitterStatistics)."""
    watch: list[tuple[float, float, float]]
    """(time, target delay ms, current delay ms) every 100 ms."""


def build_chain(tables: Sequence[dict[str, Any]], fmt: AudioFormat) -> list[Stage]:
    """The stages of ``tables`` (TOML stage tables), built and negotiated as ``rtstream run`` does."""
    ends = [{"type": "tone", "sample_rate": fmt.sample_rate}, *tables, {"type": "null_sink"}]
    specs = tuple(
        StageSpec(ref=StageRef(i, t["type"]), params={k: v for k, v in t.items() if k != "type"}, capacity=None)
        for i, t in enumerate(ends, 1)
    )
    return list(build_pipeline(PipelineSpec(name="quality", description="", capacity=2, stages=specs)).stages[1:-1])


def run_chain(stages: Sequence[Stage], script: list[tuple[float, AudioChunk]], fmt: AudioFormat) -> ChainRun:
    """Run ``stages`` between a scripted source and a collecting sink on trio's MockClock."""

    async def main() -> ChainRun:
        sink = CollectingSink()
        pipeline = assemble("quality", [ScriptedSource(script=script, format=fmt), *stages, sink])
        jb = next(
            e for s, e in zip(pipeline.stages, pipeline.elements, strict=True) if isinstance(s, JitterBufferStage)
        )
        watch: list[tuple[float, float, float]] = []
        start = trio.current_time()

        async def watcher() -> None:
            while True:
                s = jb.statistics()
                if not isinstance(s, dict):
                    watch.append((trio.current_time() - start, s.target_delay_ms, s.current_delay_ms))
                await trio.sleep(0.1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watcher)
            await run_pipeline(pipeline, raise_on_failure=True)
            nursery.cancel_scope.cancel()
        chunks = [f.data for _, f in collected(pipeline) if isinstance(f, AudioChunk)]
        return ChainRun(np.concatenate(chunks), jb.statistics(), watch)

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def packet_script(x: np.ndarray, fmt: AudioFormat, trace: Trace) -> list[tuple[float, AudioChunk]]:
    size = fmt.samples_in(PACKET * 1000)
    return [(at, AudioChunk(x[k * size : (k + 1) * size], fmt, pts=k * size, seq=k)) for at, k in arrivals(trace)]


def tts_schedule(n_samples: int, rate: int, rng: np.random.Generator) -> list[tuple[float, int, int]]:
    """(ready time, start, end): sentences of 1-2.5 s, each synthesized at 8x real time in chunks
    of 10-120 ms after a stall of 0.5-3 s (the LLM thinking): about real time on average, with
    stalls that often outlast what was buffered."""
    chunks, pos, t = [], 0, 0.2
    while pos < n_samples:
        sentence_end = min(n_samples, pos + int(rng.uniform(1.0, 2.5) * rate))
        while pos < sentence_end:
            size = min(int(rng.uniform(0.010, 0.120) * rate), sentence_end - pos)
            t += size / rate / 8
            chunks.append((t, pos, pos + size))
            pos += size
        t += rng.uniform(0.5, 3.0)
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


def tts_script(x: np.ndarray, fmt: AudioFormat, schedule, rng: np.random.Generator) -> list:
    """The TTS chunks numbered in order, then 5 % swapped with the next and 3 % sent twice."""
    chunks = [(at, AudioChunk(x[s:e], fmt, pts=s, seq=k)) for k, (at, s, e) in enumerate(schedule)]
    for k in range(len(chunks) - 1):
        if rng.random() < 0.05:
            (a, c), (b, d) = chunks[k], chunks[k + 1]
            chunks[k], chunks[k + 1] = (a, d), (b, c)
    out: list = [(0.0, UtteranceStart("u"))]
    for at, chunk in chunks:
        out.append((at, chunk))
        if rng.random() < 0.03:
            out.append((at, chunk))
    out.append((chunks[-1][0], UtteranceEnd("u")))
    return out


def run_core_tts(x: np.ndarray, fmt: AudioFormat, schedule) -> tuple[np.ndarray, Any]:
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


def outbound_tables() -> list[dict[str, Any]]:
    """The sequencer and jitter buffer of pipelines.toml's ``jitter`` pipeline, ticking on their own."""
    stages = tomllib.loads(PIPELINES.read_text())["pipelines"]["jitter"]["stages"]
    tables = [dict(s) for s in stages if s["type"] in ("sequencer", "jitter_buffer")]
    for t in tables:
        if t["type"] == "jitter_buffer":
            t["clock"] = "tick"
    return tables


# --------------------------------------------------------------------- the table


def score(rate: int, ref: np.ndarray, deg: np.ndarray) -> float:
    return float(pesq(rate, ref, deg, "nb" if rate == 8000 else "wb"))


def recovery(watch: list[tuple[float, float, float]], spike: tuple[float, float]) -> float:
    """Seconds from the end of the spike until the target is back within twice its value before it, for good."""
    before = [target for t, target, _ in watch if t < spike[0]]
    if not before:
        return math.nan
    above = [t for t, target, _ in watch if t >= spike[0] and target > 2 * before[-1]]
    return max(0.0, above[-1] + 0.1 - spike[1]) if above else 0.0


Row = dict[str, float]


def forced_interruptions(lost: np.ndarray) -> int:
    """Runs of consecutive lost packets lasting an interruption or more: no receiver can fill them
    with speech it never got, so every one of them is an interruption whatever the buffer does."""
    edges = np.diff(np.concatenate(([0], lost.astype(np.int8), [0])))
    lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    return int(np.sum(lengths * PACKET >= INTERRUPTION - 1e-9))


def inbound_row(x: np.ndarray, fmt: AudioFormat, trace: Trace, chain: list[Stage], fast: bool) -> Row:
    rate = fmt.sample_rate
    size = fmt.samples_in(PACKET * 1000)
    n = len(trace.lost)
    script = packet_script(x, fmt, trace)
    ours = run_chain(chain, script, fmt)
    s = ours.jitter
    received = ~trace.lost
    jitter = trace.delay + (trace.send - np.arange(n) * PACKET)
    static_offset = s.delay_ms.mean / 1000 + float(np.mean(jitter[received]))
    late_static = jitter > static_offset
    missing = trace.lost | late_static
    late = s.late_losses / n
    order = np.sort(jitter[received])
    same_late = order[min(len(order) - 1, max(0, math.ceil((1 - late) * len(order)) - 1))]
    row: Row = {
        "loss": float(trace.lost.mean()),
        "zero": score(rate, x, play_static(x, size, missing, rate, conceal=False)),
        "appi": score(rate, x, play_static(x, size, missing, rate, conceal=True)),
        "chain": score(rate, x, ours.audio),
        "late": late,
        "late_static": float(late_static[received].mean()),
        "delay": s.delay_ms.mean,
        "at_late": 1000 * (same_late - float(np.mean(jitter[received & (jitter <= same_late)]))),
        "intr": s.interruptions,
        "net_intr": forced_interruptions(trace.lost),
        "conc": s.concealment_rate,
        "acc": s.accelerate_rate,
        "dec": s.decelerate_rate,
        "dmax": max(d for _, _, d in ours.watch) if ours.watch else math.nan,
        "recov": recovery(ours.watch, trace.spike) if trace.spike else math.nan,
    }
    if trace.name.startswith("skew"):  # a static buffer on the receiver's clock runs off the sender's
        row.update(zero=math.nan, appi=math.nan, late_static=math.nan, at_late=math.nan)
    if not fast:
        jb_only = [st for st in chain if isinstance(st, JitterBufferStage)]
        row["stage"] = score(rate, x, run_chain(jb_only, script, fmt).audio)
        core, cs = run_core(x, fmt, trace, jb_only[0].settings)
        row["core"] = score(rate, x, core)
        row["core_delay"] = cs.delay_ms.mean
    return row


def outbound_row(x: np.ndarray, fmt: AudioFormat, rng: np.random.Generator, fast: bool) -> Row:
    rate = fmt.sample_rate
    schedule = tts_schedule(len(x), rate, rng)
    ours = run_chain(build_chain(outbound_tables(), fmt), tts_script(x, fmt, schedule, rng), fmt)
    s = ours.jitter
    zero, _ = play_naive(x, schedule, rate, conceal=False)
    appi, _ = play_naive(x, schedule, rate, conceal=True)
    row: Row = {
        "zero": score(rate, x, zero),
        "appi": score(rate, x, appi),
        "chain": score(rate, x, ours.audio),
        "delay": s.delay_ms.mean,
        "intr": s.interruptions,
        "conc": s.concealment_rate,
        "acc": s.accelerate_rate,
        "dec": s.decelerate_rate,
        "dmax": max(d for _, _, d in ours.watch) if ours.watch else math.nan,
    }
    if not fast:
        row["core"] = score(rate, x, run_core_tts(x, fmt, schedule)[0])
    return row


def cell(value: float, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def print_row(rate: int, name: str, rows: list[Row]) -> None:
    m: dict[str, float] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    intr = str(sum(int(r["intr"]) for r in rows))
    if "net_intr" in rows[0]:
        intr += f"/{sum(int(r['net_intr']) for r in rows)}"
    get = m.get
    late = f"{100 * m['late']:.2f}/{cell(100 * m['late_static'], '.2f')}" if "late" in m else "-"
    plus = m["chain"] - m["zero"] if "zero" in m else math.nan
    recov = get("recov", math.nan)
    print(
        f"{rate:>5} {name:<14} {100 * get('loss', 0):>5.1f} {cell(get('zero', math.nan), '.2f'):>5} "
        f"{cell(get('appi', math.nan), '.2f'):>5} {cell(get('core', math.nan), '.2f'):>5} "
        f"{cell(get('stage', math.nan), '.2f'):>5} {m['chain']:>5.2f} {cell(plus, '+.2f'):>6} {late:>11} "
        f"{m['delay']:>6.0f} {cell(get('core_delay', math.nan), '.0f'):>5} "
        f"{cell(get('at_late', math.nan), '.0f'):>6} {intr:>5} {100 * m['conc']:>5.1f} "
        f"{100 * m['acc']:>5.2f} {100 * m['dec']:>5.2f} {cell(m['dmax'], '.0f'):>5} "
        f"{cell(recov if math.isfinite(recov) or math.isnan(recov) else 99.0, '.1f'):>5}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speech", default=str(SPEECH_DIR))
    parser.add_argument(
        "--seeds", default="1,2,3,4", help="comma-separated trace seeds: the table is the mean over recordings x seeds"
    )
    parser.add_argument("--rates", default="8000,16000", help="comma-separated sample rates")
    parser.add_argument("--traces", default="", help="comma-separated substrings of the trace names to run")
    parser.add_argument("--clips", type=int, default=0, help="use only the first N recordings")
    parser.add_argument("--chain", type=Path, help="a TOML file of [[stages]] tables to run instead")
    parser.add_argument("--fast", action="store_true", help="only the chain and the static baselines")
    args = parser.parse_args()
    files = sorted(Path(args.speech).glob("*.wav"))[: args.clips or None]
    if not files:
        sys.exit(f"no WAV files in {args.speech}")
    tables = tomllib.loads(args.chain.read_text() if args.chain else INBOUND_CHAIN)["stages"]
    wanted = [w for w in args.traces.split(",") if w]

    def selected(name: str) -> bool:
        return not wanted or any(w in name for w in wanted)

    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"PESQ MOS-LQO, mean of {len(files)} recordings x {len(seeds)} trace seeds ({args.seeds})")
    print(
        "chain: "
        + " -> ".join(f"{t['type']}({', '.join(f'{k}={v}' for k, v in t.items() if k != 'type')})" for t in tables)
    )
    head = (
        f"{'rate':>5} {'trace':<14} {'loss%':>5} {'zero':>5} {'AppI':>5} {'core':>5} {'stage':>5} {'chain':>5} "
        f"{'+zero':>6} {'late% ch/st':>11} {'delay':>6} {'core':>5} {'@late':>6} {'intr':>5} {'conc%':>5} {'acc%':>5} "
        f"{'dec%':>5} {'dmax':>5} {'recov':>5}"
    )
    print(head)
    print("-" * len(head))
    for rate in (int(r) for r in args.rates.split(",")):
        fmt = AudioFormat("pcm_s16le", rate)
        size = fmt.samples_in(PACKET * 1000)
        chain = build_chain(tables, fmt)
        clips = []
        for f in files:
            data, wav_fmt = read_wav(f)
            if wav_fmt.sample_rate != rate:
                data = to_int16(soxr.resample(data.astype(np.float32), wav_fmt.sample_rate, rate))
            clips.append(data[: len(data) // size * size])
        rows: dict[str, list[Row]] = {}
        for seed in seeds:
            for ci, x in enumerate(clips):
                rng = np.random.default_rng(seed * 1000 + ci)
                n = len(x) // size
                for trace in traces(n, rng):
                    if selected(trace.name):
                        rows.setdefault(trace.name, []).append(inbound_row(x, fmt, trace, chain, args.fast))
                if selected("TTS stalls"):
                    rows.setdefault("TTS stalls", []).append(outbound_row(x, fmt, rng, args.fast))
                if seed != seeds[0]:
                    continue  # the skew traces have no randomness: one run per recording
                long = np.tile(x, math.ceil(60 / (len(x) / rate)))
                for skew in (0.005, -0.005):
                    trace = skew_trace(len(long) // size, skew)
                    if selected(trace.name):
                        rows.setdefault(trace.name, []).append(inbound_row(long, fmt, trace, chain, args.fast))
        for name, values in rows.items():
            print_row(rate, name, values)
            sys.stdout.flush()


if __name__ == "__main__":
    main()
