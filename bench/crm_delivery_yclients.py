"""YClients half of the delivery benchmark (docs/performance.md item 3): a busy hour through the real daemon.

The profile is the floor of bench/_replay.py: a 100-agent busy hour of about 1,200 calls (55 % incoming
answered by the agent who rang, 15 % incoming a ring group of three missed, 10 % ring groups where the second
agent answered, 20 % outgoing); 70 % of incoming callers are YClients clients, each with a few visits; every
agent is mapped to a staff member, and the connector has a user token, so each ringing call also costs the
caller card's client search (and the records of a known client). That is about 3 YClients requests a call
(popups, the history row, the card's search and records), so the hour is ~3,500 requests: at YClients' 200 a
minute that alone takes over 17 minutes. The benchmark therefore replays a **scaled subset** sized to
`duration_hint` (and says so in its result).

Replay: `callbridge run` (tests/daemon.py, SQLite) with ``[connectors.yclients]`` pointing at the contract
fake (tests/fakes/yclients.py), which enforces 5 requests in any second and 200 in any minute with 429.
Every call's notifications up to the moment the phones ring are posted first, then the rest; all at once, so
the backlog is far above the limit and the connector's rate limiter is the bottleneck. Then a second, *paced*
phase offers the same mix at 70 % of the limit for a while, to show the lag when the limit is not saturated.

Figures: delivery lag (outbox row committed -> delivered) p50/p99, overall and for popups; the 429s the bridge
provoked (the fake's violations: the aim is zero); the most requests the fake saw in any second and minute;
history rows per call (exactly one each); and the drain time against the theoretical minimum the limit allows
for that many requests, (N - 1) / (200/60) s.

    .venv/bin/python bench/crm_delivery_yclients.py [--duration 60] [--json results.json]

`bench/crm_delivery.py` imports this module and calls `run(duration_hint)`.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _replay as replay  # first: it puts the repository on sys.path

from bridge.pbx.mango.simulator.poster import Poster
from bridge.store.engine import make_engine
from connectors.yclients.config import DEFAULT_RATE, VENDOR_PER_MINUTE
from tests.daemon import API_KEY, API_SALT, Daemon
from tests.fakes.yclients import FakeYClients

VENDOR_LIMIT = VENDOR_PER_MINUTE / 60  # sustained requests per second
REQUESTS_PER_CALL = 2.9  # measured average of this mix under saturation (docs/benchmarks.md, section 6)
# Not saturated, every ringing call's caller card gets its client search (and records): about 4 a call.
PACED_REQUESTS_PER_CALL = 4.0
PARTNER = "bench-partner-" + "4d3c2b1a" * 4
CRM = "bench-crm-" + "a1b2c3d4" * 4
USER = "bench-user-" + "0e1f2a3b" * 4
COMPANY = 777
PUBLIC = "https://calls.example.com"


def yclients_floor(fake: FakeYClients, seed: int = 11) -> replay.Floor:
    """The floor's callers as YClients clients, each with two past visits and one booked."""
    now = datetime.now(UTC)

    def formats(number: str) -> list[str]:
        return [
            f"+{number}",
            f"8{number[1:]}",
            f"+7 ({number[1:4]}) {number[4:7]}-{number[7:9]}-{number[9:]}",
        ]

    def add(i: int, typed: str) -> None:
        client = fake.add_client(f"Клиент {i}", typed)
        staff = 9000 + i % 100
        for days in (-40, -10, 14):
            when = (now + timedelta(days=days)).replace(microsecond=0).isoformat()
            fake.add_record(client, when, "Стрижка", (staff, f"Мастер {staff}"))

    return replay.Floor(seed, formats, add)


def run(duration_hint: float = 60.0) -> dict[str, Any]:
    """Replay a scaled busy hour; return the figures (see the module docstring). Takes about
    `duration_hint` x 1.5 seconds plus the daemon's start."""
    duration_hint = max(10.0, float(duration_hint))
    saturated_calls = max(
        20, min(replay.BUSY_HOUR_CALLS, int(0.6 * duration_hint * VENDOR_LIMIT / REQUESTS_PER_CALL))
    )
    paced_seconds = 0.4 * duration_hint
    paced_rate = 0.7 * VENDOR_LIMIT / PACED_REQUESTS_PER_CALL  # calls per second at 70 % of the limit
    paced_calls = max(5, int(paced_seconds * paced_rate))

    workdir = Path(tempfile.mkdtemp(prefix="bench-yclients-"))
    database_url = f"sqlite:///{workdir / 'callbridge.db'}"
    fake = FakeYClients(partner_token=PARTNER, crm_token=CRM, user_token=USER, company_id=COMPANY).start()
    floor = yclients_floor(fake)
    config = workdir / "callbridge.toml"
    lines = ["[connectors.yclients]", f'api_url = "{fake.url}"', f"company_id = {COMPANY}"]
    lines += ["", "[connectors.yclients.staff]"]
    lines += [f'"{ext}" = "{9000 + i}"' for i, ext in enumerate(replay.AGENTS)]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    daemon = Daemon(
        database_url,
        workdir,
        env={
            "CALLBRIDGE_CONFIG": str(config),
            "CALLBRIDGE_CONNECTORS_YCLIENTS_PARTNER_TOKEN": PARTNER,
            "CALLBRIDGE_CONNECTORS_YCLIENTS_CRM_TOKEN": CRM,
            "CALLBRIDGE_CONNECTORS_YCLIENTS_USER_TOKEN": USER,
            "CALLBRIDGE_HTTP_PUBLIC_URL": PUBLIC,
            "CALLBRIDGE_LOG_LEVEL": "WARNING",
        },
    )
    replay.log(
        f"yclients: starting the daemon; saturated replay of {saturated_calls} calls, "
        f"then {paced_calls} paced"
    )
    daemon.start()
    engine = make_engine(database_url)
    poster = Poster(daemon.mango_url, API_KEY, API_SALT)
    try:
        # ---------------------------------------------------------------- saturated: everything at once
        calls = floor.calls(saturated_calls)
        start_requests = len(fake.seen)
        posted_at = time.monotonic()
        posted, post_errors = replay.post_at_once(poster, calls)
        rows = replay.wait_drained(
            engine, "yclients", 0, saturated_calls, timeout=max(180.0, 6 * duration_hint), settle=1.0
        )
        with fake.lock:
            burst = list(fake.seen[start_requests:])
            history = Counter(h["call_id"] for h in fake.history)
        first, last = burst[0].at, burst[-1].at
        n = len(burst)
        elapsed = last - first
        minimum = (n - 1) / VENDOR_LIMIT
        kinds: Counter[str] = Counter()
        for s in burst:
            kinds[s.body["command"] if s.path.endswith("/voip/integration") else s.path.split("/")[3]] += 1
        entries = {c.entry_id for c in calls}
        saturated = {
            "calls": saturated_calls,
            "notifications_posted": posted,
            "post_errors": post_errors,
            "outbox_rows": len(rows),
            "outbox_dead": sum(r.status == "dead" for r in rows),
            "requests_per_call": round(n / saturated_calls, 2),
            "by_kind": dict(sorted(kinds.items())),
            "history_rows": sum(history[e] for e in entries),
            "calls_logged_twice": sum(1 for e in entries if history[e] > 1),
            "calls_not_logged": sum(1 for e in entries if history[e] == 0),
            **replay.drain_figures(n, elapsed, minimum, last - posted_at),
            **replay.lag_figures(rows),
        }
        replay.log(f"yclients: saturated {n} requests in {elapsed:.1f} s (minimum {minimum:.1f} s)")

        # ---------------------------------------------------------------- paced: 70 % of the limit
        paced_result = replay.paced_phase(
            "yclients",
            engine=engine,
            poster=poster,
            calls=floor.calls(paced_calls),
            rate=paced_rate,
            since_id=rows[-1].id if rows else 0,
            requests_sent=lambda: len(fake.seen),
            timeout=max(90.0, 3 * duration_hint),
            settle=1.0,
        )
    finally:
        poster.close()
        daemon.stop()
        engine.dispose()
        fake.stop()

    return {
        "connector": "yclients",
        "vendor_limit_per_second": round(VENDOR_LIMIT, 3),
        "configured_rate_per_second": DEFAULT_RATE,
        "scaled": {
            "busy_hour_calls": replay.BUSY_HOUR_CALLS,
            "replayed_calls": saturated_calls,
            "fraction": round(saturated_calls / replay.BUSY_HOUR_CALLS, 3),
            "why": "the full hour is ~3,500 requests (over 17 min at 200/min); the subset fits duration_hint",
        },
        "saturated": saturated,
        "paced": paced_result,
        "provoked_429": fake.violations,
        "setup_requests": len(fake.setups),
        "max_requests_in_any_second": fake.max_in(1.0),
        "max_requests_in_any_minute": fake.max_in(60.0),
        # the headline figures the combined benchmark prints
        "lag_p50_ms": saturated["lag_p50_ms"],
        "lag_p99_ms": saturated["lag_p99_ms"],
        "ratio_vs_theoretical_min": saturated["ratio_vs_theoretical_min"],
    }


if __name__ == "__main__":
    replay.main(run, __doc__ or "")
