"""Running one call: its start, its pipelines built for it, its reader, its end.

:func:`call_runner` gives the server the function that runs each admitted call of a file:
wait for the provider's start, build the template's pipelines with the call's ids filled in
(``${call.stream_id}``…) and the call set as :data:`~rtstream.calls.CURRENT_CALL`, then run
them beside the call's reader until they end. When the provider stops or hangs up, the bot's
sources are stopped (nothing they say can be heard) and what is in flight drains within the
grace period; the call's outcome is ``failed`` if the provider never started the stream or a
pipeline failed, else ``completed``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import trio

from .calls import CURRENT_CALL, Call, NoStart
from .config import Config
from .control import CURRENT_CONTROL
from .errors import ConfigError
from .pipeline import Endpoints, Pipeline, build_pipeline
from .redact import clean
from .report import PipelineReport, plain
from .routes import RunCall
from .runner import RunControl, run_pipeline

log = logging.getLogger(__name__)

HANGUP_GRACE = 1.0
"""After the caller is gone, how long the call's pipelines may drain before they are cancelled."""


def call_runner(config: Config, endpoints: Endpoints, server: Mapping[str, str]) -> RunCall:
    """The function that runs each call of ``config``'s templates (see the module docstring)."""

    async def run(call: Call) -> tuple[str, Mapping[str, Any]]:
        try:
            await call.wait_start()
        except NoStart as exc:
            log.warning("call on %s failed before it started: %s", call.route, exc.reason)
            return "failed", {"error": exc.reason, "link": call.statistics()}
        token = CURRENT_CALL.set(call)
        control_token = CURRENT_CONTROL.set(call.control)
        try:
            pipelines = _build(config, call, endpoints, server)
            if isinstance(pipelines, str):
                log.error("call on %s: %s", call.route, pipelines)
                return "failed", {"error": pipelines, "link": call.statistics()}
            reports = await _run(call, pipelines)
        finally:
            CURRENT_CONTROL.reset(control_token)
            CURRENT_CALL.reset(token)
        failed = [r for r in reports if r.status == "failed"]
        outcome = "failed" if failed else "completed"
        report: dict[str, Any] = {"link": call.statistics(), "pipelines": [plain(r.without_series()) for r in reports]}
        if failed:
            report["error"] = failed[0].error
        return outcome, report

    return run


def _build(config: Config, call: Call, endpoints: Endpoints, server: Mapping[str, str]) -> list[Pipeline] | str:
    """The call's pipelines, or the one-line reason they cannot be built for this call."""
    variables = call.variables()
    try:
        return [
            build_pipeline(config.pipelines[name], file=config.file, endpoints=endpoints, call=variables, server=server)
            for name in call.settings.pipelines
        ]
    except ConfigError as exc:
        return clean(str(exc))


async def _run(call: Call, pipelines: list[Pipeline]) -> list[PipelineReport]:
    control = RunControl(HANGUP_GRACE)
    reports: list[PipelineReport | None] = [None] * len(pipelines)

    async def run_one(i: int) -> None:
        reports[i] = await run_pipeline(pipelines[i], control)

    async def hang_up_ends_the_call() -> None:
        await call.hung_up.wait()
        control.stop()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call.read)
        nursery.start_soon(hang_up_ends_the_call)
        async with trio.open_nursery() as calls:
            for i in range(len(pipelines)):
                calls.start_soon(run_one, i)
        nursery.cancel_scope.cancel()
    return [r for r in reports if r is not None]
