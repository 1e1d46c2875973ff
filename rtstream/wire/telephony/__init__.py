"""The telephony media-stream protocols, both sides of each: one module per provider.

``PROTOCOLS`` names each :class:`Protocol` record; a new provider is a module with its record
and its two sides, and one line here.
"""

from __future__ import annotations

from .base import (
    BridgeSide,
    ChunkRule,
    ClearEcho,
    Command,
    Connected,
    Dtmf,
    Event,
    MarkEcho,
    Media,
    Metadata,
    Protocol,
    ProviderSide,
    Regrouper,
    SendClear,
    SendMark,
    SendMedia,
    Start,
    Stop,
)
from .exotel import EXOTEL
from .plivo import PLIVO
from .raw import RAW
from .twilio import TWILIO

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (RAW, TWILIO, PLIVO, EXOTEL)}

__all__ = [
    "PROTOCOLS",
    "BridgeSide",
    "ChunkRule",
    "ClearEcho",
    "Command",
    "Connected",
    "Dtmf",
    "Event",
    "MarkEcho",
    "Media",
    "Metadata",
    "Protocol",
    "ProviderSide",
    "Regrouper",
    "SendClear",
    "SendMark",
    "SendMedia",
    "Start",
    "Stop",
]
