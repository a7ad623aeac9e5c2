"""amoCRM widget click-to-call: how long a click takes to become Mango's ``commands/callback``.

`callbridge run` (tests/daemon.py, SQLite) with ``[connectors.amocrm]`` (a long-lived token and the
integration's secret key) and Mango's API at the simulator. Each click is what the widget sends: a POST to
``/connectors/amocrm/widget/call`` with a fresh one-time token made as amoCRM makes it (HS256). Clicks go
one after another at 10 a second, then 40 at once from 8 threads (a floor of people clicking together;
40 is the endpoint's burst, 20/s its rate).

Figures: the click's answer time (POST -> 200, which includes Mango's synchronous answer) p50/p99; the
time from the POST to the simulator having answered the signed ``commands/callback`` p50/p99; refusals.

    .venv/bin/python bench/amocrm_widget_clicks.py [--clicks 200] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from bridge.pbx.mango.simulator import CommandServer  # noqa: E402
from bridge.pbx.mango.simulator.command_server import default_users  # noqa: E402
from tests.amocrm_tokens import one_time_token  # noqa: E402
from tests.daemon import API_KEY, API_SALT, Daemon  # noqa: E402
from tests.fakes.amocrm import FakeAmoCrm  # noqa: E402

LLT = "bench-widget-llt-" + "1a2b3c4d" * 6
INTEGRATION_SECRET = "bench-integration-secret-" + "z" * 40
PACE = 10.0  # clicks a second one by one: well under the endpoint's 20/s gate
BURST = 40  # the gate's burst, all at once from 8 threads


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(clicks: int = 200) -> dict[str, Any]:
    agents = [
        str(u["telephony"]["extension"]) for u in default_users() if u.get("telephony", {}).get("extension")
    ]
    workdir = Path(tempfile.mkdtemp(prefix="bench-amowidget-"))
    answers: dict[int, float] = {}
    refused = 0
    lock = threading.Lock()
    sent_at: dict[str, float] = {}
    arrived: dict[str, float] = {}

    def on_command(command: Any) -> None:
        if command.path == "commands/callback" and command.json:
            arrived[command.json["to_number"]] = time.perf_counter()

    with (
        FakeAmoCrm(long_lived_token=LLT) as fake,
        CommandServer(
            API_KEY, API_SALT, rate_limits=False, rng=random.Random(1), on_command=on_command
        ) as mango,
    ):
        config = workdir / "callbridge.toml"
        users = "\n".join(f'"{ext}" = {2001 + i}' for i, ext in enumerate(agents))
        config.write_text(
            f'[connectors.amocrm]\naccount_url = "{fake.url}"\npopup = false\nlog_calls = false\n'
            f"unsorted_for_unknown = false\nmissed_task = false\n\n[connectors.amocrm.users]\n{users}\n",
            encoding="utf-8",
        )
        daemon = Daemon(
            f"sqlite:///{workdir / 'callbridge.db'}",
            workdir,
            env={
                "CALLBRIDGE_CONFIG": str(config),
                "CALLBRIDGE_CONNECTORS_AMOCRM_LONG_LIVED_TOKEN": LLT,
                "CALLBRIDGE_CONNECTORS_AMOCRM_CLIENT_SECRET": INTEGRATION_SECRET,
                "CALLBRIDGE_MANGO_API_URL": mango.url,
            },
        ).start()
        session = requests.Session()
        url = f"{daemon.url}/connectors/amocrm/widget/call"

        def click(i: int) -> None:
            nonlocal refused
            number = f"7926{i:07d}"
            token = one_time_token(INTEGRATION_SECRET, fake.url, 2001 + i % len(agents))
            started = time.perf_counter()
            sent_at[number] = started
            answer = session.post(
                url,
                json={"phone": f"+{number}"},
                headers={"X-Auth-Token": token, "Origin": fake.url},
                timeout=30,
            )
            took = time.perf_counter() - started
            with lock:
                if answer.status_code == 200:
                    answers[i] = took
                else:
                    refused += 1

        try:
            began = time.perf_counter()
            for i in range(clicks):
                time.sleep(max(0.0, began + i / PACE - time.perf_counter()))
                click(i)
            time.sleep(BURST / 20.0)  # the gate refills
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(click, range(clicks, clicks + BURST)))
            deadline = time.monotonic() + 30
            while len(arrived) < len(answers) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            daemon.stop()
    reached = {
        i: arrived[f"7926{i:07d}"] - sent_at[f"7926{i:07d}"] for i in answers if f"7926{i:07d}" in arrived
    }

    def figures(indexes: range) -> dict[str, float]:
        took = [answers[i] for i in indexes if i in answers]
        mango = [reached[i] for i in indexes if i in reached]
        return {
            "answer_ms_p50": round(statistics.median(took) * 1000, 1),
            "answer_ms_p99": round(percentile(took, 0.99) * 1000, 1),
            "to_mango_ms_p50": round(statistics.median(mango) * 1000, 1),
            "to_mango_ms_p99": round(percentile(mango, 0.99) * 1000, 1),
        }

    return {
        "clicks": clicks + BURST,
        "answered_200": len(answers),
        "refused": refused,
        "reached_mango": len(reached),
        "one_by_one": figures(range(clicks)),
        "burst": figures(range(clicks, clicks + BURST)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clicks", type=int, default=200, help="clicks one by one, and again in a burst")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    result = run(args.clicks)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
