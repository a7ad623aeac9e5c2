"""`http.metrics_token`: with it set, `/metrics` answers only `Authorization: Bearer <token>` (401 to the
rest, the token never echoed); without it `/metrics` is open as before, for the proxy's own rule to guard."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from bridge.config import load_config
from bridge.web.health import make_health

TOKEN = "scrape-token-0123456789"


def client(engine: Engine, token: str) -> FlaskClient:
    app = Flask(__name__)
    app.register_blueprint(make_health(engine, token))
    return app.test_client()


def test_the_setting_is_read_from_the_environment_and_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLBRIDGE_HTTP_METRICS_TOKEN", TOKEN)
    settings = load_config(None)
    assert settings.http.metrics_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN],
)
def test_metrics_need_the_token_when_it_is_set(engine: Engine, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    answer = client(engine, TOKEN).get("/metrics", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in answer.get_data(as_text=True)


def test_metrics_answer_with_the_token_and_healthz_never_needs_it(engine: Engine) -> None:
    guarded = client(engine, TOKEN)
    for scheme in ("Bearer", "bearer"):
        answer = guarded.get("/metrics", headers={"Authorization": f"{scheme} {TOKEN}"})
        assert answer.status_code == 200 and "callbridge_calls" in answer.get_data(as_text=True)
    assert guarded.get("/healthz").status_code == 200
    assert client(engine, "").get("/metrics").status_code == 200
