"""Opening client connections, naming peers, and the backoff that bounds a failing link."""

import random

import pytest
import trio

from rtstream.stages.wsclient import Backoff, ConnectFailed, LinkFailed, ended, open_connection, peer
from rtstream.websocket import CloseReason


async def test_a_peer_that_never_answers_the_handshake_fails_the_attempt():
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    expected = rf"^ws://127\.0\.0\.1:{port}: no answer to the opening handshake within 0\.2 s$"
    with (
        trio.fail_after(10),
        listener,  # the kernel accepts the connection; nobody reads the request
        pytest.raises(ConnectFailed, match=expected),
    ):
        async with open_connection(f"ws://127.0.0.1:{port}/key/s3cr3t?api_key=s3cr3t", timeout=0.2):
            pass


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("wss://api.example.com/tts/websocket?api_key=k", "wss://api.example.com:443"),
        ("ws://user:pw@10.0.0.1:8080/v1/s3cr3t/stream", "ws://10.0.0.1:8080"),
        ("ws://[::1]/x", "ws://[::1]:80"),
        ("ws://host:99999/x", "ws://host"),
    ],
)
def test_the_peer_is_scheme_host_and_port_only(url, shown):
    assert peer(url) == shown


def test_a_connection_ended_in_one_line():
    url = "ws://h:1/secret"
    assert ended(url, None) == "ws://h:1: connection lost (1006)"
    assert (
        ended(url, CloseReason(1011, "boom\nagain"))
        == r"ws://h:1: the peer closed the connection with 1011 (boom\nagain)"
    )
    assert ended(url, CloseReason(1009, "", local=True)) == "ws://h:1: we closed the connection with 1009"


def test_backoff_doubles_with_jitter_up_to_its_ceiling():
    backoff = Backoff(0.1, 0.5, attempts=10, rng=random.Random(1))
    delays = [backoff.failed("x") for _ in range(5)]
    for delay, ceiling in zip(delays, (0.1, 0.2, 0.4, 0.5, 0.5), strict=True):
        assert ceiling / 2 <= delay <= ceiling


def test_connections_that_carry_nothing_fail_the_link_after_its_attempts():
    backoff = Backoff(0.1, 2.0, attempts=2)
    for _ in range(2):
        backoff.connected()  # a handshake completes: no reset
        backoff.failed("ws://h:1: the peer closed the connection with 1011")
    backoff.connected()
    with pytest.raises(
        LinkFailed,
        match=r"^ws://h:1: the peer closed the connection with 1011; gave up after 3 failed attempts in a row$",
    ):
        backoff.failed("ws://h:1: the peer closed the connection with 1011")


def test_no_retry_allowed_gives_up_at_the_first_failure():
    with pytest.raises(LinkFailed, match=r"^x; gave up after 1 failed attempt in a row$"):
        Backoff(0.1, 2.0, attempts=0).failed("x")


def test_failures_are_forgotten_once_a_connection_carried_media_for_settle_seconds():
    backoff = Backoff(0.1, 2.0, attempts=3, settle=1.0)
    backoff.failed("x")
    backoff.failed("x")
    backoff.connected()
    backoff.carried(10.0)
    backoff.carried(10.5)
    assert backoff.attempt == 2  # half a second of media: not yet
    backoff.carried(11.0)
    assert backoff.attempt == 0
    backoff.failed("x")
    backoff.connected()
    backoff.carried(20.0)  # a new connection's media is timed from its own first send
    assert backoff.attempt == 1


def test_with_no_settling_time_the_first_media_resets():
    backoff = Backoff(0.1, 2.0, attempts=3, settle=0)
    backoff.failed("x")
    backoff.connected()
    backoff.carried(5.0)
    assert backoff.attempt == 0
