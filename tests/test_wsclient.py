"""Opening client connections: a peer that never answers the handshake is a clear, timely failure."""

import pytest
import trio

from rtstream.stages.wsclient import ConnectFailed, open_connection


async def test_a_peer_that_never_answers_the_handshake_fails_the_attempt():
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    with (
        trio.fail_after(10),
        listener,  # the kernel accepts the connection; nobody reads the request
        pytest.raises(
            ConnectFailed, match=rf"^ws://127.0.0.1:{port}/: no answer to the opening handshake within 0.2 s$"
        ),
    ):
        async with open_connection(f"ws://127.0.0.1:{port}/", timeout=0.2):
            pass
