"""The panel's call-history import: `/admin/history` over real HTTP, the daemon's runner, the browser."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
import requests
from sqlalchemy import Engine, func, select

from bridge.config import Settings
from bridge.history import jobs
from bridge.history.runner import make_history_runner
from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator.command_server import CommandServer
from bridge.settings_store import SettingsStore
from bridge.store.schema import calls
from tests.browser import CHROMIUM, CHROMIUM_ARGS, requires_chromium
from tests.daemon import Daemon
from tests.test_admin_support import API_KEY, API_SALT, PASSWORD, LivePanel, csrf_of, live_panel, seed_users

MSK = ZoneInfo("Europe/Moscow")
DAY = datetime.now(MSK).date() - timedelta(days=2)  # recent, so the missed-calls page shows it too
FIRST, LAST = (DAY - timedelta(days=1)).isoformat(), (DAY + timedelta(days=1)).isoformat()
T0 = int(datetime.combine(DAY, dt_time(10, 0), MSK).timestamp())
NAMES = ("incoming_answered", "incoming_missed", "outgoing_answered", "internal_call")


@pytest.fixture
def panel(engine: Engine) -> Iterator[LivePanel]:
    seed_users(engine)
    yield from live_panel(engine)


@pytest.fixture
def history(engine: Engine, panel: LivePanel) -> list[scenarios.Scenario]:
    """Mango set up in the panel, four calls two days ago in Mango's history, reports ready at once."""
    SettingsStore(engine, Settings(), fixed=frozenset()).save(
        {"mango.api_url": panel.simulator.url, "mango.api_key": API_KEY, "mango.api_salt": API_SALT}
    )
    built = [scenarios.build(name, seed=3, start=T0 + i * 900) for i, name in enumerate(NAMES)]
    for scenario in built:
        panel.simulator.play(scenario.notifications)
    assert panel.simulator.wait_idle(5)
    panel.simulator.stats_polls_before_ready = 0
    return built


@pytest.fixture
def runner(engine: Engine, panel: LivePanel) -> Iterator[None]:
    """The daemon's history thread, built as `callbridge run` builds it."""
    stop = threading.Event()
    worker = make_history_runner(Settings.model_validate({"mango": {"api_url": panel.simulator.url}}), engine)
    worker.interval = 0.2
    thread = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(10)


def session(panel: LivePanel, username: str) -> requests.Session:
    http = requests.Session()
    page = http.get(f"{panel.url}/admin/login")
    done = http.post(
        f"{panel.url}/admin/login",
        data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(page.text)},
    )
    assert done.status_code == 200 and "/admin/login" not in done.url
    return http


def start(http: requests.Session, panel: LivePanel, date_from: str, date_to: str) -> requests.Response:
    page = http.get(f"{panel.url}/admin/history")
    assert page.status_code == 200
    data = {"csrf_token": csrf_of(page.text), "date_from": date_from, "date_to": date_to}
    return http.post(f"{panel.url}/admin/history", data=data)


def test_an_import_queued_in_the_panel_runs_to_done_and_its_calls_are_in_the_log(
    engine: Engine, panel: LivePanel, history: list[scenarios.Scenario], runner: None
) -> None:
    http = session(panel, "admin")
    response = start(http, panel, FIRST, LAST)
    assert response.status_code == 200 and response.url.endswith("/admin/history")
    assert "Import #1 queued" in response.text
    assert re.search(r'<progress max="100" value="\d+"', response.text)

    seen: list[tuple[str, int]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = http.get(f"{panel.url}/admin/history/1.json").json()
        seen.append((job["state"], job["percent"]))
        if job["finished"]:
            break
        time.sleep(0.05)
    assert seen[-1] == ("done", 100), seen
    assert job["calls_imported"] == 4 and job["calls_skipped"] == 0 and job["started_by"] == "admin"
    assert job["state_label"] == "done" and job["error"] is None

    log = http.get(f"{panel.url}/admin/calls", params={"date_from": FIRST, "date_to": LAST})
    for scenario in history:
        assert f'data-entry="{scenario.entry_id}"' in log.text
    missed = http.get(f"{panel.url}/admin/missed")
    missed_entry = next(s.entry_id for s in history if s.name == "incoming_missed")
    assert missed_entry in missed.text and "79161234567" in missed.text
    page = http.get(f"{panel.url}/admin/history")
    assert '<progress max="100" value="100"' in page.text and "history.js" in page.text


def test_a_second_import_waits_its_turn_and_the_same_period_is_refused(
    engine: Engine, panel: LivePanel, history: list[scenarios.Scenario]
) -> None:
    http = session(panel, "admin")
    running = jobs.start_now(engine, datetime(2026, 2, 1).date(), datetime(2026, 2, 2).date(), "UTC", "cli")
    queued = start(http, panel, "2026-03-01", "2026-03-05")
    assert queued.status_code == 200
    assert "starts when the running import finishes" in queued.text
    again = start(http, panel, "2026-03-01", "2026-03-05")
    assert again.status_code == 409
    assert "already being imported (import #2, queued)" in again.text
    assert jobs.claim_next(engine) is None  # the CLI's import still runs
    jobs.finish(engine, running.id)
    claimed = jobs.claim_next(engine)
    assert claimed is not None and claimed.id == 2


@pytest.mark.parametrize(
    ("date_from", "date_to", "message"),
    [
        ("2026-03-05", "2026-03-01", "The period ends (2026-03-01) before it starts (2026-03-05)."),
        ("", "2026-03-01", "Enter both dates as YYYY-MM-DD."),
        ("2026-02-30", "2026-03-01", "Enter both dates as YYYY-MM-DD."),
        ("2099-01-01", "2099-01-02", "The period starts in the future"),
        ("2024-01-01", "2025-06-01", "import at most 366 days at a time"),
    ],
)
def test_bad_periods_are_refused_with_a_message(
    engine: Engine, panel: LivePanel, date_from: str, date_to: str, message: str
) -> None:
    http = session(panel, "admin")
    response = start(http, panel, date_from, date_to)
    assert response.status_code == 400
    assert message in response.text
    assert jobs.recent(engine) == []


def test_without_mango_settings_nothing_is_queued(engine: Engine, panel: LivePanel) -> None:
    http = session(panel, "admin")
    response = start(http, panel, "2026-03-01", "2026-03-05")
    assert response.status_code == 409
    assert "Mango is not set up" in response.text
    assert jobs.recent(engine) == []


def test_csrf_and_roles_guard_the_page(
    engine: Engine, panel: LivePanel, history: list[scenarios.Scenario]
) -> None:
    admin = session(panel, "admin")
    no_token = admin.post(
        f"{panel.url}/admin/history", data={"date_from": "2026-03-01", "date_to": "2026-03-02"}
    )
    assert no_token.status_code == 400 and jobs.recent(engine) == []
    assert admin.get(f"{panel.url}/admin/history/99.json").status_code == 404

    job = jobs.queue(engine, datetime(2026, 3, 1).date(), datetime(2026, 3, 2).date(), "UTC", "admin")
    for name in ("accountant", "manager"):
        http = session(panel, name)
        assert http.get(f"{panel.url}/admin/history").status_code == 403
        assert http.get(f"{panel.url}/admin/history/{job.id}.json").status_code == 403
        token = csrf_of(http.get(f"{panel.url}/admin/calls").text)
        refused = http.post(
            f"{panel.url}/admin/history",
            data={"csrf_token": token, "date_from": "2026-03-03", "date_to": "2026-03-04"},
        )
        assert refused.status_code == 403
    anonymous = requests.get(f"{panel.url}/admin/history/{job.id}.json", allow_redirects=False)
    assert anonymous.status_code == 302 and "/admin/login" in anonymous.headers["Location"]
    assert [j.id for j in jobs.recent(engine)] == [job.id]


# --------------------------------------------------------------------------------------------- daemon


def test_callbridge_run_imports_history_and_keeps_the_live_call(database_url: str, tmp_path: Path) -> None:
    """One call reaches `callbridge run` live; two more are only in Mango's history. The daemon's
    history thread imports the period queued in its panel: the two are added, the live one is kept."""
    simulator = CommandServer(API_KEY, API_SALT, rate_limits=False).start()
    simulator.stats_polls_before_ready = 0
    daemon = Daemon(
        database_url,
        tmp_path,
        env={
            "CALLBRIDGE_MANGO_API_URL": simulator.url,
            "CALLBRIDGE_MANGO_API_KEY": API_KEY,
            "CALLBRIDGE_MANGO_API_SALT": API_SALT,
        },
    ).start()
    try:
        live, *past = [scenarios.build(name, seed=5, start=T0 + i * 900) for i, name in enumerate(NAMES[:3])]
        simulator.bridge_url = daemon.mango_url
        simulator.play(live.notifications)
        assert simulator.wait_idle(10)
        simulator.bridge_url = None
        for scenario in past:
            simulator.play(scenario.notifications)
        assert simulator.wait_idle(10)
        # The snapshot is taken once the live call is folded to its final state (and stays so for 1 s).
        live_url = f"/api/calls/{quote(live.entry_id, safe='')}"
        deadline = time.monotonic() + 30
        before: dict | None = None
        while True:
            assert time.monotonic() < deadline, f"the live call never settled in the store: {before}"
            answer = daemon.api(live_url)
            row = answer.json() if answer.status_code == 200 else None
            if row is not None and row == before and row["status"] == live.expected.status:
                break
            before = row
            time.sleep(1.0)

        daemon.create_user("admin", PASSWORD)
        http = requests.Session()
        page = http.get(f"{daemon.url}/admin/login")
        http.post(
            f"{daemon.url}/admin/login",
            data={"username": "admin", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        )
        page = http.get(f"{daemon.url}/admin/history")
        queued = http.post(
            f"{daemon.url}/admin/history",
            data={"csrf_token": csrf_of(page.text), "date_from": FIRST, "date_to": LAST},
        )
        assert queued.status_code == 200 and 'data-job-id="1"' in queued.text
        deadline = time.monotonic() + 30
        while not (job := http.get(f"{daemon.url}/admin/history/1.json").json())["finished"]:
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert (job["state"], job["calls_imported"], job["calls_skipped"]) == ("done", 2, 1), job
        for scenario in past:
            row = daemon.api(f"/api/calls/{quote(scenario.entry_id, safe='')}").json()
            assert (row["status"], row["direction"]) == (
                scenario.expected.status,
                scenario.expected.direction,
            )
        assert daemon.api(f"/api/calls/{quote(live.entry_id, safe='')}").json() == before
    finally:
        daemon.stop()
        simulator.stop(timeout=1)


# -------------------------------------------------------------------------------------------- browser


@requires_chromium
def test_the_import_button_shows_the_progress_bar_reaching_done(
    engine: Engine, panel: LivePanel, history: list[scenarios.Scenario], runner: None
) -> None:
    import playwright.sync_api as playwright_api

    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page: Any = browser.new_context(viewport={"width": 1200, "height": 760}).new_page()
            page.goto(f"{panel.url}/admin/login")
            page.fill("#username", "admin")
            page.fill("#password", PASSWORD)
            page.click("#login-submit")
            page.wait_for_load_state()
            page.goto(f"{panel.url}/admin/history")
            page.fill("#date_from", FIRST)
            page.fill("#date_to", LAST)
            page.click("#history-import")
            page.wait_for_load_state()
            row = page.locator("tr.history-job").first
            page.wait_for_function(
                "() => { const r = document.querySelector('tr.history-job');"
                " return r && r.dataset.state === 'done' && r.querySelector('progress').value === 100; }",
                timeout=30000,
            )
            assert "done" in row.locator(".job-state").inner_text()
            assert row.locator(".job-imported").inner_text() == "4"
            if os.environ.get("CALLBRIDGE_ADMIN_SCREENSHOTS"):  # refresh the docs' screenshot
                folder = Path(os.environ["CALLBRIDGE_ADMIN_SCREENSHOTS"])
                page.screenshot(path=str(folder / "admin-history.png"), full_page=True, animations="disabled")
        finally:
            browser.close()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(calls)).scalar_one() == 4
