"""The login limit in the real daemon (`callbridge run`, 2 worker processes, real store): parallel wrong
passwords check at most the limit, a locked user name does not lock out colleagues behind the same
address, the window comes from the settings, and input that cannot be a login never causes a 500."""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from admin_module.login_limiter import LoginLimiter
from admin_module.tables import admin_login_limits
from bridge.store.engine import make_engine
from tests.daemon import Daemon
from tests.test_admin_support import PASSWORD, csrf_of, panel_session

PER_USER_ADDRESS = 5
WINDOW = 15.0
PARALLEL = 40


@pytest.fixture
def daemon(database_url: str, tmp_path: Path) -> Iterator[Daemon]:
    env = {"CALLBRIDGE_LOGIN_WINDOW_SECONDS": str(WINDOW), "CALLBRIDGE_HTTP_THREADS": "8"}
    running = Daemon(database_url, tmp_path, env=env).start()
    try:
        running.create_user("alice", PASSWORD, "admin")
        running.create_user("bob", PASSWORD, "manager", extension="102")
        yield running
    finally:
        running.stop()


def login_form(daemon: Daemon) -> tuple[requests.Session, str]:
    http = requests.Session()
    return http, csrf_of(http.get(f"{daemon.url}/admin/login", timeout=10).text)


def post_form(http: requests.Session, url: str, fields: dict[str, str]) -> requests.Response:
    """POST `fields` form-encoded as a browser would, lone surrogates and NULs included (as raw bytes)."""
    body = urllib.parse.urlencode(fields, encoding="utf-8", errors="surrogatepass")
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return http.post(url, data=body, headers=headers, allow_redirects=False, timeout=30)


def post_login(daemon: Daemon, form: tuple[requests.Session, str], username: str, password: str) -> int:
    http, csrf = form
    fields = {"username": username, "password": password, "csrf_token": csrf}
    return post_form(http, f"{daemon.url}/admin/login", fields).status_code


def test_parallel_wrong_passwords_check_at_most_the_limit(daemon: Daemon) -> None:
    forms = [login_form(daemon) for _ in range(PARALLEL)]
    start = threading.Barrier(PARALLEL)

    def attempt(form: tuple[requests.Session, str]) -> int:
        start.wait()
        return post_login(daemon, form, "alice", "wrong password")

    began = time.time()
    with ThreadPoolExecutor(PARALLEL) as pool:
        statuses = list(pool.map(attempt, forms))
    assert time.time() - began < WINDOW, "the burst outlasted the window: the count would restart"

    engine = make_engine(daemon.env["CALLBRIDGE_DATABASE_URL"])
    try:
        checked = LoginLimiter(engine).failures("alice")
        with engine.connect() as conn:
            counters = dict(conn.execute(select(admin_login_limits.c.key, admin_login_limits.c.count)).all())
    finally:
        engine.dispose()
    # Exactly the limit was checked (and refused as a wrong login); every other attempt got 429 unchecked.
    assert checked == PER_USER_ADDRESS
    assert statuses.count(401) == PER_USER_ADDRESS and statuses.count(429) == PARALLEL - PER_USER_ADDRESS
    assert counters["ua:alice|127.0.0.1"] == PER_USER_ADDRESS and counters["u:alice"] == PER_USER_ADDRESS
    assert counters["a:127.0.0.1"] == PER_USER_ADDRESS  # refused attempts take no slot of the address

    # Even the right password waits out the window; a colleague behind the same address logs in now.
    assert post_login(daemon, login_form(daemon), "alice", PASSWORD) == 429
    assert post_login(daemon, login_form(daemon), "bob", PASSWORD) == 302
    deadline = time.time() + WINDOW + 10
    while post_login(daemon, login_form(daemon), "alice", PASSWORD) != 302:
        assert time.time() < deadline, "alice is still locked out after the window"
        time.sleep(0.5)


def test_the_operator_page_shares_the_limit(daemon: Daemon) -> None:
    for _ in range(PER_USER_ADDRESS):
        assert post_login(daemon, login_form(daemon), "bob", "wrong password") == 401
    refused = post_form(
        requests.Session(), f"{daemon.url}/operator/login", {"username": "bob", "password": PASSWORD}
    )
    assert refused.status_code == 401 and "Too many failed attempts" in refused.text
    assert panel_session(daemon.url, "alice")  # another user from the same address is not locked


BAD_NAMES = ["ali\x00ce", "alice\x00", "\x00", "\udc80alice", "x" * 5000, "ali ce", "a'; drop table x; --"]
BAD_PASSWORDS = ["wrong\x00password", "\x00", "\ud800\udc00\udfff", "p" * 50_000]


def test_login_input_that_cannot_be_a_login_is_a_4xx_without_a_traceback(daemon: Daemon) -> None:
    for name in BAD_NAMES:
        status = post_login(daemon, login_form(daemon), name, PASSWORD)
        assert status == 401, (name[:20], status)
        fields = {"username": name, "password": PASSWORD}
        operator = post_form(requests.Session(), f"{daemon.url}/operator/login", fields)
        assert operator.status_code == 401, (name[:20], operator.status_code)
    for password in BAD_PASSWORDS:
        assert 400 <= post_login(daemon, login_form(daemon), "bob", password) < 500
    huge = requests.Session()
    answer = post_form(huge, f"{daemon.url}/admin/login", {"username": "u" * 200_000})
    assert answer.status_code == 413
    assert panel_session(daemon.url, "alice")  # the store and the limiter are fine afterwards
    log = daemon.log_path.read_text(errors="replace")
    assert "Traceback" not in log
