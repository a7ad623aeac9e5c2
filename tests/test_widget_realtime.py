"""A visitor's callback request reaches the live popups: through the real `callbridge run` (the request is
taken by an HTTP worker process, relayed to the parent's hub), to the managers of the site's group and
to supervisors, with the caller's card; and through Redis to a client of another instance."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from sqlalchemy import Engine, insert

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator import CommandServer
from bridge.pbx.mango.simulator.poster import Poster
from bridge.store.schema import legs
from tests.conftest import REDIS_URL, _pg_database, requires_postgres_and_redis
from tests.daemon import API_KEY, API_SALT, CALLBRIDGE, Daemon
from tests.fakes.realtime_client import DEMO_NAME, Client, demo_env
from tests.test_realtime_e2e import cli_token, ws_port
from widget.popups import GroupManagers

GROUP = scenarios.GROUP  # the short number the simulator's ring groups carry as `to.acd_group`
LINE = "74951234567"
SHOP = "http://shop.localhost:8765"


def add_site(daemon: Daemon, key: str, group: str = GROUP) -> None:
    subprocess.run(
        [CALLBRIDGE, "widget", "add-site", "--key", key, "--origin", SHOP, "--group", group, "--line", LINE]
        + ["--hours", "daily 00:00-24:00", "--min-fill", "1"],
        env=daemon.env,
        cwd=daemon.workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def request_callback(daemon: Daemon, site: str, phone: str) -> dict[str, Any]:
    """What the widget does: fetch the config, wait like a person, post the number."""
    headers = {"Origin": SHOP}
    config = requests.get(f"{daemon.url}/widget/config", params={"site": site}, headers=headers, timeout=10)
    assert config.status_code == 200, config.text
    time.sleep(1.05)
    body = {"phone": phone, "form_token": config.json()["form_token"], "page": f"{SHOP}/catalog"}
    answer = requests.post(
        f"{daemon.url}/widget/callback", params={"site": site}, json=body, headers=headers, timeout=15
    )
    assert answer.status_code == 202, answer.text
    return answer.json()


def ring_the_group(daemon: Daemon, observer: Client, extensions: tuple[str, ...]) -> None:
    """A missed group call, so the store knows who group GROUP rings."""
    scenario = scenarios.build("incoming_missed", seed=7, customer="79250001122", extensions=extensions)
    assert not Poster(daemon.mango_url, API_KEY, API_SALT).play(scenario.notifications).errors
    observer.wait_for("call.missed", lambda m: m["entry_id"] == scenario.entry_id, timeout=20)


@pytest.fixture
def mango() -> Iterator[CommandServer]:
    server = CommandServer(API_KEY, API_SALT).start()
    yield server
    server.stop(timeout=1)


@pytest.fixture
def daemon(database_url: str, tmp_path: Path, mango: CommandServer) -> Iterator[Daemon]:
    instance = Daemon(database_url, tmp_path, env=demo_env(CALLBRIDGE_MANGO_API_URL=mango.url)).start()
    mango.bridge_url = instance.mango_url
    mango.groups[GROUP] = ("101", "102")
    yield instance
    instance.stop()


def test_callback_request_pops_up_for_the_groups_managers_and_supervisors_with_the_card(
    daemon: Daemon, mango: CommandServer
) -> None:
    port = ws_port(daemon)
    alice = Client(port, cli_token(daemon, "--extension", "101"))
    carol = Client(port, cli_token(daemon, "--extension", "103"))
    boss = Client(port, cli_token(daemon, "--supervisor"))
    try:
        ring_the_group(daemon, boss, ("101", "102"))
        add_site(daemon, "popup-shop")
        state = request_callback(daemon, "popup-shop", "8 (916) 123-45-67")
        entry_id = f"widget-{state['token']}"

        popup = alice.wait_for("callback.requested", lambda m: m["entry_id"] == entry_id, timeout=15)
        assert popup["extensions"] == ["101", "102"]
        assert popup["number"] == "+79161234567" and popup["line_number"] == LINE
        assert popup["card"]["name"] == DEMO_NAME and popup["card"]["complete"] is True
        assert popup["request"]["source"] == "widget" and popup["request"]["site"] == "popup-shop"
        assert popup["request"]["inside_hours"] is True and popup["request"]["page"] == f"{SHOP}/catalog"
        assert isinstance(popup["request"]["request_id"], int)
        assert boss.wait_for("callback.requested", lambda m: m["entry_id"] == entry_id)["key"] == popup["key"]
        # the group is dialled as well: Mango got the command for this request
        assert [r for r in mango.received if r.path == "commands/callback_group"]
        time.sleep(0.5)
        assert not [m for m in carol.events() if m["type"] == "callback.requested"], "103 is not in the group"
    finally:
        for client in (alice, carol, boss):
            client.close()


def test_request_of_a_group_with_no_calls_yet_reaches_the_operators_mango_lists(
    daemon: Daemon, mango: CommandServer
) -> None:
    port = ws_port(daemon)
    alice = Client(port, cli_token(daemon, "--extension", "101"))
    carol = Client(port, cli_token(daemon, "--extension", "103"))
    boss = Client(port, cli_token(daemon, "--supervisor"))
    try:
        alice.wait_for("hello")
        add_site(daemon, "new-shop")
        state = request_callback(daemon, "new-shop", "+7 925 000-11-22")
        entry_id = f"widget-{state['token']}"
        popup = alice.wait_for("callback.requested", lambda m: m["entry_id"] == entry_id, timeout=15)
        assert popup["extensions"] == ["101", "102"] and popup["number"] == "+79250001122"
        assert boss.wait_for("callback.requested", lambda m: m["entry_id"] == entry_id)["key"] == popup["key"]
        asked = [r for r in mango.received if r.path == "groups"]
        assert asked and asked[0].signature_valid and asked[0].json == {"show_users": 1}
        time.sleep(0.5)
        assert not [m for m in carol.events() if m["type"] == "callback.requested"], "103 is not in the group"
    finally:
        for client in (alice, carol, boss):
            client.close()


def test_request_of_a_group_nobody_is_known_for_goes_to_supervisors_only(daemon: Daemon) -> None:
    port = ws_port(daemon)
    alice = Client(port, cli_token(daemon, "--extension", "101"))
    boss = Client(port, cli_token(daemon, "--supervisor"))
    try:
        alice.wait_for("hello")
        add_site(daemon, "odd-shop", group="777")  # not a group Mango lists, and it never rang
        state = request_callback(daemon, "odd-shop", "+7 925 000-11-22")
        popup = boss.wait_for("callback.requested", lambda m: m["entry_id"] == f"widget-{state['token']}")
        assert popup["extensions"] == [] and popup["number"] == "+79250001122"
        assert popup["card"] is None or popup["card"]["found"] is False
        time.sleep(0.5)
        assert not [m for m in alice.events() if m["type"] == "callback.requested"]
    finally:
        alice.close()
        boss.close()


@requires_postgres_and_redis
def test_callback_request_reaches_a_client_of_another_instance_through_redis(
    tmp_path: Path, mango: CommandServer
) -> None:
    assert REDIS_URL
    redis.Redis.from_url(REDIS_URL).ping()
    channel = f"callbridge-test:{uuid.uuid4().hex}"
    env = demo_env(CALLBRIDGE_REDIS_URL=REDIS_URL, CALLBRIDGE_REDIS_CHANNEL=channel)
    env["CALLBRIDGE_MANGO_API_URL"] = mango.url
    database = _pg_database(f"cb_test_{uuid.uuid4().hex[:12]}")
    url = next(database)
    first = second = None
    try:
        first = Daemon(url, tmp_path, env=env).start()
        second = Daemon(url, tmp_path, env=env).start()
        mango.bridge_url = first.mango_url
        remote = Client(ws_port(second), cli_token(second, "--supervisor"))
        try:
            remote.wait_for("hello")
            add_site(first, "redis-shop")
            state = request_callback(first, "redis-shop", "8 (916) 123-45-67")
            popup = remote.wait_for(
                "callback.requested", lambda m: m["entry_id"] == f"widget-{state['token']}", timeout=15
            )
            assert popup["request"]["site"] == "redis-shop"
            assert popup["card"] and popup["card"]["name"] == DEMO_NAME
        finally:
            remote.close()
    finally:
        for daemon in (first, second):
            if daemon is not None:
                daemon.stop()
        database.close()


def test_group_managers_come_from_recent_group_legs_and_are_cached(engine: Engine) -> None:
    now = [1_800_000_000.0]
    managers = GroupManagers(ttl=60, miss_ttl=5, window=86400, clock=lambda: now[0])

    def leg(call_id: str, extension: str | None, group: str | None, appeared_at: float) -> dict[str, Any]:
        return {
            "call_id": call_id,
            "entry_id": "E",
            "state": "Disconnected",
            "seq": 1,
            "to_extension": extension,
            "acd_group": group,
            "appeared_at": appeared_at,
        }

    assert managers.of(engine, "200") == ()
    with engine.begin() as conn:
        conn.execute(
            insert(legs),
            [
                leg("a", "102", "200", now[0] - 60),
                leg("b", "101", "200", now[0] - 30),
                leg("c", "101", "200", now[0] - 20),
                leg("d", "105", "300", now[0] - 10),  # another group
                leg("e", "109", None, now[0] - 10),  # a direct call
                leg("f", "107", "200", now[0] - 2 * 86400),  # rang the group long ago
                leg("g", None, "200", now[0] - 10),  # the group's leg before anyone took it
            ],
        )
    assert managers.of(engine, "200") == (), "an empty answer is kept for miss_ttl"
    now[0] += 6
    assert managers.of(engine, "200") == ("101", "102")
    assert managers.of(engine, "300") == ("105",)
    with engine.begin() as conn:
        conn.execute(insert(legs), [leg("h", "103", "200", now[0])])
    assert managers.of(engine, "200") == ("101", "102"), "cached for ttl"
    now[0] += 61
    assert managers.of(engine, "200") == ("101", "102", "103")


def test_group_managers_add_mangos_roster_to_the_legs_on_record(engine: Engine) -> None:
    now = [1_800_000_000.0]
    asked: list[float] = []
    rosters: dict[str, tuple[str, ...]] = {"200": ("104", "101")}

    def from_mango() -> dict[str, tuple[str, ...]]:
        asked.append(now[0])
        return dict(rosters)

    managers = GroupManagers(rosters=from_mango, ttl=60, miss_ttl=5, clock=lambda: now[0])
    with engine.begin() as conn:
        conn.execute(
            insert(legs),
            [{"call_id": "a", "entry_id": "E", "state": "Disconnected", "seq": 1, "to_extension": "102",
              "acd_group": "200", "appeared_at": now[0] - 60}],
        )  # fmt: skip
    assert managers.of(engine, "200") == ("101", "102", "104")
    assert managers.of(engine, "300") == (), "a group Mango does not list and nobody rang"
    assert len(asked) == 1, "one answer serves every group for ttl"
    rosters["200"] = ("105",)
    now[0] += 61
    assert managers.of(engine, "200") == ("102", "105")
    assert len(asked) == 2


def test_group_managers_do_not_wait_long_for_a_slow_or_failing_mango(engine: Engine) -> None:
    release = threading.Event()

    def slow() -> dict[str, tuple[str, ...]]:
        release.wait(10)
        return {"200": ("101",)}

    managers = GroupManagers(rosters=slow, ttl=60, miss_ttl=0.2, roster_wait=0.2)
    started = time.monotonic()
    assert managers.of(engine, "200") == ()
    assert time.monotonic() - started < 2
    release.set()
    deadline = time.monotonic() + 10
    while managers.of(engine, "200") != ("101",):
        assert time.monotonic() < deadline, "the late answer is used once it arrives"
        time.sleep(0.1)

    def failing() -> dict[str, tuple[str, ...]]:
        raise ConnectionError("Mango is unreachable")

    assert GroupManagers(rosters=failing, roster_wait=2).of(engine, "200") == ()
