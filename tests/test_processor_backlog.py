"""The processor's duty cycle: it leaves the CPU to the HTTP workers only while a backlog builds up under
live ingest, and folds at full speed otherwise (real store, real writer, on SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select

from bridge.ingest.writer import GroupCommitWriter
from bridge.pbx.mango import parse as mango_parse
from bridge.pbx.mango.receiver import raw_record
from bridge.processing.processor import EventProcessor
from bridge.store.schema import raw_events

BATCH = 40


def store_calls(engine: Engine, count: int) -> None:
    """`count` ringing legs of distinct calls, committed by the ingest writer."""
    writer = GroupCommitWriter(engine, on_commit=lambda: None)
    try:
        for i in range(count):
            payload = {
                "entry_id": f"backlog-{i}",
                "call_id": f"leg-{i}",
                "timestamp": 1670060542 + i,
                "seq": 1,
                "call_state": "Appeared",
                "location": "abonent",
                "from": {"number": "79607164646"},
                "to": {"extension": "222", "number": "79776307393"},
            }
            text = json.dumps(payload)
            event = mango_parse.parse("events/call", payload)
            record = raw_record("events/call", event, text)
            writer.submit(record)
        writer.write(record)  # the last one again: returns once everything before it is committed
    finally:
        writer.stop()


def processed(engine: Engine) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(raw_events).where(raw_events.c.processed_at.is_not(None))
        return conn.execute(query).scalar_one()


def wait_for(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@contextlib.contextmanager
def running(processor: EventProcessor) -> Iterator[None]:
    """`run_forever` in its own thread, stopped (which ends a pause at once) and joined on exit."""
    stop = threading.Event()
    thread = threading.Thread(target=processor.run_forever, args=(stop,), kwargs={"sweep_every": 3600})
    thread.start()
    try:
        yield
    finally:
        stop.set()
        processor.wake()
        thread.join(10)
    assert not thread.is_alive()


def test_a_backlog_without_live_ingest_is_folded_at_full_speed(engine: Engine) -> None:
    store_calls(engine, 5 * BATCH)
    # A tiny duty share: one pause would last ~1000x its pass, far longer than the deadline.
    processor = EventProcessor(engine, {}, batch_size=BATCH, backlog_duty=0.001)
    with running(processor):
        assert wait_for(lambda: processed(engine) == 5 * BATCH, timeout=30.0), processed(engine)


def test_a_backlog_under_live_ingest_leaves_the_cpu_to_the_workers(engine: Engine) -> None:
    store_calls(engine, 3 * BATCH)
    processor = EventProcessor(engine, {}, batch_size=BATCH, backlog_duty=0.001)
    ingest_done = threading.Event()

    def committing_workers() -> None:  # the HTTP workers' wake-up after each commit
        while not ingest_done.is_set():
            processor.wake()
            time.sleep(0.001)

    threading.Thread(target=committing_workers, daemon=True).start()
    try:
        with running(processor):
            assert wait_for(lambda: processed(engine) >= BATCH), processed(engine)
            time.sleep(1.0)
            assert processed(engine) == BATCH  # one full pass, then a pause of ~1000x its length
    finally:
        ingest_done.set()


def test_the_pause_is_the_duty_share_of_a_full_pass_with_commits_meanwhile(engine: Engine) -> None:
    store_calls(engine, BATCH + 3)
    processor = EventProcessor(engine, {}, batch_size=BATCH, backlog_duty=0.25)
    assert processor.run_once() == BATCH
    assert processor.backlog_pause(BATCH, busy=0.02) == 0.0  # nothing committed during the pass
    processor.wake()
    assert processor.backlog_pause(BATCH, busy=0.02) == pytest.approx(0.06)  # 25 % of the wall time
    assert processor.run_once() == 3
    assert processor.backlog_pause(3, busy=0.02) == 0.0  # caught up: ringing is never held back
    assert EventProcessor(engine, {}, backlog_duty=1.0).backlog_pause(200, busy=0.02) == 0.0
    with pytest.raises(ValueError):
        EventProcessor(engine, {}, backlog_duty=0.0)
