"""The SQLite write lock: background writers checkpoint the WAL after releasing it, and the processor's
short pass stores the same snapshots as before (real store, real writer)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, select

from bridge.ingest.writer import GroupCommitWriter
from bridge.pbx.mango import parse as mango_parse
from bridge.pbx.mango.receiver import raw_record
from bridge.processing.processor import EventProcessor
from bridge.store.engine import make_engine
from bridge.store.migrate import upgrade
from bridge.store.schema import calls, legs

TIMEOUT = 30.0  # generous: the machine may be loaded


def test_the_wal_is_checkpointed_after_a_background_transaction_not_inside_a_commit(tmp_path: Path) -> None:
    db = tmp_path / "callbridge.db"
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    engine.dispose()
    size_before = db.stat().st_size
    # ~6 MB of events: past SQLite's automatic checkpoint (1,000 pages), which ingest commits leave alone.
    _store(engine, [event for i in range(2000) for event in _call(f"wal-{i}")])
    wal = Path(f"{db}-wal")
    assert wal.stat().st_size > 4_000_000
    assert db.stat().st_size < size_before + 1_000_000  # the events are still only in the WAL
    assert EventProcessor(engine, {}, batch_size=50).run_once() == 50
    assert db.stat().st_size > size_before + 3_000_000  # checkpointed by the processor's pass
    engine.dispose()


def _leg_event(entry_id: str, leg: int, seq: int, state: str, at: int) -> dict:
    event = {
        "entry_id": entry_id,
        "call_id": f"{entry_id}-leg{leg}",
        "timestamp": at,
        "seq": seq,
        "call_state": state,
        "location": "abonent",
        "from": {"number": "79607164646"},
        "to": {"extension": str(200 + leg), "number": "79776307393"},
    }
    if state == "Disconnected":
        event["disconnect_reason"] = 1110
    return event


def _call(entry_id: str) -> list[dict]:
    """Two legs ring, one answers, both end."""
    return [
        _leg_event(entry_id, 1, 1, "Appeared", 1670060542),
        _leg_event(entry_id, 2, 1, "Appeared", 1670060542),
        _leg_event(entry_id, 1, 2, "Connected", 1670060545),
        _leg_event(entry_id, 2, 2, "Disconnected", 1670060545),
        _leg_event(entry_id, 1, 3, "Disconnected", 1670060590),
    ]


def _store(engine: Engine, payloads: list[dict]) -> None:
    """Commit `payloads` through the ingest writer, in order, in as few transactions as it likes."""
    writer = GroupCommitWriter(engine, on_commit=lambda: None)
    try:
        futures = []
        for payload in payloads:
            text = json.dumps(payload)
            event = mango_parse.parse("events/call", payload)
            record = raw_record("events/call", event, text, received_at=1700000000.0)
            futures.append(writer.submit(record))
        assert all(future.result(timeout=TIMEOUT) for future in futures)
    finally:
        writer.stop()


def _snapshots(engine: Engine, prefix: str) -> list[tuple]:
    """Calls and legs of the calls whose entry_id starts with `prefix`, with the prefix taken out."""
    rows = []
    with engine.connect() as conn:
        for table, key in ((calls, calls.c.entry_id), (legs, legs.c.call_id)):
            query = select(table).where(table.c.entry_id.startswith(prefix)).order_by(key)
            for row in conn.execute(query):
                values = {k: v for k, v in row._mapping.items() if k != "updated_at"}
                rows.append((table.name, json.dumps(values, sort_keys=True).replace(prefix, "*")))
    return rows


def test_one_pass_over_many_calls_stores_what_one_pass_per_event_stores(engine: Engine) -> None:
    _store(engine, [event for i in range(6) for event in _call(f"together-{i}")])
    assert EventProcessor(engine, {}, batch_size=100, clock=lambda: 1700000001.0).run_once() == 30
    _store(engine, [event for i in range(6) for event in _call(f"apart-{i}")])
    one_by_one = EventProcessor(engine, {}, batch_size=1, clock=lambda: 1700000001.0)
    assert sum(one_by_one.run_once() for _ in range(30)) == 30
    together, apart = _snapshots(engine, "together-"), _snapshots(engine, "apart-")
    assert len(together) == 6 * 3  # a call row and two legs each
    assert together == apart
