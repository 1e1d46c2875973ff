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
    DurationRule,
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
from .freeswitch import FREESWITCH, FREESWITCH_BINARY
from .jambonz import JAMBONZ
from .plivo import PLIVO
from .raw import RAW
from .telnyx import TELNYX
from .twilio import TWILIO
from .vonage import VONAGE

PROTOCOLS: dict[str, Protocol] = {
    p.name: p for p in (RAW, TWILIO, PLIVO, EXOTEL, TELNYX, VONAGE, JAMBONZ, FREESWITCH, FREESWITCH_BINARY)
}

__all__ = [
    "PROTOCOLS",
    "BridgeSide",
    "ChunkRule",
    "ClearEcho",
    "Command",
    "Connected",
    "Dtmf",
    "DurationRule",
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
