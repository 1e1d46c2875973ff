"""``python -m rtstream``: the command line."""

from .cli import entry

entry()
