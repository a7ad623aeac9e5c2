"""The webhook source-address allow-list saved in the panel applies to the running daemon within about
2 s, in every HTTP worker, without a restart; and the receiver parses each list once, not per request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import Engine

from admin_module.users import create_user
from bridge.pbx.mango.receiver import AllowList
from bridge.pbx.mango.signing import signed_form
from tests.daemon import API_KEY, API_SALT, SETTINGS_REFRESH, SHORT_SETTINGS_REFRESH, Daemon
from tests.test_admin_support import PASSWORD, csrf_of, panel_session

APPLIES_WITHIN = SETTINGS_REFRESH + 1.5  # the settings refresh, and some slack for a loaded machine


@pytest.fixture
def daemon(database_url: str, engine: Engine, tmp_path: Path) -> Iterator[Daemon]:
    create_user(engine, "admin", PASSWORD, "admin", lang="en")
    running = Daemon(database_url, tmp_path, env=SHORT_SETTINGS_REFRESH).start()
    try:
        yield running
    finally:
        running.stop()


def save_allow_list(panel: requests.Session, daemon: Daemon, ip_mode: str, allowed_ips: str = "") -> None:
    page = panel.get(f"{daemon.url}/admin/settings", timeout=5)
    data = {
        "csrf_token": csrf_of(page.text),
        "provider": "mango",
        "ip_mode": ip_mode,
        "allowed_ips": allowed_ips,
        "verify_tls": "y",
        "recordings": "y",
        "timezone": "Europe/Moscow",
    }
    saved = panel.post(f"{daemon.url}/admin/settings", data=data, allow_redirects=False, timeout=5)
    assert saved.status_code == 302, saved.text


def webhook(daemon: Daemon) -> requests.Response:
    """A correctly signed notification from this machine (127.0.0.1)."""
    return requests.post(f"{daemon.mango_url}/ping", data=signed_form(API_KEY, API_SALT, {}), timeout=5)


def settles_to(daemon: Daemon, status: int) -> requests.Response:
    """Wait until webhooks get `status`, then check that every worker answers so (many requests)."""
    started = time.monotonic()
    while (answer := webhook(daemon)).status_code != status:
        assert time.monotonic() - started < APPLIES_WITHIN, f"still {answer.status_code}: {answer.text}"
        time.sleep(0.05)
    # Every worker's cache has expired by now.
    time.sleep(max(0.0, SETTINGS_REFRESH + 0.2 - (time.monotonic() - started)))
    answers = [webhook(daemon) for _ in range(20)]
    assert [a.status_code for a in answers] == [status] * 20
    return answer


def test_the_allow_list_saved_in_the_panel_applies_without_a_restart(daemon: Daemon) -> None:
    panel = panel_session(daemon.url)
    assert webhook(daemon).status_code == 200  # open by default

    save_allow_list(panel, daemon, "list", "192.0.2.10\n198.51.100.0/24")
    refused = settles_to(daemon, 403)
    assert refused.json()["error"] == "source address not allowed"

    save_allow_list(panel, daemon, "list", "192.0.2.10, 127.0.0.0/8")
    assert settles_to(daemon, 200).json() == {"success": True}

    save_allow_list(panel, daemon, "list", "mango")  # Mango's published addresses only
    settles_to(daemon, 403)

    save_allow_list(panel, daemon, "open")
    settles_to(daemon, 200)


def test_the_allow_list_is_parsed_once_per_list_and_follows_its_source() -> None:
    current = ["10.0.0.0/8", "2001:db8::/32", "not-an-address"]
    allow = AllowList(lambda: current)
    assert allow.allows("10.1.2.3") and allow.allows("2001:db8::1")
    assert not allow.allows("192.0.2.1") and not allow.allows(None) and not allow.allows("garbage")
    parsed = allow.networks()
    assert parsed is not None and len(parsed) == 2  # the invalid entry is ignored
    assert allow.networks() is parsed  # the same list: nothing parsed again
    current = ["192.0.2.1"]  # the source now gives another list
    assert allow.allows("192.0.2.1") and not allow.allows("10.1.2.3")
    current = []
    assert allow.networks() is None and allow.allows("203.0.113.9")  # an empty list is open
    current = ["nonsense"]
    assert not allow.allows("203.0.113.9")  # a list with nothing valid lets nobody in
    assert AllowList(["127.0.0.1"]).allows("127.0.0.1")  # a plain list still works
