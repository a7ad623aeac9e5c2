"""Access to the panel: argon2 logins, roles, CSRF on every POST, the login rate limit, the CLI, escaping."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import Engine, select

from admin_module.cli import admin as admin_cli
from admin_module.tables import admin_users
from admin_module.users import authenticate
from tests.test_admin_support import PASSWORD, add_call, add_employee, csrf_of, login, make_app, seed_users


@pytest.fixture
def client(engine: Engine) -> Iterator[FlaskClient]:
    seed_users(engine)
    yield make_app(engine).test_client()


def test_password_is_stored_as_argon2_and_checked(engine: Engine) -> None:
    seed_users(engine)
    with engine.connect() as conn:
        stored = conn.execute(
            select(admin_users.c.password_hash).where(admin_users.c.username == "admin")
        ).scalar()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert authenticate(engine, "admin", PASSWORD) is not None
    assert authenticate(engine, "admin", "wrong password") is None
    assert authenticate(engine, "nobody", PASSWORD) is None


def test_login_then_the_log_and_logout(client: FlaskClient) -> None:
    assert client.get("/admin/calls").status_code == 302
    response = login(client, "admin")
    assert response.status_code == 302
    page = client.get("/admin/calls")
    assert page.status_code == 200 and "Call log" in page.text
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.http_only
    client.post("/admin/logout", data={"csrf_token": csrf_of(page.text)})
    assert client.get("/admin/calls").status_code == 302


def test_wrong_password_is_refused_and_repeated_failures_are_rate_limited(client: FlaskClient) -> None:
    for _ in range(5):
        assert login(client, "admin", "wrong password").status_code == 401
    limited = login(client, "admin")  # even the right password waits out the window
    assert limited.status_code == 429
    assert "Too many failed attempts" in limited.text or "Слишком много" in limited.text


def test_accountant_sees_statistics_and_gets_403_on_settings(client: FlaskClient) -> None:
    login(client, "accountant")
    assert client.get("/admin/stats").status_code == 200
    assert client.get("/admin/calls").status_code == 200
    for path in ("/admin/settings", "/admin/connectors", "/admin/employees"):
        assert client.get(path).status_code == 403, path
    page = client.get("/admin/stats")
    response = client.post(
        "/admin/settings", data={"csrf_token": csrf_of(page.text), "api_key": "x", "ip_mode": "open"}
    )
    assert response.status_code == 403
    assert (
        client.post("/admin/callback", data={"csrf_token": csrf_of(page.text), "number": "1"}).status_code
        == 403
    )


def test_manager_sees_only_own_calls_and_no_settings(engine: Engine, client: FlaskClient) -> None:
    add_call(engine, "mine", answered_by="102", customer_number="74950000001")
    add_call(engine, "theirs", answered_by="103", customer_number="74950000002")
    login(client, "manager")
    page = client.get("/admin/calls")
    assert "74950000001" in page.text and "74950000002" not in page.text
    assert client.get("/admin/calls?employee=103").text.count("74950000002") == 0
    assert client.get("/admin/settings").status_code == 403
    assert client.get("/admin/stats").status_code == 403


def test_post_without_csrf_token_is_refused(client: FlaskClient) -> None:
    login(client, "admin")
    for path in ("/admin/settings", "/admin/callback", "/admin/connectors/retry", "/admin/logout"):
        response = client.post(path, data={"api_key": "evil", "number": "79161234567"})
        assert response.status_code == 400, path
        assert "form expired" in response.text
    assert client.get("/admin/calls").status_code == 200  # still logged in: logout was refused too


def test_login_form_needs_its_csrf_token(client: FlaskClient) -> None:
    response = client.post("/admin/login", data={"username": "admin", "password": PASSWORD})
    assert response.status_code == 400


def test_script_in_a_caller_name_renders_as_text(engine: Engine, client: FlaskClient) -> None:
    evil = "<script>alert(1)</script>"
    add_employee(engine, "101", evil)
    add_call(engine, "xss", answered_by="101", customer_number=evil)
    login(client, "admin")
    page = client.get("/admin/calls").text
    assert evil not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_open_redirect_after_login_is_ignored(client: FlaskClient) -> None:
    page = client.get("/admin/login")
    response = client.post(
        "/admin/login?next=https://evil.example/",
        data={"username": "admin", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
    )
    assert response.status_code == 302 and response.headers["Location"].startswith("/admin")


def test_language_is_chosen_per_user(client: FlaskClient) -> None:
    login(client, "admin")
    page = client.get("/admin/calls")
    assert "Call log" in page.text
    client.post("/admin/lang", data={"lang": "ru", "csrf_token": csrf_of(page.text)})
    assert "Журнал звонков" in client.get("/admin/calls").text


def test_cli_creates_and_lists_users(engine: Engine, database_url: str) -> None:
    from bridge.cli_context import AppContext

    obj = AppContext(None)
    obj.__dict__["engine"] = engine
    runner = CliRunner()
    result = runner.invoke(
        admin_cli,
        ["create-user", "--username", "boss", "--role", "admin", "--password-stdin"],
        input=PASSWORD + "\n",
        obj=obj,
    )
    assert result.exit_code == 0, result.output
    assert "created admin 'boss'" in result.output
    again = runner.invoke(
        admin_cli, ["create-user", "--username", "boss", "--role", "admin", "--password", PASSWORD], obj=obj
    )
    assert again.exit_code != 0 and "already exists" in again.output
    short = runner.invoke(
        admin_cli, ["create-user", "--username", "x", "--role", "manager", "--password", "short"], obj=obj
    )
    assert short.exit_code != 0 and "at least 8" in short.output
    listed = runner.invoke(admin_cli, ["list-users"], obj=obj)
    assert "boss\tadmin\tru\t-" in listed.output
    assert authenticate(engine, "boss", PASSWORD) is not None
