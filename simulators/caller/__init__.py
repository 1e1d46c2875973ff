"""The caller simulator, the provider's side dialling in: the sans-I/O call in ``protocol``, the shell in ``dialer``."""

from .dialer import Dialer
from .protocol import CallerCall, CallerSettings, Hangup

__all__ = ["CallerCall", "CallerSettings", "Dialer", "Hangup"]
