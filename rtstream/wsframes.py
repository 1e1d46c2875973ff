"""RFC 6455 frames, sans I/O: one :class:`Frames` per connection parses what the peer sent and frames what we send.

Written for the bridge's hot path (tens of messages per call-second each way): no generators,
no event object per message, and one whole frame in the buffer becomes one message with one
slice. Messages come out as ``str`` (text) or ``bytes`` (binary); control frames as the small
:class:`Ping`, :class:`Pong` and :class:`Close` values.

No extension is ever negotiated, so the parser is strict: anything RFC 6455 calls a failure
raises :class:`FrameError` with the close code to send (1002 protocol error, 1007 invalid
UTF-8, 1009 too big, decided from the header before the payload is buffered), and the parser
then stops for good. After a Close frame nothing more is parsed (RFC 6455 §5.5.1).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from typing import NoReturn

import attrs
import numpy as np

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
TOO_BIG = 1009
NO_STATUS = 1005
LOCAL_ONLY = frozenset({1005, 1006, 1015})
"""Codes that describe a close but are never sent in a Close frame (RFC 6455 §7.4.1)."""
DEFINED_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
"""The codes below 3000 a peer may send (the IANA registry); 3000–4999 are free for applications."""
MAX_CONTROL_PAYLOAD = 125
NUMPY_XOR_BYTES = 768
"""Near where numpy's XOR starts to beat one big-integer XOR (benchmarks/websocket.py measures both)."""


class FrameError(Exception):
    """The peer broke RFC 6455; ``code`` is the close code to answer with, ``reason`` says how."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@attrs.frozen
class Ping:
    payload: bytes


@attrs.frozen
class Pong:
    payload: bytes


@attrs.frozen
class Close:
    """The peer's Close frame; 1005 when it carried no code."""

    code: int
    reason: str = ""


Received = str | bytes | Ping | Pong | Close


def xor_mask(data: bytes | bytearray | memoryview, mask: bytes | bytearray) -> bytes:
    """``data`` XOR the 4-byte ``mask`` repeated: masking and unmasking are the same operation."""
    if len(data) < NUMPY_XOR_BYTES:
        return int_xor(data, mask)
    return numpy_xor(data, mask)


def int_xor(data: bytes | bytearray | memoryview, mask: bytes | bytearray) -> bytes:
    """The XOR as one big integer: a few C calls whatever the size, linear but slow per byte."""
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def numpy_xor(data: bytes | bytearray | memoryview, mask: bytes | bytearray) -> bytes:
    """The XOR in numpy: a fixed cost of about two microseconds, then fast per byte."""
    n = len(data)
    return (np.frombuffer(data, np.uint8) ^ np.frombuffer(mask * (n // 4 + 1), np.uint8, n)).tobytes()


def _headers(opcode: int, masked: bool) -> list[bytes]:
    bit = 0x80 if masked else 0
    return [bytes((0x80 | opcode, n | bit)) for n in range(126)]


_SHORT = {masked: {op: _headers(op, masked) for op in (TEXT, BINARY)} for masked in (False, True)}
"""The two-byte headers of short frames, built once for the process (per connection they were 14 KB)."""


class Frames:
    """Both directions of one connection's framing; ``client`` says which side this one is.

    A server receives masked frames and sends unmasked ones, a client the other way round.
    Feed what the socket read with :meth:`feed`, then call :meth:`next` until it returns None.
    """

    def __init__(self, client: bool, max_message_size: int = 1 << 20) -> None:
        self.client = client
        self.max_message_size = max_message_size
        self.close_sent = False
        self.close_received = False
        self._buffer: bytes | bytearray = b""
        self._pos = 0
        self._stopped = False
        """A Close frame came or the stream broke the protocol: nothing more is parsed."""
        self._opcode = 0
        """TEXT or BINARY while a fragmented message is being received, else 0."""
        self._parts: list[bytes] = []
        self._size = 0
        self._wrong_mask_bit = 0x80 if client else 0
        self._short = _SHORT[client]

    # ------------------------------------------------------------------ parsing

    def feed(self, data: bytes | bytearray) -> None:
        """Add bytes read from the peer."""
        if self._stopped:
            return
        buffer, pos = self._buffer, self._pos
        if pos == len(buffer):  # all parsed: parse the new bytes where they are
            self._buffer, self._pos = bytes(data), 0
        elif isinstance(buffer, bytearray):
            del buffer[:pos]
            buffer += data
            self._pos = 0
        else:
            self._buffer, self._pos = bytearray(memoryview(buffer)[pos:]) + data, 0

    @property
    def holding(self) -> int:
        """Bytes this parser keeps alive: what it has read and not parsed yet, once :meth:`next` returned None."""
        return len(self._buffer)

    def next(self) -> Received | None:
        """The next message or control frame, None until more bytes come; FrameError when the peer broke RFC 6455."""
        buffer = self._buffer
        while not self._stopped:
            pos = self._pos
            available = len(buffer) - pos
            if available < 2:
                return self._more()
            b0, b1 = buffer[pos], buffer[pos + 1]
            opcode = b0 & 0x0F
            if b0 & 0x70:
                self._fail(PROTOCOL_ERROR, "RSV bits set without an extension")
            if (b1 & 0x80) == self._wrong_mask_bit:
                self._fail(PROTOCOL_ERROR, "masked frame from a server" if self.client else "unmasked client frame")
            length = b1 & 0x7F
            start = pos + 2
            if opcode >= CLOSE:
                if opcode > PONG:
                    self._fail(PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
                if not b0 & 0x80:
                    self._fail(PROTOCOL_ERROR, "fragmented control frame")
                if length > MAX_CONTROL_PAYLOAD:
                    self._fail(PROTOCOL_ERROR, "control frame over 125 bytes")
            else:
                if opcode == CONTINUATION:
                    if not self._opcode:
                        self._fail(PROTOCOL_ERROR, "continuation frame without a message to continue")
                elif opcode > BINARY:
                    self._fail(PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
                elif self._opcode:
                    self._fail(PROTOCOL_ERROR, "new message inside a fragmented one")
                if length == 126:
                    if available < 4:
                        return self._more()
                    length = (buffer[pos + 2] << 8) | buffer[pos + 3]
                    start += 2
                    if length < 126:
                        self._fail(PROTOCOL_ERROR, "payload length not in its shortest form")
                elif length == 127:
                    if available < 10:
                        return self._more()
                    length = int.from_bytes(buffer[pos + 2 : pos + 10])
                    start += 8
                    if length >> 63:
                        self._fail(PROTOCOL_ERROR, "payload length over 2**63")
                    if length < 65536:
                        self._fail(PROTOCOL_ERROR, "payload length not in its shortest form")
                if self._size + length > self.max_message_size:
                    self._fail(TOO_BIG, f"message over {self.max_message_size} bytes")
            end = start + (length if self.client else length + 4)
            if end > len(buffer):
                return self._more()
            self._pos = end
            if self.client:
                payload = bytes(buffer[start:end]) if isinstance(buffer, bytearray) else buffer[start:end]
            else:
                payload = xor_mask(memoryview(buffer)[start + 4 : end], buffer[start : start + 4])
            if opcode >= CLOSE:
                return self._control(opcode, payload)
            if b0 & 0x80 and not self._opcode:  # the fast path: a whole message in one frame
                return self._text(payload) if opcode == TEXT else payload
            if opcode:
                self._opcode = opcode
            self._parts.append(payload)
            self._size += length
            if b0 & 0x80:
                whole = b"".join(self._parts)
                opcode, self._opcode, self._parts, self._size = self._opcode, 0, [], 0
                return self._text(whole) if opcode == TEXT else whole
        return None

    def _more(self) -> Received | None:
        """More bytes are needed: keep only what is unparsed, not the whole last read (up to 16 KB held
        for as long as the reader waits, which ahead of a pacer is most of a call)."""
        buffer, pos = self._buffer, self._pos
        if not pos:
            return None
        if pos == len(buffer):
            self._buffer = b""
        elif isinstance(buffer, bytearray):
            del buffer[:pos]
        else:
            self._buffer = buffer[pos:]
        self._pos = 0
        return None

    def _text(self, payload: bytes) -> str:
        try:
            return payload.decode()
        except UnicodeDecodeError:
            self._fail(INVALID_DATA, "text message not valid UTF-8")

    def _control(self, opcode: int, payload: bytes) -> Received:
        if opcode == PING:
            return Ping(payload)
        if opcode == PONG:
            return Pong(payload)
        if not payload:
            close = Close(NO_STATUS)
        elif len(payload) == 1:
            self._fail(PROTOCOL_ERROR, "close frame with a 1-byte payload")
        else:
            code = (payload[0] << 8) | payload[1]
            if not (code in DEFINED_CODES or 3000 <= code <= 4999):
                self._fail(PROTOCOL_ERROR, f"close code {code} is not one a peer may send")
            try:
                close = Close(code, payload[2:].decode())
            except UnicodeDecodeError:
                self._fail(INVALID_DATA, "close reason not valid UTF-8")
        self.close_received = self._stopped = True
        self._buffer, self._pos = b"", 0
        return close

    def _fail(self, code: int, reason: str) -> NoReturn:
        self._stopped = True
        self._buffer, self._pos, self._parts = b"", 0, []
        raise FrameError(code, reason)

    # ------------------------------------------------------------------ framing

    def encode(self, message: str | bytes) -> bytes:
        """One message as one frame (each telephony frame: :meth:`encode_many` less its loop and lists)."""
        if isinstance(message, str):
            payload, opcode = message.encode(), TEXT
        else:
            payload, opcode = message, BINARY
        n = len(payload)
        if not self.client:
            return (self._short[opcode][n] if n < 126 else _long_header(opcode, n, 0)) + payload
        mask = os.urandom(4)
        head = self._short[opcode][n] if n < 126 else _long_header(opcode, n, 0x80)
        return b"".join((head, mask, xor_mask(payload, mask)))

    def encode_many(self, messages: Iterable[str | bytes]) -> bytes:
        """Several messages, one frame each, in one ``bytes`` (one write)."""
        out: list[bytes] = []
        short = self._short
        if not self.client:
            for message in messages:
                if isinstance(message, str):
                    payload, opcode = message.encode(), TEXT
                else:
                    payload, opcode = message, BINARY
                n = len(payload)
                out.append(short[opcode][n] if n < 126 else _long_header(opcode, n, 0))
                out.append(payload)
            return b"".join(out)
        messages = tuple(messages)
        masks = os.urandom(4 * len(messages))
        for i, message in enumerate(messages):
            if isinstance(message, str):
                payload, opcode = message.encode(), TEXT
            else:
                payload, opcode = message, BINARY
            n = len(payload)
            mask = masks[4 * i : 4 * i + 4]
            out.append(short[opcode][n] if n < 126 else _long_header(opcode, n, 0x80))
            out.append(mask)
            out.append(xor_mask(payload, mask))
        return b"".join(out)

    def ping(self, payload: bytes = b"") -> bytes:
        return self._control_frame(PING, payload)

    def pong(self, payload: bytes = b"") -> bytes:
        return self._control_frame(PONG, payload)

    def close(self, code: int = 1000, reason: str = "") -> bytes:
        """A Close frame; 1005 sends none, other local-only codes go out as 1000 (as wsproto does)."""
        self.close_sent = True
        if code == NO_STATUS:
            return self._control_frame(CLOSE, b"")
        code = 1000 if code in LOCAL_ONLY else code
        text = reason.encode()[: MAX_CONTROL_PAYLOAD - 2].decode(errors="ignore").encode()
        return self._control_frame(CLOSE, struct.pack("!H", code) + text)

    def _control_frame(self, opcode: int, payload: bytes) -> bytes:
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise ValueError(f"a control frame carries at most 125 bytes, not {len(payload)}")
        if not self.client:
            return bytes((0x80 | opcode, len(payload))) + payload
        mask = os.urandom(4)
        return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + xor_mask(payload, mask)


def _long_header(opcode: int, n: int, mask_bit: int) -> bytes:
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126 | mask_bit, n)
    return struct.pack("!BBQ", 0x80 | opcode, 127 | mask_bit, n)
