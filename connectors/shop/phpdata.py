"""Decoding PHP-serialized columns (WordPress ``maybe_serialize``, Bitrix ``b_option``) over `phpserialize`.

Shop databases keep arrays as PHP ``serialize()`` text: ``a:1:{s:8:"customer";b:1;}``. We only ever
read such data, and a card must never fail because one row is malformed, so every helper here is
tolerant: bad, truncated or unsupported data (PHP references ``r:``/``R:``, custom ``C:`` objects)
decodes to ``None`` instead of raising. Objects (``O:``) become plain dicts of their properties; no PHP
class is ever instantiated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import phpserialize  # type: ignore[import-untyped]

MAX_BYTES = 256 * 1024  # a larger cell is not decoded (a card needs a phone number or an address)
_MAX_DEPTH = 2  # WordPress double-serializes strings that already look serialized
_SERIALIZED_HEADS = ("a:", "O:", "s:", "i:", "d:", "b:", "N;")


class _Object(dict):
    """A PHP object's properties as a dict (the class name is kept for whoever needs it)."""

    def __init__(self, class_name: str, props: Mapping[Any, Any]) -> None:
        super().__init__(props)
        self.class_name = class_name


def looks_serialized(value: Any) -> bool:
    """Whether a cell is plausibly PHP-serialized (cheap check before decoding)."""
    if isinstance(value, bytes | bytearray | memoryview):
        head = bytes(value[:2]).decode("ascii", "replace")
    elif isinstance(value, str):
        head = value[:2]
    else:
        return False
    return head in _SERIALIZED_HEADS and len(value) >= 2


def _to_bytes(value: Any) -> bytes | None:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return None


def _normalise(value: Any) -> Any:
    """Bytes that slipped through become text; dict keys become strings; lists for 0..n-1 arrays."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        items = {str(_normalise(k)): _normalise(v) for k, v in value.items()}
        if isinstance(value, _Object):
            return _Object(value.class_name, items)
        return items
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return value


def loads(value: Any) -> Any:
    """Decode one PHP-serialized cell; ``None`` when it is empty, malformed or unsupported.

    Strings are decoded as UTF-8 (PHP's byte lengths are honoured). A string result that is itself
    serialized (WordPress double serialization) is decoded once more. Scalars that are not serialized
    come back as ``None``: use `value_or_text` for a column that holds either.
    """
    data = _to_bytes(value)
    if not data or len(data) > MAX_BYTES:
        return None
    result: Any = None
    for _ in range(_MAX_DEPTH):
        try:
            result = phpserialize.loads(
                data,
                decode_strings=True,
                errors="replace",
                object_hook=lambda name, props: _Object(str(name), props),
            )
        except (ValueError, TypeError, KeyError, IndexError, EOFError, RecursionError, OverflowError):
            return None
        if isinstance(result, str) and looks_serialized(result):
            data = result.encode("utf-8", "surrogatepass")
            continue
        break
    return _normalise(result)


def value_or_text(value: Any) -> Any:
    """A cell that may or may not be serialized: the decoded value if it is, else the cell as text."""
    if looks_serialized(value):
        decoded = loads(value)
        if decoded is not None:
            return decoded
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return value


def pick(data: Any, path: Iterable[str]) -> Any:
    """Follow a path of keys into decoded data; ``*`` means "the keys whose values are true".

    ``pick({"customer": True, "editor": False}, ["*"])`` is ``"customer"``;
    ``pick({"billing": {"phone": "8 916"}}, ["billing", "phone"])`` is ``"8 916"``. A missing key gives
    ``None``. Lists are indexed by their position as text ("0", "1").
    """
    current = data
    for part in path:
        if part == "*":
            if isinstance(current, Mapping):
                keys = [str(k) for k, v in current.items() if v not in (False, None, 0, "", "0")]
                return ", ".join(keys) or None
            if isinstance(current, list):
                return ", ".join(str(v) for v in current if isinstance(v, str | int)) or None
            return None
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def scalar_text(value: Any) -> str | None:
    """A decoded value as text for a card: scalars as they are, arrays of scalars joined; else None."""
    if value is None or isinstance(value, bool):
        return None if value is None else ("yes" if value else "no")
    if isinstance(value, str | int | float):
        text = str(value).strip()
        return text or None
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, list):
        parts = [str(v).strip() for v in value if isinstance(v, str | int | float) and str(v).strip()]
        return ", ".join(parts) or None
    return None
