"""Wire payloads to samples: byte counts that split a sample are carried, never lost."""

from __future__ import annotations

import numpy as np

from ..frames import AudioFormat, Encoding


class PayloadAligner:
    """Cuts byte payloads of any length into whole sample frames for one format.

    A payload that ends part-way through a sample frame (an odd byte count in PCM16, say)
    keeps the partial frame and prepends it to the next payload. At the end of an utterance,
    :meth:`reset` drops what is left and says how many bytes that was, for the drop counters.
    """

    __slots__ = ("_carry", "_dtype", "_frame_bytes", "format")

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._carry = b""
        self._frame_bytes = fmt.frame_bytes
        self._dtype = fmt.encoding.dtype

    @property
    def carried(self) -> int:
        """Bytes held back, waiting for the rest of their sample frame."""
        return len(self._carry)

    def feed(self, payload: bytes) -> np.ndarray:
        """The whole sample frames available after ``payload`` (possibly none)."""
        if self._carry:
            payload = self._carry + payload
        cut = len(payload) - len(payload) % self._frame_bytes
        if cut != len(payload):
            self._carry, payload = payload[cut:], payload[:cut]
        elif self._carry:
            self._carry = b""
        data = np.frombuffer(payload, self._dtype)
        return data if self.format.channels == 1 else data.reshape(-1, self.format.channels)

    def reset(self) -> int:
        """Drop any partial sample frame; return how many bytes were dropped."""
        dropped = len(self._carry)
        self._carry = b""
        return dropped


class TransportDecoder:
    """Samples of a wider or narrower wire encoding as the bytes of the encoding delivered.

    Cartesia's pcm_s32le arrives as PCM16 (the top 16 bits of each sample) and pcm_f16le as
    float32. A sample split between two payloads waits for the rest of its bytes.
    """

    __slots__ = ("_carry", "_dtype", "delivered")

    def __init__(self, wire_dtype: str, delivered: Encoding) -> None:
        self._dtype = np.dtype(wire_dtype)
        self.delivered = delivered
        self._carry = b""

    def feed(self, payload: bytes) -> bytes:
        data = self._carry + payload
        cut = len(data) - len(data) % self._dtype.itemsize
        self._carry = data[cut:]
        samples = np.frombuffer(data[:cut], self._dtype)
        if self.delivered is Encoding.PCM_S16LE:
            return (samples >> 16).astype("<i2").tobytes()
        return samples.astype(self.delivered.dtype).tobytes()
