"""The panel against the Mango simulator: settings saved and applied without a restart, the connection
test (success and a wrong salt), recordings streamed through callbridge, one-click callback, CSV export,
connectors with a retry of dead deliveries, the employee import and mapping."""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, insert, select

from admin_module.tables import admin_users
from admin_module.users import create_user
from bridge.config import Settings
from bridge.config.model import MANGO_SOURCE_IPS
from bridge.pbx.mango.simulator.audio import silent_mp3
from bridge.pbx.mango.simulator.command_server import CommandServer
from bridge.settings_store import SettingsError, SettingsStore, fixed_keys, parse_ip_list
from bridge.store.schema import employees, outbox
from tests.test_admin_support import (
    API_KEY,
    API_SALT,
    PASSWORD,
    add_call,
    add_recording,
    csrf_of,
    login,
    make_app,
    seed_users,
)


@pytest.fixture
def simulator() -> Iterator[CommandServer]:
    server = CommandServer(API_KEY, API_SALT, rate_limits=False).start()
    yield server
    server.stop(timeout=1)


@pytest.fixture
def admin(engine: Engine, simulator: CommandServer) -> Iterator[FlaskClient]:
    seed_users(engine)
    client = make_app(engine, simulator.url).test_client()
    login(client, "admin")
    yield client


def save_settings(client: FlaskClient, **fields: str) -> object:
    page = client.get("/admin/settings")
    data = {
        "csrf_token": csrf_of(page.text),
        "provider": "mango",
        "ip_mode": "open",
        "verify_tls": "y",
        "recordings": "y",
        "timezone": "Europe/Moscow",
        **fields,
    }
    return client.post("/admin/settings", data=data)


def test_saved_settings_apply_without_restart_and_the_salt_is_never_shown(
    engine: Engine, admin: FlaskClient, simulator: CommandServer
) -> None:
    response = save_settings(admin, api_url=simulator.url, api_key=API_KEY, api_salt=API_SALT)
    assert response.status_code == 302
    page = admin.get("/admin/settings")
    assert "Settings saved" in page.text
    assert API_SALT not in page.text and "a salt is saved" in page.text
    assert f'value="{API_KEY}"' in page.text
    # The test button with an empty salt field uses the saved salt: success.
    tested = admin.post(
        "/admin/settings/test",
        data={"csrf_token": csrf_of(page.text), "api_key": API_KEY, "api_url": simulator.url, "api_salt": ""},
    )
    assert tested.status_code == 200
    assert "Connection to the server established successfully" in tested.text
    assert any(r.path == "incominglines" for r in simulator.received)


def test_connection_test_with_a_wrong_salt_says_so(admin: FlaskClient, simulator: CommandServer) -> None:
    page = admin.get("/admin/settings")
    tested = admin.post(
        "/admin/settings/test",
        data={
            "csrf_token": csrf_of(page.text),
            "api_url": simulator.url,
            "api_key": API_KEY,
            "api_salt": "wrong-salt",
        },
    )
    assert tested.status_code == 502
    assert "Wrong API salt" in tested.text and "3102" in tested.text
    assert "wrong-salt" not in tested.text


def test_connection_test_with_a_wrong_key_and_an_unreachable_server(admin: FlaskClient) -> None:
    page = admin.get("/admin/settings")
    token = csrf_of(page.text)
    bad_key = admin.post(
        "/admin/settings/test", data={"csrf_token": token, "api_key": "nope", "api_salt": API_SALT}
    )
    assert "Wrong API key" in bad_key.text
    down = admin.post(
        "/admin/settings/test",
        data={
            "csrf_token": token,
            "api_url": "http://127.0.0.1:9/vpbx/",
            "api_key": API_KEY,
            "api_salt": API_SALT,
        },
    )
    assert down.status_code == 502 and "Connection failed" in down.text


def test_ip_list_with_mango_preset_and_bad_address() -> None:
    assert parse_ip_list("mango\n10.0.0.0/8, 10.0.0.0/8") == [*MANGO_SOURCE_IPS, "10.0.0.0/8"]
    with pytest.raises(SettingsError, match="not an IP"):
        parse_ip_list("10.0.0.300")


def test_fixed_keys_show_locked_and_cannot_be_saved(engine: Engine, tmp_path: object) -> None:
    fixed = fixed_keys({"CALLBRIDGE_MANGO_API_KEY": "k", "CALLBRIDGE_MANGO_API_SALT": ""})
    assert "mango.api_key" in fixed and "mango.api_salt" not in fixed
    store = SettingsStore(engine, Settings(), fixed=fixed)
    with pytest.raises(SettingsError, match="fixed"):
        store.save({"mango.api_key": "other"})
    store.save({"mango.api_salt": "s", "mango.verify_tls": False})
    assert store.effective().mango.api_salt.get_secret_value() == "s"
    assert store.effective().mango.verify_tls is False
    seed_users(engine)
    client = make_app(engine, fixed=frozenset({"mango.api_key"})).test_client()
    login(client, "admin")
    page = client.get("/admin/settings").text
    assert "fixed by the config file or environment" in page
    tag = re.search(r'<input[^>]*id="api_key"[^>]*>', page)
    assert tag is not None and "disabled" in tag.group(0)


def test_fixed_fields_keep_their_values_after_a_test_or_a_refused_save(
    engine: Engine, simulator: CommandServer
) -> None:
    seed_users(engine)
    fixed = frozenset({"mango.api_url", "mango.api_key", "mango.api_salt"})
    client = make_app(engine, simulator.url, fixed=fixed, credentials=True).test_client()
    login(client, "admin")
    page = client.get("/admin/settings").text
    assert "🔒" not in page and 'class="lock-icon"' in page  # drawn, needs no emoji font
    data = {"csrf_token": csrf_of(page), "provider": "mango", "ip_mode": "open", "timezone": "Europe/Moscow"}
    tested = client.post("/admin/settings/test", data=data)  # the browser sends no disabled field
    assert tested.status_code == 200 and "Connection to the server established successfully" in tested.text
    refused = client.post("/admin/settings", data={**data, "timezone": "Mars/Olympus_Mons"})
    assert refused.status_code == 400
    assert "&#39;Mars/Olympus_Mons&#39; is not a time zone name" in refused.text
    assert "e.g. Europe/Moscow" in refused.text
    for shown in (tested.text, refused.text):
        url = re.search(r'<input[^>]*id="api_url"[^>]*>', shown)
        key = re.search(r'<input[^>]*id="api_key"[^>]*>', shown)
        assert url is not None and f'value="{simulator.url}"' in url.group(0)
        assert key is not None and f'value="{API_KEY}"' in key.group(0)


def test_recording_streams_through_callbridge_with_access_checks(
    engine: Engine, admin: FlaskClient, simulator: CommandServer
) -> None:
    save_settings(admin, api_url=simulator.url, api_key=API_KEY, api_salt=API_SALT)
    add_call(engine, "e1", answered_by="101", extensions=["101"])
    add_recording(engine, "e1", "rec-1")
    add_call(engine, "e2", answered_by="103", extensions=["103"])
    add_recording(engine, "e2", "rec-2")
    page = admin.get("/admin/calls")
    assert "/admin/recordings/rec-1" in page.text and "files/" not in page.text  # Mango's link never shown
    audio = admin.get("/admin/recordings/rec-1")
    assert audio.status_code == 200 and audio.mimetype == "audio/mpeg"
    assert audio.data == silent_mp3()
    assert audio.headers["Cache-Control"] == "private, no-store"
    assert admin.get("/admin/recordings/unknown").status_code == 404
    # A manager hears only the calls of their own extension (102): neither of these.
    manager = make_app(engine, simulator.url).test_client()
    login(manager, "manager")
    assert manager.get("/admin/recordings/rec-1").status_code == 403
    accountant = make_app(engine, simulator.url).test_client()
    login(accountant, "accountant")
    assert accountant.get("/admin/recordings/rec-1").status_code == 403
    # Linking recordings switched off: nobody plays them.
    save_settings(admin, api_url=simulator.url, api_key=API_KEY, recordings="")
    assert admin.get("/admin/recordings/rec-1").status_code == 403


def test_missed_call_is_listed_and_one_click_calls_back(
    engine: Engine, admin: FlaskClient, simulator: CommandServer
) -> None:
    save_settings(admin, api_url=simulator.url, api_key=API_KEY, api_salt=API_SALT)
    add_call(
        engine,
        "missed-1",
        status="missed",
        missed=True,
        extensions=["101"],
        customer_number="74957770011",
        started_at=time.time() - 600,
    )
    page = admin.get("/admin/missed")
    assert "74957770011" in page.text and "open" in page.text
    response = admin.post(
        "/admin/callback",
        data={"csrf_token": csrf_of(page.text), "number": "74957770011", "entry_id": "missed-1"},
    )
    assert response.status_code == 302
    command = simulator.wait_for("commands/callback", timeout=5)
    assert command.signature_valid and command.json["from"]["extension"] == "101"
    assert command.json["to_number"] == "74957770011"
    assert "Calling" in admin.get("/admin/missed").text


def test_missed_call_called_back_shows_by_whom_and_when(engine: Engine, admin: FlaskClient) -> None:
    now = time.time()
    add_call(
        engine,
        "m",
        status="missed",
        missed=True,
        extensions=["101"],
        customer_number="74957770012",
        started_at=now - 3600,
    )
    add_call(
        engine,
        "cb",
        direction="outgoing",
        answered_by="102",
        answered_at=now - 3000,
        customer_number="+7 495 777-00-12",
        started_at=now - 3060,
    )
    page = admin.get("/admin/missed").text
    assert "called back by 102" in page and "9:00" in page


def test_call_log_filters_pages_and_csv(engine: Engine, admin: FlaskClient) -> None:
    base = time.time() - 3600
    for i in range(30):
        add_call(
            engine,
            f"c{i:02d}",
            direction="incoming" if i % 3 else "outgoing",
            started_at=base + i,
            customer_number=f"7495123{i:04d}",
            answered_by="101",
        )
    first = admin.get("/admin/calls")
    assert first.text.count("<tr data-entry=") == 25 and 'id="next-page"' in first.text
    outgoing = admin.get("/admin/calls?direction=outgoing")
    assert outgoing.text.count("<tr data-entry=") == 10
    one = admin.get("/admin/calls?number=74951230007")
    assert one.text.count("<tr data-entry=") == 1
    exported = admin.get("/admin/calls.csv?direction=outgoing")
    assert exported.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert exported.text.startswith("\ufeffentry_id,")  # the BOM: Excel reads the UTF-8 right
    rows = list(csv.DictReader(io.StringIO(exported.text.removeprefix("\ufeff"))))
    assert len(rows) == 10 and all(r["direction"] == "outgoing" for r in rows)
    for_excel = admin.get("/admin/calls.csv?direction=outgoing&sep=semicolon").text  # Russian Excel's `;`
    assert for_excel.startswith("\ufeffentry_id;")
    assert list(csv.DictReader(io.StringIO(for_excel.removeprefix("\ufeff")), delimiter=";")) == rows
    assert 'id="export-csv-excel"' in admin.get("/admin/calls").text


def test_csv_cells_cannot_start_a_formula(engine: Engine, admin: FlaskClient) -> None:
    add_call(engine, "f", customer_number='=HYPERLINK("http://x")')
    exported = admin.get("/admin/calls.csv").text
    assert "'=HYPERLINK" in exported


def test_connectors_show_health_and_retry_dead_deliveries(engine: Engine, admin: FlaskClient) -> None:
    now = time.time()
    with engine.begin() as conn:
        conn.execute(
            insert(outbox).values(
                connector="demo",
                entry_id="e",
                event_type="call.ended",
                idempotency_key="k1",
                payload="{}",
                status="dead",
                attempts=12,
                next_attempt_at=now,
                last_error="HTTP 500 from CRM",
                created_at=now,
            )
        )
    page = admin.get("/admin/connectors")
    assert "HTTP 500 from CRM" in page.text and 'data-connector="demo"' in page.text
    admin.post("/admin/connectors/retry", data={"csrf_token": csrf_of(page.text), "connector": "demo"})
    with engine.connect() as conn:
        assert conn.execute(select(outbox.c.status)).scalar() == "pending"
    assert "1 deliveries put back" in admin.get("/admin/connectors").text


def test_employees_import_from_mango_and_map_to_panel_users(
    engine: Engine, admin: FlaskClient, simulator: CommandServer
) -> None:
    save_settings(admin, api_url=simulator.url, api_key=API_KEY, api_salt=API_SALT)
    page = admin.get("/admin/employees")
    admin.post("/admin/employees/import", data={"csrf_token": csrf_of(page.text)})
    with engine.connect() as conn:
        extensions = sorted(conn.execute(select(employees.c.extension)).scalars())
    assert extensions == ["101", "102", "103"]
    page = admin.get("/admin/employees")
    assert "Imported from Mango: 3 new, 0 changed, 0 already up to date." in page.text
    admin.post("/admin/employees/import", data={"csrf_token": csrf_of(page.text)})  # again: nothing changed
    again = admin.get("/admin/employees").text
    assert "Imported from Mango: 0 new, 0 changed, 3 already up to date." in again
    with engine.connect() as conn:
        accountant_id = conn.execute(
            select(admin_users.c.id).where(admin_users.c.username == "accountant")
        ).scalar()
    admin.post(
        "/admin/employees/map",
        data={"csrf_token": csrf_of(page.text), "extension": "103", "user_id": str(accountant_id)},
    )
    with engine.connect() as conn:
        assert (
            conn.execute(select(admin_users.c.extension).where(admin_users.c.id == accountant_id)).scalar()
            == "103"
        )


def test_framing_is_limited_to_this_origin_and_the_saved_shop_admins(
    engine: Engine, admin: FlaskClient
) -> None:
    assert admin.get("/admin/calls").headers["Content-Security-Policy"] == "frame-ancestors 'self'"
    response = save_settings(admin, frame_ancestors="https://shop.example  https://admin.shop.example:8443")
    assert response.status_code == 302
    policy = admin.get("/admin/calls").headers["Content-Security-Policy"]
    assert policy == "frame-ancestors 'self' https://shop.example https://admin.shop.example:8443"
    refused = save_settings(admin, frame_ancestors="javascript:alert(1)")
    assert refused.status_code == 400 and "not an origin" in refused.text


def test_manager_calls_back_from_their_own_extension_only(
    engine: Engine, admin: FlaskClient, simulator: CommandServer
) -> None:
    save_settings(admin, api_url=simulator.url, api_key=API_KEY, api_salt=API_SALT)
    manager = make_app(engine, simulator.url).test_client()
    login(manager, "manager")
    page = manager.get("/admin/missed")
    manager.post(
        "/admin/callback",
        data={"csrf_token": csrf_of(page.text), "number": "74957770013", "extension": "101"},
    )
    command = simulator.wait_for("commands/callback", timeout=5)
    assert command.json["from"]["extension"] == "102"  # the manager's own, whatever the form said


def test_bad_input_in_the_query_string_is_not_an_error(admin: FlaskClient) -> None:
    for query in (
        "cursor=garbage",
        "date_from=2026-13-45&status=nope&direction=up",
        "number=abc&employee=<x>",
    ):
        assert admin.get(f"/admin/calls?{query}").status_code == 200, query
    assert admin.get("/admin/missed?days=-5").status_code == 200
    assert admin.get("/admin/stats?period=year&date_from=x").status_code == 200


def test_call_buttons_show_only_to_users_whose_extension_would_ring(
    engine: Engine, admin: FlaskClient, simulator: CommandServer
) -> None:
    add_call(engine, "to-call-back", customer_number="79161230077")
    with_extension = admin.get("/admin/calls").text  # the admin is mapped to 101
    assert 'class="call-back"' in with_extension
    assert '"dial": true' in with_extension
    create_user(engine, "helpdesk", PASSWORD, "admin", lang="en")  # no extension: nothing would ring
    other = make_app(engine, simulator.url).test_client()
    login(other, "helpdesk")
    without = other.get("/admin/calls").text
    assert "+79161230077" in without or "79161230077" in without
    assert 'class="call-back"' not in without and '"dial": false' in without
