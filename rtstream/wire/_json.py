"""Checks shared by the JSON protocols: each failure is a :class:`RemoteProtocolError` with its reason."""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from json.scanner import make_scanner
from typing import Any

from .errors import RemoteProtocolError

_scan: Callable[[str, int], tuple[Any, int]] = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
"""The C scanner behind ``json.loads``, without its two whitespace regexes: one JSON value at an index."""


def load_object(message: str | bytes, type_key: str | None = None, *, noun: str = "message") -> dict[str, Any]:
    """A JSON text frame's object; with ``type_key``, one whose value there is a string.

    ``noun`` names the message in the error details (a service's errors quote them to the client).
    """
    if isinstance(message, bytes):
        raise RemoteProtocolError("binary_frame", "binary messages are not accepted; send JSON text")
    try:
        data, end = _scan(message, 0)  # a peer's message is one object, no whitespace around it: the fast path
    except (StopIteration, json.JSONDecodeError, RecursionError):
        end = -1
    if end != len(message):  # anything else: json.loads decides, and says what is wrong
        try:
            data = json.loads(message)
        except json.JSONDecodeError as exc:
            raise RemoteProtocolError("bad_json", f"the {noun} is not valid JSON: {exc}") from None
        except RecursionError:
            raise RemoteProtocolError("bad_json", f"the {noun} nests too deeply") from None
    if not isinstance(data, dict):
        raise RemoteProtocolError("bad_shape", f"the {noun} must be a JSON object")
    if type_key is not None and not isinstance(data.get(type_key), str):
        raise RemoteProtocolError("bad_shape", f"the message has no string {type_key!r}")
    return data


def load_json(message: str) -> Any:
    """Any JSON value (the metadata text frames of binary media streams)."""
    try:
        return json.loads(message)
    except json.JSONDecodeError as exc:
        raise RemoteProtocolError("bad_json", f"the message is not valid JSON: {exc}") from None
    except RecursionError:
        raise RemoteProtocolError("bad_json", "the message nests too deeply") from None


def member(data: dict[str, Any], key: str) -> dict[str, Any]:
    """The object at ``key``."""
    value = data.get(key)
    if not isinstance(value, dict):
        raise RemoteProtocolError("bad_shape", f"{key} must be an object")
    return value


def text(data: dict[str, Any], key: str) -> str:
    """The string at ``key``."""
    value = data.get(key)
    if not isinstance(value, str):
        raise RemoteProtocolError("bad_shape", f"{key} must be a string")
    return value


def optional_text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise RemoteProtocolError("bad_shape", f"{key} must be a string")
    return value


def optional_int(data: dict[str, Any], key: str) -> int | None:
    """An integer at ``key``, written as a number or (Twilio's way) as a string of digits."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise RemoteProtocolError("bad_shape", f"{key} must be an integer")


def base64_payload(data: dict[str, Any], key: str) -> bytes:
    """The bytes of the base64 string at ``key``."""
    encoded = text(data, key)
    try:
        return binascii.a2b_base64(encoded, strict_mode=True)  # b64decode(validate=True) without its regex
    except (binascii.Error, ValueError):
        raise RemoteProtocolError("bad_base64", f"{key} is not valid base64") from None
