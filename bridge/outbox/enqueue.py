"""Fan out: CallEvents become outbox rows, one per interested connector, in the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from bridge.connector_api import CallEvent, Connector
from bridge.connector_api.http import idempotency_key
from bridge.store.schema import outbox

__all__ = ["enqueue", "idempotency_key"]


def enqueue(
    conn: sa.Connection,
    events: Sequence[CallEvent],
    connectors: Sequence[Connector],
    *,
    now: float,
) -> int:
    """Insert one pending row per (connector that `wants` the event, event); return the rows inserted.

    Runs inside the caller's transaction (`conn`), so the rows commit or roll back with the events that
    produced them. Rows whose idempotency key already exists (a redelivered webhook, a re-folded call) are
    skipped silently with ``INSERT ... ON CONFLICT DO NOTHING``.
    """
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for event in events:
        payload: str | None = None
        for connector in connectors:
            if not connector.wants(event):
                continue
            key = idempotency_key(connector.name, event)
            if key in seen:
                continue
            seen.add(key)
            if payload is None:
                payload = json.dumps(event.to_dict(), ensure_ascii=False, separators=(",", ":"))
            rows.append(
                {
                    "connector": connector.name,
                    "entry_id": event.entry_id,
                    "event_type": event.type,
                    "idempotency_key": key,
                    "payload": payload,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
            )
    if not rows:
        return 0

    # One multi-row INSERT keeps the rows in event order (ids ascending), which the dispatcher relies on.
    dialect = conn.dialect.name
    if dialect == "postgresql":
        pg_stmt = postgresql.insert(outbox).values(rows)
        pg_stmt = pg_stmt.on_conflict_do_nothing(index_elements=[outbox.c.idempotency_key])
        return len(conn.execute(pg_stmt.returning(outbox.c.id)).all())
    if dialect == "sqlite":
        lite_stmt = sqlite.insert(outbox).values(rows)
        lite_stmt = lite_stmt.on_conflict_do_nothing(index_elements=[outbox.c.idempotency_key])
        return len(conn.execute(lite_stmt.returning(outbox.c.id)).all())

    # Any other database: a savepoint per row, so a duplicate does not spoil the caller's transaction.
    inserted = 0
    for row in rows:
        try:
            with conn.begin_nested():
                conn.execute(sa.insert(outbox).values(row))
        except IntegrityError:
            continue
        inserted += 1
    return inserted
