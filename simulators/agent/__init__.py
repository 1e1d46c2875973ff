"""A voice-agent simulator: the sans-I/O session and VAD in ``protocol``, the server in ``server``."""

from .protocol import AgentSession, AgentSettings, Vad
from .server import PATH, AgentServer, serve_agent

__all__ = ["PATH", "AgentServer", "AgentSession", "AgentSettings", "Vad", "serve_agent"]
