"""Pacing on the real clock, through real loopback WebSockets: lateness, jitter and drift.

The bridge side (this process) is a WebSocket server (rtstream's own, as ``rtstream serve``
runs), as for Twilio or TeleCMI, which dial the bridge: each call that connects runs a real
pipeline — a TTS-like source (random chunk sizes, streaming faster than real time after a
first-byte delay) -> chunker -> pacer -> a sink that sends each 60 ms frame (960 bytes of
8 kHz PCM16) as one binary message. All calls share this process and its one trio loop. The
telephony side is a minimal trio-websocket client in a separate process (so it does not share
the sender's GIL) that dials the calls and timestamps every message.

Figures, per scenario (times in ms):

- sender lateness: when each pacer sent a frame minus its deadline, from the pacers' own
  statistics: the median stream's p50, the worst stream's p99, the largest; negative is early;
- receiver inter-arrival deviation: |arrival gap - 60 ms| at the receiver;
- drift: how far the receiver's arrivals moved off the 60 ms grid from the second second
  to the last (median offsets over a second each; the first second has the call set-up),
  worst stream;
- the pacers' own counts (underruns, late frames, stalls, drops) and the sender's CPU
  time per frame (the per-frame cost is what bounds calls per process).

Calls are dialled spread evenly over one period (calls do not start in step); ``--aligned``
dials them together, the worst case. Reference rows run the same single stream with the
pacer's margin at 0 (a plain ``sleep_until``) and with a naive relative ``sleep(period)``
loop (how Pipecat-style pacers drift).

    python benchmarks/pacing.py                      # the issue's run: 1, 100, 500 streams, 60 s each
    python benchmarks/pacing.py --seconds 5          # a quick check
    python benchmarks/pacing.py --streams 500 --seconds 10 --profile   # where the sender's time goes
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import math
import multiprocessing
import os
import pstats
import random
import resource
import statistics
import sys
import time
from pathlib import Path

import attrs
import numpy as np
import trio
import trio_websocket

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rtstream.caps import Caps, StreamFormat
from rtstream.frames import AudioChunk, AudioFormat, Encoding, UtteranceEnd, UtteranceStart
from rtstream.httpserver import Request, Upgrade, bound_port, open_listener, serve
from rtstream.pipeline import assemble
from rtstream.realtime import quiet_gc
from rtstream.runner import run_pipeline
from rtstream.stage import Filter, ReceiveChannel, SendChannel, Sink, Source
from rtstream.stages.chunker import Chunker
from rtstream.stages.pacer import Pacer
from rtstream.stats import Quantiles
from rtstream.websocket import WebSocket

FORMAT = AudioFormat(Encoding.PCM_S16LE, 8000)
PERIOD = 0.06
FRAME_BYTES = FORMAT.bytes_in(60)
EDGE = 17  # frames (about a second) at each end of a stream whose grid offsets measure its drift


@attrs.frozen(kw_only=True)
class BurstySource(Source):
    """``seconds`` of audio as one utterance in random chunks of 10-150 ms, as fast as the pipeline takes them.

    A TTS service answers after a first-byte delay, then streams faster than real time; the
    pacer's backpressure is what holds it back.
    """

    audio: np.ndarray = attrs.field(eq=False, repr=False)
    seconds: float
    seed: int
    first_byte: float = 0.1

    def output_caps(self, fmt_in: StreamFormat | None) -> Caps:
        return Caps.of(FORMAT)

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> BurstySource:
        return self  # it keeps nothing of a run: the config can be its own element

    async def run(self, tx: SendChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        rng = random.Random(self.seed)
        total = int(self.seconds * FORMAT.sample_rate)
        async with tx:
            task_status.started()
            await tx.send(UtteranceStart("bench"))
            await trio.sleep(self.first_byte)
            pos = 0
            while pos < total:
                size = min(rng.randint(80, 1200), total - pos)
                await tx.send(AudioChunk(self.audio[pos : pos + size], FORMAT, pts=pos, utterance="bench"))
                pos += size
            await tx.send(UtteranceEnd("bench"))

    def statistics(self) -> dict[str, int]:
        return {}


@attrs.frozen(kw_only=True)
class NaivePacer(Filter):
    """The reference: send a frame, then ``sleep(period)`` — relative sleeps, so every wake-up's lateness adds up."""

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> NaivePacer:
        return self  # it keeps nothing of a run: the config can be its own element

    async def run(
        self, rx: ReceiveChannel, tx: SendChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with rx, tx:
            task_status.started()
            pts = 0
            async for frame in rx:
                if type(frame) is AudioChunk:
                    await tx.send(attrs.evolve(frame, pts=pts))
                    pts += frame.samples
                    await trio.sleep(PERIOD)
                else:
                    await tx.send(frame)

    def statistics(self) -> dict[str, int]:
        return {}


@attrs.frozen(kw_only=True)
class WebSocketSink(Sink):
    """Sends each audio frame as one binary message on the call's connection (rtstream's own WebSocket)."""

    ws: WebSocket = attrs.field(eq=False, repr=False)

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> WebSocketSink:
        return self  # it keeps nothing of a run but the call's connection it was given

    async def run(self, rx: ReceiveChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        ws = self.ws
        async with rx:
            task_status.started()
            async for frame in rx:
                if type(frame) is AudioChunk:
                    data = frame.data.tobytes()
                    if not ws.try_send(data):  # the socket takes it now, or the send waits for room
                        await ws.send(data)
                    elif ws.flushing:
                        await ws.flush()

    def statistics(self) -> dict[str, int]:
        return {}


# ---- the receiver (a separate process) -------------------------------------------------------


class _StreamClock:
    """Arrival times of one stream's messages: inter-arrival deviations and drift."""

    def __init__(self, deviations: Quantiles) -> None:
        self.deviations = deviations
        self.count = 0
        self.previous = 0.0
        self.offsets: list[float] = []
        self.wrong_size = 0

    def arrived(self, at: float, size: int) -> None:
        if size != FRAME_BYTES:
            self.wrong_size += 1
        if self.count:
            self.deviations.add(abs(at - self.previous - PERIOD))
        self.offsets.append(at - self.count * PERIOD)
        self.previous = at
        self.count += 1

    def drift(self) -> float:
        """Median grid offset over the last second minus that over the second one (the first has call set-up)."""
        edge = min(EDGE, len(self.offsets) // 3)
        return statistics.median(self.offsets[-edge:]) - statistics.median(self.offsets[edge : 2 * edge])


async def _receive(url: str, streams: int, aligned: bool, conn) -> None:
    """Dial ``streams`` calls to the bridge (staggered over one period unless aligned); time every message."""
    start = resource.getrusage(resource.RUSAGE_SELF)
    deviations = Quantiles()
    clocks = [_StreamClock(deviations) for _ in range(streams)]

    async def call(clock: _StreamClock, delay: float) -> None:
        await trio.sleep(delay)
        async with trio_websocket.open_websocket_url(url, message_queue_size=0) as ws:
            try:
                while True:
                    message = await ws.get_message()
                    clock.arrived(time.perf_counter(), len(message))
            except trio_websocket.ConnectionClosed:
                pass

    async with trio.open_nursery() as nursery:
        for i, clock in enumerate(clocks):
            nursery.start_soon(call, clock, 0.0 if aligned else PERIOD * i / streams)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    conn.send(
        {
            "deviation": deviations.summary(scale=1000),
            "drifts": [c.drift() * 1000 for c in clocks if c.count >= 3],
            "messages": sum(c.count for c in clocks),
            "wrong_size": sum(c.wrong_size for c in clocks),
            "cpu": usage.ru_utime - start.ru_utime + usage.ru_stime - start.ru_stime,
        }
    )


def receiver_main(url: str, streams: int, aligned: bool, conn) -> None:
    with quiet_gc():
        trio.run(_receive, url, streams, aligned, conn)


# ---- the sender (this process): the bridge, a WebSocket server like the one Twilio dials -----


async def serve_calls(streams: int, seconds: float, *, pacer: str, margin_ms: float, aligned: bool, conn) -> dict:
    """Accept ``streams`` calls; each runs source -> chunker -> pacer -> its socket, then hangs up."""
    audio = (np.sin(np.arange(int(seconds * 8000) + 8000) * 2 * math.pi * 440 / 8000) * 8000).astype(np.int16)
    reports = []
    ctx = multiprocessing.get_context("spawn")

    async def session(ws: WebSocket) -> None:
        i = len(reports)
        pacing = NaivePacer() if pacer == "naive" else Pacer(margin_ms=margin_ms)
        stages = [
            BurstySource(audio=audio, seconds=seconds, seed=i),
            Chunker(),
            pacing,
            WebSocketSink(ws=ws),
        ]
        reports.append(None)
        reports[i] = await run_pipeline(assemble(f"call{i}", stages, instance=i + 1))

    async def route(request: Request) -> Upgrade:
        return Upgrade(session)

    async with trio.open_nursery() as nursery:
        listener = await open_listener("127.0.0.1", 0)
        port = bound_port(listener)
        await nursery.start(functools.partial(serve, [listener], route, handler_nursery=nursery))
        receiver = ctx.Process(
            target=receiver_main, args=(f"ws://127.0.0.1:{port}/", streams, aligned, conn), daemon=True
        )
        receiver.start()
        while len(reports) < streams or None in reports:
            await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    receiver.join(30)
    failed = [r.error for r in reports if r.status != "completed"]
    if failed:
        raise SystemExit(f"{len(failed)} streams failed, first: {failed[0]}")
    totals = {"underruns": 0, "late_frames": 0, "stalls": 0, "drops": 0, "lateness": None}
    if pacer == "naive":
        return totals
    for r in reports:
        stats = r.stages[2].statistics
        totals["underruns"] += stats["underruns"]
        totals["late_frames"] += stats["late_frames"]
        totals["stalls"] += stats["stalls"]
        totals["drops"] += sum(d.frames for d in stats["drops"].values())
    lateness = [r.stages[2].statistics["lateness_ms"] for r in reports]
    totals["lateness"] = (
        statistics.median(s.p50 for s in lateness),
        max(s.p99 for s in lateness),
        max(s.max for s in lateness),
    )
    return totals


def run_scenario(streams: int, seconds: float, *, pacer: str = "pacer", margin_ms: float = 0.5,
                 aligned: bool = False, profile: bool = False) -> dict:  # fmt: skip
    here, there = multiprocessing.get_context("spawn").Pipe()
    before = resource.getrusage(resource.RUSAGE_SELF)
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    with quiet_gc():
        sent = trio.run(
            lambda: serve_calls(streams, seconds, pacer=pacer, margin_ms=margin_ms, aligned=aligned, conn=there)
        )
    if profiler:
        profiler.disable()
    after = resource.getrusage(resource.RUSAGE_SELF)
    if not here.poll(30):
        raise SystemExit("the receiver did not report")
    received = here.recv()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    frames = max(1, received["messages"])
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    return {
        **sent,
        **received,
        "streams": streams,
        "sender_cpu_us": cpu / frames * 1e6,
        "receiver_cpu_us": received["cpu"] / frames * 1e6,
    }


def _ms(figures: tuple[float, float, float] | None) -> str:
    if figures is None:
        return f"{'(not measured)':^23}"
    return " ".join(f"{value:7.3f}" for value in figures)


def _three(summary) -> tuple[float, float, float]:
    return (summary.p50, summary.p99, summary.max)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per stream (default 60, the issue's run)")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 100, 500], help="concurrent streams per scenario")
    parser.add_argument("--no-reference", action="store_true", help="skip the single-stream reference rows")
    parser.add_argument("--aligned", action="store_true", help="start all streams in step (worst case)")
    parser.add_argument("--profile", action="store_true", help="profile the sender (cProfile, top 25 by own time)")
    args = parser.parse_args()

    rows = []
    if not args.no_reference:
        rows.append(("naive sleep(period)", {"streams": 1, "pacer": "naive"}))
        rows.append(("pacer margin 0", {"streams": 1, "margin_ms": 0.0}))
    rows += [("pacer margin 0.5 ms", {"streams": n}) for n in args.streams]

    print(
        f"pacing benchmark: {args.seconds:g} s of 60 ms frames (960 B, 8 kHz PCM16) per call over loopback "
        f"WebSockets; bridge (sender) in this process, telephony (receiver) in another; {os.cpu_count()} CPUs; "
        f"calls dialled {'together' if args.aligned else 'spread over one period'}; load {_load()}"
    )
    print(
        f"{'scenario':20} {'calls':>5} {'frames':>7} | {'sender lateness ms':^23} | {'receiver |gap-60ms| ms':^23} | "
        f"{'drift ms':>8} | {'under':>6} {'late':>6} {'stall':>6} {'drop':>6} | {'CPU us/frame':>12}"
    )
    print(
        f"{'':20} {'':5} {'':7} | {'p50~':>7} {'p99^':>7} {'max':>7} | {'p50':>7} {'p99':>7} {'max':>7} | "
        f"{'worst':>8} | {'':27} | {'send/recv':>12}"
    )
    for name, kwargs in rows:
        r = run_scenario(seconds=args.seconds, aligned=args.aligned, profile=args.profile, **kwargs)
        drift = max(r["drifts"], key=abs) if r["drifts"] else float("nan")
        counts = " ".join(f"{r[k]:6d}" for k in ("underruns", "late_frames", "stalls", "drops"))
        cpu = f"{r['sender_cpu_us']:.0f}/{r['receiver_cpu_us']:.0f}"
        print(
            f"{name:20} {r['streams']:5d} {r['messages']:7d} | {_ms(r['lateness'])} | {_ms(_three(r['deviation']))} | "
            f"{drift:8.3f} | {counts} | {cpu:>12}",
            flush=True,
        )
        if r["wrong_size"]:
            print(f"  !! {r['wrong_size']} messages of the wrong size")
    print(f"p50~: the median call's p50; p99^: the worst call's p99. Load at the end: {_load()}")


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
