"""The shell of the sources that play audio on a clock of their own (``tone``, ``wav_source``)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import trio

from rtstream.frames import AudioChunk, AudioFormat, UtteranceEnd, UtteranceStart
from rtstream.stage import SendChannel
from rtstream.stats import AudioCounter


async def play(
    tx: SendChannel,
    fmt: AudioFormat,
    start: UtteranceStart,
    pieces: Iterable[np.ndarray],
    *,
    speed: float,
    sent: AudioCounter,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Send ``pieces`` as one utterance, each at its media time over ``speed`` (0: as fast as taken)."""
    async with tx:
        task_status.started()
        began = trio.current_time()
        await tx.send(start)
        pts = 0
        for data in pieces:
            if speed:
                await trio.sleep_until(began + pts / fmt.sample_rate / speed)
            chunk = AudioChunk(data, fmt, pts=pts, utterance=start.utterance)
            await tx.send(chunk)
            sent.add(chunk)
            pts += chunk.samples
        await tx.send(UtteranceEnd(start.utterance))
