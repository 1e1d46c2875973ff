"""Secrets from the environment kept out of every output: messages, reports, logs, file names.

A value that ``${NAME}`` took from the environment may be a key. :func:`remember` records it
as the config is read; :func:`redact` then replaces it with ``${NAME}`` in any text. The CLI
passes its messages and reports through :func:`redact`, and :class:`RedactingFormatter` does
the same for every log record, including those of libraries that log whole URLs or headers.

Values shorter than :data:`MIN_SECRET` characters are not scrubbed from free text (a port of
``8080`` or a flag of ``1`` would garble every line); where such a value is shown on its own
(``params.show``), it is still shown as written, ``${NAME}``.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from .text import one_line

MIN_SECRET = 6
"""Shortest environment value scrubbed from free text."""

_secrets: dict[str, str] = {}
"""Each remembered value (and its URL-quoted form) -> the placeholder that replaces it."""


def remember(name: str, value: str) -> None:
    """Record that ``value`` came from the environment variable ``name``."""
    if len(value) < MIN_SECRET:
        return
    placeholder = f"${{{name}}}"
    for form in (value, quote(value, safe=""), quote(value)):
        _secrets.setdefault(form, placeholder)


def redact(text: str) -> str:
    """``text`` with every remembered environment value replaced by ``${NAME}``."""
    if not _secrets:
        return text
    for value in sorted(_secrets, key=len, reverse=True):
        if value in text:
            text = text.replace(value, _secrets[value])
    return text


def secret_in(text: str) -> bool:
    """Whether ``text`` holds a remembered environment value."""
    return any(value in text for value in _secrets)


def clean(text: str) -> str:
    """``text`` fit to print: secrets redacted, on one line."""
    return one_line(redact(text))


class RedactingFormatter(logging.Formatter):
    """A formatter whose records come out on one line (tracebacks aside) with secrets redacted."""

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.msg = clean(record.getMessage())
        record.args = None
        return redact(super().format(record))
