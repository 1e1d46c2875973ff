"""The documents that send a provider's call to its media stream: TwiML, Plivo XML, Exotel JSON.

A provider first calls the bridge's answer URL over HTTPS and is told, in its own format,
where to open the WebSocket and which parameters to carry; the parameters come back in the
stream's start message (Twilio ``customParameters``, Plivo ``extra_headers``), so a call's
stages can read them as ``${call.parameters.NAME}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from xml.sax.saxutils import escape, quoteattr

XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
ANSWER_PROTOCOLS = ("twilio", "plivo", "exotel")
"""The providers whose answer webhook this module writes (a call template's ``answer``)."""


def twiml_stream(url: str, parameters: Mapping[str, str]) -> str:
    """TwiML that connects the call to a bidirectional Media Stream at ``url`` (``<Connect><Stream>``)."""
    inner = "".join(f"<Parameter name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in parameters.items())
    return f"{XML_HEAD}<Response><Connect><Stream url={quoteattr(url)}>{inner}</Stream></Connect></Response>\n"


def plivo_stream(url: str, parameters: Mapping[str, str], *, content_type: str) -> str:
    """Plivo answer XML for a bidirectional ``<Stream>`` that keeps the call alive while it runs."""
    attrs = f'bidirectional="true" keepCallAlive="true" contentType={quoteattr(content_type)}'
    if parameters:
        extra = ",".join(f"{k}={v}" for k, v in parameters.items())
        attrs += f" extraHeaders={quoteattr(extra)}"
    return f"{XML_HEAD}<Response><Stream {attrs}>{escape(url)}</Stream></Response>\n"


def exotel_stream(url: str, parameters: Mapping[str, str]) -> str:
    """Exotel's dynamic stream endpoint answer: the ``wss://`` URL to open, as JSON."""
    return json.dumps({"url": url, "custom_parameters": dict(parameters)}) + "\n"
