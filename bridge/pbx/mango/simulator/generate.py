"""Many generated calls for bursts, crash tests and benchmarks: a mix of every scenario type."""

from __future__ import annotations

import random
from typing import Any

# How often each scenario appears in a generated mix (most traffic is plain incoming calls).
MIX_WEIGHTS: dict[str, int] = {
    "incoming_answered": 6,
    "incoming_missed": 3,
    "ring_group_second_answers": 3,
    "outgoing_answered": 3,
    "click_to_call": 2,
    "ivr_then_route": 2,
}
"""Scenarios not listed here (transfers, internal calls, abandoned IVR, ...) appear with weight 1."""
BASE_START = 1_767_225_600  # 2026-01-01 00:00:00 UTC: generated calls are deterministic in time too


def _scenarios() -> Any:
    from bridge.pbx.mango import scenarios

    return scenarios


def generate_calls(n_events: int, *, seed: int = 0, start: int = BASE_START, run: str = "") -> list[Any]:
    """Distinct calls (each a `scenarios.Scenario`) of mixed types until they hold at least `n_events`
    notifications. The same `seed` gives the same calls; every call has its own entry id and customer.
    `run` (digits, `scenarios.fresh_run()`) is mixed into every id."""
    scenarios = _scenarios()
    rng = random.Random(seed)
    names = list(scenarios.SCENARIO_NAMES)
    weights = [MIX_WEIGHTS.get(n, 1) for n in names]
    calls: list[Any] = []
    seen_entries: set[str] = set()
    total = 0
    at = start
    attempts = 0
    while total < n_events:
        attempts += 1
        if attempts > 10 * n_events + 100:
            raise RuntimeError("scenario builder keeps returning entry ids already used")
        name = rng.choices(names, weights)[0]
        customer = "79" + "".join(rng.choice("0123456789") for _ in range(9))
        scenario = scenarios.build(
            name,
            seed=rng.randrange(1 << 31),
            start=at,
            customer=customer,
            recording=rng.random() < 0.5,
            run=run,
        )
        if scenario.entry_id in seen_entries:
            continue
        seen_entries.add(scenario.entry_id)
        calls.append(scenario)
        total += len(scenario.notifications)
        at += rng.randint(1, 30)
    return calls
