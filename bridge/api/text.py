"""Text a database cannot store: refused at the edge of the API instead of failing in a query."""

from __future__ import annotations

import re

# NUL (PostgreSQL text cannot hold it) and lone surrogates (not encodable as UTF-8).
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def unstorable(text: str) -> bool:
    """Whether `text` holds a character no store (SQLite or PostgreSQL) can take."""
    return _UNSTORABLE.search(text) is not None
