"""Delivery under vendor limits (performance.md item 3): a busy hour through the real daemon into fake CRMs.

One section per CRM; each runs `callbridge run` (tests/daemon.py, SQLite) with that connector pointed at its
contract fake, which enforces the vendor's real limit and counts every request that breaks it. Sections:

* ``bitrix24`` (here): tests/fakes/bitrix24.py with Bitrix24's leaky bucket (2 requests/s, burst 50; a
  request above it is a 503 QUERY_LIMIT_EXCEEDED and a *violation*), 100 ms per answer.
* ``amocrm``: bench/crm_delivery_amocrm.py (its own engineer's), imported when present; its `run(duration)`
  returns the same headline keys.
* ``yclients``: bench/crm_delivery_yclients.py, the same way (YClients' 200 requests/min, 5/s).
* ``retailcrm``: bench/crm_delivery_retailcrm.py, the same way (retailCRM's ~10 requests/s, 503 beyond).
* ``dynamics``: bench/crm_delivery_dynamics.py, the same way (Dataverse's 6000 requests per 5 minutes, 429
  beyond), over TLS with msal's tokens from the fake.
* ``ringing``: the caller card under a backlog, urgent rows first against the old oldest-first order, in
  the same run (see `ringing_section`).

The Bitrix24 section
--------------------
Floor: 100 agents (extensions 101..200, Bitrix24 users with UF_PHONE_INNER, imported by the connector),
the busy hour of performance.md: about 1,200 calls, 55 % incoming answered by the agent who rang, 15 %
incoming that a ring group of three missed, 10 % ring groups where the second agent answered, 20 % outgoing;
60 % recorded; 70 % of callers known to the CRM. That makes about 4-5 Bitrix24 commands a call (register,
show, hide, finish, attachRecord, task, and the caller lookup of the popup), so the hour is ~5,000 commands:
one request each would take 40 minutes at 2/s. Two phases:

1. *Saturated*: `--calls` calls of that mix (default 240, a fifth of the hour; ``--calls 1200`` for all of
   it) posted at once: the phones-ringing part of every call first, the rest a second later. The backlog is
   far above the limit, so the connector's rate limiter and its batching decide the drain time.
2. *Paced*: the same mix at the busy hour's own rate times `--speedup` (default 1.5: 0.5 calls/s), for
   `--paced-seconds`, to show the lag when the limit is not the bottleneck.

Figures: delivery lag (outbox row committed -> delivered) p50/p99; violations of the leaky bucket the bridge
provoked (the aim is zero) and the highest the portal's counter got; requests, commands and commands per
request; and the drain time against two baselines from the same run:
  - the theoretical minimum for sending those *commands* one request each at the limit,
    ``max(0, commands - burst) / rate`` (ratio < 1: batching beat the unbatched limit);
  - the theoretical minimum for the *requests actually sent*, ``max(0, requests - burst) / rate``
    (ratio near 1: the bridge kept the portal's bucket busy, no time wasted).

    .venv/bin/python bench/crm_delivery.py [--only bitrix24,amocrm,yclients,retailcrm,dynamics,ringing]
        [--calls 240] [--duration 60]

Results: a table on stdout and JSON in bench/results/crm-delivery-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from _replay import (  # first: it puts the repository on sys.path
    AGENTS,
    BUSY_HOUR_CALLS,
    Floor,
    lag_ms,
    log,
    ms,
    post_at_once,
    post_paced,
    quantile,
    wait_drained,
)

from bridge.connector_api import CallEvent, idempotency_key
from bridge.outbox.dispatcher import Dispatcher
from bridge.outbox.enqueue import enqueue
from bridge.pbx.mango.simulator.poster import Poster
from bridge.registry import build_connectors
from bridge.store.engine import make_engine
from bridge.store.migrate import upgrade
from tests.daemon import API_KEY, API_SALT, Daemon
from tests.fakes.bitrix24 import FakeBitrix24, connector_toml

BENCH = Path(__file__).resolve().parent
B24_RATE, B24_BURST = 2.0, 50
B24_LATENCY = 0.1  # seconds per answer; real portals answer in 100-300 ms


def bitrix24_floor(fake: FakeBitrix24, seed: int = 11) -> Floor:
    """The floor's callers as Bitrix24 contacts and companies, each with a responsible agent."""

    def formats(number: str) -> list[str]:
        return [f"+{number}", f"8{number[1:]}", f"+7 ({number[1:4]}) {number[4:7]}-{number[7:]}"]

    def add(i: int, typed: str) -> None:
        fake.add_crm("CONTACT" if i % 4 else "COMPANY", f"Client {i}", typed, assigned_by=1001 + i % 100)

    return Floor(seed, formats, add)


def bitrix24_section(calls: int, paced_seconds: float, speedup: float) -> dict[str, Any]:
    """Run the Bitrix24 replay; see the module docstring."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-bitrix24-"))
    database_url = f"sqlite:///{workdir / 'callbridge.db'}"
    users = [
        {"ID": 1001 + i, "NAME": f"Agent {ext}", "LAST_NAME": "", "ACTIVE": True, "UF_PHONE_INNER": ext}
        for i, ext in enumerate(AGENTS)
    ]
    fake = FakeBitrix24(rate=B24_RATE, burst=B24_BURST, users=users, latency=B24_LATENCY).start()
    floor = bitrix24_floor(fake)
    config = workdir / "callbridge.toml"
    config.write_text(connector_toml(fake, auto_import=True), encoding="utf-8")
    daemon = Daemon(
        database_url, workdir, env={"CALLBRIDGE_CONFIG": str(config), "CALLBRIDGE_LOG_LEVEL": "WARNING"}
    )
    daemon.env["CALLBRIDGE_HTTP_PUBLIC_URL"] = daemon.url
    log(f"bitrix24: starting the daemon; {calls} calls saturated, then {paced_seconds:.0f} s paced")
    daemon.start()
    answer = fake.install(f"{daemon.url}/connectors/bitrix24/install")
    if answer.status_code != 200:
        raise RuntimeError(f"install failed: {answer.status_code} {answer.text[:200]}")
    engine = make_engine(database_url)
    poster = Poster(daemon.mango_url, API_KEY, API_SALT)
    try:
        # ------------------------------------------------------------ saturated
        batch = floor.calls(calls)
        with fake.lock:
            first_request = len(fake.requests)
            first_call = len(fake.calls)
        started = time.monotonic()
        posted, errors = post_at_once(poster, batch)
        rows = wait_drained(engine, "bitrix24", 0, calls, timeout=max(300.0, calls * 3.0))
        with fake.lock:
            sent = [r for r in fake.requests[first_request:] if r.path != "/oauth/token/"]
            executed = fake.calls[first_call:]
        counted = [r for r in sent if r.counted]
        drain = counted[-1].at - counted[0].at if len(counted) > 1 else 0.0
        commands = len(executed)
        min_unbatched = max(0.0, commands - B24_BURST) / B24_RATE
        min_actual = max(0.0, len(counted) - B24_BURST) / B24_RATE
        by_method: dict[str, int] = {}
        for call in executed:
            by_method[call.method] = by_method.get(call.method, 0) + 1
        registered = {c.external_call_id for c in fake.external.values() if c.external_call_id}
        finished = sum(1 for c in fake.external.values() if c.external_call_id and c.finishes)
        twice = sum(1 for c in fake.external.values() if len(c.finishes) > 1)
        saturated = {
            "calls": calls,
            "notifications_posted": posted,
            "post_errors": errors,
            "outbox_rows": len(rows),
            "outbox_dead": sum(r.status == "dead" for r in rows),
            "requests": len(counted),
            "refused_503": len(sent) - len(counted),
            "commands": commands,
            "commands_per_request": round(commands / max(1, len(counted)), 2),
            "commands_per_call": round(commands / calls, 2),
            "by_method": dict(sorted(by_method.items())),
            "calls_registered": len(registered),
            "calls_finished": finished,
            "calls_finished_twice": twice,
            "drain_seconds": round(drain, 1),
            "from_first_post_to_drained_seconds": round(time.monotonic() - started, 1),
            "min_seconds_unbatched": round(min_unbatched, 1),
            "min_seconds_for_requests_sent": round(min_actual, 1),
            "ratio_vs_unbatched_min": round(drain / min_unbatched, 3) if min_unbatched else None,
            "ratio_vs_requests_min": round(drain / min_actual, 3) if min_actual else None,
            "lag_p50_ms": lag_ms(rows, 0.5),
            "lag_p99_ms": lag_ms(rows, 0.99),
            "ringing_lag_p50_ms": lag_ms(rows, 0.5, "call.ringing"),
            "ringing_lag_p99_ms": lag_ms(rows, 0.99, "call.ringing"),
        }
        log(
            f"bitrix24: saturated: {commands} commands in {len(counted)} requests, drained in {drain:.0f} s "
            f"(unbatched minimum {min_unbatched:.0f} s); violations {fake.violations}"
        )

        # ------------------------------------------------------------ paced
        last_id = rows[-1].id if rows else 0
        rate = BUSY_HOUR_CALLS / 3600.0 * speedup  # calls per second
        paced_calls = max(5, int(paced_seconds * rate))
        paced = floor.calls(paced_calls)
        with fake.lock:
            first_request = len(fake.requests)
            first_call = len(fake.calls)
        t0 = post_paced(poster, paced, rate)
        paced_rows = wait_drained(
            engine, "bitrix24", last_id, paced_calls, timeout=max(120.0, paced_seconds * 3)
        )
        elapsed = time.monotonic() - t0
        with fake.lock:
            paced_requests = [r for r in fake.requests[first_request:] if r.counted]
            paced_commands = len(fake.calls) - first_call
        paced_result = {
            "calls": paced_calls,
            "calls_per_second": round(rate, 3),
            "requests": len(paced_requests),
            "commands": paced_commands,
            "requests_per_second": round(len(paced_requests) / elapsed, 2),
            "lag_p50_ms": lag_ms(paced_rows, 0.5),
            "lag_p99_ms": lag_ms(paced_rows, 0.99),
            "ringing_lag_p99_ms": lag_ms(paced_rows, 0.99, "call.ringing"),
        }
        log(f"bitrix24: paced: lag p99 {paced_result['lag_p99_ms']} ms")
    finally:
        poster.close()
        daemon.stop()
        engine.dispose()
        fake.stop()
    return {
        "connector": "bitrix24",
        "vendor_limit": f"leaky bucket {B24_RATE:g}/s, burst {B24_BURST}",
        "fake_latency_ms": B24_LATENCY * 1000,
        "scaled": {
            "busy_hour_calls": BUSY_HOUR_CALLS,
            "replayed_calls": calls,
            "fraction": round(calls / BUSY_HOUR_CALLS, 3),
        },
        "saturated": saturated,
        "paced": paced_result,
        "provoked_violations": fake.violations,
        "max_bucket_level": round(fake.max_level, 1),
        "token_refreshes": fake.refreshes,
        # the headline figures of every section
        "lag_p50_ms": saturated["lag_p50_ms"],
        "lag_p99_ms": saturated["lag_p99_ms"],
        "ratio_vs_theoretical_min": saturated["ratio_vs_unbatched_min"],
    }


class LoopbackReceiver:
    """A webhook receiver on loopback: answers 204 after `latency` s and notes when each delivery came."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.arrivals: dict[str, float] = {}
        self.repeated = 0
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(receiver.latency)
                receiver.arrived(self.headers.get("Idempotency-Key", ""))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def arrived(self, key: str) -> None:
        with self.lock:
            if key in self.arrivals:
                self.repeated += 1
            else:
                self.arrivals[key] = time.time()

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _event(entry_id: str, type_: str) -> CallEvent:
    return CallEvent(
        type=type_,
        entry_id=entry_id,
        key=type_,
        occurred_at=time.time(),
        direction="incoming",
        customer_number="79161234567",
        extension="101",
    )


def ringing_run(prioritised: bool, backlog: int, rings: int, rate: float, latency: float) -> dict[str, Any]:
    """One order: `backlog` rows queued at once (finished calls: call.ended + recording), then `rings` new
    calls ring, evenly over the first 80 % of the drain; each ring's latency is queued -> received."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-ringing-"))
    engine = make_engine(f"sqlite:///{workdir / 'callbridge.db'}")
    upgrade(engine)
    receiver = LoopbackReceiver(latency)
    secret = "bench-ringing-secret-0123456789"
    hook = build_connectors({"webhook": {"url": receiver.url, "secret": secret, "rate_per_second": rate}})[
        "webhook"
    ]
    dispatcher = Dispatcher(engine, {"webhook": hook})
    if not prioritised:
        dispatcher.urgent_types = frozenset()  # the order before: oldest row first, whatever its type
    steps = ("call.ended", "call.recording_ready")
    with engine.begin() as conn:
        enqueue(
            conn, [_event(f"old-{i // 2}", steps[i % 2]) for i in range(backlog)], [hook], now=time.time()
        )
    stop = threading.Event()
    runner = threading.Thread(target=dispatcher.run_forever, args=(stop,), name="bench-dispatcher")
    started = time.time()
    runner.start()
    rang: dict[str, tuple[float, int]] = {}  # key -> (queued at, backlog rows received by then)
    spacing = 0.8 * backlog / rate / rings
    try:
        for n in range(rings):
            time.sleep(max(0.0, started + (n + 0.5) * spacing - time.time()))
            event = _event(f"ring-{n}", "call.ringing")
            before = receiver.count()
            with engine.begin() as conn:
                enqueue(conn, [event], [hook], now=time.time())
            rang[idempotency_key("webhook", event)] = (time.time(), before)
            dispatcher.wake()  # as the event processor does after committing
        deadline = time.monotonic() + max(120.0, 4 * backlog / rate)
        while receiver.count() < backlog + rings and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(30)
        dispatcher.close()
        receiver.stop()
        engine.dispose()
    received = receiver.arrivals
    latencies = [received[key] - at for key, (at, _) in rang.items() if key in received]
    ahead = sorted(received.values())
    # Backlog rows that still came after the ring: how much of the backlog it overtook.
    overtaken = [sum(1 for t in ahead if t > received[key]) for key in rang if key in received]
    return {
        "order": "urgent rows first" if prioritised else "oldest first",
        "received": len(received),
        "expected": backlog + rings,
        "received_twice": receiver.repeated,
        "drain_seconds": round(max(received.values()) - started, 2) if received else None,
        "ringing_latency_p50_ms": ms(quantile(latencies, 0.5)),
        "ringing_latency_max_ms": ms(max(latencies)) if latencies else None,
        "rows_received_after_the_ring_p50": quantile([float(n) for n in overtaken], 0.5),
    }


def ringing_section(backlog: int, rings: int, rate: float, latency: float) -> dict[str, Any]:
    """The caller card under a backlog: the same load with urgent rows first, then in the old order.

    The real dispatcher, store (SQLite, migrated) and webhook connector, posting to a loopback receiver
    that answers after `latency` s; the connector's own limit (`rate` requests/s) sets the drain speed,
    as a CRM's limit does after an outage.
    """
    log(f"ringing: {backlog} backlog rows at {rate:g}/s, {rings} calls ring while it drains")
    new = ringing_run(True, backlog, rings, rate, latency)
    log(f"ringing: urgent first: p50 {new['ringing_latency_p50_ms']} ms, drained in {new['drain_seconds']} s")
    old = ringing_run(False, backlog, rings, rate, latency)
    log(f"ringing: oldest first: p50 {old['ringing_latency_p50_ms']} ms, drained in {old['drain_seconds']} s")
    for run in (new, old):
        if run["received"] != run["expected"] or run["received_twice"]:
            raise RuntimeError(f"{run['order']}: received {run['received']} of {run['expected']}, {run}")

    def ratio(key: str) -> float | None:
        return round(old[key] / new[key], 1) if old[key] and new[key] else None

    return {
        "connector": "webhook (loopback receiver)",
        "backlog_rows": backlog,
        "rings": rings,
        "rate_per_second": rate,
        "receiver_latency_ms": latency * 1000,
        "urgent_first": new,
        "oldest_first": old,
        "ratio_p50_old_vs_new": ratio("ringing_latency_p50_ms"),
        "ratio_max_old_vs_new": ratio("ringing_latency_max_ms"),
        # the headline figures: the rings' latency with urgent rows first
        "lag_p50_ms": new["ringing_latency_p50_ms"],
        "lag_p99_ms": new["ringing_latency_max_ms"],
        "provoked_violations": 0,
    }


def module_section(name: str, duration: float) -> dict[str, Any] | None:
    """bench/crm_delivery_<name>.py's `run(duration)`, when that file is there."""
    try:
        module = importlib.import_module(f"crm_delivery_{name}")
    except ModuleNotFoundError:
        return None
    result: dict[str, Any] = module.run(duration)
    result.setdefault("provoked_violations", result.get("provoked_429"))
    return result


def amocrm_section(duration: float) -> dict[str, Any] | None:
    """bench/crm_delivery_amocrm.py's `run`, when that file is there."""
    return module_section("amocrm", duration)


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "python": platform.python_version()}


def report(result: dict[str, Any]) -> str:
    lines = [
        f"delivery under vendor limits - {result['machine']['nproc']} cores, {result['machine']['cpu_model']}"
    ]
    head = (
        f"{'crm':<10} {'calls':>6} {'requests':>8} {'lag p50 ms':>11} {'lag p99 ms':>11} "
        f"{'violations':>10} {'x min':>6}"
    )
    lines += [head, "-" * len(head)]
    for name, section in result["sections"].items():
        if "error" in section:
            lines.append(f"{name:<10} FAILED: {section['error'][:80]}")
            continue
        sat = section.get("saturated", {})
        lines.append(
            f"{name:<10} {sat.get('calls', '-'):>6} {sat.get('requests', '-'):>8} "
            f"{section.get('lag_p50_ms')!s:>11} {section.get('lag_p99_ms')!s:>11} "
            f"{section.get('provoked_violations')!s:>10} "
            f"{section.get('ratio_vs_theoretical_min')!s:>6}"
        )
    b24 = result["sections"].get("bitrix24")
    if b24 and "error" not in b24:
        s, p = b24["saturated"], b24["paced"]
        lines += [
            "",
            f"bitrix24 saturated: {s['commands']} commands in {s['requests']} requests "
            f"({s['commands_per_request']} per request, {s['commands_per_call']} per call); drained in "
            f"{s['drain_seconds']} s; minimum at 2/s: {s['min_seconds_unbatched']} s one command a request "
            f"(ratio {s['ratio_vs_unbatched_min']}), {s['min_seconds_for_requests_sent']} s for the requests "
            f"sent (ratio {s['ratio_vs_requests_min']}); ringing lag p99 {s['ringing_lag_p99_ms']} ms; "
            f"finished twice: {s['calls_finished_twice']}; dead rows: {s['outbox_dead']}",
            f"bitrix24 paced at {p['calls_per_second']} calls/s: lag p50 {p['lag_p50_ms']} ms, "
            f"p99 {p['lag_p99_ms']} ms ({p['requests_per_second']} requests/s)",
            f"bitrix24: violations {b24['provoked_violations']}, "
            f"highest bucket level {b24['max_bucket_level']} of 50",
        ]
    ring = result["sections"].get("ringing")
    if ring and "error" not in ring:
        new, old = ring["urgent_first"], ring["oldest_first"]
        lines += [
            "",
            f"ringing under a backlog of {ring['backlog_rows']} rows at {ring['rate_per_second']:g}/s "
            f"({ring['rings']} calls ring while it drains), latency queued -> received:",
            f"  urgent first: p50 {new['ringing_latency_p50_ms']} ms, "
            f"max {new['ringing_latency_max_ms']} ms; backlog drained in {new['drain_seconds']} s",
            f"  oldest first: p50 {old['ringing_latency_p50_ms']} ms, "
            f"max {old['ringing_latency_max_ms']} ms; backlog drained in {old['drain_seconds']} s",
            f"  ratio oldest first / urgent first: p50 {ring['ratio_p50_old_vs_new']}x, "
            f"max {ring['ratio_max_old_vs_new']}x",
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="Delivery under vendor limits (docs/performance.md item 3).")
    parser.add_argument(
        "--only",
        default="",
        help="comma list of sections: bitrix24,amocrm,yclients,retailcrm,dynamics,ringing (default: all)",
    )
    parser.add_argument("--calls", type=int, default=240, help="bitrix24: calls in the saturated phase")
    parser.add_argument(
        "--paced-seconds", type=float, default=60.0, help="bitrix24: length of the paced phase"
    )
    parser.add_argument("--speedup", type=float, default=1.5, help="bitrix24: paced rate / busy-hour rate")
    parser.add_argument(
        "--duration",
        type=float,
        default=60.0,
        help="amocrm, yclients, retailcrm, dynamics: their run(duration_hint)",
    )
    parser.add_argument("--ring-backlog", type=int, default=600, help="ringing: rows queued before the rings")
    parser.add_argument("--rings", type=int, default=10, help="ringing: calls that ring while it drains")
    parser.add_argument("--ring-rate", type=float, default=50.0, help="ringing: the connector's requests/s")
    parser.add_argument("--ring-latency", type=float, default=0.02, help="ringing: receiver's answer time, s")
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="folder for the JSON result")
    args = parser.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    sections: dict[str, Callable[[], dict[str, Any] | None]] = {
        "bitrix24": lambda: bitrix24_section(args.calls, args.paced_seconds, args.speedup),
        "amocrm": lambda: amocrm_section(args.duration),
        "yclients": lambda: module_section("yclients", args.duration),
        "retailcrm": lambda: module_section("retailcrm", args.duration),
        "dynamics": lambda: module_section("dynamics", args.duration),
        "ringing": lambda: ringing_section(args.ring_backlog, args.rings, args.ring_rate, args.ring_latency),
    }
    result: dict[str, Any] = {
        "benchmark": "crm_delivery",
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "params": vars(args) | {"out": str(args.out)},
        "sections": {},
    }
    for name, run in sections.items():
        if only and name not in only:
            continue
        try:
            section = run()
        except Exception as exc:  # one failing section must not hide the others' figures
            log(f"{name}: failed: {exc}")
            section = {"error": f"{type(exc).__name__}: {exc}"}
        if section is not None:
            result["sections"][name] = section
    print(report(result))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"crm-delivery-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log(f"result: {path}")
    failed = any("error" in s for s in result["sections"].values())
    violated = any((s.get("provoked_violations") or 0) > 0 for s in result["sections"].values())
    return 1 if failed or violated else 0


if __name__ == "__main__":
    sys.exit(main())
