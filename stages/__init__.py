"""rtstream's built-in stages, registered by importing their modules.

rtstream loads this package through its own ``rtstream.stages`` entry point, exactly as it
loads a third-party plugin; the engine never imports it by name.
"""

from . import (  # noqa: F401  (importing registers the stages)
    barge_in,
    call,
    cartesia,
    chunker,
    converter,
    deepgram,
    elevenlabs,
    null,
    pacer,
    pause_breath,
    sequencer,
    telephony,
    tone,
    wav,
)
from .jitter import stage as _jitter_stage  # noqa: F401
