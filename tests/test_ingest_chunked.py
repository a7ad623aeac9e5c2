"""Chunked request bodies at the Mango receiver (through `callbridge run`, SQLite and PostgreSQL).

Mango's "Check connection" and its notifications may come without a Content-Length, as
`Transfer-Encoding: chunked`: they are read under the same 64 KiB cap as any other body.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from sqlalchemy import select

from bridge.pbx.mango.signing import signed_form
from bridge.store.engine import make_engine
from bridge.store.schema import raw_events
from tests.daemon import API_KEY, API_SALT, Daemon
from tests.test_poison_events import leg

CAP = 64 * 1024


@pytest.fixture
def daemon(database_url: str, tmp_path: Path) -> Iterator[Daemon]:
    instance = Daemon(database_url, tmp_path).start()
    try:
        yield instance
    finally:
        instance.stop()


def chunked(body: bytes, size: int = 1000) -> Iterator[bytes]:
    """The body in pieces, so `requests` sends it chunked (no Content-Length)."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def post_chunked(daemon: Daemon, path: str, body: bytes) -> requests.Response:
    return requests.post(
        f"{daemon.mango_url}/{path}",
        data=chunked(body),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=15,
    )


def form_body(payload: object) -> bytes:
    return urlencode(signed_form(API_KEY, API_SALT, payload)).encode()


def test_a_chunked_check_connection_is_answered_200(daemon: Daemon) -> None:
    response = post_chunked(daemon, "ping", form_body({}))
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.request.headers
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}


def test_a_chunked_notification_is_stored(daemon: Daemon) -> None:
    response = post_chunked(
        daemon, "events/call", form_body(leg("chunked-call", 1, "Appeared", 1_700_000_000))
    )
    assert response.status_code == 200, response.text
    engine = make_engine(daemon.env["CALLBRIDGE_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            stored = conn.execute(select(raw_events.c.entry_id)).scalars().all()
    finally:
        engine.dispose()
    assert stored == ["chunked-call"]


@pytest.mark.parametrize("size", [CAP + 1, 10 * CAP])
def test_a_chunked_body_over_the_cap_gets_413(daemon: Daemon, size: int) -> None:
    body = form_body({"padding": "x"})
    body += b"&padding=" + b"x" * (size - len(body) - len(b"&padding="))
    assert len(body) == size
    response = post_chunked(daemon, "ping", body)
    assert response.status_code == 413, response.text
    assert response.json() == {"error": f"request body too large (limit {CAP} bytes)", "status": 413}
    # The receiver goes on answering.
    assert post_chunked(daemon, "ping", form_body({})).status_code == 200
