"""rtstream: real-time voice audio between AI speech services and telephony."""

__version__ = "0.1.0"
