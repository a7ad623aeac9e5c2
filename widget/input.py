"""What the widget's endpoints accept as text and JSON: refused with a reason before anything reads it.

Every string that reaches the store or a query (fields, site keys, status tokens) must be text PostgreSQL
can hold: no NUL characters and no lone surrogates (which JSON's `\\ud800` escapes can produce). Bodies are
bounded in size and nesting before they are parsed, so deep or huge JSON costs nothing and raises nothing.
"""

from __future__ import annotations

import json
import re
from typing import Any

from widget.errors import WidgetError

__all__ = ["MAX_BODY_BYTES", "MAX_DEPTH", "check_text", "parse_body"]

MAX_BODY_BYTES = 16 * 1024
MAX_DEPTH = 8  # the widget sends an object holding one object (utm)
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # unrolled: one step per run
_BRACKETS = re.compile(r"[\[\]{}]")


def _bad(reason: str) -> WidgetError:
    return WidgetError(400, "bad_request", reason)


def check_text(value: str, what: str) -> str:
    """`value` unchanged, or a 400 naming `what` when it holds a NUL character or a lone surrogate."""
    if "\x00" in value:
        raise _bad(f"{what} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(f"{what} is not valid text (it holds a lone surrogate)") from None
    return value


def _too_deep(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether arrays and objects nest deeper than `limit` (brackets inside strings do not count)."""
    depth = 0
    for bracket in _BRACKETS.finditer(_STRINGS.sub("", text)):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > limit:
            return True
    return False


def _check_strings(data: Any) -> None:
    """Every key and string value in the (already depth-bounded) document is clean text."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            check_text(value, f"'{path}'")
        elif isinstance(value, dict):
            for key, item in value.items():
                name = f"{path}.{key}" if path else key
                check_text(key, "a field name")
                stack.append((name, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))


def parse_body(raw: bytes, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The request's JSON object; `WidgetError` 413 when too large, 400 with the reason when malformed."""
    if len(raw) > limit:
        raise WidgetError(413, "too_large", f"the request body is too large: at most {limit} bytes")
    if not raw.strip():
        raise _bad("send the request as a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("the request body is not UTF-8 text") from None
    if _too_deep(text):
        raise _bad(f"the JSON is nested too deeply (at most {MAX_DEPTH} levels)")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise _bad("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise _bad("send the request as a JSON object")
    _check_strings(data)
    return data
