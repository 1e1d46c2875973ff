"""rtstream's built-in stages, registered by importing their modules.

rtstream loads this package through its own ``rtstream.stages`` entry point, exactly as it
loads a third-party plugin; the engine never imports it by name.
"""

from . import cartesia, converter, null, pause_breath, sequencer, telephony, tone, wav  # noqa: F401  (registers them)
from .jitter import stage as _jitter_stage  # noqa: F401
