"""The missed-call follow-up sweeper against a real store: which later call counts as a callback, who did
it, and that each missed call is announced once."""

from __future__ import annotations

import json

from sqlalchemy import Engine, func, insert, select

from bridge.connector_api import CallEvent, Connector, Manifest, RefStore, Title
from bridge.followup import FollowUpSweeper
from bridge.store.schema import calls, missed_followups, outbox

NOW = 1_800_000_000.0


class _Listener(Connector):
    manifest = Manifest(name="listener", title=Title("Listener", "Слушатель"), docs="-")
    config_model = None  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]

    def handle(self, event: CallEvent, refs: RefStore) -> None:
        return None


def _call(
    engine: Engine, entry_id: str, *, direction: str, at: float, missed: bool = False, **values: object
) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(calls).values(
                entry_id=entry_id,
                direction=direction,
                status="missed" if missed else "ended",
                customer_number=values.pop("customer", "79161234567"),
                missed=missed,
                closed=True,
                started_at=at,
                ended_at=at + 30,
                answered_at=None if missed else at + 5,
                updated_at=at,
                **values,
            )
        )


def _announced(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(outbox.c.entry_id, outbox.c.payload).where(outbox.c.event_type == "call.called_back")
        )
        return [{"entry_id": r.entry_id, **json.loads(r.payload)} for r in rows]


def test_the_first_answered_call_after_a_missed_one_follows_it_up_once(engine: Engine) -> None:
    _call(engine, "missed", direction="incoming", at=NOW - 3600, missed=True, responsible="101")
    _call(engine, "before", direction="outgoing", at=NOW - 7200, answered_by="103")  # earlier: not a callback
    _call(engine, "other", direction="outgoing", at=NOW - 1800, answered_by="104", customer="79035550000")
    sweeper = FollowUpSweeper(engine, {"listener": _Listener()}, clock=lambda: NOW)
    assert sweeper.run_once() == 0
    _call(engine, "back", direction="outgoing", at=NOW - 600, answered_by="102", customer="+79161234567")
    _call(engine, "later", direction="incoming", at=NOW - 60, answered_by="105")
    assert sweeper.run_once() == 1
    assert sweeper.run_once() == 0  # once
    (event,) = _announced(engine)
    assert (event["entry_id"], event["type"], event["extension"]) == ("missed", "call.called_back", "102")
    assert event["extra"] == {"by_entry_id": "back", "how": "employee_called", "responsible": "101"}
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(missed_followups)).scalar() == 1


def test_a_customer_who_gets_through_later_also_follows_the_missed_call_up(engine: Engine) -> None:
    _call(engine, "missed", direction="incoming", at=NOW - 3600, missed=True)
    _call(engine, "again", direction="incoming", at=NOW - 100, answered_by="201")
    _call(engine, "old-missed", direction="incoming", at=NOW - 30 * 86400, missed=True)  # past the horizon
    sweeper = FollowUpSweeper(engine, {"listener": _Listener()}, clock=lambda: NOW)
    assert sweeper.run_once() == 1
    with engine.connect() as conn:
        row = conn.execute(select(missed_followups)).one()
    assert (row.entry_id, row.by_entry_id, row.by_extension, row.how) == (
        "missed",
        "again",
        "201",
        "customer_called",
    )
    assert row.called_back_at == NOW - 95


def test_missed_calls_never_called_back_do_not_hide_later_ones(engine: Engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import bridge.followup.sweeper as sweeper_module

    monkeypatch.setattr(sweeper_module, "BATCH", 3)
    for i in range(7):  # seven missed calls nobody called back, all older than the one that was
        _call(
            engine,
            f"lost-{i}",
            direction="incoming",
            at=NOW - 7200 + i,
            missed=True,
            customer=f"7903000000{i}",
        )
    _call(engine, "missed", direction="incoming", at=NOW - 3600, missed=True)
    _call(engine, "back", direction="outgoing", at=NOW - 600, answered_by="102")
    sweeper = FollowUpSweeper(engine, {"listener": _Listener()}, clock=lambda: NOW)
    found = [sweeper.run_once() for _ in range(4)]
    assert sum(found) == 1 and [e["entry_id"] for e in _announced(engine)] == ["missed"]
