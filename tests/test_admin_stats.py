"""Statistics equal hand-computed figures for a seeded set of calls; the chart renders as SVG."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from admin_module import charts, stats
from admin_module.missed import follow_ups
from tests.test_admin_support import add_call, login, make_app, seed_users

MSK = ZoneInfo("Europe/Moscow")


def at(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, 3, day, hour, minute, tzinfo=MSK).timestamp()


# Monday 2 March and Tuesday 3 March 2026 (Moscow time); numbers chosen so every figure is easy by hand.
CALLS = [
    # 2 March, employee 101: two answered incoming (wait 10 and 20, talk 60 and 120), one outgoing (talk 30)
    dict(
        entry_id="a1",
        direction="incoming",
        answered_by="101",
        answered_at=at(2, 9, 1),
        started_at=at(2, 9),
        wait_seconds=10,
        talk_seconds=60,
        customer_number="74950000001",
    ),
    dict(
        entry_id="a2",
        direction="incoming",
        answered_by="101",
        answered_at=at(2, 10, 1),
        started_at=at(2, 10),
        wait_seconds=20,
        talk_seconds=120,
        customer_number="74950000002",
    ),
    dict(
        entry_id="a3",
        direction="outgoing",
        answered_by="101",
        answered_at=at(2, 11, 1),
        started_at=at(2, 11),
        talk_seconds=30,
        customer_number="74950000003",
    ),
    # 2 March, employee 102: two missed incoming; the first is called back by 101 at 12:30 (answered)
    dict(
        entry_id="m1",
        direction="incoming",
        status="missed",
        missed=True,
        responsible="102",
        extensions=["102"],
        started_at=at(2, 12),
        wait_seconds=25,
        customer_number="+7 (495) 000-00-09",
    ),
    dict(
        entry_id="cb1",
        direction="outgoing",
        answered_by="101",
        answered_at=at(2, 12, 30),
        started_at=at(2, 12, 30),
        talk_seconds=90,
        customer_number="74950000009",
    ),
    dict(
        entry_id="m2",
        direction="incoming",
        status="missed",
        missed=True,
        extensions=["102", "103"],
        started_at=at(2, 13),
        customer_number="74950000010",
    ),
    # 3 March, employee 102: one answered incoming (wait 40, talk 200); an unanswered outgoing (no talk)
    dict(
        entry_id="b1",
        direction="incoming",
        answered_by="102",
        answered_at=at(3, 9, 1),
        started_at=at(3, 9),
        wait_seconds=40,
        talk_seconds=200,
        customer_number="74950000011",
    ),
    dict(
        entry_id="b2",
        direction="outgoing",
        responsible="102",
        started_at=at(3, 10),
        customer_number="74950000010",
    ),
    # an internal call counts nowhere
    dict(entry_id="i1", direction="internal", answered_by="103", answered_at=at(3, 11), started_at=at(3, 11)),
]


def rows_by_key(period: str) -> dict[tuple[str, str], stats.Row]:
    computed = stats.compute(CALLS, follow_ups(CALLS), period=period, tz=MSK)
    return {(row.period, row.employee): row for row in computed}


def test_follow_up_of_missed_calls() -> None:
    ups = follow_ups(CALLS)
    assert set(ups) == {"m1", "m2"}
    assert ups["m1"].done and ups["m1"].by == "101" and ups["m1"].after_seconds == 30 * 60
    assert ups["m1"].callback_entry_id == "cb1"
    assert not ups["m2"].done  # b2 called it back but nobody answered: still open


def test_daily_figures_per_employee_equal_hand_computed() -> None:
    rows = rows_by_key("day")
    r = rows[("2026-03-02", "101")]
    assert (r.incoming, r.outgoing, r.answered, r.missed) == (2, 2, 2, 0)
    assert r.avg_wait == 15  # (10 + 20) / 2
    assert r.avg_talk == 75  # (60 + 120 + 30 + 90) / 4
    assert r.called_back_share is None
    r = rows[("2026-03-02", "102")]
    assert (r.incoming, r.outgoing, r.answered, r.missed, r.called_back) == (2, 0, 0, 2, 1)
    assert r.avg_wait is None and r.avg_talk is None  # nothing answered
    assert r.called_back_share == 0.5
    total = rows[("2026-03-02", stats.ALL)]
    assert (total.incoming, total.outgoing, total.answered, total.missed) == (4, 2, 2, 2)
    assert total.called_back_share == 0.5
    r = rows[("2026-03-03", "102")]
    assert (r.incoming, r.outgoing, r.answered, r.missed) == (1, 1, 1, 0)
    assert r.avg_wait == 40 and r.avg_talk == 200
    assert ("2026-03-03", "103") not in rows  # internal calls are not counted


def test_weekly_and_monthly_periods() -> None:
    week = rows_by_key("week")
    total = week[("2026-03-02", stats.ALL)]  # the ISO week starting Monday 2 March
    assert (total.incoming, total.outgoing, total.answered, total.missed) == (5, 3, 3, 2)
    assert total.avg_wait == (10 + 20 + 40) / 3
    assert total.avg_talk == (60 + 120 + 30 + 90 + 200) / 5
    month = rows_by_key("month")
    assert month[("2026-03", "102")].incoming == 3
    assert month[("2026-03", stats.ALL)].called_back_share == 0.5


def test_period_uses_the_account_time_zone() -> None:
    late = datetime(2026, 3, 1, 22, 30, tzinfo=ZoneInfo("UTC")).timestamp()  # 01:30 on 2 March in Moscow
    assert stats.period_of(late, "day", MSK) == "2026-03-02"
    assert stats.period_of(late, "day", ZoneInfo("UTC")) == "2026-03-01"


def test_chart_is_an_svg_with_one_bar_per_value_and_escaped_labels() -> None:
    svg = charts.bar_chart(["d1", "<b>"], [("in", [3, 5]), ("out", [0, 2])], title="Calls & more")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('class="bar"') == 4
    assert "&lt;b&gt;" in svg and "Calls &amp; more" in svg and "<b>" not in svg


def test_stats_page_and_csv_show_the_same_figures(engine: Engine) -> None:
    seed_users(engine)
    for call in CALLS:
        add_call(engine, **{"status": "answered" if call.get("answered_by") else "ended", **call})
    client = make_app(engine).test_client()
    login(client, "accountant")
    page = client.get("/admin/stats?date_from=2026-03-01&date_to=2026-03-05&period=day")
    assert page.status_code == 200
    assert "<svg" in page.text and page.text.count('class="bar"') == 6  # 2 days x 3 series
    assert "0:15" in page.text and "1:15" in page.text and "50%" in page.text
    exported = client.get("/admin/stats.csv?date_from=2026-03-01&date_to=2026-03-05&period=day")
    assert exported.mimetype == "text/csv"
    assert exported.text.startswith("\ufeff")
    table = list(csv.DictReader(io.StringIO(exported.text.removeprefix("\ufeff"))))
    query = "date_from=2026-03-01&date_to=2026-03-05&period=day&sep=semicolon"
    semicolons = client.get(f"/admin/stats.csv?{query}")
    assert list(csv.DictReader(io.StringIO(semicolons.text.removeprefix("\ufeff")), delimiter=";")) == table
    row = next(r for r in table if r["period"] == "2026-03-02" and r["employee"] == "102")
    assert (row["incoming"], row["missed"], row["called_back"], row["called_back_share"]) == (
        "2",
        "2",
        "1",
        "0.5",
    )
