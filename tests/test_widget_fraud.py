"""Toll-fraud guards of the widget, through the real `callbridge run` and the Mango simulator, on SQLite and
PostgreSQL: numbers of other countries and costly types are never dialled, a form token serves one request
(also when two arrive at once), one network shares a limit, and a daily cap of numbers shows in the panel.

The daemon trusts one proxy (`http.trusted_proxies = 1`), so each request's address is its
`X-Forwarded-For`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import select

from bridge.store.engine import make_engine
from tests.conftest import BACKENDS
from tests.test_admin_support import PASSWORD, panel_session
from tests.test_widget_e2e import SHOP, Bridge, bridge_on_each_backend, form_tokens
from tests.waiting import wait_until
from widget.tables import widget_requests
from widget.texts import DEFAULT_TEXTS

ACCEPTED = "+79165557001"


def _bridge(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    yield from bridge_on_each_backend(request, tmp_path_factory, {"CALLBRIDGE_HTTP_TRUSTED_PROXIES": "1"})


bridge = pytest.fixture(scope="module", params=BACKENDS)(_bridge)


def post(bridge: Bridge, site: str, body: dict[str, Any], address: str = "192.0.2.10") -> requests.Response:
    """A browser on the shop's page, seen by the daemon at `address` (through the trusted proxy)."""
    return requests.post(
        f"{bridge.url}/widget/callback",
        params={"site": site},
        json=body,
        headers={"Origin": SHOP, "X-Forwarded-For": address},
        timeout=15,
    )


def body(phone: str, token: str, visitor: str = "fraud-visitor-0001", lang: str = "ru") -> dict[str, Any]:
    return {"phone": phone, "form_token": token, "visitor_id": visitor, "lang": lang, "page": f"{SHOP}/"}


def post_once_edit_applies(bridge: Bridge, site: str, request: dict[str, Any]) -> requests.Response:
    """`post` until no web worker answers from the site as it was before an edit.

    Each web worker re-reads a site within 5 s, and the requests may reach any worker: until every one has
    re-read it, a number the edit allowed can still be refused by one of them (which does not use the token).
    """

    def answer_after_edit() -> tuple[requests.Response] | None:
        answer = post(bridge, site, request)
        stale = answer.status_code == 422 and answer.json().get("code") == "number_not_allowed"
        return None if stale else (answer,)  # in a tuple: a 4xx response is falsy

    [answer] = wait_until(answer_after_edit, f"the edit of site {site} in every web worker", timeout=15)
    return answer


def stored_numbers(bridge: Bridge, site: str) -> list[str]:
    engine = make_engine(bridge.daemon.env["CALLBRIDGE_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            query = select(widget_requests.c.phone).where(widget_requests.c.site_key == site)
            return sorted(conn.execute(query).scalars())
    finally:
        engine.dispose()


def dialled(bridge: Bridge, phone: str) -> bool:
    return bool(bridge.commands_to(phone.lstrip("+")))


REFUSED_NUMBERS = {
    "+7 809 123-45-67": "number_not_allowed",  # Russian premium rate
    "+1 900 555 1234": "number_not_allowed",  # US premium rate, another country
    "+44 909 123 4567": "number_not_allowed",  # British premium rate
    "+881 612 345 678": "number_not_allowed",  # satellite
    "+882 342 1234": "number_not_allowed",  # international network
    "+882 123 456 789": "invalid_phone",  # not a number of that network
    "+7 800 123-45-67": "number_not_allowed",  # toll-free: off by default
    "+7 701 123 45 67": "number_not_allowed",  # a Kazakh mobile: not the site's country
}


def test_premium_satellite_and_foreign_numbers_are_refused_and_never_dialled(bridge: Bridge) -> None:
    bridge.add_site("fraud-types", "--hours", "daily 00:00-24:00", "--min-fill", "1")
    [token] = form_tokens(bridge, "fraud-types", 1)
    for number, code in REFUSED_NUMBERS.items():
        for lang in ("ru", "en"):
            answer = post(bridge, "fraud-types", body(number, token, lang=lang))
            assert answer.status_code == 422, (number, answer.text)
            data = answer.json()
            assert data["code"] == code, (number, data)
            wanted = "error_number" if code == "number_not_allowed" else "error_phone"
            assert data["message"] == DEFAULT_TEXTS[lang][wanted]
            assert data["error"] and answer.headers["Access-Control-Allow-Origin"] == SHOP

    # The refusals did not use the token up: it still serves one accepted request.
    accepted = post(bridge, "fraud-types", body(ACCEPTED, token))
    assert accepted.status_code == 202, accepted.text
    bridge.mango.wait_for("commands/callback_group", timeout=10, where=lambda r: r.json["to"] == ACCEPTED[1:])
    assert stored_numbers(bridge, "fraud-types") == [ACCEPTED]
    for number in ("+78091234567", "+19005551234", "+449091234567", "+881612345678", "+8823421234"):
        assert not dialled(bridge, number), number

    # Toll-free and Kazakhstan are settings; premium rate never is.
    bridge.cli(
        "widget", "set-site", "fraud-types", "--countries", "RU,KZ",
        "--number-types", "mobile,fixed_line,fixed_line_or_mobile,toll_free",
    )  # fmt: skip
    tokens = form_tokens(bridge, "fraud-types", 3)
    toll_free = post_once_edit_applies(
        bridge, "fraud-types", body("+7 800 123-45-67", tokens[0], "fraud-visitor-0002")
    )
    assert toll_free.status_code == 202, toll_free.text
    kazakh = post_once_edit_applies(
        bridge, "fraud-types", body("+7 701 123 45 67", tokens[1], "fraud-visitor-0003")
    )
    assert kazakh.status_code == 202, kazakh.text
    premium = post(bridge, "fraud-types", body("+7 809 123-45-67", tokens[2], "fraud-visitor-0004"))
    assert premium.status_code == 422 and premium.json()["code"] == "number_not_allowed"
    bridge.mango.wait_for(
        "commands/callback_group", timeout=10, where=lambda r: r.json["to"] == "77011234567"
    )
    assert dialled(bridge, "+78001234567") and not dialled(bridge, "+78091234567")


def test_a_second_use_of_a_form_token_is_refused(bridge: Bridge) -> None:
    bridge.add_site("fraud-token", "--hours", "daily 00:00-24:00", "--min-fill", "1")
    [token] = form_tokens(bridge, "fraud-token", 1)
    first = post(bridge, "fraud-token", body("+79165557101", token))
    assert first.status_code == 202, first.text
    again = post(bridge, "fraud-token", body("+79165557102", token, "fraud-visitor-0002", lang="en"))
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "token_used"
    assert again.json()["message"] == DEFAULT_TEXTS["en"]["error_token_used"]
    assert "already sent a request" in again.json()["error"]
    assert stored_numbers(bridge, "fraud-token") == ["+79165557101"]
    assert not dialled(bridge, "+79165557102")


def test_parallel_requests_with_one_token_give_one_acceptance(bridge: Bridge) -> None:
    bridge.add_site("fraud-race", "--hours", "daily 00:00-24:00", "--min-fill", "1", "--limit", "ip=100/600")
    [token] = form_tokens(bridge, "fraud-race", 1)
    count = 8
    start = threading.Barrier(count)
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        start.wait(10)
        answer = post(bridge, "fraud-race", body(f"+7916555720{i}", token, f"fraud-racer-{i:04d}"))
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    codes = sorted(a.status_code for a in answers)
    assert codes == [202] + [409] * (count - 1), [a.text for a in answers]
    assert len(stored_numbers(bridge, "fraud-race")) == 1


def test_forty_addresses_of_one_network_are_limited(bridge: Bridge) -> None:
    bridge.add_site(
        "fraud-net", "--hours", "daily 00:00-24:00", "--min-fill", "1", "--limit", "ip=100/600"
    )  # the network keeps its default: 10 per 600 s
    tokens = form_tokens(bridge, "fraud-net", 41)
    answers = [
        post(
            bridge, "fraud-net", body(f"+791655573{i:02d}", tokens[i], f"net-{i:04d}x"), f"198.51.100.{i + 1}"
        )
        for i in range(40)
    ]  # 40 addresses of one /24
    assert [a.status_code for a in answers] == [202] * 10 + [429] * 30
    refused = answers[-1].json()
    assert refused["code"] == "rate_limited" and "from this network" in refused["error"]
    assert refused["message"] == DEFAULT_TEXTS["ru"]["error_rate"]
    assert int(answers[-1].headers["Retry-After"]) > 0
    other = post(bridge, "fraud-net", body("+79165557399", tokens[40], "fraud-net-0099"), "198.51.101.1")
    assert other.status_code == 202, other.text
    assert len(stored_numbers(bridge, "fraud-net")) == 11

    # IPv6: a /56 is one network.
    bridge.add_site(
        "fraud-net6", "--hours", "daily 00:00-24:00", "--min-fill", "1", "--limit", "network=3/600"
    )
    tokens = form_tokens(bridge, "fraud-net6", 5)
    addresses = [
        "2001:db8:0:1::1",
        "2001:db8:0:2::1",
        "2001:db8:0:ff::1",
        "2001:db8:0:3::7",
        "2001:db8:0:100::1",
    ]
    codes = [
        post(bridge, "fraud-net6", body(f"+791655574{i:02d}", tokens[i], f"net6-{i:04d}"), ip).status_code
        for i, ip in enumerate(addresses)
    ]
    assert codes == [202, 202, 202, 429, 202]


def test_the_daily_cap_refuses_new_numbers_and_alerts_the_panel(bridge: Bridge) -> None:
    site = "fraud-cap"
    bridge.add_site(
        site, "--hours", "daily 00:00-24:00", "--min-fill", "1", "--daily-cap", "3", "--limit", "ip=100/600"
    )
    tokens = form_tokens(bridge, site, 5)
    for i in range(3):
        answer = post(bridge, site, body(f"+7916555750{i}", tokens[i], f"fraud-cap-{i:04d}"))
        assert answer.status_code == 202, answer.text
    refused = post(bridge, site, body("+79165557509", tokens[3], "fraud-cap-0009", lang="en"))
    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "daily_cap"
    assert refused.json()["message"] == DEFAULT_TEXTS["en"]["error_daily_cap"]
    assert 0 < int(refused.headers["Retry-After"]) <= 25 * 3600
    # A number already called today is not a new one; the refused token still serves it.
    again = post(bridge, site, body("+79165557500", tokens[3], "fraud-cap-0010"))
    assert again.status_code == 202, again.text
    assert not dialled(bridge, "+79165557509")
    assert stored_numbers(bridge, site).count("+79165557509") == 0

    bridge.daemon.create_user("capadmin", PASSWORD, "admin", lang="en")
    panel = panel_session(bridge.url, "capadmin", PASSWORD)
    page = panel.get(f"{bridge.url}/admin/widget/{site}", timeout=10)
    assert page.status_code == 200
    assert 'id="widget-cap-reached"' in page.text
    assert "The daily cap is reached: 3 of 3 numbers today" in page.text
    listing = panel.get(f"{bridge.url}/admin/widget", timeout=10)
    assert f'id="widget-cap-reached-{site}"' in listing.text
    bridge.add_site("fraud-calm", "--hours", "daily 00:00-24:00", "--daily-cap", "3")  # none dialled
    listing = panel.get(f"{bridge.url}/admin/widget", timeout=10)
    assert f'id="widget-cap-reached-{site}"' in listing.text
    assert 'id="widget-cap-reached-fraud-calm"' not in listing.text
    calm = panel.get(f"{bridge.url}/admin/widget/fraud-calm", timeout=10)
    assert calm.status_code == 200 and 'id="widget-cap-reached"' not in calm.text
