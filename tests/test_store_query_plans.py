"""The queries that run on every pass use their indexes, on a table that has grown: a query that walks
`raw_events` from its first row gets slower with every event the daemon ever received."""

from __future__ import annotations

from sqlalchemy import Engine, Select, func, insert, select, text

from bridge.commands.journal import ACCEPTED, DONE, overdue
from bridge.store.raw_events import pending
from bridge.store.schema import commands, raw_events

PROCESSED = 3000


def _fill(engine: Engine) -> None:
    """A table of a daemon that has run a while: thousands folded, a few waiting, one quarantined."""
    quarantined = PROCESSED + 1
    rows = [
        {
            "path": "events/call",
            "dedup_key": f"k{n}",
            "entry_id": f"e{n}",
            "payload": "{}",
            "received_at": float(n),
            "processed_at": n + 1.0 if n < PROCESSED else None,
            "quarantined_at": n + 1.0 if n == quarantined else None,
            "error": "does not parse" if n == quarantined else None,
        }
        for n in range(PROCESSED + 5)
    ]
    with engine.begin() as conn:
        conn.execute(insert(raw_events), rows)
        if engine.dialect.name == "postgresql":  # its autovacuum keeps statistics; SQLite has none by default
            conn.execute(text("ANALYZE"))


def _plan(engine: Engine, query: Select) -> str:
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as conn:
        return "\n".join(str(row[-1]) for row in conn.execute(text(explain + sql)))


def test_the_processors_pass_reads_waiting_events_by_their_index(engine: Engine) -> None:
    _fill(engine)
    plan = _plan(engine, pending(100))
    assert "ix_raw_events_unprocessed" in plan, plan
    assert "ix_raw_events_quarantined" not in plan, plan
    with engine.connect() as conn:
        waiting = conn.execute(pending(100)).scalars().all()
    assert waiting == [PROCESSED + 1, PROCESSED + 3, PROCESSED + 4, PROCESSED + 5]


def test_the_quarantine_index_holds_only_quarantined_events(engine: Engine) -> None:
    _fill(engine)
    count = select(func.count()).select_from(raw_events).where(raw_events.c.quarantined_at.is_not(None))
    if engine.dialect.name == "sqlite":  # PostgreSQL may rightly scan a table this small
        assert "ix_raw_events_quarantined" in _plan(engine, count)
    with engine.connect() as conn:
        assert conn.execute(count).scalar_one() == 1
        indexed = conn.execute(
            text("SELECT sql FROM sqlite_master WHERE name = 'ix_raw_events_quarantined'")
            if engine.dialect.name == "sqlite"
            else text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_raw_events_quarantined'")
        ).scalar_one()
    assert "quarantined_at IS NOT NULL" in indexed, indexed


def test_the_command_timeout_sweep_reads_waiting_commands_by_their_index(engine: Engine) -> None:
    rows = [
        {
            "command_id": f"c{n}",
            "path": "commands/callback",
            "payload": "{}",
            "status": DONE if n < PROCESSED else ACCEPTED,
            "async_result": 1000 if n < PROCESSED else None,
            "created_at": float(n),
            "updated_at": float(n),
        }
        for n in range(PROCESSED + 3)
    ]
    with engine.begin() as conn:
        conn.execute(insert(commands), rows)
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))
    if engine.dialect.name == "sqlite":  # PostgreSQL may rightly scan a table this small
        assert "ix_commands_waiting" in _plan(engine, overdue(PROCESSED + 1.5))
    with engine.connect() as conn:
        due = conn.execute(overdue(PROCESSED + 1.5)).scalars().all()
    assert sorted(due) == [f"c{PROCESSED}", f"c{PROCESSED + 1}"]
