"""Errors as the one line a user or a log reads."""

from __future__ import annotations

LIMIT = 600
"""Characters of a message at most: a line, never a dump (a tensor's values, a server's page)."""


def one_line(exc: BaseException, *, typed: bool = False) -> str:
    """`exc`'s message with its whitespace folded into one line, cut at LIMIT; `typed` puts the
    exception's type first, for an unexpected error whose message alone may not say what failed."""
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if typed else text or type(exc).__name__
    return text if len(text) < LIMIT else text[: LIMIT - 3] + "..."
