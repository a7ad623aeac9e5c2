"""A database URL that cannot work stops `callbridge run` with one plain line, not a traceback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.daemon import CALLBRIDGE, free_port


def _run(tmp_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBRIDGE_")}
    env |= {
        "CALLBRIDGE_DATABASE_URL": url,
        "CALLBRIDGE_HTTP_PORT": str(free_port()),
        "CALLBRIDGE_WS_PORT": str(free_port()),
        "CALLBRIDGE_MANGO_API_KEY": "key",
    }
    return subprocess.run(
        [CALLBRIDGE, "run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (  # nothing listens on the port: filled in by the test (collection must not differ per worker)
            "postgresql+psycopg://callbridge:s3cret-pass@127.0.0.1:{free_port}/calls",
            "cannot open the database postgresql+psycopg://callbridge:***@127.0.0.1:",
        ),
        (
            "mysql://shop@db.local/calls",
            "its driver MySQLdb is not installed (callbridge stores calls in SQLite",
        ),
        (
            "oracle+cx://x@y/z",
            "not a kind of database callbridge knows; use sqlite:///FILE or postgresql+psycopg",
        ),
        ("calls.db", "database.url 'calls.db' is not a database URL; use sqlite:///FILE"),
    ],
    ids=["unreachable-postgresql", "mysql-driver", "unknown-kind", "not-a-url"],
)
def test_a_database_that_cannot_work_is_one_plain_line(tmp_path: Path, url: str, words: str) -> None:
    done = _run(tmp_path, url.replace("{free_port}", str(free_port())))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "s3cret-pass" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert words in line, done.stderr
