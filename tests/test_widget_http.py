"""The `/widget` blueprint over HTTP (Flask's test client): CORS only for a site's origins, JSON errors
with the visitor's language, 429 with Retry-After, the honeypot and the minimum fill time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from bridge.config import Settings
from bridge.http_errors import install_error_handlers
from bridge.pbx.mango.client import MangoClient
from bridge.pbx.mango.simulator import CommandServer
from widget.blueprint import make_widget_blueprint
from widget.service import WidgetService
from widget.settings import SiteConfig
from widget.sites import save_site

KEY, SALT = "widget-http-key", "widget-http-salt-0123456789"
ORIGIN = "https://shop.example"
EVIL = "https://evil.example"
MONDAY_10_MSK = 1740985200.0  # 2025-03-03 07:00 UTC


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def mango() -> Iterator[CommandServer]:
    server = CommandServer(KEY, SALT, rate_limits=False).start()
    yield server
    server.stop(timeout=1)


@pytest.fixture
def clock() -> Clock:
    return Clock(MONDAY_10_MSK)


@pytest.fixture
def client(engine: Engine, mango: CommandServer, clock: Clock) -> FlaskClient:
    config = SiteConfig(
        origins=[ORIGIN],
        group="200",
        line="74951234567",
        limits={"per_ip": {"count": 2, "seconds": 600}, "min_fill_seconds": 3},  # type: ignore[arg-type]
        texts={"en": {"error_rate": "Slow down, please."}},
    )
    save_site(engine, "shop", config, now=clock.now)
    service = WidgetService(
        engine, {}, lambda: MangoClient(KEY, SALT, mango.url, timeout=5), clock=clock, site_cache_ttl=0
    )
    app = Flask("widget-test")
    install_error_handlers(app)
    app.register_blueprint(
        make_widget_blueprint(Settings(), engine, {}, service._client_factory, service=service)
    )
    return app.test_client()


def get_config(client: FlaskClient, origin: str | None = ORIGIN) -> Any:
    headers = {"Origin": origin} if origin else {}
    return client.get("/widget/config?site=shop", headers=headers)


def post(client: FlaskClient, body: dict[str, Any], origin: str = ORIGIN, ip: str = "203.0.113.5") -> Any:
    return client.post(
        "/widget/callback?site=shop",
        json=body,
        headers={"Origin": origin},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_script_is_served(client: FlaskClient) -> None:
    response = client.get("/widget/callback.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert b"attachShadow" in response.data


def test_config_answers_cors_only_for_registered_origins(client: FlaskClient) -> None:
    allowed = get_config(client)
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    body = allowed.get_json()
    assert body["countdown"] == 30 and body["open"] is True and body["form_token"]
    assert body["texts"]["en"]["error_rate"] == "Slow down, please."
    assert body["texts"]["ru"]["title"].startswith("Перезвоним")

    refused = get_config(client, EVIL)
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused.headers

    server_side = get_config(client, None)  # no Origin: not a browser, served without CORS headers
    assert server_side.status_code == 200 and "Access-Control-Allow-Origin" not in server_side.headers
    assert client.get("/widget/config?site=nope").status_code == 404


def test_preflight_only_for_registered_origins(client: FlaskClient) -> None:
    def preflight(origin: str) -> Any:
        return client.options(
            "/widget/callback?site=shop",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )

    ok = preflight(ORIGIN)
    assert ok.status_code == 204
    assert ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    assert ok.headers["Access-Control-Allow-Headers"] == "Content-Type"
    bad = preflight(EVIL)
    assert bad.status_code == 403 and "Access-Control-Allow-Origin" not in bad.headers


def test_callback_from_a_disallowed_origin_is_refused_without_cors(
    client: FlaskClient, mango: CommandServer, clock: Clock
) -> None:
    token = get_config(client).get_json()["form_token"]
    clock.now += 5
    response = post(client, {"phone": "+79161234567", "form_token": token}, origin=EVIL)
    assert response.status_code == 403 and "Access-Control-Allow-Origin" not in response.headers
    assert not mango.received


def test_a_flood_from_one_ip_gets_429_with_a_message(
    client: FlaskClient, mango: CommandServer, clock: Clock
) -> None:
    tokens = [get_config(client).get_json()["form_token"] for _ in range(4)]  # one per request
    clock.now += 5
    answers = [
        post(client, {"phone": f"+7916123456{i}", "form_token": tokens[i], "lang": "en"}) for i in range(4)
    ]
    assert [a.status_code for a in answers] == [202, 202, 429, 429]
    refused = answers[-1]
    body = refused.get_json()
    assert body["code"] == "rate_limited" and body["message"] == "Slow down, please."
    assert "too many callback requests" in body["error"]
    assert int(refused.headers["Retry-After"]) == body["retry_after"] > 0
    assert refused.headers["Access-Control-Allow-Origin"] == ORIGIN  # the widget can read the message
    assert len([r for r in mango.received if r.path == "commands/callback_group"]) == 2


def test_honeypot_and_too_fast_are_refused(client: FlaskClient, mango: CommandServer, clock: Clock) -> None:
    token = get_config(client).get_json()["form_token"]
    clock.now += 1  # a second after the widget was shown
    fast = post(client, {"phone": "+79161234567", "form_token": token})
    assert fast.status_code == 400 and fast.get_json()["code"] == "refused"
    assert fast.get_json()["message"] == "Заявку не удалось принять."
    clock.now += 10
    trapped = post(client, {"phone": "+79161234567", "form_token": token, "website": "x"})
    assert trapped.status_code == 400
    no_token = post(client, {"phone": "+79161234567"})
    assert no_token.status_code == 400
    assert not mango.received


def test_bad_input_gets_clear_json_errors(client: FlaskClient, clock: Clock) -> None:
    token = get_config(client).get_json()["form_token"]
    clock.now += 5
    cases = [
        ({"phone": "123", "form_token": token}, 422, "invalid_phone"),
        ({"phone": ["+79161234567"], "form_token": token}, 400, "bad_request"),
        ({"phone": "+79161234567", "form_token": token, "utm": "x"}, 400, "bad_request"),
    ]
    for body, status, code in cases:
        response = post(client, body)
        assert (response.status_code, response.get_json()["code"]) == (status, code)
    not_json = client.post(
        "/widget/callback?site=shop", data="phone=1", headers={"Origin": ORIGIN, "Content-Type": "text/plain"}
    )
    assert not_json.status_code == 400
    huge = post(client, {"phone": "+79161234567", "form_token": token, "page": "x" * 20000})
    assert huge.status_code == 413


def test_status_endpoint(client: FlaskClient, clock: Clock) -> None:
    token = get_config(client).get_json()["form_token"]
    clock.now += 5
    accepted = post(client, {"phone": "+79161234567", "form_token": token}).get_json()
    status = client.get(f"/widget/status/{accepted['token']}", headers={"Origin": ORIGIN})
    assert status.status_code == 200 and status.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert status.get_json()["state"] == "calling_managers"
    assert client.get(f"/widget/status/{accepted['token']}", headers={"Origin": EVIL}).status_code == 403
    assert client.get("/widget/status/unknown").status_code == 404
