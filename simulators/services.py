"""The simulators as service types: TTS (``tts`` for Cartesia, ``elevenlabs``, ``deepgram``), ``telephony``,
``caller`` and ``agent``.

rtstream loads this module through the ``rtstream.services`` entry point; a pipelines file
then declares them (``[services.tts] type = "tts"``) and ``rtstream simulate tts`` runs one alone.
The TTS services, ``telephony`` and ``agent`` (a voice agent, :mod:`rtstream.wire.agent`) listen;
``caller`` dials (:attr:`rtstream.service.Service.dials`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import trio

from rtstream.params import ParamError, param
from rtstream.registry import register_service
from rtstream.service import Service
from rtstream.stats import Quantiles

from .agent import PATH as AGENT_PATH
from .agent import AgentServer, AgentSettings, serve_agent
from .caller import CallerSettings, Dialer
from .telephony import TelephonyServer, TelephonySettings, serve_telephony
from .tts import TtsServer, TtsSettings, serve_tts
from .tts.deepgram import DeepgramServer, DeepgramSettings
from .tts.elevenlabs import ElevenLabsServer, ElevenLabsSettings
from .tts.server import PATH as TTS_PATH


@attrs.define
class _Running:
    server: Any = None


@register_service("tts")
@attrs.frozen(kw_only=True)
class TtsService(TtsSettings, Service):
    """A Cartesia-protocol TTS simulator: speech-like audio in chunks, with timestamps and impairments."""

    api_key: str | None = param(
        type=str, optional=True, secret=True, kind="header", help="Require this API key from clients; none accepts any."
    )
    _running: _Running = attrs.field(init=False, factory=_Running, eq=False, repr=False)

    def endpoints(self, host: str, port: int) -> dict[str, str]:
        return {**super().endpoints(host, port), "url": f"ws://{host}:{port}{TTS_PATH}"}

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._running.server = TtsServer(self, api_key=self.api_key)
        await serve_tts(self, host, port, server=self._running.server, task_status=task_status)

    async def wait_idle(self) -> None:
        if self._running.server is not None:
            await self._running.server.wait_idle()

    def report(self) -> dict[str, Any] | None:
        return None if self._running.server is None else self._running.server.report()


@register_service("elevenlabs")
@attrs.frozen(kw_only=True)
class ElevenLabsSimulator(ElevenLabsSettings, Service):
    """An ElevenLabs input-streaming simulator (multi-stream-input, stream-input): audio with alignment."""

    api_key: str | None = param(
        type=str, optional=True, secret=True, help="Require this xi-api-key from clients; none accepts any."
    )
    _running: _Running = attrs.field(init=False, factory=_Running, eq=False, repr=False)

    def endpoints(self, host: str, port: int) -> dict[str, str]:
        return {**super().endpoints(host, port), "url": f"ws://{host}:{port}"}

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._running.server = ElevenLabsServer(self, api_key=self.api_key)
        await serve_tts(self, host, port, server=self._running.server, task_status=task_status)

    async def wait_idle(self) -> None:
        if self._running.server is not None:
            await self._running.server.wait_idle()

    def report(self) -> dict[str, Any] | None:
        return None if self._running.server is None else self._running.server.report()


@register_service("deepgram")
@attrs.frozen(kw_only=True)
class DeepgramSimulator(DeepgramSettings, Service):
    """A Deepgram Aura streaming TTS simulator (/v1/speak): binary audio, Flushed, Cleared, Warning."""

    api_key: str | None = param(
        type=str,
        optional=True,
        secret=True,
        help="Require this key (Authorization: Token) from clients; none accepts any.",
    )
    _running: _Running = attrs.field(init=False, factory=_Running, eq=False, repr=False)

    def endpoints(self, host: str, port: int) -> dict[str, str]:
        return {**super().endpoints(host, port), "url": f"ws://{host}:{port}"}

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._running.server = DeepgramServer(self, api_key=self.api_key)
        await serve_tts(self, host, port, server=self._running.server, task_status=task_status)

    async def wait_idle(self) -> None:
        if self._running.server is not None:
            await self._running.server.wait_idle()

    def report(self) -> dict[str, Any] | None:
        return None if self._running.server is None else self._running.server.report()


@register_service("telephony")
@attrs.frozen(kw_only=True)
class TelephonyService(TelephonySettings, Service):
    """A telephony media-stream simulator (raw, twilio, plivo, exotel) that checks and times every frame."""

    record: str | None = param(
        type=str,
        optional=True,
        kind="output_path",
        help="Write each call's audio to this WAV file; {call} stands for the call number.",
    )
    report_calls: int = param(
        20, min=0, max=100_000, help="Calls listed one by one in the report (all are counted in the totals)."
    )
    _running: _Running = attrs.field(init=False, factory=_Running, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.record is not None:
            try:
                self.record.format(call=1)
            except (KeyError, IndexError, ValueError) as exc:
                raise ParamError("record", f"only {{call}} may stand in braces, got {self.record!r} ({exc})") from None

    def endpoints(self, host: str, port: int) -> dict[str, str]:
        return {**super().endpoints(host, port), "url": f"ws://{host}:{port}/{self.protocol}"}

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._running.server = TelephonyServer(self, record=self.record, report_calls=self.report_calls)
        await serve_telephony(self, host, port, server=self._running.server, task_status=task_status)

    async def wait_idle(self) -> None:
        if self._running.server is not None:
            await self._running.server.wait_idle()

    def report(self) -> dict[str, Any] | None:
        return None if self._running.server is None else self._running.server.report()

    def deviations(self) -> Quantiles | None:
        """Every call's inter-arrival deviations (seconds): the receiver side of the metrics."""
        return None if self._running.server is None else self._running.server.deviations


@register_service("caller")
@attrs.frozen(kw_only=True)
class CallerService(CallerSettings, Service):
    """A caller simulator: dials a server's media-stream URL as the provider does, N calls at a set rate."""

    dials: ClassVar[bool] = True
    _running: _Running = attrs.field(init=False, factory=_Running, eq=False, repr=False)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._running.server = Dialer(self)
        await self._running.server.run(task_status=task_status)

    def report(self) -> dict[str, Any] | None:
        return None if self._running.server is None else self._running.server.report()


@register_service("agent")
@attrs.frozen(kw_only=True)
class AgentService(AgentSettings, Service):
    """A voice-agent simulator: energy VAD on the caller's audio, scripted transcripts, replies as tokens and audio."""

    api_key: str | None = param(
        type=str,
        optional=True,
        secret=True,
        kind="header",
        help="Require this key (Authorization: Bearer KEY) from clients; none accepts any.",
    )
    report_calls: int = param(
        20, min=0, max=100_000, help="Calls listed turn by turn in the report (all are counted in the totals)."
    )
    _running: _Running = attrs.field(init=False, factory=_Running, eq=False, repr=False)

    def endpoints(self, host: str, port: int) -> dict[str, str]:
        return {**super().endpoints(host, port), "url": f"ws://{host}:{port}{AGENT_PATH}"}

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._running.server = AgentServer(self, api_key=self.api_key, report_calls=self.report_calls)
        await serve_agent(self, host, port, server=self._running.server, task_status=task_status)

    async def wait_idle(self) -> None:
        if self._running.server is not None:
            await self._running.server.wait_idle()

    def report(self) -> dict[str, Any] | None:
        return None if self._running.server is None else self._running.server.report()
