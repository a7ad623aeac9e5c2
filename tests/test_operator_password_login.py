"""The operator page accepts a panel user's password as well as an access code: the login becomes a
cookie whose session names the user's extension (or every call for an administrator without one)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from admin_module.users import create_user
from bridge.config import Settings
from bridge.ingest.writer import GroupCommitWriter
from bridge.web.app import create_app

PASSWORD = "correct horse battery staple"


@pytest.fixture
def client(engine: Engine) -> Iterator[FlaskClient]:
    settings = Settings.model_validate({"security": {"secret_key": "s" * 48}})
    create_user(engine, "anna", PASSWORD, "manager", extension="101")
    create_user(engine, "boss", PASSWORD, "admin")
    create_user(engine, "buh", PASSWORD, "accountant")
    writer = GroupCommitWriter(engine)
    try:
        yield create_app(settings, engine, writer).test_client()
    finally:
        writer.stop()


def _login(client: FlaskClient, username: str, password: str = PASSWORD) -> tuple[int, str]:
    answer = client.post("/operator/login", data={"username": username, "password": password})
    return answer.status_code, answer.text


def test_a_manager_logs_in_with_the_panel_password_and_gets_their_extension(client: FlaskClient) -> None:
    assert 'id="password-login"' in client.get("/operator").text
    status, _ = _login(client, "anna")
    assert status == 303
    session = client.get("/operator/api/session").json
    assert session["identity"] == {**session["identity"], "role": "employee", "extension": "101"}
    assert session["token"]


def test_an_admin_without_extension_sees_every_call(client: FlaskClient) -> None:
    assert _login(client, "boss")[0] == 303
    assert client.get("/operator/api/session").json["identity"]["role"] == "supervisor"


def test_refusals_say_why_and_repeat_failures_are_throttled(client: FlaskClient) -> None:
    status, page = _login(client, "anna", "wrong")
    assert status == 401 and "Wrong user name or password." in page
    status, page = _login(client, "buh")
    assert status == 401 and "no extension" in page
    assert client.get("/operator/api/session").status_code == 401
    for _ in range(5):
        _login(client, "anna", "wrong")
    status, page = _login(client, "anna")  # even the right password waits now
    assert status == 401 and "Too many failed attempts" in page
