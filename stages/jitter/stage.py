"""``jitter_buffer``: the trio shell around :class:`~rtstream.stages.jitter.core.JitterBuffer`.

Two tasks share the core. The reader puts frames in as they arrive (outbound, it stops
reading while the buffer holds its maximum, so the TTS socket feels the backpressure). The
writer takes a tick of output at a time:

* ``clock = "tick"`` (the default): on its own grid of ``tick_ms``, which suits any pipeline;
  put it where nothing downstream paces the audio (a file, a socket without a pacer).
* ``clock = "pull"``: as fast as the stage downstream takes it. Behind a pacer on a small
  channel, the moment a ``send`` returns is the moment the next block is wanted, so playout
  follows the pacer's clock and no second clock runs. A guard keeps the output from running
  more than a second ahead of real time if nothing paces it after all.

While idle or buffering nothing is sent; the pacer downstream decides what the line carries.
"""

from __future__ import annotations

import attrs
import trio

from rtstream.frames import AudioChunk, AudioFormat
from rtstream.params import ParamError, param, whole_samples
from rtstream.registry import register
from rtstream.stage import Filter, ReceiveChannel, SendChannel

from .core import JitterBuffer, JitterSettings, JitterStatistics

PULL_AHEAD = 1.0
"""Pull mode never runs further than this ahead of real time."""


@register("jitter_buffer", klass="Filter/Timing")
@attrs.frozen(kw_only=True)
class JitterBufferStage(Filter):
    """Adaptive playout buffer: smooths jitter, conceals losses, stretches time within ±5 %."""

    direction: str = param(
        "outbound",
        choices=("outbound", "inbound"),
        help="outbound: TTS bursts and stalls, backpressure when full; inbound: network packets, late and lost.",
    )
    clock: str = param(
        "tick", choices=("tick", "pull"), help="Hand out audio on its own tick, or when downstream pulls."
    )
    tick_ms: float = param(20.0, choices=(10.0, 20.0), unit="ms", help="Output block and decision interval.")
    min_delay_ms: float = param(20.0, min=0, max=2000, unit="ms", help="Lowest target delay.")
    max_delay_ms: float = param(
        500.0, min=20, max=5000, unit="ms", help="Highest target delay, and the most audio held."
    )
    start_delay_ms: float = param(80.0, min=0, max=5000, unit="ms", help="Audio gathered before playing starts.")
    quantile: float = param(0.95, gt=0, max=1, help="Share of arrivals the target delay should cover.")
    forget_factor: float = param(0.983, gt=0, max=0.9999, help="How fast the delay histogram forgets, per half second.")
    max_stretch: float = param(0.05, min=0, max=0.05, help="Largest speed change of the time-stretch (0 turns it off).")
    format: AudioFormat | None = None
    _cores: list[JitterBuffer] = attrs.field(init=False, factory=list, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.min_delay_ms > self.max_delay_ms:
            raise ParamError(
                "min_delay_ms", f"must not exceed max_delay_ms ({self.max_delay_ms:g}), got {self.min_delay_ms:g}"
            )
        if self.start_delay_ms > self.max_delay_ms:
            raise ParamError(
                "start_delay_ms", f"must not exceed max_delay_ms ({self.max_delay_ms:g}), got {self.start_delay_ms:g}"
            )

    @property
    def settings(self) -> JitterSettings:
        return JitterSettings(
            direction=self.direction,
            tick=self.tick_ms / 1000,
            min_delay=self.min_delay_ms / 1000,
            max_delay=self.max_delay_ms / 1000,
            start_delay=self.start_delay_ms / 1000,
            quantile=self.quantile,
            forget=self.forget_factor,
            max_stretch=self.max_stretch,
        )

    def resolve(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> JitterBufferStage:
        assert fmt_in is not None
        whole_samples(fmt_in, self.tick_ms, "tick_ms")
        return attrs.evolve(self, format=fmt_in)

    async def run(
        self,
        rx: ReceiveChannel,
        tx: SendChannel,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        assert self.format is not None, "jitter_buffer runs after negotiation"
        core = JitterBuffer(self.format, self.settings)
        self._cores.append(core)
        changed = trio.Event()
        space = trio.Event()

        async def read() -> None:
            nonlocal changed
            async with rx:
                async for frame in rx:
                    now = trio.current_time()
                    if isinstance(frame, AudioChunk):
                        core.put(frame, now)
                    else:
                        core.event(frame, now)
                    changed.set()
                    changed = trio.Event()
                    while core.full:
                        await space.wait()
            core.close()
            changed.set()

        async with tx, trio.open_nursery() as nursery:
            nursery.start_soon(read)
            task_status.started()
            rate = self.format.sample_rate
            since: float | None = None  # when the current stretch of playing began
            sent = 0
            while not core.finished:
                wake = changed
                now = trio.current_time()
                frames = core.pull(now)
                for frame in frames:
                    await tx.send(frame)
                if not core.full:
                    space.set()
                    space = trio.Event()
                if core.state != "playing" and not any(isinstance(f, AudioChunk) for f in frames):
                    since, sent = None, 0
                    await wake.wait()
                    continue
                since = now if since is None else since
                sent += sum(f.samples for f in frames if isinstance(f, AudioChunk))
                if self.clock == "tick":
                    await trio.sleep_until(since + sent / rate)
                elif sent / rate - (trio.current_time() - since) > PULL_AHEAD:
                    await trio.sleep_until(since + sent / rate - PULL_AHEAD)

    def statistics(self) -> JitterStatistics | dict[str, str]:
        return self._cores[0].statistics() if self._cores else {"state": "not started"}
