"""The outbox around the dispatcher: enqueue, the retry policy, refs, queries and the CLI."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from pydantic import BaseModel

from bridge.connector_api import CallEvent, Connector, RefStore
from bridge.connector_api.http import idempotency_key
from bridge.outbox.cli import deliveries
from bridge.outbox.enqueue import enqueue
from bridge.outbox.queries import counts, list_deliveries, retry_deliveries
from bridge.outbox.refs import SqlRefStore
from bridge.outbox.retry import RetryPolicy
from bridge.store.schema import outbox

try:
    from outbox_fixtures import db_engine, make_event  # noqa: F401
except ImportError:  # tests/ became a package
    from tests.outbox_fixtures import db_engine, make_event  # noqa: F401

NOW = 1_700_000_000.0


class _NoConfig(BaseModel):
    pass


class Sink(Connector):
    name = "sink"
    config_model = _NoConfig

    def __init__(self, name: str = "sink", event_types: frozenset[str] | None = None) -> None:
        super().__init__(_NoConfig())
        self.name = name  # type: ignore[misc]
        self.event_types = event_types  # type: ignore[misc]

    def handle(self, event: CallEvent, refs: RefStore) -> None:  # pragma: no cover - not dispatched here
        pass


def _all_rows(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        return [r._asdict() for r in conn.execute(sa.select(outbox).order_by(outbox.c.id))]


# ---------------------------------------------------------------------------------------------- enqueue


def test_enqueue_makes_one_row_per_interested_connector_and_event(db_engine):
    events = [make_event("E1", "call.ringing", key="call.ringing:leg-1"), make_event("E1", "call.missed")]
    everything = Sink("crm")
    missed_only = Sink("tasks", frozenset({"call.missed"}))
    with db_engine.begin() as conn:
        assert enqueue(conn, events, [everything, missed_only], now=NOW) == 3
    rows = _all_rows(db_engine)
    assert [(r["connector"], r["event_type"], r["idempotency_key"]) for r in rows] == [
        ("crm", "call.ringing", "crm:E1:call.ringing:leg-1"),
        ("crm", "call.missed", "crm:E1:call.missed"),
        ("tasks", "call.missed", "tasks:E1:call.missed"),
    ]
    for row in rows:
        assert row["status"] == "pending" and row["attempts"] == 0
        assert row["next_attempt_at"] == NOW and row["created_at"] == NOW
        assert row["entry_id"] == "E1"
        assert row["claimed_until"] is None and row["last_error"] is None
    assert CallEvent.from_dict(json.loads(rows[0]["payload"])) == events[0]


def test_idempotency_key_is_connector_call_and_event_key():
    event = make_event("MTAxOjE", "call.ringing", key="call.ringing:leg-7")
    assert idempotency_key("bitrix24", event) == "bitrix24:MTAxOjE:call.ringing:leg-7"


def test_enqueue_skips_duplicates_silently(db_engine):
    crm = Sink("crm")
    events = [make_event("E1", "call.ringing"), make_event("E1", "call.ended")]
    with db_engine.begin() as conn:
        assert enqueue(conn, events, [crm], now=NOW) == 2
    with db_engine.begin() as conn:
        # A redelivered webhook: the same events again, plus one new one, plus a duplicate in the batch.
        again = [*events, make_event("E1", "call.missed"), make_event("E1", "call.missed")]
        assert enqueue(conn, again, [crm], now=NOW + 5) == 1
    rows = _all_rows(db_engine)
    assert [r["event_type"] for r in rows] == ["call.ringing", "call.ended", "call.missed"]
    assert rows[0]["created_at"] == NOW  # the original row is untouched


def test_enqueue_commits_or_rolls_back_with_the_callers_transaction(db_engine):
    class Boom(Exception):
        pass

    with pytest.raises(Boom), db_engine.begin() as conn:
        assert enqueue(conn, [make_event("E1")], [Sink()], now=NOW) == 1
        raise Boom
    assert _all_rows(db_engine) == []


def test_enqueue_with_nothing_to_do_returns_zero(db_engine):
    with db_engine.begin() as conn:
        assert enqueue(conn, [], [Sink()], now=NOW) == 0
        assert enqueue(conn, [make_event("E1")], [], now=NOW) == 0
        assert enqueue(conn, [make_event("E1")], [Sink("x", frozenset({"call.ended"}))], now=NOW) == 0


# ---------------------------------------------------------------------------------------------- policy


def test_backoff_is_full_jitter_under_an_exponential_ceiling():
    draws = iter([0.0, 0.5, 0.999999, 0.5])
    policy = RetryPolicy(base=10, factor=2, cap=1200, min_delay=1, random=lambda: next(draws))
    assert policy.backoff(1) == 1  # jitter 0 -> never below min_delay
    assert policy.backoff(2) == pytest.approx(10)  # half of 20
    assert policy.backoff(3) == pytest.approx(40, rel=1e-5)  # just under the ceiling
    assert policy.backoff(30) == pytest.approx(600)  # ceiling capped at 20 min, half of it


def test_ceilings_grow_exponentially_up_to_the_cap():
    policy = RetryPolicy(base=10, factor=2, cap=1200)
    assert [policy.ceiling(n) for n in range(1, 10)] == [10, 20, 40, 80, 160, 320, 640, 1200, 1200]
    assert policy.ceiling(0) == 0
    assert policy.ceiling(10_000) == 1200  # no overflow


def test_retry_after_wins_only_when_longer_than_the_backoff():
    policy = RetryPolicy(base=10, random=lambda: 0.5)
    assert policy.next_delay(1, retry_after=None) == 5
    assert policy.next_delay(1, retry_after=2) == 5
    assert policy.next_delay(1, retry_after=30) == 30


def test_budget_is_max_attempts_in_total():
    policy = RetryPolicy(max_attempts=3)
    assert [policy.exhausted(n) for n in (1, 2, 3, 4)] == [False, False, True, True]


def test_default_budget_is_about_twelve_attempts_over_about_an_hour():
    policy = RetryPolicy()
    assert policy.max_attempts == 12
    waits = policy.schedule()
    assert len(waits) == 11
    expected_total = sum(waits) / 2  # full jitter averages half the ceiling
    assert 40 * 60 <= expected_total <= 70 * 60
    assert sum(waits) <= 2 * 3600


def test_policy_rejects_nonsense():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(factor=0.5)


# ---------------------------------------------------------------------------------------------- refs


def test_ref_store_upserts_and_is_scoped_per_connector(db_engine):
    bitrix = SqlRefStore(db_engine, "bitrix24")
    amo = SqlRefStore(db_engine, "amocrm")
    assert bitrix.get("E1", "call_id") is None
    bitrix.put("E1", "call_id", "externalCall.1")
    bitrix.put("E1", "call_id", "externalCall.2")
    bitrix.put("E1", "task_id", "77")
    amo.put("E1", "call_id", "amo-9")
    assert bitrix.get("E1", "call_id") == "externalCall.2"
    assert bitrix.items("E1") == {"call_id": "externalCall.2", "task_id": "77"}
    assert amo.get("E1", "call_id") == "amo-9"
    assert bitrix.get("E2", "call_id") is None


# ---------------------------------------------------------------------------------------------- queries


@pytest.fixture
def mixed_rows(db_engine):
    """Rows in every status: crm has calls A (done), B (dead), C (pending); tasks has A (dead)."""
    crm, tasks = Sink("crm"), Sink("tasks", frozenset({"call.missed"}))
    with db_engine.begin() as conn:
        enqueue(conn, [make_event("A", "call.missed")], [crm, tasks], now=NOW)
        enqueue(conn, [make_event("B", "call.ended"), make_event("C", "call.ended")], [crm], now=NOW + 1)
        conn.execute(
            sa.update(outbox)
            .where(outbox.c.idempotency_key == "crm:A:call.missed")
            .values(status="done", attempts=1, delivered_at=NOW + 2)
        )
        conn.execute(
            sa.update(outbox)
            .where(outbox.c.idempotency_key.in_(["crm:B:call.ended", "tasks:A:call.missed"]))
            .values(status="dead", attempts=12, last_error="POST https://crm.example: HTTP 401 Unauthorized")
        )
        conn.execute(
            sa.update(outbox)
            .where(outbox.c.idempotency_key == "crm:C:call.ended")
            .values(attempts=2, next_attempt_at=NOW + 60)
        )
    return db_engine


def test_list_deliveries_newest_first_with_filters(mixed_rows):
    engine = mixed_rows
    assert [r.idempotency_key for r in list_deliveries(engine)] == [
        "crm:C:call.ended",
        "crm:B:call.ended",
        "tasks:A:call.missed",
        "crm:A:call.missed",
    ]
    assert {r.idempotency_key for r in list_deliveries(engine, status="dead")} == {
        "crm:B:call.ended",
        "tasks:A:call.missed",
    }
    assert [r.connector for r in list_deliveries(engine, status="dead", connector="tasks")] == ["tasks"]
    assert [r.connector for r in list_deliveries(engine, entry_id="A")] == ["tasks", "crm"]
    assert len(list_deliveries(engine, limit=1)) == 1
    row = list_deliveries(engine, status="done")[0]
    assert (row.attempts, row.delivered_at, row.event_type) == (1, NOW + 2, "call.missed")
    with pytest.raises(ValueError, match="unknown status"):
        list_deliveries(engine, status="failed")


def test_retry_deliveries_resets_dead_rows_only(mixed_rows):
    engine = mixed_rows
    assert retry_deliveries(engine, connector="crm", now=NOW + 100) == 1
    row = next(r for r in list_deliveries(engine) if r.idempotency_key == "crm:B:call.ended")
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, NOW + 100)
    assert row.last_error  # kept until the next attempt
    # The done and the backing-off pending rows are untouched.
    statuses = {r.idempotency_key: (r.status, r.attempts) for r in list_deliveries(engine)}
    assert statuses["crm:A:call.missed"] == ("done", 1)
    assert statuses["crm:C:call.ended"] == ("pending", 2)
    assert statuses["tasks:A:call.missed"] == ("dead", 12)


def test_retry_deliveries_by_id(mixed_rows):
    engine = mixed_rows
    ids = {r.idempotency_key: r.id for r in list_deliveries(engine)}
    assert retry_deliveries(engine, ids=[ids["tasks:A:call.missed"], ids["crm:A:call.missed"]], now=NOW) == 1
    assert retry_deliveries(engine, ids=[], now=NOW) == 0
    assert retry_deliveries(engine, now=NOW) == 1  # every dead row: crm:B is the one left
    assert counts(engine)["dead"] == 0


def test_counts_by_status_and_connector(mixed_rows):
    totals = counts(mixed_rows, now=NOW + 30)
    assert (totals["pending"], totals["done"], totals["dead"]) == (1, 1, 2)
    assert totals["due"] == 0  # the pending row waits until NOW + 60
    assert totals["oldest_pending_at"] == NOW + 1
    assert totals["by_connector"] == {
        "crm": {"pending": 1, "done": 1, "dead": 1},
        "tasks": {"pending": 0, "done": 0, "dead": 1},
    }
    assert counts(mixed_rows, now=NOW + 60)["due"] == 1


# ---------------------------------------------------------------------------------------------- CLI


def _cli(engine: sa.Engine) -> click.Group:
    @click.group()
    @click.pass_context
    def root(ctx: click.Context) -> None:
        ctx.obj = SimpleNamespace(engine=engine)

    root.add_command(deliveries)
    return root


def test_cli_list_prints_a_table(mixed_rows):
    result = CliRunner().invoke(_cli(mixed_rows), ["deliveries", "list", "--status", "dead"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "ID",
        "CONNECTOR",
        "CALL",
        "TYPE",
        "STATUS",
        "ATTEMPTS",
        "WHEN",
        "(UTC)",
        "LAST",
        "ERROR",
    ]
    assert lines[1].startswith("--")
    body = [line for line in lines[2:] if line.strip()]
    assert len(body) == 3  # two rows and the totals line
    assert body[0].split()[:5] == ["3", "crm", "B", "call.ended", "dead"] and "HTTP 401" in body[0]
    assert body[1].split()[:2] == ["2", "tasks"]
    assert "In the outbox: 1 pending (1 due), 1 done, 2 dead." in result.output


def test_cli_list_filters_by_connector_and_call(mixed_rows):
    runner = CliRunner()
    result = runner.invoke(_cli(mixed_rows), ["deliveries", "list", "--connector", "crm", "--call", "A"])
    assert result.exit_code == 0, result.output
    assert "crm:" not in result.output  # keys are not shown, calls are
    rows = [line for line in result.output.splitlines()[2:] if line.strip() and not line.startswith("In ")]
    assert len(rows) == 1 and " A " in rows[0] and "done" in rows[0]
    result = runner.invoke(_cli(mixed_rows), ["deliveries", "list", "--call", "nope"])
    assert "No deliveries match." in result.output


def test_cli_list_rejects_an_unknown_status(mixed_rows):
    result = CliRunner().invoke(_cli(mixed_rows), ["deliveries", "list", "--status", "failed"])
    assert result.exit_code == 2
    assert "'failed' is not one of" in result.output


def test_cli_retry_needs_ids_or_all_dead(mixed_rows):
    result = CliRunner().invoke(_cli(mixed_rows), ["deliveries", "retry"])
    assert result.exit_code == 2
    assert "--id N (repeatable) or --all-dead" in result.output


def test_cli_retry_by_id_and_all_dead(mixed_rows):
    runner = CliRunner()
    ids = {r.idempotency_key: r.id for r in list_deliveries(mixed_rows)}
    result = runner.invoke(_cli(mixed_rows), ["deliveries", "retry", "--id", str(ids["crm:B:call.ended"])])
    assert result.exit_code == 0, result.output
    assert "Requeued 1 dead delivery" in result.output
    result = runner.invoke(_cli(mixed_rows), ["deliveries", "retry", "--all-dead", "--connector", "crm"])
    assert "No dead deliveries matched; nothing was requeued." in result.output
    result = runner.invoke(_cli(mixed_rows), ["deliveries", "retry", "--all-dead"])
    assert "Requeued 1 dead delivery" in result.output
    assert counts(mixed_rows)["dead"] == 0
    retried = [
        r
        for r in list_deliveries(mixed_rows)
        if r.id in (ids["crm:B:call.ended"], ids["tasks:A:call.missed"])
    ]
    assert all(
        r.status == "pending" and r.attempts == 0 and r.next_attempt_at <= time.time() for r in retried
    )


def test_cli_without_an_engine_says_so():
    @click.group()
    def bare() -> None:
        pass

    bare.add_command(deliveries)
    result = CliRunner().invoke(bare, ["deliveries", "list"])
    assert result.exit_code == 2
    assert "no database configured" in result.output
