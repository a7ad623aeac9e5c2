"""Scale-out: two `callbridge run` on one PostgreSQL database and one Redis. The webhook goes to the
first; the popup reaches a client connected to the second."""

from __future__ import annotations

import uuid
from pathlib import Path

import redis

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator.poster import Poster
from tests.conftest import REDIS_URL, _pg_database, requires_postgres_and_redis
from tests.daemon import API_KEY, API_SALT, Daemon
from tests.fakes.realtime_client import DEMO_NAME, Client, demo_env
from tests.test_realtime_e2e import cli_token, play_in_steps, ws_port

pytestmark = requires_postgres_and_redis


def test_popup_reaches_a_client_of_the_other_instance_through_redis(tmp_path: Path) -> None:
    assert REDIS_URL
    redis.Redis.from_url(REDIS_URL).ping()
    channel = f"callbridge-test:{uuid.uuid4().hex}"
    env = demo_env(CALLBRIDGE_REDIS_URL=REDIS_URL, CALLBRIDGE_REDIS_CHANNEL=channel)
    database = _pg_database(f"cb_test_{uuid.uuid4().hex[:12]}")
    url = next(database)
    first = second = None
    try:
        first = Daemon(url, tmp_path, env=env).start()
        second = Daemon(url, tmp_path, env=env).start()
        remote = Client(ws_port(second), cli_token(second, "--extension", "101"))
        local = Client(ws_port(first), cli_token(first, "--supervisor"))
        remote.wait_for("hello")
        poster = Poster(first.mango_url, API_KEY, API_SALT)
        played = []
        for seed in range(3):
            scenario = scenarios.build("incoming_answered", seed=40 + seed, extensions=("101",))
            play_in_steps(poster, scenario, remote)
            played.append(scenario)
        for scenario in played:
            for client in (remote, local):
                ended = client.wait_for("call.ended", lambda m, e=scenario.entry_id: m["entry_id"] == e)
                assert ended["extension"] == "101"
            types = [m["type"] for m in remote.events() if m["entry_id"] == scenario.entry_id]
            assert types == ["call.ringing", "call.answered", "call.ended"]
            ringing = remote.wait_for("call.ringing", lambda m, e=scenario.entry_id: m["entry_id"] == e)
            assert ringing["card"] and ringing["card"]["name"] == DEMO_NAME
        remote.close()
        local.close()
    finally:
        for daemon in (first, second):
            if daemon is not None:
                daemon.stop()
        next(database, None)
