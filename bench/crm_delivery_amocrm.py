"""amoCRM half of the delivery benchmark (docs/performance.md item 3): a busy hour through the real daemon.

The profile is a 100-agent sales floor's busy hour, about 1,200 calls (performance.md): 55 % incoming calls
answered by the agent who rang, 15 % incoming calls a ring group of three missed, 10 % ring groups where the
second agent answered, 20 % outgoing calls to customers; 70 % of incoming callers are contacts amoCRM knows,
30 % are new numbers (unsorted leads); every agent is mapped to an amoCRM user. That is about 4 amoCRM
requests a call (popups, contact lookup, call log or unsorted lead, missed-call task), so the whole hour is
about 4,800 requests: at amoCRM's 7 requests/s that alone takes over 11 minutes. The benchmark therefore
replays a **scaled subset** sized to `duration_hint` (and says so in its result).

Replay: `callbridge run` (tests/daemon.py, SQLite) with ``[connectors.amocrm]`` pointing at the contract fake
(tests/fakes/amocrm.py), which enforces 7 requests in any second with 429. Every call's notifications up to
the moment the phones ring are posted first (so the tracker emits `call.ringing` while the legs ring, as it
would in real time), then the rest; all at once, so the backlog is far above the limit and the connector's
rate limiter is the bottleneck. Then a second, *paced* phase offers the same mix at 70 % of the limit for a
while, to show the lag when amoCRM's limit is not saturated.

Figures: delivery lag (outbox row committed -> delivered) p50/p99, overall and for popups; the 429s the
bridge provoked (the fake's violations: the aim is zero); the most requests the fake saw in any second;
and the drain time against the theoretical minimum the limit allows for that many requests, (N - 1) / 7 s.

    .venv/bin/python bench/crm_delivery_amocrm.py [--duration 60] [--json results.json]

`bench/crm_delivery.py` imports this module and calls `run(duration_hint)`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import _replay as replay  # first: it puts the repository on sys.path

from bridge.pbx.mango.simulator.poster import Poster
from bridge.store.engine import make_engine
from connectors.amocrm.config import DEFAULT_RATE
from tests.daemon import API_KEY, API_SALT, Daemon
from tests.fakes.amocrm import FakeAmoCrm

VENDOR_LIMIT = 7.0
REQUESTS_PER_CALL = 4.0  # measured average of this mix (see docs/benchmarks.md (section 4))
LLT = "bench-llt-" + "9a8b7c6d" * 6
PUBLIC = "https://calls.example.com"


def amocrm_floor(fake: FakeAmoCrm, seed: int = 7) -> replay.Floor:
    """The floor's callers as amoCRM contacts, each with a responsible agent."""

    def formats(number: str) -> list[str]:
        return [
            f"+{number}",
            f"8{number[1:]}",
            f"+7 ({number[1:4]}) {number[4:7]}-{number[7:9]}-{number[9:]}",
        ]

    def add(i: int, typed: str) -> None:
        fake.add_contact(f"Клиент {i}", [typed], responsible_user_id=2001 + i % 100)

    return replay.Floor(seed, formats, add)


def run(duration_hint: float = 60.0) -> dict[str, Any]:
    """Replay a scaled busy hour; return the figures (see the module docstring). Takes about
    `duration_hint` x 1.5 seconds plus the daemon's start."""
    duration_hint = max(10.0, float(duration_hint))
    saturated_calls = max(
        20, min(replay.BUSY_HOUR_CALLS, int(0.6 * duration_hint * VENDOR_LIMIT / REQUESTS_PER_CALL))
    )
    paced_seconds = 0.4 * duration_hint
    paced_rate = 0.7 * VENDOR_LIMIT / REQUESTS_PER_CALL  # calls per second at 70 % of the limit
    paced_calls = max(5, int(paced_seconds * paced_rate))

    workdir = Path(tempfile.mkdtemp(prefix="bench-amocrm-"))
    database_url = f"sqlite:///{workdir / 'callbridge.db'}"
    users = [
        {"id": 2001 + i, "name": f"Agent {ext}", "email": f"agent{ext}@example.com"}
        for i, ext in enumerate(replay.AGENTS)
    ]
    fake = FakeAmoCrm(long_lived_token=LLT, users=users).start()
    floor = amocrm_floor(fake)
    config = workdir / "callbridge.toml"
    lines = ["[connectors.amocrm]", f'account_url = "{fake.url}"', "", "[connectors.amocrm.users]"]
    lines += [f'"{ext}" = {2001 + i}' for i, ext in enumerate(replay.AGENTS)]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    daemon = Daemon(
        database_url,
        workdir,
        env={
            "CALLBRIDGE_CONFIG": str(config),
            "CALLBRIDGE_CONNECTORS_AMOCRM_LONG_LIVED_TOKEN": LLT,
            "CALLBRIDGE_HTTP_PUBLIC_URL": PUBLIC,
            "CALLBRIDGE_LOG_LEVEL": "WARNING",
        },
    )
    replay.log(
        f"amocrm: starting the daemon; saturated replay of {saturated_calls} calls, then {paced_calls} paced"
    )
    daemon.start()
    engine = make_engine(database_url)
    poster = Poster(daemon.mango_url, API_KEY, API_SALT)
    try:
        # ---------------------------------------------------------------- saturated: everything at once
        calls = floor.calls(saturated_calls)
        start_requests = len(fake.requests)
        posted_at = time.monotonic()
        posted, post_errors = replay.post_at_once(poster, calls)
        rows = replay.wait_drained(
            engine, "amocrm", 0, saturated_calls, timeout=max(120.0, 4 * duration_hint), settle=0.5
        )
        with fake.lock:
            burst = [r for r in fake.requests[start_requests:]]
        first, last = burst[0].at, burst[-1].at
        n = len(burst)
        elapsed = last - first
        minimum = (n - 1) / VENDOR_LIMIT
        by_path: dict[str, int] = {}
        for r in burst:
            by_path[r.path] = by_path.get(r.path, 0) + 1
        saturated = {
            "calls": saturated_calls,
            "notifications_posted": posted,
            "post_errors": post_errors,
            "outbox_rows": len(rows),
            "outbox_dead": sum(r.status == "dead" for r in rows),
            "requests_per_call": round(n / saturated_calls, 2),
            "by_path": dict(sorted(by_path.items())),
            **replay.drain_figures(n, elapsed, minimum, last - posted_at),
            **replay.lag_figures(rows),
        }
        replay.log(f"amocrm: saturated {n} requests in {elapsed:.1f} s (minimum {minimum:.1f} s)")

        # ---------------------------------------------------------------- paced: 70 % of the limit
        paced_result = replay.paced_phase(
            "amocrm",
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
        "connector": "amocrm",
        "vendor_limit_per_second": VENDOR_LIMIT,
        "configured_rate_per_second": DEFAULT_RATE,
        "scaled": {
            "busy_hour_calls": replay.BUSY_HOUR_CALLS,
            "replayed_calls": saturated_calls,
            "fraction": round(saturated_calls / replay.BUSY_HOUR_CALLS, 3),
            "why": "the full hour is ~4,800 requests (over 11 min at 7/s); the subset fits duration_hint",
        },
        "saturated": saturated,
        "paced": paced_result,
        "provoked_429": fake.violations,
        "max_requests_in_any_second": fake.max_in_window(),
        # the headline figures the combined benchmark prints
        "lag_p50_ms": saturated["lag_p50_ms"],
        "lag_p99_ms": saturated["lag_p99_ms"],
        "ratio_vs_theoretical_min": saturated["ratio_vs_theoretical_min"],
    }


if __name__ == "__main__":
    replay.main(run, __doc__ or "")
