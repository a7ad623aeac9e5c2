"""Does a processor pass get slower as `raw_events` grows? (SQLite, the embedded default)

The popup bench's events (answered calls, ringing one of 1,000 extensions) are stored a few at a time, and
the event processor folds each chunk as it comes (as when it keeps up with the PBX). Its CPU per event is
measured on an empty table and on one that already holds `--stored` folded events (a daemon that has run
for weeks), with the indexes as migrated today, and again, in the same run, with the full
`quarantined_at` index that migration 0004 created and 0006 replaced by a partial one. The figure that
matters is the ratio: CPU per event on the grown table over CPU per event on the empty one.

    .venv/bin/python bench/processor_growth.py [--stored 100000] [--events 900] [--chunk 3]

Results: a table on stdout and JSON in bench/results/processor-growth-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from popup_latency import build_plan  # noqa: E402  (the same calls as the popup bench)

from bridge.pbx.mango import parse as mango_parse  # noqa: E402
from bridge.processing.processor import EventProcessor  # noqa: E402
from bridge.store.engine import make_engine  # noqa: E402
from bridge.store.migrate import upgrade  # noqa: E402
from bridge.store.raw_events import RawRecord, insert_raw_events  # noqa: E402
from bridge.store.schema import raw_events  # noqa: E402
from bridge.store.write_lock import write_transaction  # noqa: E402

FULL_INDEX = "CREATE INDEX ix_raw_events_quarantined ON raw_events (quarantined_at)"


def records(count: int) -> list[RawRecord]:
    """`count` notifications of the popup bench's plan, as the receiver stores them."""
    plan = build_plan(duration=count / 150, rate=150, clients=1000, offset=0)
    stored = []
    for due, path, payload, _ in plan[:count]:
        json_text = json.dumps(payload)
        event = mango_parse.parse(path, json.loads(json_text))
        key = mango_parse.dedup_key(path, event, json_text)
        stored.append(RawRecord(path, key, mango_parse.entry_id_of(event), json_text, 1.0e9 + due))
    return stored


def fill(engine: Engine, count: int) -> None:
    """`count` folded raw events of long-finished calls."""
    batch = 10_000
    for start in range(0, count, batch):
        rows = [
            {
                "path": "events/summary",
                "dedup_key": f"old:{n}",
                "entry_id": f"old-call-{n // 4}",
                "payload": "{}",
                "received_at": 1.0e9 - count + n,
                "processed_at": 1.0e9 - count + n + 0.1,
            }
            for n in range(start, min(count, start + batch))
        ]
        with engine.begin() as conn:
            conn.execute(insert(raw_events), rows)


def cpu_per_event(
    workdir: Path, name: str, stored: int, events: list[RawRecord], chunk: int, full: bool
) -> float:
    """Milliseconds of CPU the processor spends per event, on a database holding `stored` folded events."""
    engine = make_engine(f"sqlite:///{workdir / name}.db")
    upgrade(engine)
    if full:
        with engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_raw_events_quarantined"))
            conn.execute(text(FULL_INDEX))
    fill(engine, stored)
    processor = EventProcessor(engine, {})
    spent = 0.0
    for start in range(0, len(events), chunk):
        with write_transaction(engine) as conn:
            insert_raw_events(conn, events[start : start + chunk])
        began = time.process_time()
        while processor.run_once():
            pass
        spent += time.process_time() - began
    engine.dispose()
    return spent * 1000 / len(events)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stored", type=int, default=100_000, help="folded events already in the table")
    parser.add_argument("--events", type=int, default=900, help="events folded and measured per case")
    parser.add_argument("--chunk", type=int, default=3, help="events stored between two processor passes")
    args = parser.parse_args()
    events = records(args.events)
    results = []
    with tempfile.TemporaryDirectory(prefix="processor-growth-") as tmp:
        workdir = Path(tmp)
        for index, full in (("partial (0006)", False), ("full (0004)", True)):
            empty = cpu_per_event(workdir, f"empty-{full}", 0, events, args.chunk, full)
            grown = cpu_per_event(workdir, f"grown-{full}", args.stored, events, args.chunk, full)
            results.append({"index": index, "empty_ms": empty, "grown_ms": grown, "ratio": grown / empty})
    print(f"processor CPU per event, {len(events)} events in chunks of {args.chunk}, SQLite")
    print(f"{'quarantine index':<18} {'empty table':>12} {f'{args.stored:,} stored':>16} {'grown/empty':>12}")
    for row in results:
        empty, grown = f"{row['empty_ms']:.3f} ms", f"{row['grown_ms']:.3f} ms"
        print(f"{row['index']:<18} {empty:>12} {grown:>16} {row['ratio']:>11.2f}x")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out / f"processor-growth-{stamp}.json"
    path.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    print(f"results: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
