"""The errors rtstream raises: each names what was wrong and where."""

from __future__ import annotations

from typing import Any

import attrs

from .text import clip, one_line

MAX_MESSAGE = 1000
"""Characters of an error message: a name or value a file or peer chose cannot make it longer."""


@attrs.frozen
class StageRef:
    """Which stage of a pipeline: its position (from 1), its type and its optional label."""

    index: int
    type: str
    label: str | None = None

    def __str__(self) -> str:
        kind = clip(one_line(self.type), 40)
        if self.label and self.label != self.type:
            return f"stage {self.index} '{clip(one_line(self.label), 40)}' ({kind})"
        return f"stage {self.index} ({kind})"


class PipelineError(Exception):
    """Base of every error rtstream raises about a pipeline."""


class ConfigError(PipelineError):
    """A configuration cannot be used; the message says where: file, table, service, call or pipeline, stage and key.

    Errors are raised where the problem is found, with what is known there, and located
    further (``located``) as they travel up through the config loader. The text is one line
    whatever the names and values hold (control characters escaped, long names cut).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        table: str | None = None,
        service: str | None = None,
        call: str | None = None,
        pipeline: str | None = None,
        stage: StageRef | None = None,
        key: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.table = table
        """A top-level table that is neither a service, a call nor a pipeline (``server``)."""
        self.service = service
        self.call = call
        self.pipeline = pipeline
        self.stage = stage
        self.key = key
        super().__init__(str(self))

    def located(self, **where: object) -> ConfigError:
        """A copy with the given location fields filled in where they were unknown."""
        fields: dict[str, Any] = {
            name: getattr(self, name) if getattr(self, name) is not None else where.get(name)
            for name in ("file", "table", "service", "call", "pipeline", "stage", "key")
        }
        return type(self)(self.message, **fields)

    def __str__(self) -> str:
        place = []
        if self.table is not None:
            place.append(_name(self.table))
        if self.service is not None:
            place.append(f"service '{_name(self.service)}'")
        if self.call is not None:
            place.append(f"calls.{_name(self.call)}")
        if self.pipeline is not None:
            place.append(f"pipeline '{_name(self.pipeline)}'")
        if self.stage is not None:
            place.append(str(self.stage))
        if self.key is not None:
            place.append(f"key '{_name(self.key)}'")
        text = ", ".join(place)
        text = f"{text}: {self.message}" if text else self.message
        return clip(one_line(f"{self.file}: {text}" if self.file else text), MAX_MESSAGE)


def _name(name: str) -> str:
    """A name from the file (pipeline, service, key) fit for a one-line message."""
    return clip(one_line(name), 60)


class FormatMismatch(ConfigError):
    """Two neighbouring stages cannot agree on the format of the edge between them."""


class StageFailed(PipelineError):
    """A stage raised while running; its pipeline was cancelled."""

    def __init__(self, pipeline: str, stage: StageRef, cause: BaseException) -> None:
        self.pipeline = pipeline
        self.stage = stage
        self.cause = cause
        super().__init__(str(self))

    def __str__(self) -> str:
        error = self.cause
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]  # a stage's own nursery wrapped it: name the error itself
        cause = type(error).__name__
        if str(error):
            cause = f"{cause}: {error}"
        return one_line(f"pipeline '{_name(self.pipeline)}', {self.stage} failed: {cause}")
