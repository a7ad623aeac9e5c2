"""retailCRM half of the delivery benchmark (docs/performance.md item 3): a busy hour through the real daemon.

The profile is the same 100-agent busy hour as the other sections (bench/_replay.py: about 1,200 calls, 55 %
incoming answered by the agent who rang, 15 % incoming a ring group of three missed, 10 % ring groups where
the second agent answered, 20 % outgoing; 70 % of callers are customers retailCRM knows, each with a
manager); every agent is mapped to a retailCRM user. That is about 5 retailCRM requests a call (a popup per
ringing agent and its hangup, the call history upload, the caller card's ``telephony/manager`` and
``orders`` for the daemon's popup, a task for a missed call), so the whole hour is about 6,000 requests: at
retailCRM's ~10/s (the connector sends 8/s) that alone takes over 12 minutes. The benchmark therefore
replays a **scaled subset** sized to `duration_hint` (and says so in its result).

Replay: `callbridge run` (tests/daemon.py, SQLite) with ``[connectors.retailcrm]`` pointing at the contract
fake (tests/fakes/retailcrm.py), which enforces 10 requests in any second with 503. Every call's
notifications up to the moment the phones ring are posted first, then the rest; all at once, so the backlog
is far above the limit and the connector's rate limiter is the bottleneck. Then a second, *paced* phase
offers the same mix at 70 % of the configured rate for a while, to show the lag when the limit is not
saturated.

Figures: delivery lag (outbox row committed -> delivered) p50/p99, overall and for popups; the 503s the
bridge provoked (the fake's violations: the aim is zero); the most requests the fake saw in any second;
and the drain time against the theoretical minimum at the configured rate, (N - 1) / 8 s.

    .venv/bin/python bench/crm_delivery_retailcrm.py [--duration 60] [--json results.json]

`bench/crm_delivery.py` imports this module and calls `run(duration_hint)`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import _replay as replay  # first: it puts the repository on sys.path

from bridge.pbx.mango.simulator.poster import Poster
from bridge.store.engine import make_engine
from connectors.retailcrm.config import DEFAULT_RATE, VENDOR_MAX_RATE
from tests.daemon import API_KEY, API_SALT, Daemon
from tests.fakes.retailcrm import FakeRetailCrm

REQUESTS_PER_CALL = 5.0  # measured average of this mix (docs/benchmarks.md, the retailCRM section)
API_KEY_CRM = "bench-rcrm-" + "7e6f5a4b" * 5
PUBLIC = "https://calls.example.com"
FIRST_USER = 2001


def retailcrm_floor(fake: FakeRetailCrm, seed: int = 13) -> replay.Floor:
    """The floor's callers as retailCRM customers, each with a manager among the agents."""

    def formats(number: str) -> list[str]:
        return [
            f"+{number}",
            f"8{number[1:]}",
            f"+7 ({number[1:4]}) {number[4:7]}-{number[7:9]}-{number[9:]}",
        ]

    def add(i: int, typed: str) -> None:
        fake.add_customer(f"Клиент {i}", "Тестов", [typed], manager=FIRST_USER + i % 100, orders=i % 3)

    return replay.Floor(seed, formats, add)


def run(duration_hint: float = 60.0) -> dict[str, Any]:
    """Replay a scaled busy hour; return the figures (see the module docstring). Takes about
    `duration_hint` x 1.5 seconds plus the daemon's start."""
    duration_hint = max(10.0, float(duration_hint))
    saturated_calls = max(
        20, min(replay.BUSY_HOUR_CALLS, int(0.6 * duration_hint * DEFAULT_RATE / REQUESTS_PER_CALL))
    )
    paced_seconds = 0.4 * duration_hint
    paced_rate = 0.7 * DEFAULT_RATE / REQUESTS_PER_CALL  # calls per second at 70 % of the rate
    paced_calls = max(5, int(paced_seconds * paced_rate))

    workdir = Path(tempfile.mkdtemp(prefix="bench-retailcrm-"))
    database_url = f"sqlite:///{workdir / 'callbridge.db'}"
    users = [
        {
            "id": FIRST_USER + i,
            "firstName": f"Agent {ext}",
            "lastName": "",
            "email": f"agent{ext}@example.com",
        }
        for i, ext in enumerate(replay.AGENTS)
    ]
    fake = FakeRetailCrm(api_key=API_KEY_CRM, users=users).start()
    floor = retailcrm_floor(fake)
    config = workdir / "callbridge.toml"
    lines = ["[connectors.retailcrm]", f'url = "{fake.url}"', "", "[connectors.retailcrm.users]"]
    lines += [f'"{ext}" = {FIRST_USER + i}' for i, ext in enumerate(replay.AGENTS)]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    daemon = Daemon(
        database_url,
        workdir,
        env={
            "CALLBRIDGE_CONFIG": str(config),
            "CALLBRIDGE_CONNECTORS_RETAILCRM_API_KEY": API_KEY_CRM,
            "CALLBRIDGE_HTTP_PUBLIC_URL": PUBLIC,
            "CALLBRIDGE_LOG_LEVEL": "WARNING",
        },
    )
    replay.log(
        f"retailcrm: starting the daemon; saturated replay of {saturated_calls} calls, "
        f"then {paced_calls} paced"
    )
    daemon.start()
    engine = make_engine(database_url)
    poster = Poster(daemon.mango_url, API_KEY, API_SALT)
    try:
        if not fake.wait_for(lambda: bool(fake.modules), timeout=30):
            raise RuntimeError("the telephony was not registered on start")
        # ---------------------------------------------------------------- saturated: everything at once
        calls = floor.calls(saturated_calls)
        start_requests = len(fake.requests)
        posted_at = time.monotonic()
        posted, post_errors = replay.post_at_once(poster, calls)
        rows = replay.wait_drained(
            engine, "retailcrm", 0, saturated_calls, timeout=max(120.0, 4 * duration_hint), settle=0.5
        )
        with fake.lock:
            burst = list(fake.requests[start_requests:])
            uploads = [c["externalId"] for c in fake.calls]
        first, last = burst[0].at, burst[-1].at
        n = len(burst)
        elapsed = last - first
        minimum = (n - 1) / DEFAULT_RATE
        by_path: dict[str, int] = {}
        for r in burst:
            path = urlsplit(r.path).path
            by_path[path] = by_path.get(path, 0) + 1
        saturated = {
            "calls": saturated_calls,
            "notifications_posted": posted,
            "post_errors": post_errors,
            "outbox_rows": len(rows),
            "outbox_dead": sum(r.status == "dead" for r in rows),
            "requests_per_call": round(n / saturated_calls, 2),
            "by_path": dict(sorted(by_path.items())),
            "calls_uploaded_twice": len(uploads) - len(set(uploads)),
            **replay.drain_figures(n, elapsed, minimum, last - posted_at),
            **replay.lag_figures(rows),
        }
        replay.log(f"retailcrm: saturated {n} requests in {elapsed:.1f} s (minimum {minimum:.1f} s)")

        # ---------------------------------------------------------------- paced: 70 % of the rate
        paced_result = replay.paced_phase(
            "retailcrm",
            engine=engine,
            poster=poster,
            calls=floor.calls(paced_calls),
            rate=paced_rate,
            since_id=rows[-1].id if rows else 0,
            requests_sent=lambda: len(fake.requests),
            timeout=max(60.0, 2 * duration_hint),
            settle=0.5,
        )
    finally:
        poster.close()
        daemon.stop()
        engine.dispose()
        fake.stop()

    return {
        "connector": "retailcrm",
        "vendor_limit_per_second": VENDOR_MAX_RATE,
        "configured_rate_per_second": DEFAULT_RATE,
        "scaled": {
            "busy_hour_calls": replay.BUSY_HOUR_CALLS,
            "replayed_calls": saturated_calls,
            "fraction": round(saturated_calls / replay.BUSY_HOUR_CALLS, 3),
            "why": "the full hour is ~6,000 requests (over 12 min at 8/s); the subset fits duration_hint",
        },
        "saturated": saturated,
        "paced": paced_result,
        "provoked_503": fake.violations,
        "provoked_violations": fake.violations,
        "max_requests_in_any_second": fake.max_in_window(),
        # the headline figures the combined benchmark prints
        "lag_p50_ms": saturated["lag_p50_ms"],
        "lag_p99_ms": saturated["lag_p99_ms"],
        "ratio_vs_theoretical_min": saturated["ratio_vs_theoretical_min"],
    }


if __name__ == "__main__":
    replay.main(run, __doc__ or "")
