"""Provider request signatures: who may start a call on this server.

Twilio signs each webhook and the WebSocket upgrade of a media stream with
``X-Twilio-Signature``: base64 HMAC-SHA1, keyed by the account's auth token, of the full URL
followed by the POST parameters sorted by name, each name then value. Plivo's V3 signature
(``X-Plivo-Signature-V3`` with ``X-Plivo-Signature-V3-Nonce``) is base64 HMAC-SHA256 of the
URL in a canonical form (query sorted, then the sorted POST parameters), a dot and the nonce;
the header may carry several signatures separated by commas.

The URL is the one the provider called — the public URL behind any proxy, never the address
the server sees — so callers pass it in. Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs, urlsplit, urlunsplit

Params = Mapping[str, Sequence[str]]
"""Form parameters as :func:`urllib.parse.parse_qs` gives them: each name with its values."""


def twilio_signature(url: str, params: Params, token: str) -> str:
    """The ``X-Twilio-Signature`` Twilio would send for a request to ``url`` with ``params``."""
    payload = url + "".join(name + value for name in sorted(params) for value in params[name])
    digest = hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def twilio_valid(url: str, params: Params, token: str, signature: str | None) -> bool:
    """Whether ``signature`` is Twilio's for this request (also tried with the port dropped or added)."""
    if not signature:
        return False
    return any(
        hmac.compare_digest(twilio_signature(candidate, params, token), signature) for candidate in _port_variants(url)
    )


def _port_variants(url: str) -> list[str]:
    """Twilio signs the URL as configured; proxies add or strip the default port, so accept both."""
    parts = urlsplit(url)
    default = {"https": 443, "wss": 443, "http": 80, "ws": 80}.get(parts.scheme)
    if default is None or parts.port not in (None, default):
        return [url]
    host = parts.hostname or ""
    netloc = host if parts.port else f"{host}:{default}"
    return [url, urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))]


def plivo_v3_signature(method: str, url: str, params: Params, nonce: str, token: str) -> str:
    """The ``X-Plivo-Signature-V3`` Plivo would send (GET: params merge into the query)."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = {k: list(v) for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    if method.upper() == "GET":
        merged = {**{k: list(v) for k, v in params.items()}, **query}
        sorted_query = _sorted_query(merged)
        canonical = base + (f"?{sorted_query}" if sorted_query else "")
    else:
        sorted_query = _sorted_query(query)
        if params:
            canonical = f"{base}?{sorted_query}" + ("." if sorted_query else "")
        else:
            canonical = base + (f"?{sorted_query}" if sorted_query else "")
        canonical += "".join(name + value for name in sorted(params) for value in sorted(params[name]))
    digest = hmac.new(token.encode(), f"{canonical}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def plivo_v3_valid(method: str, url: str, params: Params, nonce: str | None, token: str, header: str | None) -> bool:
    """Whether one of the comma-separated signatures in ``header`` is Plivo's for this request."""
    if not header or not nonce:
        return False
    expected = plivo_v3_signature(method, url, params, nonce, token)
    return any(hmac.compare_digest(expected, given.strip()) for given in header.split(","))


def _sorted_query(params: Mapping[str, Sequence[str]]) -> str:
    return "&".join("&".join(f"{name}={value}" for value in sorted(params[name])) for name in sorted(params))
