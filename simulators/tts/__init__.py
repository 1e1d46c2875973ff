"""A Cartesia-protocol TTS simulator: the sans-I/O session in ``protocol``, the server in ``server``."""

from .protocol import SEQUENCE_FIELD, ContextLimiter, TtsSession, TtsSettings, audio_of
from .server import TtsServer, serve_tts

__all__ = ["SEQUENCE_FIELD", "ContextLimiter", "TtsServer", "TtsSession", "TtsSettings", "audio_of", "serve_tts"]
