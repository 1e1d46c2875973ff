"""Where the benchmarks find the speech recordings: ``../shared/data/speech`` beside the repository.

Set ``RTSTREAM_SPEECH_DIR`` to use recordings elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

SPEECH_DIR = Path(
    os.environ.get("RTSTREAM_SPEECH_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
)
