"""A missed call, then a callback by the employee, through `callbridge run`: the Bitrix24 and amoCRM
contract fakes see the missed-call task completed (once), and the follow-up is recorded with who called
back and when."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator.poster import Poster
from bridge.store.engine import make_engine
from bridge.store.schema import missed_followups
from tests.daemon import API_KEY, API_SALT, Daemon, wait_closed
from tests.fakes.amocrm import FakeAmoCrm
from tests.fakes.bitrix24 import FakeBitrix24
from tests.test_amocrm_e2e import LLT
from tests.test_amocrm_e2e import play as play_amo
from tests.test_amocrm_e2e import start as start_amocrm
from tests.test_bitrix24_e2e import play_as_it_rings
from tests.test_bitrix24_e2e import start as start_bitrix

CUSTOMER = "79161234567"


@pytest.fixture
def bitrix_fake() -> Iterator[FakeBitrix24]:
    server = FakeBitrix24().start()
    yield server
    server.stop()


@pytest.fixture
def amocrm_fake() -> Iterator[FakeAmoCrm]:
    with FakeAmoCrm(long_lived_token=LLT) as server:
        server.add_contact("Иван Петров", ["8 (916) 123-45-67"], responsible_user_id=1001)
        yield server


def _missed_then_called_back(daemon: Daemon, play: object, seed: int) -> tuple[str, str]:
    """A missed call from CUSTOMER, then 102 calls them back and they talk; (missed, callback) entry ids."""
    missed = scenarios.build("incoming_missed", seed=seed, customer=CUSTOMER)
    play(missed)  # type: ignore[operator]
    wait_closed(daemon, missed.entry_id)
    later = int(time.time()) + 600
    callback = scenarios.build(
        "outgoing_answered", seed=seed + 1, customer=CUSTOMER, extensions=("102",), start=later
    )
    play(callback)  # type: ignore[operator]
    wait_closed(daemon, callback.entry_id)
    return missed.entry_id, callback.entry_id


def _follow_up(database_url: str, entry_id: str) -> dict:
    engine = make_engine(database_url)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                row = conn.execute(
                    select(missed_followups).where(missed_followups.c.entry_id == entry_id)
                ).first()
            if row is not None:
                return row._asdict()
            time.sleep(0.1)
    finally:
        engine.dispose()
    raise AssertionError(f"no follow-up recorded for {entry_id}")


def _wait(condition: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_bitrix24_completes_the_missed_call_task_once_the_employee_called_back(
    database_url: str, tmp_path: Path, bitrix_fake: FakeBitrix24
) -> None:
    daemon = start_bitrix(database_url, tmp_path, bitrix_fake)
    try:
        poster = Poster(daemon.mango_url, API_KEY, API_SALT)
        missed, callback = _missed_then_called_back(
            daemon, lambda s: play_as_it_rings(poster, bitrix_fake, s), seed=710
        )
        (call,) = bitrix_fake.registered(missed)
        assert _wait(lambda: len(bitrix_fake.tasks_for(call)) == 1)
        (task,) = bitrix_fake.tasks_for(call)
        assert _wait(lambda: task.get("STATUS") == "5"), task
        follow = _follow_up(database_url, missed)
        assert (follow["by_entry_id"], follow["by_extension"], follow["how"]) == (
            callback,
            "102",
            "employee_called",
        )
        completes = [c for c in bitrix_fake.calls_of("tasks.task.complete") if c.ok]
        assert [int(c.params["taskId"]) for c in completes] == [int(task["id"])]
    finally:
        daemon.stop()


def test_amocrm_completes_the_missed_call_task_with_its_result_once_called_back(
    database_url: str, tmp_path: Path, amocrm_fake: FakeAmoCrm
) -> None:
    daemon = start_amocrm(database_url, tmp_path, amocrm_fake)
    try:
        poster = Poster(daemon.mango_url, API_KEY, API_SALT)
        missed, _ = _missed_then_called_back(daemon, lambda s: play_amo(poster, daemon, s), seed=720)
        assert _wait(lambda: len(amocrm_fake.tasks) == 1)
        (task,) = amocrm_fake.tasks
        assert _wait(lambda: task.get("is_completed") is True), task
        assert task["result"] == {"text": "Перезвонили клиенту (102)"}
        assert _follow_up(database_url, missed)["how"] == "employee_called"
        assert amocrm_fake.violations == 0
    finally:
        daemon.stop()
