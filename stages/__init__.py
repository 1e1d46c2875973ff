"""rtstream's built-in stages, registered by importing their modules.

rtstream loads this package through its own ``rtstream.stages`` entry point, exactly as it
loads a third-party plugin; the engine never imports it by name.
"""

from . import null, tone, wav  # noqa: F401  (importing registers the stages)
from . import chunker, pacer  # noqa: F401
