"""Slow clients cannot starve the HTTP server: trickled requests wait without a worker thread and are
cut at the configured deadlines, while signed webhooks and /healthz keep being answered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from bench._load import SlowClients
from bridge.pbx.mango.signing import signed_form
from bridge.store.engine import make_engine
from bridge.store.schema import raw_events
from tests.daemon import API_KEY, API_SALT, Daemon

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 3.0
SLOW_BODIES = 36  # with SLOW_HEADERS: 48 connections, six times the 2 x 4 worker threads
SLOW_HEADERS = 12


@pytest.fixture
def daemon(database_url: str, tmp_path: Path) -> Iterator[Daemon]:
    env = {
        "CALLBRIDGE_HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "CALLBRIDGE_HTTP_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
    }
    instance = Daemon(database_url, tmp_path, env=env)
    try:
        yield instance.start()
    finally:
        instance.stop()


def call_event(n: int) -> dict[str, object]:
    return {
        "entry_id": f"slow-entry-{n}",
        "call_id": f"slow-call-{n}",
        "timestamp": 1670060542 + n,
        "seq": 1,
        "call_state": "Appeared",
        "location": "abonent",
        "from": {"number": "79607164646"},
        "to": {"extension": "222", "number": "79776307393"},
    }


def stored_events(database_url: str) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(raw_events)).scalar_one()
    finally:
        engine.dispose()


def test_slow_clients_do_not_starve_webhooks_and_are_cut_at_the_deadline(
    daemon: Daemon, database_url: str
) -> None:
    with SlowClients(daemon.port, body=SLOW_BODIES, header=SLOW_HEADERS, interval=0.2) as slow:
        assert slow.wait_trickling(3)  # every slow request is in the server, a few bytes further
        for n in range(5):
            started = time.monotonic()
            answer = requests.post(
                f"{daemon.mango_url}/events/call",
                data=signed_form(API_KEY, API_SALT, call_event(n)),
                timeout=2,
            )
            assert answer.status_code == 200, answer.text
            assert time.monotonic() - started < 2.0
        assert requests.get(f"{daemon.url}/healthz", timeout=2).status_code == 200
        # The webhooks were answered while every slow request was still open, waiting for its bytes.
        assert slow.open_count() == SLOW_BODIES + SLOW_HEADERS
        assert slow.wait_closed(timeout=BODY_TIMEOUT + 10), f"{slow.open_count()} slow connections still open"

    for conn in slow.conns:
        assert conn.closed_at is not None
        held = conn.closed_at - conn.opened_at
        deadline = BODY_TIMEOUT if conn.kind == "body" else HEADER_TIMEOUT
        assert deadline - 0.5 <= held <= deadline + 3.0, (conn.kind, held, conn.answer[:200])
        if conn.kind == "body":
            assert conn.answer.startswith(b"HTTP/1.1 408 "), conn.answer[:200]
            assert b"the request body did not arrive within 3 s" in conn.answer
    assert stored_events(database_url) == 5
    # Once they are gone the server is as it was.
    assert requests.get(f"{daemon.url}/healthz", timeout=2).status_code == 200
