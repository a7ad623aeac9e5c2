"""Shared fixtures of the outbox tests: a real database per test, SQLite always, PostgreSQL when given.

Set ``CALLBRIDGE_TEST_DATABASE_URL`` (e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/test``) to run
every test that uses `db_engine` on PostgreSQL too. Each PostgreSQL test gets its own schema, dropped
afterwards, so parallel runs never collide. Import the fixtures with::

    from outbox_fixtures import FakeClock, db_engine, make_event  # noqa: F401
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from bridge.connector_api import CallEvent
from bridge.store.schema import metadata

PG_URL = os.environ.get("CALLBRIDGE_TEST_DATABASE_URL", "").strip()
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def sqlite_engine(path: str) -> sa.Engine:
    """A file SQLite engine set up as the daemon sets it up (WAL, BEGIN IMMEDIATE, busy timeout)."""
    try:
        from bridge.store.engine import make_engine
    except ImportError:  # pragma: no cover - the store's engine module is the lead's; be independent of it
        pass
    else:
        return make_engine(f"sqlite:///{path}")
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


@pytest.fixture(params=BACKENDS)
def db_engine(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[sa.Engine]:
    """An engine on a fresh database holding every table of `bridge.store.schema`."""
    if request.param == "sqlite":
        engine = sqlite_engine(str(tmp_path / "callbridge.db"))
        metadata.create_all(engine)
        yield engine
        engine.dispose()
        return

    schema = f"cb_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = sa.create_engine(PG_URL, connect_args={"options": f"-c search_path={schema}"}, pool_size=10)
    try:
        metadata.create_all(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


class FakeClock:
    """A thread-safe manual clock; `sleep` advances it, so rate limits can be checked exactly."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self._now += max(0.0, seconds)


def make_event(entry_id: str = "entry-1", type_: str = "call.ringing", key: str | None = None, **kw: Any):
    """A CallEvent with sensible defaults; `key` defaults to the type."""
    return CallEvent(
        type=type_,
        entry_id=entry_id,
        key=key or type_,
        occurred_at=kw.pop("occurred_at", 1_700_000_000.0),
        direction=kw.pop("direction", "incoming"),
        customer_number=kw.pop("customer_number", "79161234567"),
        **kw,
    )
