"""The Pipecat half of ``vs_pipecat.py``: the job's calls as Pipecat 1.14 runs them (needs the ``pipecat`` extra).

Per call: a ``PipelineWorker`` of ``CartesiaTTSService`` -> ``WebsocketClientTransport`` output,
run by a ``WorkerRunner`` of its own, as a per-call bot server runs it; all calls on one asyncio loop.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from loguru import logger
from pipecat.frames.frames import EndFrame, TTSSpeakFrame, TTSStoppedFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.serializers.vonage import VonageFrameSerializer
from pipecat.services.cartesia.tts import CartesiaTTSService
from pipecat.transports.websocket.client import WebsocketClientParams, WebsocketClientTransport
from pipecat.workers.runner import WorkerRunner

TURN_TIMEOUT = 30.0
"""Seconds a call waits for one reply's audio before it counts as failed."""


def run(tts_url: str, phone_url: str, turns: list[str], gap: float, calls: int, arrivals: float) -> int:
    """Run the calls, ``arrivals`` starting per second; how many failed."""
    logger.remove()  # Pipecat logs at DEBUG by default; rtstream's default is WARNING
    logger.add(sys.stderr, level="WARNING")
    return asyncio.run(_calls(tts_url, phone_url, turns, gap, calls, arrivals))


async def _calls(tts_url: str, phone_url: str, turns: list[str], gap: float, calls: int, arrivals: float) -> int:
    results = await asyncio.gather(
        *(_call(i / arrivals, tts_url, phone_url, turns, gap) for i in range(calls)), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException):
            print(f"a Pipecat call failed: {result!r}", file=sys.stderr)
    return sum(result is not True for result in results)


async def _call(delay: float, tts_url: str, phone_url: str, turns: list[str], gap: float) -> bool:
    """One call: each turn a TTSSpeakFrame, the next ``gap`` s after the last one's audio is in; True if all were."""
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
            add_wav_header=False,
            serializer=VonageFrameSerializer(VonageFrameSerializer.InputParams(vonage_sample_rate=8000)),
        ),
    )
    worker = PipelineWorker(Pipeline([tts, transport.output()]), params=PipelineParams(audio_out_sample_rate=8000))
    audio_in = asyncio.Event()

    @tts.event_handler("on_after_push_frame")
    async def pushed(_service: Any, frame: Any) -> None:
        if isinstance(frame, TTSStoppedFrame):  # pushed after the reply's last audio
            audio_in.set()

    async def speak() -> bool:
        try:
            for k, text in enumerate(turns):
                if k:
                    await asyncio.sleep(gap)
                audio_in.clear()
                await worker.queue_frame(TTSSpeakFrame(text))
                await asyncio.wait_for(audio_in.wait(), TURN_TIMEOUT)
            return True
        except TimeoutError:
            print(f"a Pipecat call failed: reply {k + 1} not all in after {TURN_TIMEOUT:g} s", file=sys.stderr)
            return False
        finally:
            await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    spoken = asyncio.create_task(speak())
    await runner.run()
    return await spoken
