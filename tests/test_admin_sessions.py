"""Panel and operator-page sessions live on the server (`callbridge run`, real HTTP, real store): logging
out, a new password or a disabled user ends every session of that user, and a saved copy of a cookie
replayed afterwards is refused."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from admin_module.sessions import HUB_TOKEN_SECONDS
from tests.daemon import CALLBRIDGE, Daemon
from tests.test_admin_support import PASSWORD, csrf_of, panel_session

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def daemon(database_url: str, tmp_path: Path) -> Iterator[Daemon]:
    running = Daemon(database_url, tmp_path).start()
    try:
        running.create_user("anna", PASSWORD, "manager", extension="101")
        running.create_user("boss", PASSWORD, "admin")
        yield running
    finally:
        running.stop()


def admin_command(daemon: Daemon, *args: str, stdin: str = "") -> str:
    """`callbridge admin ...` against the daemon's store, as an administrator runs it; its output."""
    done = subprocess.run(
        [CALLBRIDGE, "admin", *args],
        input=stdin,
        env=daemon.env,
        cwd=daemon.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def logged_in(daemon: Daemon, http: requests.Session) -> bool:
    """Whether `http`'s cookie opens the call log (a refused one is sent to the login page)."""
    answer = http.get(f"{daemon.url}/admin/calls", allow_redirects=False, timeout=10)
    assert answer.status_code in (200, 302), answer.status_code
    if answer.status_code == 302:
        assert "/admin/login" in answer.headers["Location"]
    return answer.status_code == 200


def replay(daemon: Daemon, cookies: requests.cookies.RequestsCookieJar) -> requests.Session:
    """A fresh client holding a saved copy of someone's cookies (a stolen cookie)."""
    http = requests.Session()
    http.cookies.update(cookies)
    return http


def log_out(daemon: Daemon, http: requests.Session) -> None:
    page = http.get(f"{daemon.url}/admin/calls", timeout=10)
    answer = http.post(
        f"{daemon.url}/admin/logout",
        data={"csrf_token": csrf_of(page.text)},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302


def login_status(daemon: Daemon, username: str, password: str) -> int:
    http = requests.Session()
    page = http.get(f"{daemon.url}/admin/login", timeout=10)
    return http.post(
        f"{daemon.url}/admin/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(page.text)},
        allow_redirects=False,
        timeout=10,
    ).status_code


def test_logout_ends_every_session_of_the_user_and_a_saved_cookie_stops_working(daemon: Daemon) -> None:
    first, second = panel_session(daemon.url, "anna"), panel_session(daemon.url, "anna")
    other = panel_session(daemon.url, "boss")
    stolen = first.cookies.copy()
    assert (
        logged_in(daemon, first) and logged_in(daemon, second) and logged_in(daemon, replay(daemon, stolen))
    )
    # Live popups get short hub tokens (the hub closes the socket when one runs out), so they stop soon
    # after the session ends.
    hub = first.get(f"{daemon.url}/admin/live/session", timeout=10).json()
    assert hub["token"] and hub["expires_at"] <= time.time() + HUB_TOKEN_SECONDS + 1

    log_out(daemon, first)

    assert not logged_in(daemon, second)  # the other browser is logged out too
    assert not logged_in(daemon, replay(daemon, stolen))  # the copy of the cookie is dead on the server
    live = replay(daemon, stolen).get(f"{daemon.url}/admin/live/session", timeout=10)
    assert live.status_code == 401 and live.json() == {"error": "not logged in"}
    assert logged_in(daemon, other)  # another user's session is untouched
    assert logged_in(daemon, panel_session(daemon.url, "anna"))  # and anna may log in again


def test_a_new_password_ends_every_session(daemon: Daemon) -> None:
    first, second = panel_session(daemon.url, "anna"), panel_session(daemon.url, "anna")
    out = admin_command(daemon, "set-password", "--username", "anna", "--password-stdin", stdin=NEW_PASSWORD)
    assert "2 session(s) ended" in out
    assert not logged_in(daemon, first) and not logged_in(daemon, second)
    assert login_status(daemon, "anna", PASSWORD) == 401
    assert logged_in(daemon, panel_session(daemon.url, "anna", NEW_PASSWORD))


def test_a_disabled_user_is_logged_out_and_cannot_log_in(daemon: Daemon) -> None:
    http = panel_session(daemon.url, "anna")
    assert "1 session(s) ended" in admin_command(daemon, "disable-user", "--username", "anna")
    assert not logged_in(daemon, http)
    assert login_status(daemon, "anna", PASSWORD) == 401
    assert "anna\temployee\ten\t101\tdisabled" in admin_command(daemon, "list-users")
    admin_command(daemon, "enable-user", "--username", "anna")
    assert logged_in(daemon, panel_session(daemon.url, "anna"))


def operator_login(daemon: Daemon, username: str, password: str = PASSWORD) -> requests.Session:
    http = requests.Session()
    answer = http.post(
        f"{daemon.url}/operator/login",
        data={"username": username, "password": password},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 303, answer.text
    return http


def operator_status(daemon: Daemon, http: requests.Session) -> int:
    return http.get(f"{daemon.url}/operator/api/session", timeout=10).status_code


def test_operator_page_password_logins_end_with_the_users_sessions(daemon: Daemon) -> None:
    operator = operator_login(daemon, "anna")
    stolen = operator.cookies.copy()
    hub = operator.get(f"{daemon.url}/operator/api/session", timeout=10).json()
    assert hub["identity"]["extension"] == "101" and hub["expires_at"] <= time.time() + HUB_TOKEN_SECONDS + 1

    log_out(daemon, panel_session(daemon.url, "anna"))  # logging out of the panel ends the operator page too
    assert operator_status(daemon, operator) == 401
    assert operator_status(daemon, replay(daemon, stolen)) == 401

    # Logging out of the operator page ends the session on the server, not only this browser's cookie.
    operator = operator_login(daemon, "anna")
    stolen = operator.cookies.copy()
    panel = panel_session(daemon.url, "anna")
    assert (
        operator.post(f"{daemon.url}/operator/logout", allow_redirects=False, timeout=10).status_code == 303
    )
    assert operator_status(daemon, replay(daemon, stolen)) == 401
    assert not logged_in(daemon, panel)

    operator = operator_login(daemon, "anna")
    admin_command(daemon, "disable-user", "--username", "anna")
    assert operator_status(daemon, operator) == 401
    refused = requests.post(
        f"{daemon.url}/operator/login", data={"username": "anna", "password": PASSWORD}, timeout=10
    )
    assert refused.status_code == 401 and "Wrong user name or password." in refused.text


def _refused(daemon: Daemon, *args: str) -> str:
    """The error of an `callbridge admin ...` command that must fail."""
    done = subprocess.run(
        [CALLBRIDGE, "admin", *args],
        env=daemon.env,
        cwd=daemon.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout
    return done.stderr


def test_reset_password_and_delete_user_end_the_sessions_and_the_last_admin_stays(daemon: Daemon) -> None:
    http = panel_session(daemon.url, "anna")
    out = admin_command(daemon, "reset-password", "--username", "anna")
    new_password = out.strip().splitlines()[-1]
    assert "1 session(s) ended" in out and len(new_password) >= 16
    assert not logged_in(daemon, http)
    assert login_status(daemon, "anna", PASSWORD) == 401
    http = panel_session(daemon.url, "anna", new_password)
    assert logged_in(daemon, http)

    for command in ("delete-user", "disable-user"):  # boss is the only admin
        error = _refused(
            daemon, command, "--username", "boss", *(["--yes"] if command == "delete-user" else [])
        )
        assert f"cannot {command.split('-')[0]} the last enabled admin" in error
    assert logged_in(daemon, panel_session(daemon.url, "boss"))

    assert "deleted 'anna'; 1 session(s) ended" in admin_command(
        daemon, "delete-user", "--username", "anna", "--yes"
    )
    assert not logged_in(daemon, http)
    assert login_status(daemon, "anna", new_password) == 401
    assert "anna" not in admin_command(daemon, "list-users")
    assert "no user 'anna'" in _refused(daemon, "reset-password", "--username", "anna")
