"""A telephony media-stream simulator: the sans-I/O call in ``protocol``, the server in ``server``."""

from .protocol import PROTOCOLS, TelephonyCall, TelephonySettings
from .server import TelephonyServer, serve_telephony

__all__ = ["PROTOCOLS", "TelephonyCall", "TelephonyServer", "TelephonySettings", "serve_telephony"]
