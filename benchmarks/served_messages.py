"""CPU per message of a served Twilio call's cores, no sockets and no scheduler: what each 20 ms message costs.

    python benchmarks/served_messages.py            # 20,000 messages each way, best of 5

Inbound, one caller message (the provider's masked WebSocket frame of a ``media`` event):
unframed (:class:`~rtstream.wsframes.Frames`), parsed (the call's Twilio bridge side), made a
chunk (``telephony_in``'s :class:`~rtstream.stages.call.CallerStream`). Outbound, one bot frame
(160 bytes of μ-law): queued and popped as the provider's message
(:class:`~rtstream.stages.telephony.TelephonyLink`), framed for the socket. Figures are
``process_time`` per message (fairly robust to the machine's other load), best of the repeats.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import time
from collections.abc import Callable

import numpy as np

from rtstream.calls import Call, CallSettings
from rtstream.frames import AudioChunk, AudioFormat
from rtstream.stages.call import CallerStream
from rtstream.stages.telephony import TelephonyLink
from rtstream.wsframes import Frames

FORMAT = AudioFormat("pcm_mulaw", 8000)
SID = "MZ" + "0" * 32


def best(fn: Callable[[int], None], n: int, repeats: int) -> float:
    """Microseconds per message of ``fn(n)``, the best of ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn(n)
        times.append(time.process_time() - start)
    return min(times) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    payloads = [rng.integers(0, 256, 160, dtype=np.uint8).tobytes() for _ in range(64)]
    messages = [
        json.dumps(
            {
                "event": "media",
                "sequenceNumber": str(i + 3),
                "streamSid": SID,
                "media": {"track": "inbound", "chunk": str(i + 1), "timestamp": str(i * 20), "payload": p},
            }
        )
        for i, p in enumerate(base64.b64encode(p).decode() for p in payloads)
    ]
    client = Frames(client=True)
    wire = client.encode_many(messages)

    call = Call("/twilio", CallSettings(path="/twilio", protocol="twilio", pipelines=("caller",)), None)
    call.parse(json.dumps({"event": "start", "streamSid": SID, "start": {"streamSid": SID}}))
    caller = CallerStream(FORMAT)

    def unframe(n: int) -> None:
        frames = Frames(client=False)
        for _ in range(n // len(messages)):
            frames.feed(wire)
            while frames.next() is not None:
                pass

    def parse(n: int) -> None:
        for i in range(n):
            call.parse(messages[i & 63])

    events = [call.parse(m) for m in messages]

    def chunk(n: int) -> None:
        for i in range(n):
            caller.chunk(events[i & 63], 0.0)

    link = TelephonyLink("twilio", FORMAT, marks=True, hold=1.0)
    link.attach(call.bridge)
    chunks = [AudioChunk(np.frombuffer(p, np.uint8), FORMAT) for p in payloads]

    def queue_and_pop(n: int) -> None:
        for i in range(n):
            link.push(chunks[i & 63])
            link.pop(0.0)
            link.sent()

    server = Frames(client=False)
    outgoing = []
    for c in chunks:
        link.push(c)
        item = link.pop(0.0)
        assert item is not None
        link.sent()
        outgoing.append(item[1])

    def frame(n: int) -> None:
        for i in range(n):
            server.encode_many((outgoing[i & 63],))

    steps = [
        ("in: unframe (masked)", unframe),
        ("in: parse (Twilio media)", parse),
        ("in: chunk (telephony_in)", chunk),
        ("out: queue + message (Twilio media)", queue_and_pop),
        ("out: frame", frame),
    ]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"us of CPU per message, best of {args.repeats} x {args.messages}; load {load}")
    total = 0.0
    for name, fn in steps:
        us = best(fn, args.messages, args.repeats)
        total += us
        print(f"{name:<38} {us:7.2f}")
    print(f"{'total, one message each way':<38} {total:7.2f}")


if __name__ == "__main__":
    main()
