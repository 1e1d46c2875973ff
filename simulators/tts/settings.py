"""The settings every TTS simulator shares: chunking, speed, limits, impairments."""

from __future__ import annotations

import attrs

from rtstream.params import ParamError, param

from ..netem import Impairments

SEQUENCE_FIELD = "seq"


@attrs.frozen(kw_only=True)
class TtsSettings(Impairments):
    """How the simulated TTS service behaves: chunking, speed, limits, impairments."""

    chunking: str = param(
        "pattern",
        choices=("pattern", "random", "fixed"),
        help="Chunk sizes: the pattern cycled, random in a range, or fixed.",
    )
    pattern: tuple[int, ...] = param(
        (500, 300, 700, 200),
        type=(int,),
        min=1,
        max=1 << 20,
        unit="bytes",
        help="Chunk sizes cycled by pattern chunking.",
    )
    chunk_bytes: int = param(1000, min=1, max=1 << 20, unit="bytes", help="Chunk size for fixed chunking.")
    min_bytes: int = param(200, min=1, max=1 << 20, unit="bytes", help="Smallest chunk for random chunking.")
    max_bytes: int = param(2000, min=1, max=1 << 20, unit="bytes", help="Largest chunk for random chunking.")
    rtf: float = param(
        3.0, min=0, max=1000, help="Times faster than real time the audio is made; 0 sends it all at once."
    )
    first_byte_latency: float = param(0.1, min=0, max=60, unit="s", help="Delay before an idle context's first chunk.")
    max_contexts: int | None = param(
        type=int,
        optional=True,
        min=1,
        max=1 << 20,
        help="Concurrent contexts allowed across the server; more get a 429 error.",
    )
    context_timeout: float = param(
        1.0, gt=0, max=3600, unit="s", help="An open context expires this long after its last audio."
    )
    error_after: int | None = param(
        type=int,
        optional=True,
        min=0,
        max=1 << 31,
        help="Reply with an error (500) in place of this connection's next chunk after this many.",
    )
    sequence_field: str | None = param(
        SEQUENCE_FIELD,
        type=str,
        optional=True,
        help="Name of the chunk-number field the simulator adds; none leaves it out.",
    )
    seed: int = param(0, min=0, help="Seed of random chunk sizes and impairments (connection n uses seed + n).")

    def __attrs_post_init__(self) -> None:
        if self.min_bytes > self.max_bytes:
            raise ParamError("min_bytes", f"must not exceed max_bytes ({self.max_bytes}), got {self.min_bytes}")
        if not self.pattern:
            raise ParamError("pattern", "must list at least one chunk size")
