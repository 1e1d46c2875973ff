"""Wire protocols, sans I/O: each written once, for both of its sides (like h11 and wsproto).

A protocol object turns the peer's messages (``str`` for JSON text frames, ``bytes`` for
binary ones) into typed events and typed commands into messages. It does no I/O and reads no
clock, so the stages, the server and the simulators share it, and tests drive one side
through the other. Bad peer data raises :class:`RemoteProtocolError`, whose ``reason`` the
shells count.

- :mod:`rtstream.wire.telephony`: media streams (raw binary, Twilio, Plivo, Exotel, Telnyx, Vonage,
  Jambonz, FreeSWITCH), a module each.
- :mod:`rtstream.wire.cartesia`: the Cartesia TTS WebSocket (API 2026-03-01), client and service.
- :mod:`rtstream.wire.elevenlabs`: ElevenLabs input streaming (multi-stream-input, stream-input).
- :mod:`rtstream.wire.deepgram`: Deepgram Aura's streaming TTS (``/v1/speak``).

This layer imports only the engine's core modules (frames) and the standard library's pure
parts (``urllib.parse`` for the handshakes), never stages or simulators.
"""

from .errors import RemoteProtocolError

__all__ = ["RemoteProtocolError"]
