"""Query parameters of the API: checked and converted before any of them reaches a query."""

from __future__ import annotations

import math
import re
from datetime import datetime

from flask import request

from bridge.api.calls_query import MAX_TIMESTAMP
from bridge.api.text import unstorable
from bridge.http_errors import ApiError

MAX_PARAMETER = 2000  # characters in one query parameter or path value


def refuse_unreadable_input() -> None:
    """A `before_request` hook: 400 for query parameters or path values no store could hold."""
    values = [(name, value) for name, value in request.args.items(multi=True)]
    values += [(name, value) for name, value in (request.view_args or {}).items() if isinstance(value, str)]
    for name, value in values:
        if unstorable(name) or unstorable(value):
            raise ApiError(400, f"'{_shown(name)}' holds a NUL or an unpaired surrogate character")
        if len(value) > MAX_PARAMETER:
            raise ApiError(400, f"'{_shown(name)}' is too long (at most {MAX_PARAMETER} characters)")


def whole_number(name: str, value: str | None, *, default: int, low: int, high: int) -> int:
    """`value` as a whole number from `low` to `high` (ASCII digits only); `default` when absent."""
    if value is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", value) or not low <= int(value) <= high:
        raise ApiError(400, f"'{name}' must be a whole number from {low} to {high}")
    return int(value)


def moment(name: str, value: str | None) -> float | None:
    """Unix seconds from Unix seconds or ISO 8601 with a time zone; None when absent."""
    if not value:
        return None
    if re.fullmatch(r"[0-9]{1,12}(\.[0-9]{1,9})?", value):
        seconds = float(value)
    else:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(
                400, f"'{name}' must be Unix seconds or an ISO 8601 time, got '{_shown(value)}'"
            ) from None
        if parsed.tzinfo is None:
            raise ApiError(400, f"'{name}' needs a time zone (e.g. 2026-11-25T10:00:00+03:00)")
        try:
            seconds = parsed.timestamp()
        except (OverflowError, ValueError):
            seconds = math.inf
    if not 0 <= seconds <= MAX_TIMESTAMP:
        raise ApiError(400, f"'{name}' is out of range (before 1970 or thousands of years ahead)")
    return seconds


def _shown(text: str) -> str:
    """A parameter as it may appear in an error message: short, printable."""
    return "".join(ch if ch.isprintable() and not unstorable(ch) else "?" for ch in text[:40])
