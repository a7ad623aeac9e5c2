"""Queries behind `/api/calls`: filters and keyset pagination that stay fast as history grows."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, func, or_, select

from bridge.api.text import unstorable
from bridge.processing.calls_store import legs_of, recordings_of, row_to_dict
from bridge.routing.store import route_of
from bridge.store.engine import reader
from bridge.store.schema import calls

STATUSES = ("ringing", "answered", "ended", "missed", "unknown")
DIRECTIONS = ("incoming", "outgoing", "internal", "unknown")


@dataclass(frozen=True)
class CallFilter:
    since: float | None = None
    until: float | None = None
    status: str | None = None
    extension: str | None = None
    number_digits: str | None = None  # the customer number ends with these digits
    direction: str | None = None  # one of DIRECTIONS


MAX_ENTRY_ID = 160
# A cursor holds a time and an entry id of at most 160 characters, each at most 6 when JSON-escaped.
MAX_CURSOR_LENGTH = 1400
MAX_TIMESTAMP = 1e11  # Unix seconds beyond any call's time (the year 5138)
_CURSOR_CHARS = re.compile(r"[A-Za-z0-9_-]+")


class BadCursor(ValueError):
    """A cursor this API did not hand out; the message says what is wrong with it."""


def encode_cursor(started_at: float | None, entry_id: str) -> str:
    raw = json.dumps([started_at, entry_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """`(started_at, entry_id)` of a cursor from `encode_cursor`; anything else raises `BadCursor`."""
    if len(cursor) > MAX_CURSOR_LENGTH or not _CURSOR_CHARS.fullmatch(cursor):
        raise BadCursor("it is not one of the short base64url strings this API returns")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode())
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
        raise BadCursor("it does not decode") from None
    if not (isinstance(value, list) and len(value) == 2):
        raise BadCursor("it does not hold a position in the call list")
    started_at, entry_id = value
    if started_at is None:
        started_at = 0.0
    if isinstance(started_at, bool) or not isinstance(started_at, int | float):
        raise BadCursor("its time is not a number")
    try:
        started = float(started_at)
    except OverflowError:
        raise BadCursor("its time is out of range") from None
    if not (math.isfinite(started) and 0 <= started <= MAX_TIMESTAMP):
        raise BadCursor("its time is out of range")
    if not isinstance(entry_id, str) or len(entry_id) > MAX_ENTRY_ID or unstorable(entry_id):
        raise BadCursor("its call id is not one this API returns")
    return started, entry_id


def _contains(column: Any, needle: str, dialect: str) -> ColumnElement[bool]:
    """`needle` occurs in `column`, compared character for character (no LIKE wildcards)."""
    position = func.strpos if dialect == "postgresql" else func.instr
    return position(column, needle) > 0


def list_calls(engine: Engine, flt: CallFilter, *, limit: int, cursor: str | None) -> dict[str, Any]:
    """Newest first; `next_cursor` continues after the last item."""
    started = calls.c.started_at
    query = select(calls)
    conditions = []
    if flt.since is not None:
        conditions.append(started >= flt.since)
    if flt.until is not None:
        conditions.append(started < flt.until)
    if flt.status:
        conditions.append(calls.c.status == flt.status)
    if flt.direction:
        conditions.append(calls.c.direction == flt.direction)
    if flt.extension:
        conditions.append(
            or_(
                calls.c.answered_by == flt.extension,
                calls.c.responsible == flt.extension,
                _contains(calls.c.extensions, json.dumps(flt.extension), engine.dialect.name),
            )
        )
    if flt.number_digits:
        conditions.append(calls.c.customer_number.endswith(flt.number_digits, autoescape=True))
    if cursor:
        c_started, c_entry = decode_cursor(cursor)
        conditions.append(or_(started < c_started, and_(started == c_started, calls.c.entry_id < c_entry)))
    if conditions:
        query = query.where(and_(*conditions))
    query = query.order_by(started.desc(), calls.c.entry_id.desc()).limit(limit + 1)
    with reader(engine).connect() as conn:
        rows = conn.execute(query).all()
        page = rows[:limit]
        items = [row_to_dict(row) for row in page]
        legs = legs_of(conn, [item["entry_id"] for item in items])
    for item in items:
        item["legs"] = len(legs[item["entry_id"]])
    next_cursor = encode_cursor(page[-1].started_at, page[-1].entry_id) if len(rows) > limit else None
    return {"items": items, "next_cursor": next_cursor}


def get_call(engine: Engine, entry_id: str) -> dict[str, Any] | None:
    with reader(engine).connect() as conn:
        row = conn.execute(select(calls).where(calls.c.entry_id == entry_id)).first()
        if row is None:
            return None
        item = row_to_dict(row)
        item["legs"] = legs_of(conn, [entry_id])[entry_id]
        item["recordings"] = recordings_of(conn, [entry_id])[entry_id]
        item["routing"] = route_of(conn, entry_id)
    return item
