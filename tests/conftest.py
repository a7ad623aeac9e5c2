"""Shared fixtures: the store on every configured backend, and the real daemon as a subprocess."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bridge.store.engine import make_engine
from bridge.store.migrate import upgrade
from tests.daemon import Daemon, free_port  # noqa: F401  (re-exported for tests)

PG_ADMIN_URL = os.environ.get("CALLBRIDGE_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("CALLBRIDGE_TEST_REDIS_URL")
# Several instances sharing PostgreSQL and Redis; CI provides both, so there a missing one fails the test.
requires_postgres_and_redis = pytest.mark.skipif(
    not (PG_ADMIN_URL and REDIS_URL) and not os.environ.get("CI"),
    reason="needs CALLBRIDGE_TEST_DATABASE_URL (PostgreSQL) and CALLBRIDGE_TEST_REDIS_URL",
)
BACKENDS = ["sqlite"] + (["postgresql"] if PG_ADMIN_URL else [])


def _pg_database(name: str) -> Iterator[str]:
    assert PG_ADMIN_URL
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty database on each backend (SQLite always; PostgreSQL where configured)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'callbridge.db'}"
    else:
        yield from _pg_database(f"cb_test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated engine on `database_url`."""
    eng = make_engine(database_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "daemon: starts `callbridge run`; `make test-fast` leaves it out")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    from tests.markers import starts_daemon

    for item in items:
        if starts_daemon(item):
            item.add_marker(pytest.mark.daemon)
