"""The direction filter is a SQL condition: the read API, the admin call log's pages and its CSV all see
full pages of one direction, and paging walks every matching call exactly once."""

from __future__ import annotations

import csv
import io
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import Engine

from admin_module import calllog
from bridge.api.calls import make_calls_api
from bridge.api.calls_query import CallFilter, list_calls
from bridge.http_errors import install_error_handlers
from tests.test_admin_support import add_call, login, make_app, seed_users

TOKEN = "direction-test-token"
UTC = ZoneInfo("UTC")
BASE = 1_790_000_000.0


def seed_mixed(engine: Engine) -> dict[str, list[str]]:
    """60 calls, newest first interleaved: mostly incoming, every fifth outgoing, every seventh internal."""
    by_direction: dict[str, list[str]] = {"incoming": [], "outgoing": [], "internal": []}
    for i in range(60):
        direction = "internal" if i % 7 == 0 else "outgoing" if i % 5 == 0 else "incoming"
        entry_id = f"dir-{i:03d}"
        add_call(engine, entry_id, direction=direction, started_at=BASE + i, updated_at=BASE + i)
        by_direction[direction].append(entry_id)
    return {d: sorted(ids, reverse=True) for d, ids in by_direction.items()}


def walk(fetch: Any) -> list[list[str]]:
    """Every page's entry ids, following `next_cursor` to the end."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        result = fetch(cursor)
        pages.append([item["entry_id"] for item in result["items"]])
        cursor = result["next_cursor"]
        if cursor is None:
            return pages


def test_list_calls_filters_direction_in_sql_with_full_pages(engine: Engine) -> None:
    expected = seed_mixed(engine)
    for direction, ids in expected.items():
        pages = walk(lambda c, d=direction: list_calls(engine, CallFilter(direction=d), limit=4, cursor=c))
        assert [entry for page in pages for entry in page] == ids
        # every page but the last is full: the filter runs before LIMIT, not after it
        assert all(len(page) == 4 for page in pages[:-1])
        assert 1 <= len(pages[-1]) <= 4


def test_direction_combines_with_other_filters(engine: Engine) -> None:
    add_call(engine, "a", direction="outgoing", status="missed", started_at=BASE)
    add_call(engine, "b", direction="outgoing", status="ended", started_at=BASE + 1)
    add_call(engine, "c", direction="incoming", status="missed", started_at=BASE + 2)
    result = list_calls(engine, CallFilter(direction="outgoing", status="missed"), limit=10, cursor=None)
    assert [item["entry_id"] for item in result["items"]] == ["a"]
    assert list_calls(engine, CallFilter(direction="unknown"), limit=10, cursor=None)["items"] == []


def test_admin_call_log_pages_stay_full_and_csv_matches(engine: Engine) -> None:
    expected = seed_mixed(engine)
    flt = calllog.LogFilter.from_args({"direction": "outgoing"})
    pages = walk(lambda c: calllog.page(engine, flt, UTC, cursor=c, limit=3))
    assert [entry for page in pages for entry in page] == expected["outgoing"]
    assert all(len(page) == 3 for page in pages[:-1])

    exported = "".join(calllog.to_csv(calllog.iterate(engine, flt, UTC), UTC)).removeprefix("\ufeff")
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert {row["direction"] for row in rows} == {"outgoing"}
    assert len(rows) == len(expected["outgoing"])

    everything = calllog.LogFilter.from_args({"direction": "sideways"})
    assert everything.direction is None
    assert len(list(calllog.iterate(engine, everything, UTC))) == 60


def test_admin_calls_page_shows_only_the_chosen_direction(engine: Engine) -> None:
    seed_users(engine)
    add_call(engine, "in-1", direction="incoming", customer_number="74950000001")
    add_call(engine, "out-1", direction="outgoing", customer_number="74950000002")
    client = make_app(engine).test_client()
    login(client, "admin")
    html = client.get("/admin/calls?direction=outgoing").get_data(as_text=True)
    assert 'data-entry="out-1"' in html
    assert 'data-entry="in-1"' not in html


@pytest.fixture
def api(engine: Engine) -> Any:
    app = Flask("calls-api-test")
    install_error_handlers(app)
    app.register_blueprint(make_calls_api(engine, lambda: TOKEN))
    return app.test_client()


def get(api: Any, **params: Any) -> Any:
    return api.get("/api/calls", query_string=params, headers={"Authorization": f"Bearer {TOKEN}"})


def test_read_api_accepts_direction(engine: Engine, api: Any) -> None:
    expected = seed_mixed(engine)
    pages = walk(lambda c: get(api, direction="internal", limit=2, **({"cursor": c} if c else {})).get_json())
    assert [entry for page in pages for entry in page] == expected["internal"]
    body = get(api, direction="incoming", limit=200).get_json()
    assert {item["direction"] for item in body["items"]} == {"incoming"}


def test_read_api_refuses_an_unknown_direction_clearly(api: Any) -> None:
    response = get(api, direction="inbound")
    assert response.status_code == 400
    message = response.get_json()["error"]
    assert "'direction' must be one of" in message and "incoming" in message
