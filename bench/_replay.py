"""What the delivery benchmarks (crm_delivery.py, crm_delivery_amocrm.py) share: the 100-agent floor's call
mix, posting it into `callbridge run` all at once or paced, waiting for a connector's outbox to drain, and
the lag figures. Each benchmark keeps its own CRM fake, daemon set-up and figures."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from bridge.pbx.mango import scenarios  # noqa: E402
from bridge.pbx.mango.simulator.poster import Poster  # noqa: E402
from bridge.store.schema import outbox  # noqa: E402

BUSY_HOUR_CALLS = 1200
AGENTS = [str(ext) for ext in range(101, 201)]  # a 100-agent floor
MIX = (
    ("incoming_answered", 55),
    ("incoming_missed", 15),
    ("ring_group_second_answers", 10),
    ("outgoing_answered", 20),
)
KNOWN_SHARE = 0.7
RECORDED_SHARE = 0.6
KNOWN_CALLERS = 400
RING_SECONDS = 1.5  # in the paced phase, the phones ring this long before the rest of a call


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def split_at_ringing(notes: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """The notifications up to the moment the phones ring, and the rest."""
    for i, note in enumerate(notes):
        p = note.payload
        if (
            note.path == "events/call"
            and p.get("location") == "abonent"
            and p.get("call_state") != "Appeared"
        ):
            return list(notes[:i]), list(notes[i:])
    return list(notes), []


def outbox_rows(engine: sa.Engine, connector: str, since_id: int = 0) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(
                outbox.c.id, outbox.c.event_type, outbox.c.status, outbox.c.created_at, outbox.c.delivered_at
            )
            .where(outbox.c.connector == connector, outbox.c.id > since_id)
            .order_by(outbox.c.id)
        ).all()


def wait_drained(
    engine: sa.Engine,
    connector: str,
    since_id: int,
    at_least: int,
    timeout: float,
    *,
    settle: float = 1.0,
) -> list[Any]:
    """The connector's outbox rows after `since_id` once none is pending and none came for `settle` s."""
    deadline = time.monotonic() + timeout
    rows: list[Any] = []
    while time.monotonic() < deadline:
        rows = outbox_rows(engine, connector, since_id)
        if len(rows) >= at_least and all(r.status != "pending" for r in rows):
            time.sleep(settle)  # recordings and late rows of calls still being folded
            again = outbox_rows(engine, connector, since_id)
            if len(again) == len(rows) and all(r.status != "pending" for r in again):
                return again
        time.sleep(0.25)
    pending = sum(r.status == "pending" for r in rows)
    raise RuntimeError(f"{connector}: the outbox did not drain in {timeout:.0f} s ({pending} pending)")


def lags(rows: list[Any], event_type: str | None = None) -> list[float]:
    """Seconds from an outbox row's commit to its delivery, for delivered rows (of `event_type`)."""
    return [
        r.delivered_at - r.created_at
        for r in rows
        if r.status == "done"
        and r.delivered_at is not None
        and (event_type is None or r.event_type == event_type)
    ]


def lag_ms(rows: list[Any], q: float, event_type: str | None = None) -> float | None:
    """The `q` quantile of the delivery lags of `rows` (of `event_type`), in milliseconds."""
    return ms(quantile(lags(rows, event_type), q))


class Floor:
    """The floor's callers and call mix, reproducible from a seed.

    `formats(number)` lists the ways a known caller's number may be typed into the CRM (one is picked at
    random); `add(i, typed)` puts caller `i` into the CRM's fake.
    """

    def __init__(
        self, seed: int, formats: Callable[[str], list[str]], add: Callable[[int, str], None]
    ) -> None:
        self.rng = random.Random(seed)
        self.known: list[str] = []
        for i in range(KNOWN_CALLERS):
            number = f"7916{i:07d}"
            add(i, self.rng.choice(formats(number)))
            self.known.append(number)
        self.seed = seed * 100_000
        self.unknown = 0

    def caller(self) -> str:
        if self.rng.random() < KNOWN_SHARE:
            return self.rng.choice(self.known)
        self.unknown += 1
        return f"79035{self.unknown:06d}"

    def calls(self, n: int) -> list[scenarios.Scenario]:
        names = [name for name, _ in MIX]
        weights = [weight for _, weight in MIX]
        out = []
        for _ in range(n):
            name = self.rng.choices(names, weights)[0]
            self.seed += 1
            if name == "outgoing_answered":
                exts: tuple[str, ...] = (self.rng.choice(AGENTS),)
                customer = self.rng.choice(self.known)
            else:
                size = {"incoming_answered": 1, "incoming_missed": 3, "ring_group_second_answers": 3}[name]
                exts = tuple(self.rng.sample(AGENTS, size))
                customer = self.caller()
            out.append(
                scenarios.build(
                    name,
                    seed=self.seed,
                    customer=customer,
                    extensions=exts,
                    recording=self.rng.random() < RECORDED_SHARE,
                )
            )
        return out


def post_at_once(poster: Poster, batch: list[scenarios.Scenario]) -> tuple[int, int]:
    """Every call's ringing part at once, then (a second later, as phones ring) the rest of every call.
    Returns (notifications posted, post errors)."""
    heads: list[Any] = []
    tails: list[Any] = []
    for scenario in batch:
        head, tail = split_at_ringing(scenario.notifications)
        heads += head
        tails += tail
    errors = len(poster.play(heads, concurrency=8).errors)
    time.sleep(1.0)  # the processor folds the ringing legs (as real ringing lasts seconds)
    errors += len(poster.play(tails, concurrency=8).errors)
    return len(heads) + len(tails), errors


def post_paced(poster: Poster, batch: list[scenarios.Scenario], rate: float) -> float:
    """Start a call every 1/`rate` s, its rest `RING_SECONDS` after its ringing; returns the start time
    (time.monotonic())."""
    schedule: list[tuple[float, int, list[Any]]] = []
    for i, scenario in enumerate(batch):
        head, tail = split_at_ringing(scenario.notifications)
        schedule.append((i / rate, 2 * i, head))
        schedule.append((i / rate + RING_SECONDS, 2 * i + 1, tail))
    schedule.sort(key=lambda item: (item[0], item[1]))
    t0 = time.monotonic()
    for offset, _, notes in schedule:
        delay = t0 + offset - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if notes:
            poster.play(notes)
    return t0


def lag_figures(rows: list[Any]) -> dict[str, float | None]:
    """Delivery lag p50/p99 of every row and of the popups (`call.ringing`), in ms."""
    return {
        "lag_p50_ms": lag_ms(rows, 0.5),
        "lag_p99_ms": lag_ms(rows, 0.99),
        "popup_lag_p50_ms": lag_ms(rows, 0.5, "call.ringing"),
        "popup_lag_p99_ms": lag_ms(rows, 0.99, "call.ringing"),
    }


def drain_figures(requests: int, elapsed: float, minimum: float, from_first_post: float) -> dict[str, Any]:
    """How long the saturated backlog took against the theoretical minimum at the vendor's limit."""
    return {
        "requests": requests,
        "drain_seconds": round(elapsed, 2),
        "from_first_post_seconds": round(from_first_post, 2),
        "theoretical_min_seconds": round(minimum, 2),
        "ratio_vs_theoretical_min": round(elapsed / minimum, 3) if minimum else None,
    }


def paced_phase(
    connector: str,
    *,
    engine: sa.Engine,
    poster: Poster,
    calls: list[scenarios.Scenario],
    rate: float,
    since_id: int,
    requests_sent: Callable[[], int],
    timeout: float,
    settle: float,
) -> dict[str, Any]:
    """Post `calls` at `rate` calls per second and wait until `connector` delivered their rows; the
    requests the fake counted meanwhile (`requests_sent()`) and the lag figures."""
    start = requests_sent()
    t0 = post_paced(poster, calls, rate)
    rows = wait_drained(engine, connector, since_id, len(calls), timeout=timeout, settle=settle)
    sent = requests_sent() - start
    result = {
        "calls": len(calls),
        "offered_requests_per_second": round(sent / max(1e-9, time.monotonic() - t0), 2),
        "requests": sent,
        **lag_figures(rows),
    }
    log(f"{connector}: paced {sent} requests, lag p99 {result['lag_p99_ms']} ms")
    return result


def main(run: Callable[[float], dict[str, Any]], description: str) -> None:
    """The command line every section shares: `--duration`, `--json FILE`; prints the figures as JSON."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds of saturated replay to aim for / 0.6"
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    text = json.dumps(run(args.duration), indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
