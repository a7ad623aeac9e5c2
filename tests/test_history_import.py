"""Call history import (`bridge.history`) against the Mango simulator, on the real store."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, insert, select, update

from bridge.cli import cli
from bridge.history import jobs
from bridge.history.importer import HistoryImporter
from bridge.history.periods import PeriodError, check_period, split
from bridge.history.runner import HistoryRunner
from bridge.pbx.mango import scenarios
from bridge.pbx.mango.client import MangoClient
from bridge.pbx.mango.parse import parse
from bridge.pbx.mango.simulator.command_server import CommandServer
from bridge.store.schema import calls, history_imports, legs, outbox, raw_events, recordings
from bridge.tracker import track

API_KEY = "hist-key"
API_SALT = "hist-salt-0123456789"
MSK = ZoneInfo("Europe/Moscow")
FIRST, LAST = date(2026, 3, 1), date(2026, 3, 10)  # two chunks of a week
T0 = int(datetime(2026, 3, 3, 10, 0, tzinfo=MSK).timestamp())
COMPARED = (
    "direction",
    "status",
    "customer_number",
    "line_number",
    "answered_by",
    "responsible",
    "missed",
    "closed",
    "answered_at",
    "talk_seconds",
)


class FakeTime:
    """Monotonic clock and sleep for the client and the importer: waits are recorded, not slept."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []  # the importer's waits between polls and retries

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture
def simulator() -> Iterator[CommandServer]:
    server = CommandServer(API_KEY, API_SALT, rate_limits=False).start()
    yield server
    server.stop(timeout=1)


@pytest.fixture
def played(simulator: CommandServer) -> list[scenarios.Scenario]:
    """Every scenario, ten minutes apart on 3 March, in the simulator's history."""
    built = [
        scenarios.build(name, seed=7, start=T0 + i * 600) for i, name in enumerate(scenarios.SCENARIO_NAMES)
    ]
    for scenario in built:
        simulator.play(scenario.notifications)
    assert simulator.wait_idle(5)
    return built


def importer(
    engine: Engine, simulator: CommandServer, fake: FakeTime, salt: str = API_SALT
) -> HistoryImporter:
    def client() -> MangoClient:
        return MangoClient(API_KEY, salt, simulator.url, clock=fake.clock, sleep=fake.sleep)

    return HistoryImporter(engine, client, sleep=fake.wait, clock=fake.clock)


def run_import(engine: Engine, simulator: CommandServer, fake: FakeTime | None = None) -> jobs.Job:
    job = jobs.start_now(engine, FIRST, LAST, "Europe/Moscow", "test")
    return importer(engine, simulator, fake or FakeTime()).run(job)


def live_fold(scenario: scenarios.Scenario) -> dict[str, object]:
    """The call row the live tracker makes of the scenario's notifications, once the call is closed."""
    events = [parse(n.path, n.payload) for n in scenario.notifications]
    result = track(
        [e for e in events if e is not None], frozenset(), now=T0 + 86400.0, close_after=0, last_event_at=T0
    )
    return result.call.as_row()


def stored(engine: Engine) -> dict[str, dict[str, object]]:
    with engine.connect() as conn:
        return {row.entry_id: dict(row._mapping) for row in conn.execute(select(calls))}


def count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_imported_calls_are_the_calls_the_live_tracker_makes(
    engine: Engine, simulator: CommandServer, played: list[scenarios.Scenario]
) -> None:
    fake = FakeTime()
    job = run_import(engine, simulator, fake)

    assert job.state == jobs.DONE and job.error is None
    assert (job.chunks_total, job.chunks_done, job.calls_imported, job.calls_skipped) == (2, 2, 11, 0)
    rows = stored(engine)
    assert set(rows) == {s.entry_id for s in played}
    with engine.connect() as conn:
        recs: dict[str, set[str]] = {}
        for rec in conn.execute(select(recordings)):
            recs.setdefault(rec.entry_id, set()).add(rec.recording_id)
            assert rec.ready and rec.state == "Completed"
    for scenario in played:
        row, expected, live = rows[scenario.entry_id], scenario.expected, live_fold(scenario)
        assert (row["status"], row["direction"], row["missed"]) == (
            expected.status,
            expected.direction,
            expected.missed,
        ), scenario.name
        assert row["answered_by"] == expected.answered_by, scenario.name
        assert row["responsible"] == expected.responsible, scenario.name
        assert tuple(json.loads(str(row["extensions"]))) == expected.extensions, scenario.name
        assert row["customer_number"] == expected.customer_number, scenario.name
        assert recs.get(scenario.entry_id, set()) == set(expected.recording_ids), scenario.name
        assert {k: row[k] for k in COMPARED} == {k: live[k] for k in COMPARED}, scenario.name
        assert row["started_at"] == pytest.approx(live["started_at"], abs=1), scenario.name
        assert row["command_id"] is None
    # Mango's 204 was honoured: one "not ready" per report, then a wait of at least 5 s before asking again.
    polls = [r for r in simulator.received if r.path == "stats/result"]
    assert [r.status for r in polls] == [204, 200, 204, 200]
    assert fake.waits == [5.0, 5.0]
    # history is not live: nothing for the processor or the connectors
    assert count(engine, outbox) == 0 and count(engine, raw_events) == 0


def test_chunk_requests_cover_the_period_in_moscow_days(
    engine: Engine, simulator: CommandServer, played: list[scenarios.Scenario]
) -> None:
    run_import(engine, simulator)
    asked = [r.json for r in simulator.received if r.path == "stats/request"]
    first_from = int(datetime(2026, 3, 1, tzinfo=MSK).timestamp())
    second_from = int(datetime(2026, 3, 8, tzinfo=MSK).timestamp())
    end = int(datetime(2026, 3, 11, tzinfo=MSK).timestamp()) - 1
    assert [(int(a["date_from"]), int(a["date_to"])) for a in asked] == [
        (first_from, second_from - 1),
        (second_from, end),
    ]
    assert "entry_id" in asked[0]["fields"] and "records" in asked[0]["fields"]


def test_rerun_is_idempotent_and_a_live_call_is_never_overwritten(
    engine: Engine, simulator: CommandServer, played: list[scenarios.Scenario]
) -> None:
    live = played[0]
    with engine.begin() as conn:
        conn.execute(
            insert(calls).values(
                entry_id=live.entry_id,
                direction="incoming",
                status="answered",
                customer_number="74950000000",
                extensions='["105"]',
                missed=False,
                closed=False,
                started_at=float(T0),
                emitted='["call.started"]',
                updated_at=1.0,
            )
        )
    first = run_import(engine, simulator)
    assert (first.calls_imported, first.calls_skipped) == (10, 1)
    kept = stored(engine)[live.entry_id]
    assert (kept["customer_number"], kept["status"], kept["extensions"], kept["updated_at"]) == (
        "74950000000",
        "answered",
        '["105"]',
        1.0,
    )
    with engine.connect() as conn:
        assert conn.execute(select(legs).where(legs.c.entry_id == live.entry_id)).first() is None
    before = (stored(engine), count(engine, legs), count(engine, recordings))

    again = run_import(engine, simulator)
    assert again.state == jobs.DONE
    assert (again.calls_imported, again.calls_skipped, again.rows_seen) == (0, 11, first.rows_seen)
    assert (stored(engine), count(engine, legs), count(engine, recordings)) == before


def test_a_mango_error_fails_the_job_with_the_reason(
    engine: Engine, simulator: CommandServer, played: list[scenarios.Scenario]
) -> None:
    job = jobs.start_now(engine, FIRST, LAST, "Europe/Moscow", "test")
    final = importer(engine, simulator, FakeTime(), salt="wrong-salt-000000").run(job)
    assert final.state == jobs.FAILED
    assert final.error is not None and "signature" in final.error and "3102" in final.error
    assert final.finished_at is not None and final.chunks_done == 0
    assert count(engine, calls) == 0


def test_retryable_errors_are_retried_and_an_expired_report_is_asked_for_again(
    engine: Engine, simulator: CommandServer, played: list[scenarios.Scenario]
) -> None:
    simulator.inject("stats/request", result=5000, times=1)  # a Mango server error, once
    simulator.inject("stats/result", result=None, status=404, times=1)  # the key expired, once
    fake = FakeTime()
    job = run_import(engine, simulator, fake)
    assert job.state == jobs.DONE and job.calls_imported == 11
    assert len([r for r in simulator.received if r.path == "stats/request"]) == 4


def test_an_unreadable_report_fails_the_job_in_plain_words(
    engine: Engine, simulator: CommandServer, played: list[scenarios.Scenario]
) -> None:
    simulator.stats_polls_before_ready = 0
    simulator.inject("stats/result", result=None, status=200, body="[];soon;x\n", times=1)
    job = run_import(engine, simulator)
    assert job.state == jobs.FAILED
    assert job.error is not None and "could not be read" in job.error


def test_only_one_job_runs_and_a_dead_one_is_failed(engine: Engine) -> None:
    running = jobs.start_now(engine, FIRST, LAST, "Europe/Moscow", "cli")
    with pytest.raises(jobs.JobConflict, match="another import is running"):
        jobs.start_now(engine, FIRST, FIRST, "Europe/Moscow", "cli")
    queued = jobs.queue(engine, FIRST, FIRST, "Europe/Moscow", "admin")
    with pytest.raises(jobs.JobConflict, match="already queued"):
        jobs.queue(engine, FIRST, FIRST, "Europe/Moscow", "admin")
    assert jobs.claim_next(engine) is None  # waits for the running one

    with engine.begin() as conn:  # its process died: no heartbeat for 20 minutes
        conn.execute(
            update(history_imports)
            .where(history_imports.c.id == running.id)
            .values(updated_at=time.time() - 1200)
        )
    claimed = jobs.claim_next(engine)
    assert claimed is not None and claimed.id == queued.id and claimed.state == jobs.REQUESTING
    dead = jobs.get(engine, running.id)
    assert dead is not None and dead.state == jobs.FAILED and "start it again" in (dead.error or "")


def test_the_runner_takes_queued_jobs_in_order(
    engine: Engine, simulator: CommandServer, played: list[scenarios.Scenario]
) -> None:
    one = jobs.queue(engine, FIRST, date(2026, 3, 5), "Europe/Moscow", "admin")
    two = jobs.queue(engine, date(2026, 3, 6), LAST, "Europe/Moscow", "admin")
    runner = HistoryRunner(importer(engine, simulator, FakeTime()))
    first = runner.run_once()
    second = runner.run_once()
    assert runner.run_once() is None
    assert first is not None and second is not None
    assert (first.id, first.state, second.id, second.state) == (one.id, jobs.DONE, two.id, jobs.DONE)
    assert first.calls_imported + second.calls_imported == 11


def test_period_rules() -> None:
    chunks = split(date(2026, 1, 25), date(2026, 3, 2), MSK)
    assert chunks[0].date_from == int(datetime(2026, 1, 25, tzinfo=MSK).timestamp())
    assert chunks[-1].date_to == int(datetime(2026, 3, 3, tzinfo=MSK).timestamp()) - 1
    assert all(a.date_to + 1 == b.date_from for a, b in zip(chunks, chunks[1:], strict=False))
    assert all(c.date_to - c.date_from < 7 * 86400 for c in chunks)
    with pytest.raises(PeriodError, match="before it starts"):
        check_period(date(2026, 3, 2), date(2026, 3, 1), MSK)
    with pytest.raises(PeriodError, match="future"):
        check_period(date.today() + timedelta(days=3), date.today() + timedelta(days=4), MSK)
    with pytest.raises(PeriodError, match="at most 366 days"):
        check_period(date(2024, 1, 1), date(2025, 6, 1), MSK)


# ------------------------------------------------------------------------------------------------ CLI


def invoke(database_url: str, simulator: CommandServer, *args: str) -> object:
    env = {
        "CALLBRIDGE_DATABASE_URL": database_url,
        "CALLBRIDGE_MANGO_API_URL": simulator.url,
        "CALLBRIDGE_MANGO_API_KEY": API_KEY,
        "CALLBRIDGE_MANGO_API_SALT": API_SALT,
        "CALLBRIDGE_CONFIG": "",
    }
    return CliRunner().invoke(cli, ["import-history", *args], env=env, catch_exceptions=False)


def test_cli_imports_with_a_summary_line(
    database_url: str, engine: Engine, simulator: CommandServer, played: list[scenarios.Scenario]
) -> None:
    simulator.stats_polls_before_ready = 0  # ready at once: no real 5 s wait in this test
    result = invoke(database_url, simulator, "--from", "2026-03-01", "--to", "2026-03-05")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert "calls imported" in result.output  # type: ignore[attr-defined]
    last = result.output.strip().splitlines()[-1]  # type: ignore[attr-defined]
    assert last.endswith("11 calls imported, 0 already known") and " done: 2026-03-01..2026-03-05" in last
    assert count(engine, calls) == 11
    again = invoke(database_url, simulator, "--from", "2026-03-01", "--to", "2026-03-05")
    assert again.output.strip().endswith("0 calls imported, 11 already known")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "2026-13-01", "--to", "2026-03-05"), "is not a date"),
        (("--from", "2026-03-05", "--to", "2026-03-01"), "ends (2026-03-01) before it starts"),
        (("--from", "2099-01-01", "--to", "2099-01-02"), "starts in the future"),
        (("--from", "2026-03-01", "--to", "2026-03-05", "--timezone", "Mars/Base"), "unknown time zone"),
    ],
)
def test_cli_bad_dates_are_refused_plainly(
    database_url: str, engine: Engine, simulator: CommandServer, args: tuple[str, ...], message: str
) -> None:
    result = invoke(database_url, simulator, *args)
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert message in result.output  # type: ignore[attr-defined]
    assert count(engine, history_imports) == 0


def test_cli_reports_a_mango_error_and_a_running_import(
    database_url: str, engine: Engine, simulator: CommandServer
) -> None:
    simulator.inject("stats/request", result=3100, times=1)
    failed = invoke(database_url, simulator, "--from", "2026-03-01", "--to", "2026-03-02")
    assert failed.exit_code == 1  # type: ignore[attr-defined]
    assert "failed" in failed.output and "invalid (3100" in failed.output  # type: ignore[attr-defined]

    jobs.start_now(engine, FIRST, LAST, "Europe/Moscow", "admin")
    busy = invoke(database_url, simulator, "--from", "2026-03-01", "--to", "2026-03-02")
    assert busy.exit_code == 1 and "another import is running" in busy.output  # type: ignore[attr-defined]
