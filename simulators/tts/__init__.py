"""A Cartesia-protocol TTS simulator: the sans-I/O session in ``protocol``, the server in ``server``."""

from .protocol import SEQUENCE_FIELD, ContextLimiter, TtsSession, TtsSettings
from .server import serve_tts

__all__ = ["SEQUENCE_FIELD", "ContextLimiter", "TtsSession", "TtsSettings", "serve_tts"]
