"""The Cartesia TTS simulator (``protocol``) and what all TTS simulators share (voice, settings, server)."""

from .protocol import ContextLimiter, TtsSession, audio_of
from .server import TtsServer, serve_tts
from .settings import SEQUENCE_FIELD, TtsSettings

__all__ = ["SEQUENCE_FIELD", "ContextLimiter", "TtsServer", "TtsSession", "TtsSettings", "audio_of", "serve_tts"]
