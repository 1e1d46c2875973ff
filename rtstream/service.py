"""The service contract: a server that pipelines talk to, started in-process by ``rtstream run``.

A service type (the simulators, say) is a frozen attrs config of ``param()`` fields plus
``serve``. A pipelines file declares instances (``[services.NAME]`` with a ``type``); the run
starts each on a free loopback port before the pipelines, stages reach it through
``${services.NAME.KEY}`` (the keys :meth:`Service.endpoints` gives), and after the pipelines
it waits for the service to fall idle, cancels it and prints its :meth:`Service.report`.
Service types register like stages, with :func:`rtstream.registry.register_service` in a
module named in the ``rtstream.services`` entry-point group. Each instance runs once.

A service that *dials* instead of listening (``dials = True``: the caller simulator, which
plays a telephony provider calling into ``rtstream serve``) has no port: it implements
:meth:`Service.run`, which places its calls and returns when they have all ended. A run starts
dialers after the servers they dial are listening, and waits for them (not for idleness)
before it stops the servers; their reports are printed like the others'.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import trio

if TYPE_CHECKING:
    from .registry import ServiceInfo


class Service:
    """Base of every service config."""

    info: ClassVar[ServiceInfo]
    """Set by :func:`rtstream.registry.register_service`."""
    dials: ClassVar[bool] = False
    """True for a service that dials out (implements :meth:`run`) rather than listening (:meth:`serve`)."""

    def endpoints(self, host: str, port: int) -> dict[str, str]:
        """The addresses stages may refer to as ``${services.NAME.KEY}``, for a server on ``host:port``."""
        return {"host": host, "port": str(port), "url": f"ws://{host}:{port}/"}

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on ``host:port`` (0: a free port), ``task_status.started(port)``, serve until cancelled."""
        raise NotImplementedError

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """A dialing service's whole work: ``task_status.started()`` as it begins, return when it is done.

        Cancelling it ends its calls at once; :meth:`report` then says what they saw so far.
        """
        raise NotImplementedError

    async def wait_idle(self) -> None:
        """Return once no client is connected (the run waits for this, bounded, before stopping it)."""

    def report(self) -> Mapping[str, Any] | None:
        """A JSON-ready record of what the service saw, printed after the run report; None for none."""
        return None
