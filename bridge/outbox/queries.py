"""Read and repair the outbox: for the CLI (`callbridge deliveries`) and the admin panel."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from bridge.store.schema import outbox

__all__ = ["STATUSES", "DeliveryRow", "counts", "list_deliveries", "retry_deliveries"]

STATUSES: tuple[str, ...] = ("pending", "done", "dead")


@dataclass(frozen=True)
class DeliveryRow:
    """One outbox row as operators see it (the payload is left out; it may carry customer data)."""

    id: int
    connector: str
    entry_id: str
    event_type: str
    idempotency_key: str
    status: str
    attempts: int
    next_attempt_at: float
    claimed_until: float | None
    last_error: str | None
    created_at: float
    delivered_at: float | None


_COLUMNS = [outbox.c[name] for name in DeliveryRow.__dataclass_fields__]


def list_deliveries(
    engine: sa.Engine,
    status: str | None = None,
    connector: str | None = None,
    entry_id: str | None = None,
    limit: int = 50,
) -> list[DeliveryRow]:
    """The newest deliveries first, optionally filtered by status, connector and call (entry_id)."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    stmt = sa.select(*_COLUMNS).order_by(outbox.c.id.desc()).limit(max(0, int(limit)))
    if status is not None:
        stmt = stmt.where(outbox.c.status == status)
    if connector is not None:
        stmt = stmt.where(outbox.c.connector == connector)
    if entry_id is not None:
        stmt = stmt.where(outbox.c.entry_id == entry_id)
    with engine.connect() as conn:
        return [DeliveryRow(**row._asdict()) for row in conn.execute(stmt)]


def retry_deliveries(
    engine: sa.Engine,
    ids: Iterable[int] | None = None,
    status: str | None = "dead",
    connector: str | None = None,
    now: float | None = None,
) -> int:
    """Put matching rows back in the queue, due at once with a fresh budget; return how many.

    Matches rows with `status` (dead by default; None matches any status except pending ones that are
    claimed right now), restricted to `ids` and/or `connector` when given. ``last_error`` is kept until the
    next attempt overwrites it, so the operator still sees why the row had failed.
    """
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    at = time.time() if now is None else now
    stmt = sa.update(outbox).values(status="pending", attempts=0, next_attempt_at=at, claimed_until=None)
    if ids is not None:
        id_list = [int(i) for i in ids]
        if not id_list:
            return 0
        stmt = stmt.where(outbox.c.id.in_(id_list))
    if status is not None:
        stmt = stmt.where(outbox.c.status == status)
    else:
        stmt = stmt.where(
            sa.or_(
                outbox.c.status != "pending",
                outbox.c.claimed_until.is_(None),
                outbox.c.claimed_until <= at,
            )
        )
    if connector is not None:
        stmt = stmt.where(outbox.c.connector == connector)
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount


def counts(engine: sa.Engine, now: float | None = None) -> dict[str, Any]:
    """Totals for dashboards and health checks.

    ``{"pending": n, "done": n, "dead": n, "due": n, "oldest_pending_at": float | None,
    "by_connector": {name: {"pending": n, "done": n, "dead": n}}}``; ``due`` counts pending rows whose
    next attempt time has come (a growing number means the dispatcher is behind or stopped).
    """
    at = time.time() if now is None else now
    result: dict[str, Any] = {status: 0 for status in STATUSES}
    by_connector: dict[str, dict[str, int]] = {}
    stmt = sa.select(outbox.c.connector, outbox.c.status, sa.func.count()).group_by(
        outbox.c.connector, outbox.c.status
    )
    pending = sa.select(
        sa.func.count().filter(outbox.c.next_attempt_at <= at), sa.func.min(outbox.c.created_at)
    ).where(outbox.c.status == "pending")
    with engine.connect() as conn:
        for name, status, n in conn.execute(stmt):
            per = by_connector.setdefault(name, {s: 0 for s in STATUSES})
            per[status] = per.get(status, 0) + n
            result[status] = result.get(status, 0) + n
        due, oldest = conn.execute(pending).one()
    result["due"] = due or 0
    result["oldest_pending_at"] = oldest
    result["by_connector"] = dict(sorted(by_connector.items()))
    return result
