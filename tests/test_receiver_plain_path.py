"""The plain WSGI path and the event-loop path for Mango notifications answer byte for byte as the Flask
blueprint does.

All paths share one real group-commit writer and store (SQLite and PostgreSQL); every request of the
table is sent to the app whose notifications go through Flask, to the app that answers them before
Flask, and to the receiver's event-loop path (on a running asyncio loop, handing what it does not take
to the app, as the HTTP workers' front does), and the status, headers and body must be identical. The
daemon tests (test_receiver_*) check the answers themselves through `callbridge run`, whose front
answers notifications on its event loop; the last test here checks that path behind a trusted proxy.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from flask import Flask
from sqlalchemy import Engine, func, select
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.test import EnvironBuilder, run_wsgi_app

from bridge.http_errors import install_error_handlers
from bridge.ingest.writer import GroupCommitWriter
from bridge.pbx.mango.receiver import MangoCredentials, MangoReceiver
from bridge.pbx.mango.signing import signed_form
from bridge.store.schema import raw_events
from tests.daemon import API_KEY, API_SALT, Daemon

KEY, SALT = "plain-path-key", "plain-path-salt-0123"
MAX_BODY = 256 * 1024  # above the 1,000 form parts a multipart body needs to hit Flask's parts limit
CALL = {
    "entry_id": "ZW50cnk=",
    "call_id": "plain",
    "timestamp": 1670060542,
    "seq": 1,
    "call_state": "Appeared",
    "location": "abonent",
    "from": {"number": "79607164646"},
    "to": {"extension": "222", "number": "79776307393"},
}


class Setup:
    """What the apps read per request: the allow-list and the credentials (or an error to raise)."""

    def __init__(self) -> None:
        self.allowed: list[str] = ["127.0.0.1"]
        self.credentials: tuple[str, str] | Exception = (KEY, SALT)

    def keys(self) -> tuple[str, str]:
        if isinstance(self.credentials, Exception):
            raise self.credentials
        return self.credentials


def make_app(receiver: MangoReceiver, *, plain: bool) -> Flask:
    """The receiver's part of `bridge.web.app.create_app`, with or without the plain path in front."""
    app = Flask(f"receiver-{plain}")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_BODY
    app.json.sort_keys = False  # type: ignore[attr-defined]
    install_error_handlers(app)
    app.register_blueprint(receiver.blueprint())
    if plain:
        app.wsgi_app = receiver.wsgi(app.wsgi_app)  # type: ignore[method-assign]
    return app


class OnLoop:
    """The event-loop path as the front runs it: the receiver first, the (plain) app for what it leaves."""

    def __init__(self, receiver: MangoReceiver, app: Flask) -> None:
        self.receiver = receiver
        self.app = app


Client = Flask | OnLoop


@pytest.fixture
def apps(engine: Engine) -> Iterator[tuple[Setup, GroupCommitWriter, Flask, Flask, OnLoop]]:
    setup = Setup()
    writer = GroupCommitWriter(engine, on_commit=lambda: None)
    receiver = MangoReceiver(
        MangoCredentials(setup.keys), writer, allowed_ips=lambda: setup.allowed, max_body_bytes=MAX_BODY
    )
    plain = make_app(receiver, plain=True)
    try:
        yield setup, writer, make_app(receiver, plain=False), plain, OnLoop(receiver, plain)
    finally:
        writer.stop()


def form(payload: object, **changes: str | None) -> dict[str, str]:
    fields = {**signed_form(KEY, SALT, payload), **changes}
    return {k: v for k, v in fields.items() if v is not None}


def multipart(fields: dict[str, str], extra_parts: int = 0) -> tuple[bytes, str]:
    boundary = "plainpathboundary"
    items = list(fields.items()) + [(f"x{i}", "1") for i in range(extra_parts)]
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in items
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode(), f"multipart/form-data; boundary={boundary}"


Request = Callable[[str], dict]  # tag -> EnvironBuilder arguments (the tag keeps events distinct per app)

CASES: dict[str, Request] = {
    "stored": lambda tag: {"data": form({**CALL, "call_id": f"stored-{tag}"})},
    "resent": lambda tag: {"data": form({**CALL, "call_id": "resent"})},
    "ping": lambda tag: {"path": "/mango/ping", "data": form({})},
    "trailing-slash": lambda tag: {"path": "/mango/events/call/", "data": form({**CALL, "call_id": tag})},
    "multipart": lambda tag: dict(
        zip(("data", "content_type"), multipart(form({**CALL, "call_id": f"mp-{tag}"})), strict=True)
    ),
    "too-many-parts": lambda tag: dict(
        zip(("data", "content_type"), multipart(form(CALL), extra_parts=1000), strict=True)
    ),
    "wrong-sign": lambda tag: {"data": form(CALL, sign="0" * 64)},
    "wrong-key": lambda tag: {"data": form(CALL, vpbx_api_key="someone-else")},
    "no-sign": lambda tag: {"data": form(CALL, sign=None)},
    "no-json": lambda tag: {"data": form(CALL, json=None, sign="x")},
    "broken-json": lambda tag: {"data": form('{"entry_id": "x", ')},
    "not-object": lambda tag: {"data": form("[1, 2]")},
    "bad-state": lambda tag: {"data": form({**CALL, "call_state": "Exploded"})},
    "unknown-path": lambda tag: {"path": "/mango/events/call_state_changed", "data": form(CALL)},
    "json-body": lambda tag: {"json": form(CALL)},
    "too-large": lambda tag: {"data": form({**CALL, "padding": "x" * MAX_BODY})},
    "chunked": lambda tag: {
        "input_stream": io.BytesIO(b"vpbx_api_key=x&json=" + b"a" * 4096),
        "content_type": "application/x-www-form-urlencoded",
    },
    "chunked-form": lambda tag: {
        "input_stream": io.BytesIO(urlencode(form({**CALL, "call_id": f"chunked-{tag}"})).encode()),
        "content_type": "application/x-www-form-urlencoded",
        "terminated": True,
    },
    "chunked-too-large": lambda tag: {
        "input_stream": io.BytesIO(urlencode(form({**CALL, "padding": "x" * MAX_BODY})).encode()),
        "content_type": "application/x-www-form-urlencoded",
        "terminated": True,
    },
    "huge-int": lambda tag: {"data": form({**CALL, "seq": 2**70})},
    "nul": lambda tag: {"data": form({**CALL, "call_id": "a\x00b"})},
    "lone-surrogate": lambda tag: {"data": form(json.dumps({**CALL, "entry_id": "\ud800"}))},
    "deep": lambda tag: {"data": form(json.dumps(CALL)[:-1] + ',"x":' + "[" * 1500 + "]" * 1500 + "}")},
    "status-page": lambda tag: {"method": "GET", "path": "/mango"},
    "get-notification": lambda tag: {"method": "GET", "path": "/mango/events/call"},
    "doubled-slash": lambda tag: {"path": "/mango//events/call", "data": form(CALL)},
}


Answer = tuple[str, str | None, str | None, bytes]  # status line, Content-Type, Content-Length, body


def answer(client: Client, request: dict) -> Answer:
    environ = environ_of(request)
    if isinstance(client, OnLoop):
        reply = asyncio.run(client.receiver.answer_on_loop(environ))
        if reply is not None:
            status, headers, body = reply
            assert [name for name, _ in headers] == ["Content-Type", "Content-Length"]
            fields = dict(headers)
            line = f"{status} {HTTP_STATUS_CODES[status].upper()}"
            return line, fields["Content-Type"], fields["Content-Length"], body
        client = client.app
    body, status, headers = run_wsgi_app(client, environ, buffered=True)
    return status, headers.get("Content-Type"), headers.get("Content-Length"), b"".join(body)


def environ_of(request: dict) -> dict:
    request = dict(request)
    terminated = request.pop("terminated", False)  # the server decoded the chunks and ends the stream
    args = {"method": "POST", "path": "/mango/events/call", **request}
    environ = EnvironBuilder(**args).get_environ()
    environ["REMOTE_ADDR"] = "127.0.0.1"  # as the HTTP server sets it
    if "input_stream" in request:  # a chunked upload: no Content-Length
        del environ["CONTENT_LENGTH"]
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        if terminated:
            environ["wsgi.input_terminated"] = True
    return environ


def stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(raw_events)).scalar_one()


def assert_same(apps: tuple, request: Request, name: str) -> str:
    _setup, _writer, flask_client, plain_client, on_loop = apps
    via_flask = answer(flask_client, request("flask"))
    via_plain = answer(plain_client, request("plain"))
    via_loop = answer(on_loop, request("loop"))
    assert via_plain == via_flask, name
    assert via_loop == via_flask, name
    return via_plain[0]


def test_every_answer_is_the_same_on_all_paths(engine: Engine, apps) -> None:
    statuses = {name: assert_same(apps, case, name) for name, case in CASES.items()}
    assert statuses == {
        "stored": "200 OK",
        "resent": "200 OK",
        "ping": "200 OK",
        "trailing-slash": "200 OK",
        "multipart": "200 OK",
        "too-many-parts": "413 REQUEST ENTITY TOO LARGE",
        "wrong-sign": "403 FORBIDDEN",
        "wrong-key": "403 FORBIDDEN",
        "no-sign": "400 BAD REQUEST",
        "no-json": "400 BAD REQUEST",
        "broken-json": "400 BAD REQUEST",
        "not-object": "400 BAD REQUEST",
        "bad-state": "400 BAD REQUEST",
        "unknown-path": "404 NOT FOUND",
        "json-body": "415 UNSUPPORTED MEDIA TYPE",
        "too-large": "413 REQUEST ENTITY TOO LARGE",
        "chunked": "411 LENGTH REQUIRED",
        "chunked-form": "200 OK",
        "chunked-too-large": "413 REQUEST ENTITY TOO LARGE",
        "huge-int": "400 BAD REQUEST",
        "nul": "400 BAD REQUEST",
        "lone-surrogate": "400 BAD REQUEST",
        "deep": "400 BAD REQUEST",
        "status-page": "200 OK",
        "get-notification": "405 METHOD NOT ALLOWED",
        "doubled-slash": "308 PERMANENT REDIRECT",
    }
    # Each path stored its own stored/trailing-slash/multipart/chunked events; the resend was stored once.
    assert stored(engine) == 3 * 4 + 1


def test_refusals_from_settings_and_failures_are_the_same_on_all_paths(engine: Engine, apps) -> None:
    setup, writer, _flask_client, plain_client, on_loop = apps
    good = CASES["stored"]

    setup.allowed = ["192.0.2.0/24"]  # a list saved in the panel: read per request
    assert assert_same(apps, good, "not allowed") == "403 FORBIDDEN"
    setup.allowed = []
    setup.credentials = ("", "")
    assert assert_same(apps, good, "no credentials") == "503 SERVICE UNAVAILABLE"
    setup.credentials = RuntimeError("settings store unreachable")
    assert assert_same(apps, good, "unexpected") == "500 INTERNAL SERVER ERROR"
    setup.credentials = (KEY, SALT)
    writer.stop()
    assert assert_same(apps, good, "writer stopped") == "503 SERVICE UNAVAILABLE"
    for client in (plain_client, on_loop):
        body = json.loads(answer(client, good("again"))[3])
        assert body == {"error": "the event could not be stored right now; please resend", "status": 503}
    assert stored(engine) == 0


def test_behind_a_trusted_proxy_the_forwarded_address_meets_the_allow_list(tmp_path: Path) -> None:
    """Through `callbridge run`: the plain path sits inside the proxy fix-up, so it sees the real source."""
    daemon = Daemon(
        f"sqlite:///{tmp_path / 'cb.db'}",
        tmp_path,
        env={"CALLBRIDGE_HTTP_TRUSTED_PROXIES": "1", "CALLBRIDGE_MANGO_ALLOWED_IPS": "203.0.113.7"},
    ).start()
    try:
        body = signed_form(API_KEY, API_SALT, {**CALL, "call_id": "via-proxy"})
        url = f"{daemon.mango_url}/events/call"
        direct = requests.post(url, data=body, timeout=10)
        assert direct.status_code == 403 and direct.json()["error"] == "source address not allowed"
        proxied = requests.post(url, data=body, headers={"X-Forwarded-For": "203.0.113.7"}, timeout=10)
        assert proxied.status_code == 200, proxied.text
        assert proxied.json() == {"success": True}
    finally:
        daemon.stop()
