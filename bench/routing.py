"""Routing benchmark (docs/benchmarks.md, "Routing"): how long a decision takes, and how fast routes leave.

1. Decision latency: `Decider.decide` over a store holding `--history` answered calls, (a) for callers
   who spoke with an employee in the window (the store answers), (b) for callers nobody spoke with, so two
   CRM connectors (the demo connector, answering in `--crm-ms`, 150 ms by default) are asked at once.
   Decisions run `--concurrency` at a time, as a burst of IVR calls makes them.
2. Routes held at the limit: `--routes` decided routes queued at once into `RouteQueue`, sent to the
   Mango simulator (its rate limits on) through the real Mango client: routes per second, the smallest gap
   between two routes as the simulator received them, and its 429 answers.

    .venv/bin/python bench/routing.py [--history 20000] [--decisions 400] [--routes 11]

Prints a table; the same as JSON in bench/results/routing-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import Engine, insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.config.model import RoutingSettings, Settings  # noqa: E402
from bridge.pbx.mango.simulator import CommandServer  # noqa: E402
from bridge.pbx.select import pbx_client  # noqa: E402
from bridge.routing.decide import Decider  # noqa: E402
from bridge.routing.queue import PendingRoute, RouteQueue  # noqa: E402
from bridge.store.engine import make_engine  # noqa: E402
from bridge.store.migrate import upgrade  # noqa: E402
from bridge.store.schema import calls  # noqa: E402
from connectors.demo.connector import DemoConnector  # noqa: E402

KEY, SALT = "bench-key", "bench-salt-0123456789"


def _history(engine: Engine, count: int, now: float) -> None:
    """`count` answered calls of distinct customers in the last day, each with one of 50 employees."""
    rows = [
        {
            "entry_id": f"hist-{i}",
            "direction": "incoming",
            "status": "ended",
            "customer_number": f"7916{i:07d}",
            "answered_by": str(200 + i % 50),
            "extensions": "[]",
            "closed": True,
            "started_at": now - 3600 - i,
            "answered_at": now - 3600 - i + 5,
            "emitted": "[]",
            "updated_at": now,
        }
        for i in range(count)
    ]
    with engine.begin() as conn:
        for start in range(0, len(rows), 1000):
            conn.execute(insert(calls), rows[start : start + 1000])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _decisions(decider: Decider, numbers: list[str], concurrency: int) -> dict[str, float]:
    settings = RoutingSettings(enabled=True, decide_within_ms=1500)

    def one(number: str) -> float:
        started = time.monotonic()
        verdict = decider.decide(f"bench-{number}", number, settings, started + 1.5)
        assert verdict.decision is not None, verdict.detail
        return (time.monotonic() - started) * 1000

    with ThreadPoolExecutor(concurrency) as pool:
        took = list(pool.map(one, numbers))
    return {
        "decisions": len(took),
        "p50_ms": round(statistics.median(took), 1),
        "p99_ms": round(_percentile(took, 0.99), 1),
        "max_ms": round(max(took), 1),
    }


def _routes(engine: Engine, count: int) -> dict[str, float]:
    server = CommandServer(KEY, SALT).start()  # no bridge: what it would post stays in its outbox
    try:
        settings = Settings.model_validate(
            {"mango": {"api_key": KEY, "api_salt": SALT, "api_url": server.url}}
        )
        queue = RouteQueue(engine, lambda: pbx_client(settings))
        legs = [server.ring_ivr(customer=f"7903{i:07d}", wait=600) for i in range(count)]
        now = time.monotonic()
        for i, leg in enumerate(legs):
            queue.put(PendingRoute(f"route-{i}", leg, "201", now))
        queue.max_wait = 3600.0  # measure the pace, not the dropping
        stop = threading.Event()
        worker = threading.Thread(target=queue.run_forever, args=(stop,), daemon=True)
        worker.start()
        server.wait_for("commands/route", count=count, timeout=count * 3 + 10)
        stop.set()
        worker.join(5)
        received = [r for r in server.received if r.path == "commands/route"]
        times = sorted(r.received_at for r in received)
        span = times[-1] - times[0]
        return {
            "routes": len(received),
            "routes_per_second": round((len(times) - 1) / span, 3),
            "smallest_gap_s": round(min(b - a for a, b in zip(times, times[1:], strict=False)), 3),
            "refused_429": sum(1 for r in received if r.status == 429),
            "accepted_1000": sum(1 for r in received if r.result == 1000),
        }
    finally:
        server.stop(timeout=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=20_000)
    parser.add_argument("--decisions", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--crm-ms", type=float, default=150.0)
    parser.add_argument("--routes", type=int, default=11)
    parser.add_argument("--database", default="sqlite")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db" if args.database == "sqlite" else args.database
        engine = make_engine(url)
        upgrade(engine)
        now = time.time()
        _history(engine, args.history, now)
        unknown = [f"7925{i:07d}" for i in range(args.decisions)]
        contacts = {number: {"name": "Client", "responsible": "230"} for number in unknown}
        crms = {
            name: DemoConnector({"contacts": contacts, "delay_ms": args.crm_ms})
            for name in ("crm_a", "crm_b")
        }
        with ThreadPoolExecutor(args.concurrency * 2) as crm_pool:
            decider = Decider(engine, lambda: crms, crm_pool)
            familiar_numbers = [
                f"7916{i:07d}" for i in range(0, args.history, max(1, args.history // args.decisions))
            ]
            familiar = _decisions(decider, familiar_numbers[: args.decisions], args.concurrency)
            responsible = _decisions(decider, unknown, args.concurrency)
        routes = _routes(engine, args.routes)
        engine.dispose()

    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "store": args.database.split(":")[0],
        "history_calls": args.history,
        "concurrency": args.concurrency,
        "crm_ms": args.crm_ms,
        "familiar": familiar,
        "crm_responsible": responsible,
        "routes": routes,
    }
    print(
        f"decisions ({args.concurrency} at a time, {args.history} calls in the store,"
        f" CRMs answer in {args.crm_ms:g} ms)"
    )
    print(f"  {'reason':<16} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, row in (("familiar", familiar), ("crm_responsible", responsible)):
        print(f"  {name:<16} {row['decisions']:>5} {row['p50_ms']:>8} {row['p99_ms']:>8} {row['max_ms']:>8}")
    print(
        f"routes: {routes['routes']} sent, {routes['routes_per_second']}/s,"
        f" smallest gap {routes['smallest_gap_s']} s,"
        f" {routes['refused_429']} refused (429), {routes['accepted_1000']} accepted"
    )
    out = Path(__file__).parent / "results" / f"routing-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
