"""The Pipecat half of ``vs_pipecat.py``: the job's calls as Pipecat 1.14 runs them (needs the ``pipecat`` extra).

Per call: a ``PipelineWorker`` of ``CartesiaTTSService`` -> ``WebsocketClientTransport`` output,
run by a ``WorkerRunner`` of its own, as a per-call bot server runs it; all calls on one asyncio loop.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from loguru import logger
from pipecat.audio.mixers.base_audio_mixer import BaseAudioMixer
from pipecat.frames.frames import EndFrame, TTSSpeakFrame, TTSStoppedFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.serializers.vonage import VonageFrameSerializer
from pipecat.services.cartesia.tts import CartesiaTTSService
from pipecat.transports.websocket.client import WebsocketClientParams, WebsocketClientTransport
from pipecat.workers.runner import WorkerRunner

TURN_TIMEOUT = 30.0
"""Seconds a call waits for one reply to be sent before it counts as failed and ends. A reply is
about 3 s, but a starved loop sends it slower than real time (Pipecat's output never catches up
when late), so a tighter bound fails calls that would finish. Until then the call sends silence,
which the receiver's figures include."""


class Cadence(BaseAudioMixer):
    """A mixer that mixes nothing in: with a mixer, Pipecat's output sends its silence buffer
    whenever its queue is empty, so the stream keeps its 60 ms cadence between replies, as
    rtstream's pacer does."""

    async def start(self, sample_rate: int) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def process_frame(self, frame: Any) -> None:
        pass

    async def mix(self, audio: bytes) -> bytes:
        return audio


def run(
    tts_url: str,
    phone_url: str,
    turns: list[str],
    gap: float,
    calls: int,
    arrivals: float,
    *,
    lean: bool = False,
    cadence: bool = True,
) -> int:
    """Run the calls, ``arrivals`` starting per second; how many failed.

    ``lean`` turns off what every PipelineWorker has by default and this job does not use: the
    RTVI processor and observer, and turn tracking (each sees every frame). ``cadence`` False
    leaves out the :class:`Cadence` mixer: the output sends nothing between replies, and waits
    for a frame missing inside one rather than sending silence in its place.
    """
    logger.remove()  # Pipecat logs at DEBUG by default; rtstream's default is WARNING
    logger.add(sys.stderr, level="WARNING")
    worker = {"enable_rtvi": False, "enable_turn_tracking": False} if lean else {}
    output = {"audio_out_mixer": Cadence} if cadence else {}
    return asyncio.run(_calls(tts_url, phone_url, turns, gap, calls, arrivals, worker, output))


async def _calls(
    tts_url: str,
    phone_url: str,
    turns: list[str],
    gap: float,
    calls: int,
    arrivals: float,
    worker: dict[str, Any],
    output: dict[str, Any],
) -> int:
    results = await asyncio.gather(
        *(_call(i / arrivals, tts_url, phone_url, turns, gap, worker, output) for i in range(calls)),
        return_exceptions=True,
    )
    for result in results:
        if isinstance(result, BaseException):
            print(f"a Pipecat call failed: {result!r}", file=sys.stderr)
    return sum(result is not True for result in results)


async def _call(
    delay: float,
    tts_url: str,
    phone_url: str,
    turns: list[str],
    gap: float,
    worker_options: dict[str, Any],
    output_options: dict[str, Any],
) -> bool:
    """One call: each turn a TTSSpeakFrame, the next ``gap`` s after the last one is sent; True if all were."""
    await asyncio.sleep(delay)
    tts = CartesiaTTSService(
        api_key="bench", url=tts_url, sample_rate=24000, settings=CartesiaTTSService.Settings(voice="bench-voice")
    )
    transport = WebsocketClientTransport(
        phone_url,
        WebsocketClientParams(
            audio_out_enabled=True,
            audio_out_sample_rate=8000,
            audio_out_10ms_chunks=6,  # 60 ms frames
            audio_out_end_silence_secs=0,  # rtstream ends with the last reply too
            **{key: make() for key, make in output_options.items()},
            add_wav_header=False,
            serializer=VonageFrameSerializer(VonageFrameSerializer.InputParams(vonage_sample_rate=8000)),
        ),
    )
    output = transport.output()
    params = PipelineParams(audio_out_sample_rate=8000)
    worker = PipelineWorker(Pipeline([tts, output]), params=params, **worker_options)
    sent = asyncio.Event()

    @output.event_handler("on_after_push_frame")
    async def pushed(_output: Any, frame: Any) -> None:
        if isinstance(frame, TTSStoppedFrame):  # it leaves the output's queue after the reply's last frame is sent
            sent.set()

    async def speak() -> bool:
        try:
            for k, text in enumerate(turns):
                if k:
                    await asyncio.sleep(gap)
                sent.clear()
                await worker.queue_frame(TTSSpeakFrame(text))
                await asyncio.wait_for(sent.wait(), TURN_TIMEOUT)
            return True
        except TimeoutError:
            print(f"a Pipecat call failed: reply {k + 1} not all sent after {TURN_TIMEOUT:g} s", file=sys.stderr)
            return False
        finally:
            await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    spoken = asyncio.create_task(speak())
    await runner.run()
    return await spoken
