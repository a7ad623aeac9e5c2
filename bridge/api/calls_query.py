"""Queries behind `/api/calls`: filters and keyset pagination that stay fast as history grows."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, or_, select

from bridge.processing.calls_store import legs_of, recordings_of, row_to_dict
from bridge.store.engine import reader
from bridge.store.schema import calls

STATUSES = ("ringing", "answered", "ended", "missed")
DIRECTIONS = ("incoming", "outgoing", "internal", "unknown")


@dataclass(frozen=True)
class CallFilter:
    since: float | None = None
    until: float | None = None
    status: str | None = None
    extension: str | None = None
    number_digits: str | None = None  # last digits to match against the customer number
    direction: str | None = None  # one of DIRECTIONS


def encode_cursor(started_at: float | None, entry_id: str) -> str:
    raw = json.dumps([started_at, entry_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    padded = cursor + "=" * (-len(cursor) % 4)
    started_at, entry_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
    return float(started_at or 0.0), str(entry_id)


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
                calls.c.extensions.like(f'%"{flt.extension}"%'),
            )
        )
    if flt.number_digits:
        conditions.append(calls.c.customer_number.like(f"%{flt.number_digits}"))
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
    return item
