"""The outbox SQL of one connector's lane: which rows are eligible, claiming them, releasing and finishing.

Pure SQL and row mapping, no threads: the dispatcher (`bridge.outbox.dispatcher`) decides when to claim and
how many rows, and this module says which rows and writes the claim. The eligibility rules (the oldest pending
row of each call, fresh urgent rows, live claims) are described in the dispatcher's module docstring.

On PostgreSQL the eligible ids are locked with ``FOR UPDATE SKIP LOCKED`` inside the claiming UPDATE, so any
number of dispatcher processes can share the table; on SQLite (one dispatcher process) the same UPDATE
statements run in one write transaction, which SQLite serialises.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from bridge.connector_api.events import CALL_ENDED
from bridge.store.engine import reader
from bridge.store.schema import outbox
from bridge.store.write_lock import write_transaction

__all__ = ["Claims", "Row", "Urgency", "finish", "release", "release_orphaned"]

_ROW_COLUMNS = (
    outbox.c.id,
    outbox.c.connector,
    outbox.c.entry_id,
    outbox.c.event_type,
    outbox.c.payload,
    outbox.c.attempts,
)


@dataclass
class Row:
    """A claimed outbox row; `urgent` when it was claimed as a fresh urgent row."""

    id: int
    connector: str
    entry_id: str
    event_type: str
    payload: str
    attempts: int
    urgent: bool = False


@dataclass(frozen=True)
class Urgency:
    """Which rows count as urgent: these event types, queued at most `max_age` seconds ago."""

    types: frozenset[str]
    max_age: float


class Claims:
    """The claim SQL of the rows queued for `connector`."""

    def __init__(self, engine: sa.Engine, connector: str) -> None:
        self.engine = engine
        self.connector = connector
        self._postgres = engine.dialect.name == "postgresql"

    def anything_due(self, now: float) -> bool:
        """A cheap read before claiming, so an idle dispatcher takes no write lock (SQLite)."""
        query = (
            sa.select(outbox.c.id)
            .where(
                outbox.c.connector == self.connector,
                outbox.c.status == "pending",
                outbox.c.next_attempt_at <= now,
            )
            .limit(1)
        )
        with reader(self.engine).connect() as conn:
            return conn.execute(query).first() is not None

    def anything_urgent(self, now: float, urgency: Urgency) -> bool:
        """A read before an urgent-only claim: most looks find nothing and must not take a write lock."""
        with reader(self.engine).connect() as conn:
            return conn.execute(self.eligible(now, 1, urgency=urgency)).first() is not None

    def claim(
        self,
        now: float,
        limit: int,
        *,
        until: float,
        urgency: Urgency | None,
        urgent_cap: int,
        urgent_only: bool = False,
    ) -> list[Row]:
        """Claim up to `limit` eligible rows until `until`: at most `urgent_cap` fresh urgent ones first
        (flagged; none when `urgency` is None), then the oldest (none when `urgent_only`)."""
        if urgent_only:
            if urgency is None or not self.anything_urgent(now, urgency):
                return []
        elif not self.anything_due(now):
            return []
        with write_transaction(self.engine) as conn:
            urgent = self.claim_rows(conn, now, urgent_cap, until, urgency=urgency) if urgency else []
            rest = [] if urgent_only else self.claim_rows(conn, now, limit - len(urgent), until)
        for row in urgent:
            row.urgent = True
        return urgent + rest

    def eligible(
        self, now: float, limit: int, *, urgency: Urgency | None = None, lock: bool = False
    ) -> sa.Select[tuple[int]]:
        """The ids of the eligible rows, oldest first; fresh urgent ones only when `urgency` is given;
        locked with SKIP LOCKED on PostgreSQL when `lock`."""
        cand = outbox.alias("cand")
        older = outbox.alias("older")
        # "+ 0" keeps the planners off ix_outbox_due (every backlog row is due) and on ix_outbox_urgent.
        due = cand.c.next_attempt_at + 0 if urgency else cand.c.next_attempt_at
        where = [
            cand.c.connector == self.connector,
            cand.c.status == "pending",
            due <= now,
            sa.or_(cand.c.claimed_until.is_(None), cand.c.claimed_until <= now),
            ~sa.exists().where(
                older.c.connector == cand.c.connector,
                older.c.entry_id == cand.c.entry_id,
                older.c.status == "pending",
                older.c.id < cand.c.id,
            ),
        ]
        if urgency:
            ended = outbox.alias("ended")
            where += [
                cand.c.event_type.in_(sorted(urgency.types)),
                cand.c.created_at >= now - urgency.max_age,
                ~sa.exists().where(
                    ended.c.connector == cand.c.connector,
                    ended.c.entry_id == cand.c.entry_id,
                    ended.c.event_type == CALL_ENDED,
                    ended.c.id > cand.c.id,
                ),
            ]
        eligible = sa.select(cand.c.id).where(*where).order_by(cand.c.id).limit(limit)
        if lock and self._postgres:
            eligible = eligible.with_for_update(skip_locked=True, of=cand)
        return eligible

    def claim_rows(
        self, conn: sa.Connection, now: float, limit: int, until: float, *, urgency: Urgency | None = None
    ) -> list[Row]:
        """Claim (in `conn`'s transaction) up to `limit` eligible rows until `until`, oldest first."""
        if limit < 1:
            return []
        stmt = (
            sa.update(outbox)
            .where(outbox.c.id.in_(self.eligible(now, limit, urgency=urgency, lock=True)))
            .values(claimed_until=until)
            .returning(*_ROW_COLUMNS)
        )
        rows = [Row(*r) for r in conn.execute(stmt).all()]
        rows.sort(key=lambda r: r.id)
        return rows


def release(engine: sa.Engine, ids: list[int]) -> None:
    """Give up the claim of rows not started (still pending)."""
    with write_transaction(engine) as conn:
        conn.execute(
            sa.update(outbox)
            .where(outbox.c.id.in_(ids), outbox.c.status == "pending")
            .values(claimed_until=None)
        )


def release_orphaned(engine: sa.Engine) -> int:
    """On SQLite, end every claim still held: one dispatcher process runs there, so a claim found when it
    starts was left by a process that died mid-delivery. Those rows go out now instead of when their claim
    would have lapsed. A no-op elsewhere (PostgreSQL's dispatchers share the table). Returns rows released."""
    if engine.dialect.name != "sqlite":
        return 0
    with write_transaction(engine) as conn:
        result = conn.execute(
            sa.update(outbox)
            .where(outbox.c.status == "pending", outbox.c.claimed_until.is_not(None))
            .values(claimed_until=None)
        )
    return result.rowcount or 0


def finish(engine: sa.Engine, row_id: int, **values: object) -> None:
    """Record an attempt's outcome (`values`) on a still pending row and end its claim."""
    with write_transaction(engine) as conn:
        conn.execute(
            sa.update(outbox)
            .where(outbox.c.id == row_id, outbox.c.status == "pending")
            .values(claimed_until=None, **values)
        )
