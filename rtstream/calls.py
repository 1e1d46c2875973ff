"""Calls: what ``[calls.NAME]`` and ``[server]`` declare, and one provider connection as a call.

A *call template* names the path a provider dials, the protocol it speaks and the pipelines
that run for each call. ``rtstream serve`` turns every accepted connection on that path into
a :class:`Call`: it reads the provider's messages up to ``start`` (the call's ids, format and
custom parameters), builds the template's pipelines for that call — ``${call.stream_id}``,
``${call.parameters.NAME}`` filled in — and runs them on the connection, which is the call's
*link*: the stage ``telephony_in`` yields the caller's audio from it, ``telephony_out`` sends
the bot's audio on it. The call ends when the provider stops or the socket closes.

Stages find their call through :data:`CURRENT_CALL`, set around the call's pipelines: trio
tasks inherit it from the task that starts them, so every stage of the call sees its own call
and no other. ``rtstream validate`` (and every command, before it starts anything) builds a
template's pipelines around a :func:`validation_call`: the template's protocol and format,
placeholder ids, and no connection.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from typing import Protocol as Protocol_
from urllib.parse import urlsplit, urlunsplit

import attrs
import trio

from .control import CallControl
from .frames import AudioFormat, Encoding
from .params import ParamError, param
from .stats import BoundedCounter
from .websocket import ConnectionClosed, WebSocket
from .wire import RemoteProtocolError
from .wire.telephony import (
    PROTOCOLS,
    BridgeSide,
    ClearEcho,
    Connected,
    Dtmf,
    Event,
    MarkEcho,
    Media,
    Metadata,
    Protocol,
    Start,
    Stop,
)

log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class ServerSettings:
    """The ``[server]`` table: where ``rtstream serve`` listens and how many calls it takes."""

    host: str = param("127.0.0.1", help="Address to listen on; anything but loopback only when asked.")
    port: int = param(8080, min=0, max=65535, help="Port for HTTP and WebSocket alike (0: a free one).")
    max_calls: int = param(100, min=1, max=100_000, help="Calls at once in one process; more are refused with 503.")
    max_load: float = param(
        0.7,
        min=0,
        max=10,
        help="Refuse calls (503, 'overloaded') when one more would take the load above this; "
        "load is the larger of the CPU share of one core and loop lag over lag_budget_ms. 0: never by load.",
    )
    lag_budget_ms: float = param(
        10.0, gt=0, max=1000, unit="ms", help="Loop lag (moving average) that counts as a load of 1."
    )
    drain: float = param(10.0, min=0, max=3600, unit="s", help="On SIGTERM or Ctrl-C, how long calls may finish.")
    public_url: str | None = param(
        type=str,
        optional=True,
        help="The https:// address providers reach this server by (behind a proxy or tunnel); "
        "answers and signature checks use it. None: the request's Host header, for local tests.",
    )

    def __attrs_post_init__(self) -> None:
        if self.public_url is not None:
            problem = public_url_problem(self.public_url)
            if problem is not None:
                raise ParamError("public_url", problem)


def public_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a server's public URL (an http:// or https:// address, no query), or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises for a port that is no number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        return f"must be an https:// (or http://) URL with a host and no query, got {url!r}"
    return None


def server_variables(host: str, port: int, public_url: str | None = None) -> dict[str, str]:
    """What ``${server.KEY}`` names: ``host``, ``port``, and ``url``, the ws:// (wss://) base a caller dials.

    ``url`` is the public URL when there is one, with the scheme a WebSocket takes; a path is
    appended to it as written (``${server.url}/twilio``).
    """
    if public_url:
        parts = urlsplit(public_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        url = urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    else:
        url = f"ws://{f'[{host}]' if ':' in host else host}:{port}"
    return {"host": host, "port": str(port), "url": url}


@attrs.frozen(kw_only=True)
class CallSettings:
    """One ``[calls.NAME]`` table: a route providers dial and the pipelines of each call on it."""

    path: str = param(type=str, help="The WebSocket path the provider opens, e.g. /twilio.")
    protocol: str = param(type=str, choices=tuple(PROTOCOLS), help="The provider's media-stream protocol.")
    pipelines: tuple[str, ...] = param(type=(str,), help="The pipelines that run for each call on this route.")
    answer: str | None = param(
        type=str, optional=True, help="A webhook path that answers with this provider's stream document (TwiML...)."
    )
    auth_token: str | None = param(
        type=str,
        optional=True,
        secret=True,
        kind="header",
        help="The provider's auth token, to check its request signatures (Twilio, Plivo); from the environment.",
    )
    verify: bool = param(True, help="Refuse requests without a valid signature when auth_token is set (403).")
    encoding: Encoding | None = param(type=Encoding, optional=True, help="The stream's encoding; none: the protocol's.")
    sample_rate: int | None = param(type=int, optional=True, help="The stream's sample rate; none: the lowest carried.")
    start_timeout: float = param(
        10.0, min=0.1, max=600, unit="s", help="How long the provider may take to send its start message."
    )
    max_message_bytes: int = param(
        1 << 20, min=1024, max=16 << 20, unit="bytes", help="Largest message accepted; larger closes with 1009."
    )

    def __attrs_post_init__(self) -> None:
        for key, path in (("path", self.path), ("answer", self.answer)):
            if path is not None and (not path.startswith("/") or not path.isprintable() or "?" in path or " " in path):
                raise ParamError(key, f"must be a path starting with '/' (no query or spaces), got {path!r}")
        if not self.pipelines:
            raise ParamError("pipelines", "must name at least one pipeline")
        fmt = self.format
        if fmt.sample_rate not in self.wire.carries.get(fmt.encoding, ()):
            carried = "; ".join(f"{e} at {'|'.join(map(str, r))} Hz" for e, r in self.wire.carries.items())
            raise ParamError("encoding", f"{self.protocol} carries {carried}, not {fmt}")

    @property
    def wire(self) -> Protocol:
        return PROTOCOLS[self.protocol]

    @property
    def format(self) -> AudioFormat:
        """The stream's format: what the template sets, else the protocol's default."""
        encoding = self.encoding or self.wire.default_encoding
        rate = self.sample_rate or min(self.wire.carries.get(encoding, self.wire.rates))
        return AudioFormat(encoding, rate)


CURRENT_CALL: contextvars.ContextVar[Call] = contextvars.ContextVar("rtstream_current_call")


class NoStart(Exception):
    """The provider never started the stream (or the socket closed first)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


INBOUND_CAPACITY = 256
"""Caller messages queued for ``telephony_in`` while its pipeline has no room (about 5 s of 20 ms media);
beyond, the newest are dropped."""


class Inlet(Protocol_):
    """What the call's reader hands the caller's audio, DTMF and stop to (``telephony_in``), in its own task.

    One task wake per message instead of two: the reader delivers straight into the caller's
    pipeline whenever that cannot wait, and queues on :attr:`Call.inbound` (bounded) otherwise.
    """

    def ready(self) -> bool:
        """Whether :meth:`deliver` of one message would not wait for room downstream."""

    async def deliver(self, event: Event, now: float) -> bool:
        """Pass on one message (True: it ended the stream); by the reader only while nothing is queued."""

    def failed(self, exc: Exception) -> None:
        """:meth:`deliver` raised in the reader's task: the inlet's own task ends with it."""


class Outbound(Protocol_):
    """What the call's reader tells the stage that sends on the link (``telephony_out``)."""

    def take(self, event: Event, now: float) -> None:
        """An echo or acknowledgement from the provider (a mark played, a clear done)."""

    def hung_up(self) -> None:
        """The provider stopped or the socket closed: nothing sent from now on can be heard."""


class Call:
    """One accepted provider connection: its ids, its bridge side of the protocol, its link, its counters.

    The call's reader (:meth:`read`) is the only task that reads the socket. Caller audio, DTMF
    and the stop go to the :class:`Inlet` that ``telephony_in`` registered, in the reader's task,
    or, while that inlet has no room (or none is registered yet), to :attr:`inbound`, a bounded
    channel the inlet drains (:meth:`drain`) in order; echoes go to the :class:`Outbound` that
    ``telephony_out`` registered. ``ws`` is None only when a call is built to validate a template.
    """

    def __init__(self, route: str, settings: CallSettings, ws: WebSocket | None) -> None:
        self.route = route
        self.settings = settings
        self.ws = ws
        self.bridge: BridgeSide = settings.wire.bridge(settings.format)
        self.start: Start | None = None
        self._inbound_tx, self.inbound = trio.open_memory_channel[tuple[Event, float]](INBOUND_CAPACITY)
        self.inlet: Inlet | None = None
        self.outbound: Outbound | None = None
        self._queued = 0
        """Messages put on :attr:`inbound` and not yet delivered: while any are, the reader queues too (order)."""
        self.inbound_queued = 0
        """Caller messages that waited on :attr:`inbound` (the pipeline had no room, or had not started)."""
        self.inbound_dropped = 0
        """Caller messages dropped because ``telephony_in`` fell behind (or no pipeline reads them)."""
        self.hung_up = trio.Event()
        """Set when the provider stopped the stream or the socket closed."""
        self.control = CallControl()
        """The call's control path (barge-in)."""
        self.incoming = BoundedCounter(32)
        """Messages by kind."""
        self.malformed = BoundedCounter(32)
        """Bad messages by reason (:class:`~rtstream.wire.RemoteProtocolError`)."""
        self.early_media = 0
        """Media messages before ``start`` (dropped: the stream had no format yet)."""

    @property
    def format(self) -> AudioFormat:
        return self.bridge.format

    def variables(self) -> dict[str, str]:
        """What ``${call.KEY}`` may name: ids and ``parameters.NAME`` for each custom parameter."""
        start = self.start
        assert start is not None, "the call has started"
        values = {
            "route": self.route,
            "protocol": self.settings.protocol,
            "stream_id": start.stream_id,
            "call_id": start.call_id or start.stream_id,
            "encoding": self.format.encoding.value,
            "sample_rate": str(self.format.sample_rate),
        }
        values.update({f"parameters.{k}": v for k, v in start.custom_parameters.items()})
        return values

    def parse(self, message: str | bytes) -> Any:
        """The event ``message`` carries, counted; None (counted by reason) for a bad one."""
        try:
            event = self.bridge.receive(message)
        except RemoteProtocolError as exc:
            self.malformed.add(exc.reason)
            if self.malformed[exc.reason] == 1:
                log.warning("call on %s: bad message from the provider (%s)", self.route, exc)
            return None
        self.incoming.add(event.kind)
        return event

    async def wait_start(self) -> Start:
        """Read up to the provider's start (``start_timeout``); NoStart with the reason otherwise.

        Binary protocols have no start message: the call starts at once, with a stream id of its own.
        """
        assert self.ws is not None, "a validation call has no socket"

        if self.bridge.ready:
            self.start = Start(stream_id=f"{self.route.strip('/') or 'call'}-{id(self):x}", format=self.format)
            return self.start
        with trio.move_on_after(self.settings.start_timeout):
            while True:
                try:
                    message = await self.ws.receive()
                except ConnectionClosed:
                    raise NoStart("closed_before_start") from None
                event = self.parse(message)
                if isinstance(event, Start):
                    if event.format is not None and event.format != self.format:
                        raise NoStart("format_mismatch")
                    self.start = event
                    return event
                if isinstance(event, Media):
                    self.early_media += 1
                elif event is not None and not isinstance(event, Connected | Metadata):
                    self.incoming.add("before_start")
        raise NoStart("no_start")

    async def read(self) -> None:
        """Read the provider's messages until it stops or the socket closes, handing each on.

        At the end the inbound channel closes (``telephony_in`` ends its stream) and the
        outbound side is told the caller is gone.
        """
        assert self.ws is not None, "a validation call has no socket"
        try:
            async with self._inbound_tx:
                while True:
                    try:
                        message = await self.ws.receive()
                    except ConnectionClosed:
                        return
                    event = self.parse(message)
                    if event is None:
                        continue
                    now = trio.current_time()
                    kind = type(event)
                    if kind is Media or kind is Dtmf or kind is Stop:
                        await self._hand_on(event, now)
                        if kind is Stop:
                            return
                    elif isinstance(event, MarkEcho | ClearEcho) and self.outbound is not None:
                        self.outbound.take(event, now)
        finally:
            self.hung_up.set()
            if self.outbound is not None:
                self.outbound.hung_up()

    async def _hand_on(self, event: Event, now: float) -> None:
        """To the inlet in this task when it has room and nothing is queued before it; else queued."""
        inlet = self.inlet
        if inlet is None or self._queued or not inlet.ready():
            self._to_inbound(event, now)
            return
        try:
            await inlet.deliver(event, now)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._inlet_gone()  # its pipeline ended: what follows is dropped, as on a closed channel
        except Exception as exc:
            inlet.failed(exc)
            self._inlet_gone()

    def _inlet_gone(self) -> None:
        self.inlet = None
        self.inbound_dropped += 1
        self._inbound_tx.close()  # the inlet's task sees the end and ends (with the failure, if any)

    def _to_inbound(self, event: Event, now: float) -> None:
        try:
            self._inbound_tx.send_nowait((event, now))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.inbound_dropped += 1
        else:
            self._queued += 1
            self.inbound_queued += 1

    async def drain(self, deliver: Callable[[Event, float], Awaitable[bool]]) -> None:
        """In the inlet's task: ``deliver`` what was queued, in order, until it returns True or the reader ends."""
        async with self.inbound:
            async for event, now in self.inbound:
                try:
                    if await deliver(event, now):
                        return
                finally:
                    self._queued -= 1

    def statistics(self) -> dict[str, Any]:
        return {
            "protocol": self.settings.protocol,
            "format": str(self.format),
            "stream_id": self.start.stream_id if self.start else None,
            "incoming": self.incoming.snapshot(),
            "malformed": self.malformed.snapshot(),
            "early_media": self.early_media,
            "queued": self.inbound_queued,
            "inbound_dropped": self.inbound_dropped,
            "close": None if self.ws is None or self.ws.closed is None else attrs.asdict(self.ws.closed),
            "control": self.control.statistics(),
        }


class _Placeholders(dict[str, str]):
    """A validation call's variables: any ``parameters.NAME`` is known (as its name), as in some real call."""

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or (isinstance(key, str) and key.startswith("parameters."))

    def __missing__(self, key: str) -> str:
        if key.startswith("parameters."):
            return key.removeprefix("parameters.")
        raise KeyError(key)


class _ValidationCall(Call):
    """A call on a template with placeholder ids and no connection, for building its pipelines to check them."""

    def __init__(self, route: str, settings: CallSettings) -> None:
        super().__init__(route, settings, None)
        self.start = Start(stream_id=f"validate-{route}", call_id=f"validate-{route}", format=self.format)

    def variables(self) -> dict[str, str]:
        return _Placeholders(super().variables())


def validation_call(route: str, settings: CallSettings) -> Call:
    """The call that a template's pipelines are checked in (``rtstream validate``, and every command first)."""
    return _ValidationCall(route, settings)


@contextlib.contextmanager
def current_call(call: Call) -> Iterator[Call]:
    """Set :data:`CURRENT_CALL` to ``call`` for the block (synchronous code: building a call's pipelines)."""
    token = CURRENT_CALL.set(call)
    try:
        yield call
    finally:
        CURRENT_CALL.reset(token)
