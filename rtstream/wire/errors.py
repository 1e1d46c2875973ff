"""The one error a wire protocol raises for bad data from its peer."""

from __future__ import annotations


class RemoteProtocolError(Exception):
    """The peer sent something the protocol does not allow.

    ``reason`` is a short stable slug (``bad_json``, ``unknown_event``, ``wrong_stream_id``...)
    that shells use as a counter key; ``detail`` says what exactly was wrong, for logs and for
    protocols that answer bad requests with a message of their own.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
