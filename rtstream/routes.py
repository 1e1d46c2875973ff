"""The server's endpoints for call templates: the media WebSocket and the provider's answer webhook.

A provider reaches a call in two steps. Its answer webhook (Twilio's voice URL, Plivo's answer
URL, Exotel's dynamic endpoint) is plain HTTP: :class:`AnswerEndpoint` replies with the
provider's document naming the stream URL, and passes the webhook's call parameters (``From``,
``To``, ``CallSid``…) on as the stream's custom parameters. The provider then opens the media
WebSocket: :class:`CallEndpoint` checks it and hands it to the server's admission.

Where the provider signs its requests (Twilio ``X-Twilio-Signature`` on the webhook and on the
upgrade, Plivo V3 on the webhook) and the template has an ``auth_token``, a missing or wrong
signature is refused with 403 and counted, unless the template sets ``verify = false`` (for
local tests). Signatures cover the URL the provider called, so behind a proxy the server needs
its ``public_url``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .answers import exotel_stream, plivo_stream, twiml_stream
from .calls import Call, CallSettings
from .frames import Encoding
from .httpserver import Request, Response, Upgrade
from .server import Server
from .signatures import plivo_v3_valid, twilio_valid
from .websocket import WebSocket

log = logging.getLogger(__name__)

RunCall = Callable[[Call], Awaitable[tuple[str, Mapping[str, Any]]]]
"""Runs one admitted call to its end; returns its outcome and report."""

SIGNING_PROTOCOLS = ("twilio", "plivo")
"""The providers that sign their requests, so that a template can check them (``auth_token``)."""

FORWARDED_PARAMETERS = ("CallSid", "From", "To", "CallUUID", "CallFrom", "CallTo", "Direction")
"""Webhook parameters passed on to the stream (Twilio's and Plivo's names), as custom parameters."""


def public_base(request: Request, public_url: str | None, *, websocket: bool) -> str:
    """``scheme://host`` the provider used: ``public_url`` (https → wss for a socket), else the Host header."""
    if public_url:
        parts = urlsplit(public_url)
        scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme) if websocket else parts.scheme
        return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    host = request.headers.get("host", "127.0.0.1")
    return f"{'ws' if websocket else 'http'}://{host}"


def _signed(settings: CallSettings, request: Request, url: str) -> bool:
    """Whether the request carries the provider's valid signature (True when nothing is to be checked)."""
    token = settings.auth_token
    if not token or not settings.verify:
        return True
    form = request.form
    if settings.protocol == "twilio":
        return twilio_valid(url, form, token, request.headers.get("x-twilio-signature"))
    if settings.protocol == "plivo" and not request.websocket:
        nonce = request.headers.get("x-plivo-signature-v3-nonce")
        return plivo_v3_valid(request.method, url, form, nonce, token, request.headers.get("x-plivo-signature-v3"))
    return True


class CallEndpoint:
    """The media WebSocket of one call template."""

    def __init__(self, name: str, settings: CallSettings, run_call: RunCall, *, public_url: str | None) -> None:
        self.name = name
        self.settings = settings
        self.run_call = run_call
        self.public_url = public_url

    async def handle(self, request: Request, server: Server) -> Response | Upgrade:
        if not request.websocket:
            return server.refuse("not_websocket", Response.text(426, f"{request.path} takes a WebSocket"))
        url = public_base(request, self.public_url, websocket=True) + request.target
        if not _signed(self.settings, request, url):
            log.warning("%s: call on %s refused: bad or missing signature", request.peer, self.name)
            return server.refuse("bad_signature", Response.text(403))

        async def call(ws: WebSocket) -> tuple[str, Mapping[str, Any]]:
            return await self.run_call(Call(self.name, self.settings, ws))

        subprotocol = self.settings.wire.subprotocol
        return server.admit(
            self.name,
            request,
            call,
            subprotocols=(subprotocol,) if subprotocol else (),
            max_message_size=self.settings.max_message_bytes,
        )


class AnswerEndpoint:
    """The answer webhook of one call template: where to stream, in the provider's format."""

    def __init__(self, name: str, settings: CallSettings, *, public_url: str | None) -> None:
        self.name = name
        self.settings = settings
        self.public_url = public_url

    async def handle(self, request: Request, server: Server) -> Response | Upgrade:
        if request.method not in ("GET", "POST"):
            return server.refuse("method", Response.text(405))
        url = public_base(request, self.public_url, websocket=False) + request.target
        if not _signed(self.settings, request, url):
            log.warning("%s: answer on %s refused: bad or missing signature", request.peer, self.name)
            return server.refuse("bad_signature", Response.text(403))
        server.requests["answer"] += 1
        stream = public_base(request, self.public_url, websocket=True) + self.settings.path
        fields = {**request.query, **request.form}
        parameters = {k: fields[k][0] for k in FORWARDED_PARAMETERS if fields.get(k)}
        protocol = self.settings.protocol
        if protocol == "twilio":
            return Response(200, twiml_stream(stream, parameters).encode(), content_type="text/xml")
        if protocol == "plivo":
            fmt = self.settings.format
            kind = "audio/x-mulaw" if fmt.encoding is Encoding.PCM_MULAW else "audio/x-l16"
            document = plivo_stream(stream, parameters, content_type=f"{kind};rate={fmt.sample_rate}")
            return Response(200, document.encode(), content_type="text/xml")
        if protocol == "exotel":
            if self.settings.format.sample_rate != 8000:
                stream += f"?sample-rate={self.settings.format.sample_rate}"
            return Response(200, exotel_stream(stream, parameters).encode(), content_type="application/json")
        return Response.text(404, f"{protocol} has no answer document")


def call_routes(
    calls: Mapping[str, CallSettings], run_call: RunCall, *, public_url: str | None
) -> dict[str, CallEndpoint | AnswerEndpoint]:
    """The server's routes for a file's call templates: each one's media path, and its answer path if it has one."""
    routes: dict[str, CallEndpoint | AnswerEndpoint] = {}
    for name, settings in calls.items():
        routes[settings.path] = CallEndpoint(name, settings, run_call, public_url=public_url)
        if settings.answer is not None:
            routes[settings.answer] = AnswerEndpoint(name, settings, public_url=public_url)
    return routes
