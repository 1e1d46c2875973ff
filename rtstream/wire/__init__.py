"""Wire protocols, sans I/O: each written once, for both of its sides (like h11 and wsproto).

A protocol object turns the peer's messages (``str`` for JSON text frames, ``bytes`` for
binary ones) into typed events and typed commands into messages. It does no I/O and reads no
clock, so the stages, the server and the simulators share it, and tests drive one side
through the other. Bad peer data raises :class:`RemoteProtocolError`, whose ``reason`` the
shells count.

- :mod:`rtstream.wire.telephony`: media streams (raw binary, Twilio, Plivo, Exotel, Telnyx, Vonage,
  Jambonz, FreeSWITCH), a module each.
- :mod:`rtstream.wire.cartesia`: the Cartesia TTS WebSocket, client and service.
- :mod:`rtstream.wire.agent`: the voice-agent (conversation) WebSocket, bridge and agent.

This layer imports only the engine's core modules (frames), never stages or simulators.
"""

from .errors import RemoteProtocolError

__all__ = ["RemoteProtocolError"]
