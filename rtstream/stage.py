"""The stage contract: a frozen config (its TOML parameters) plus an async ``run``.

Sources have no receive channel, sinks no send channel. Inside ``run`` a stage enters its
channels (``async with rx, tx:``), calls ``task_status.started()`` once its resources are
open, and ends the stream by closing ``tx``; it never sends an "end" object. The work itself
lives in a synchronous core with no I/O and no clock of its own; ``run`` is a short loop
around it, and ``statistics()`` returns a frozen record of what the core counted.

Stage configs are ``@attrs.frozen(kw_only=True)`` classes of ``param()`` fields; each
instance runs once (the runner builds fresh instances for every pipeline instance), so a
stage may keep its live counters in a private ``init=False`` field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Self

import trio

from .caps import Caps
from .frames import AudioFormat, Frame

if TYPE_CHECKING:
    from .registry import StageInfo

SendChannel = trio.MemorySendChannel[Frame]
ReceiveChannel = trio.MemoryReceiveChannel[Frame]


class Stage:
    """Base of every stage config; subclass :class:`Source`, :class:`Filter` or :class:`Sink`."""

    role: ClassVar[str]
    info: ClassVar[StageInfo]
    """Set by :func:`rtstream.registry.register`."""

    accepts: ClassVar[Caps] = Caps.ANY
    """Formats the stage takes in (for documentation and the default :meth:`input_caps`)."""

    produces: ClassVar[Caps | None] = None
    """Formats the stage gives out; None means exactly the format it took in."""

    def input_caps(self) -> Caps:
        """The formats this configured stage accepts."""
        return self.accepts

    def output_caps(self, fmt_in: AudioFormat | None) -> Caps:
        """The formats this configured stage can produce from ``fmt_in`` (None for a source)."""
        if self.produces is None:
            assert fmt_in is not None, "a source must declare what it produces"
            return Caps.of(fmt_in)
        return self.produces

    def resolve(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> Self:
        """The stage to run once negotiation fixed its formats; override to take them in."""
        return self

    def statistics(self) -> Any:
        """A frozen record of what the stage has done so far."""
        raise NotImplementedError(f"{type(self).__name__} does not report statistics")


class Source(Stage):
    """A stage that makes frames: ``run(tx, *, task_status)``."""

    role = "source"

    async def run(self, tx: SendChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        raise NotImplementedError


class Filter(Stage):
    """A stage between two others: ``run(rx, tx, *, task_status)``."""

    role = "filter"

    async def run(
        self,
        rx: ReceiveChannel,
        tx: SendChannel,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        raise NotImplementedError


class Sink(Stage):
    """A stage that consumes frames: ``run(rx, *, task_status)``."""

    role = "sink"

    async def run(self, rx: ReceiveChannel, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        raise NotImplementedError
