"""Popup latency benchmark (docs/performance.md items 2 and 4).

1,000 WebSocket clients are connected (one per extension 1000-1999, an employee token each); signed Mango
webhooks are posted at a steady rate (default 300 events/s) as interleaved answered calls, each ringing
one of those extensions from a number the demo CRM knows. Measured, per run:

  * frame: from the start of the POST of the `Appeared` event to the `call.ringing` frame at the ringing
    employee's client (p50/p99);
  * card: from the same moment to the complete caller card at that client (in `call.ringing` itself, or
    in the `call.card` that follows it), with the demo CRM answering every lookup in 150 ms;
  * resident memory of the daemon with the 1,000 clients connected (the hub's process, and the whole
    process group with the HTTP workers).

Runs, all in one invocation and on one machine:
  baseline   bench/bare_ws.py: a bare `websockets` server behind a minimal HTTP endpoint that sends one
             frame per ringing webhook (no signature check, no store, no tracker, no lookup)
  instant    callbridge, lookup deadline 0 (the ringing goes out at once, the card follows as call.card)
  held       callbridge, default lookup deadline 700 ms (the ringing waits for the card)
  no-wakeup  as `instant`, but the HTTP workers do not wake the processor (it polls every 20 ms)

    .venv/bin/python bench/popup_latency.py [--duration 20] [--rate 300] [--clients 1000] [--preload 10000]

`--preload N` stores N finished calls first (performance.md item 4: memory with 10,000 calls stored).
Results: a table on stdout and JSON in bench/results/popup-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing as mp
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.pbx.mango import scenarios  # noqa: E402
from bridge.pbx.mango.signing import signed_form  # noqa: E402

BENCH = ROOT / "bench"
VENV_BIN = Path(sys.executable).parent
API_KEY = "bench-vpbx-key-0123456789abcdef"
API_SALT = "bench-vpbx-salt-fedcba9876543210"
SECRET = "bench-realtime-secret-0123456789abcdef"
FIRST_EXTENSION = 1000
CRM_DELAY_MS = 150
CALL_GAP = 0.15  # seconds between the events of one call
TARGETS = {"frame_p99_ms": 25.0, "card_p99_ms": 400.0, "rss_mb": 150.0}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def customer(i: int) -> str:
    return f"7916{i:07d}"


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def group_rss_kb(pgid: int) -> int:
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) == pgid:
                total += rss_kb(int(entry.name))
        except (ProcessLookupError, PermissionError):
            continue
    return total


# ---------------------------------------------------------------------------------------------- clients


def _client_process(urls: list[str], ready: mp.Event, stop: mp.Event, out: mp.Queue) -> None:  # type: ignore[valid-type]
    from websockets.asyncio.client import connect

    records: list[tuple[str, str | None, float, bool | None]] = []

    async def one(url: str) -> None:
        while not stop.is_set():
            try:
                async with connect(url, compression=None, open_timeout=30, max_queue=None) as ws:
                    async for raw in ws:
                        now = time.monotonic()
                        message = json.loads(raw)
                        kind = message.get("type")
                        if kind in ("call.ringing", "call.card"):
                            card = message.get("card")
                            complete = bool(card and card.get("complete") and card.get("found"))
                            records.append((kind, message.get("entry_id"), now, complete))
                    return
            except Exception:  # noqa: BLE001 - reconnect, as a page would
                await asyncio.sleep(0.5)

    async def main() -> None:
        tasks = []
        for i, url in enumerate(urls):
            tasks.append(asyncio.create_task(one(url)))
            if i % 100 == 99:
                await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    out.put(records)


class Clients:
    def __init__(self, urls: list[str]) -> None:
        ctx = mp.get_context("spawn")
        self.ready, self.stop_event, self.out = ctx.Event(), ctx.Event(), ctx.Queue()
        self.process = ctx.Process(target=_client_process, args=(urls, self.ready, self.stop_event, self.out))
        self.process.start()
        if not self.ready.wait(120):
            raise RuntimeError("clients did not connect")

    def finish(self) -> list[tuple[str, str | None, float, bool | None]]:
        self.stop_event.set()
        records = self.out.get(timeout=60)
        self.process.join(10)
        return records


# ---------------------------------------------------------------------------------------------- load


def build_plan(
    duration: float, rate: float, clients: int, offset: int
) -> list[tuple[float, str, dict, bool]]:
    """(due, path, payload, is_ringing) sorted by due time: calls start evenly, events CALL_GAP apart."""
    sample = scenarios.build("incoming_answered", seed=0, extensions=("1000",))
    per_call = len(sample.notifications)
    calls = max(1, int(duration * rate / per_call))
    plan = []
    for i in range(calls):
        start = i * per_call / rate
        ext = str(FIRST_EXTENSION + (i % clients))
        call = scenarios.build(
            "incoming_answered", seed=offset + i, extensions=(ext,), customer=customer(offset + i)
        )
        for k, note in enumerate(call.notifications):
            ringing = (
                note.path == "events/call"
                and note.payload.get("call_state") == "Appeared"
                and note.payload.get("location") == "abonent"
            )
            plan.append((start + k * CALL_GAP, note.path, note.payload, ringing))
    plan.sort(key=lambda item: item[0])
    return plan


def send_plan(base_url: str, plan: list[tuple[float, str, dict, bool]], senders: int = 8) -> dict[str, float]:
    """Post every event at its due time; returns the send moment of each ringing event by entry id."""
    work: queue.Queue = queue.Queue()
    sent: dict[str, float] = {}
    errors = [0]
    acks: list[float] = []
    lock = threading.Lock()
    t0 = time.monotonic() + 0.5

    def worker() -> None:
        session = requests.Session()
        while True:
            item = work.get()
            if item is None:
                return
            due, path, payload, ringing = item
            wait = t0 + due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            form = signed_form(API_KEY, API_SALT, payload)
            started = time.monotonic()
            try:
                response = session.post(f"{base_url}/{path}", data=form, timeout=10)
                ok = response.status_code == 200
            except requests.RequestException:
                ok = False
            with lock:
                if not ok:
                    errors[0] += 1
                if ringing:
                    sent[payload["entry_id"]] = started
                    acks.append((time.monotonic() - started) * 1000)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for item in plan:
        work.put(item)
    for _ in threads:
        work.put(None)
    for thread in threads:
        thread.join()
    if errors[0]:
        log(f"  {errors[0]} webhooks were not answered 200")
    log(f"  webhook ack p50 {fmt(pct(acks, 0.5))} ms p99 {fmt(pct(acks, 0.99))} ms")
    return sent


# ---------------------------------------------------------------------------------------------- servers


class Process:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.log_path = log_path
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_http(self, url: str, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                requests.get(url, timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def contacts_toml(numbers: list[str]) -> str:
    lines = ["[connectors.demo.contacts]"]
    for i, number in enumerate(numbers):
        lines.append(f'"{number}" = "Customer {i}"')
    return "\n".join(lines)


def start_callbridge(
    workdir: Path, db_url: str, deadline_ms: int, numbers: list[str], wakeup: bool
) -> tuple[Process, int, int]:
    http_port, ws_port = free_port(), free_port()
    config = workdir / f"callbridge-{http_port}.toml"
    config.write_text(
        f"""
[mango]
api_key = "{API_KEY}"
api_salt = "{API_SALT}"
[http]
port = {http_port}
[ws]
port = {ws_port}
heartbeat_seconds = 25
max_clients = 5000
[database]
url = "{db_url}"
[security]
secret_key = "{SECRET}"
[lookup]
deadline_ms = {deadline_ms}
[log]
level = "WARNING"
[connectors.demo]
delay_ms = {CRM_DELAY_MS}
{contacts_toml(numbers)}
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBRIDGE_")}
    env["CALLBRIDGE_CONFIG"] = str(config)
    if not wakeup:
        env["_CALLBRIDGE_NO_WAKEUP"] = "1"
    process = Process(
        [str(VENV_BIN / "callbridge"), "run"], env, workdir, workdir / f"daemon-{http_port}.log"
    )
    process.wait_http(f"http://127.0.0.1:{http_port}/healthz")
    return process, http_port, ws_port


def preload(db_url: str, calls: int) -> float:
    """Store `calls` finished calls through the real ingest and processor code, before the daemon starts."""
    from bridge.pbx.mango.parse import dedup_key, entry_id_of, parse
    from bridge.processing.processor import EventProcessor
    from bridge.store.engine import make_engine
    from bridge.store.migrate import upgrade
    from bridge.store.raw_events import RawRecord, insert_raw_events

    started = time.time()
    engine = make_engine(db_url)
    upgrade(engine)
    batch: list[RawRecord] = []
    processor = EventProcessor(engine, {}, batch_size=2000)
    for i in range(calls):
        call = scenarios.build(
            "incoming_answered", seed=500_000 + i, extensions=(str(FIRST_EXTENSION + i % 1000),)
        )
        for note in call.notifications:
            text = json.dumps(note.payload, separators=(",", ":"))
            event = parse(note.path, note.payload)
            batch.append(
                RawRecord(note.path, dedup_key(note.path, event, text), entry_id_of(event), text, started)
            )
        if len(batch) >= 5000 or i == calls - 1:
            with engine.begin() as conn:
                insert_raw_events(conn, batch)
            batch = []
            while processor.run_once():
                pass
    engine.dispose()
    return time.time() - started


# ---------------------------------------------------------------------------------------------- runs


def measure(
    name: str,
    base_url: str,
    urls: list[str],
    plan: list[tuple[float, str, dict, bool]],
    pid: int | None,
    pgid: int | None,
) -> dict:
    clients = Clients(urls)
    time.sleep(1.0)
    rss_idle = (rss_kb(pid) if pid else 0, group_rss_kb(pgid) if pgid else 0)
    log(
        f"  {name}: {len(urls)} clients connected; hub RSS {rss_idle[0] / 1024:.0f} MB; "
        f"sending {len(plan)} events"
    )
    started = time.monotonic()
    sent = send_plan(base_url, plan)
    elapsed = time.monotonic() - started
    time.sleep(2.0)
    rss_loaded = (rss_kb(pid) if pid else 0, group_rss_kb(pgid) if pgid else 0)
    records = clients.finish()
    frames: dict[str, float] = {}
    cards: dict[str, float] = {}
    for kind, entry_id, at, complete in records:
        if entry_id is None:
            continue
        if kind == "call.ringing":
            frames.setdefault(entry_id, at)
        if complete:
            cards.setdefault(entry_id, at)
    frame_ms = [(frames[e] - t) * 1000 for e, t in sent.items() if e in frames]
    card_ms = [(cards[e] - t) * 1000 for e, t in sent.items() if e in cards]
    result = {
        "name": name,
        "loadavg_1m": os.getloadavg()[0],
        "events": len(plan),
        "rate": len(plan) / elapsed if elapsed else 0,
        "ringing_sent": len(sent),
        "frames": len(frame_ms),
        "frame_p50_ms": pct(frame_ms, 0.5),
        "frame_p99_ms": pct(frame_ms, 0.99),
        "frame_mean_ms": statistics.fmean(frame_ms) if frame_ms else None,
        "cards": len(card_ms),
        "card_p50_ms": pct(card_ms, 0.5),
        "card_p99_ms": pct(card_ms, 0.99),
        "hub_rss_mb": rss_loaded[0] / 1024,
        "group_rss_mb": rss_loaded[1] / 1024,
        "hub_rss_idle_mb": rss_idle[0] / 1024,
    }
    log(
        f"  {name}: frames {result['frames']}/{len(sent)} p50 {fmt(result['frame_p50_ms'])} ms "
        f"p99 {fmt(result['frame_p99_ms'])} ms; cards {result['cards']} p50 {fmt(result['card_p50_ms'])} ms "
        f"p99 {fmt(result['card_p99_ms'])} ms; "
        f"RSS hub {result['hub_rss_mb']:.0f} MB, all {result['group_rss_mb']:.0f} MB"
    )
    return result


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}x"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per run")
    parser.add_argument("--rate", type=float, default=300.0, help="webhooks per second")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--preload", type=int, default=0, help="finished calls stored before the runs")
    parser.add_argument("--runs", default="baseline,instant,held,no-wakeup")
    args = parser.parse_args()
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="popup-bench-"))
    log(f"workdir {workdir}")

    from bridge.realtime.auth import TokenSigner

    signer = TokenSigner(SECRET)
    extensions = [str(FIRST_EXTENSION + i) for i in range(args.clients)]
    tokens = [signer.issue_employee(ext, 3600) for ext in extensions]
    results: list[dict] = []
    preload_seconds = None
    for index, run in enumerate(runs):
        offset = (index + 1) * 100_000
        plan = build_plan(args.duration, args.rate, args.clients, offset)
        numbers = sorted({customer(offset + i) for i in range(len(plan))})
        if run == "baseline":
            http_port, ws_port = free_port(), free_port()
            server = Process(
                [sys.executable, str(BENCH / "bare_ws.py"), str(http_port), str(ws_port)],
                dict(os.environ),
                ROOT,
                workdir / "bare.log",
            )
            try:
                server.wait_http(f"http://127.0.0.1:{http_port}/")
                urls = [f"ws://127.0.0.1:{ws_port}/ws?ext={ext}" for ext in extensions]
                results.append(
                    measure(
                        run,
                        f"http://127.0.0.1:{http_port}/mango",
                        urls,
                        plan,
                        server.proc.pid,
                        server.proc.pid,
                    )
                )
            finally:
                server.stop()
            continue
        db_file = workdir / f"{run}.db"
        if args.preload:
            template = workdir / "preloaded.db"
            if not template.exists():
                log(f"  storing {args.preload} calls first")
                preload_seconds = preload(f"sqlite:///{template}", args.preload)
            shutil.copyfile(template, db_file)
        db_url = f"sqlite:///{db_file}"
        deadline = 700 if run == "held" else 0
        process, http_port, ws_port = start_callbridge(
            workdir, db_url, deadline, numbers, wakeup=run != "no-wakeup"
        )
        try:
            urls = [f"ws://127.0.0.1:{ws_port}/ws?token={token}" for token in tokens]
            result = measure(
                run, f"http://127.0.0.1:{http_port}/mango", urls, plan, process.proc.pid, process.proc.pid
            )
            result["lookup_deadline_ms"] = deadline
            results.append(result)
        finally:
            process.stop()

    by_name = {r["name"]: r for r in results}
    base = by_name.get("baseline")
    print()
    print(
        f"popup latency: {args.clients} clients, {args.rate:.0f} events/s for {args.duration:.0f} s, "
        f"CRM {CRM_DELAY_MS} ms"
    )
    print(
        f"{'run':10} {'frame p50':>10} {'frame p99':>10} {'card p50':>9} {'card p99':>9} "
        f"{'hub RSS':>8} {'all RSS':>8}  vs baseline (p50 / p99)"
    )
    for r in results:
        vs = ""
        if base and r is not base:
            p50 = ratio(r["frame_p50_ms"], base["frame_p50_ms"])
            vs = f"{p50} / {ratio(r['frame_p99_ms'], base['frame_p99_ms'])}"
        print(
            f"{r['name']:10} {fmt(r['frame_p50_ms']):>10} {fmt(r['frame_p99_ms']):>10} "
            f"{fmt(r['card_p50_ms']):>9} {fmt(r['card_p99_ms']):>9} "
            f"{r['hub_rss_mb']:>7.0f}M {r['group_rss_mb']:>7.0f}M  {vs}"
        )
    instant = by_name.get("instant")
    if instant and base:
        floor = (base["frame_p99_ms"] or 0) + CRM_DELAY_MS
        print(
            f"card p99 vs (baseline frame p99 + CRM {CRM_DELAY_MS} ms): "
            f"{ratio(instant['card_p99_ms'], floor)}"
        )
        print(f"hub RSS vs bare websockets server RSS: {ratio(instant['hub_rss_mb'], base['hub_rss_mb'])}")
    if instant and by_name.get("no-wakeup"):
        nw = by_name["no-wakeup"]
        print(
            f"wake-up: frame p50 {fmt(nw['frame_p50_ms'])} -> {fmt(instant['frame_p50_ms'])} ms, "
            f"p99 {fmt(nw['frame_p99_ms'])} -> {fmt(instant['frame_p99_ms'])} ms"
        )
    out = BENCH / "results" / f"popup-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "args": vars(args),
                "targets": TARGETS,
                "crm_delay_ms": CRM_DELAY_MS,
                "preload_seconds": preload_seconds,
                "cpus": os.cpu_count(),
                "results": results,
            },
            indent=2,
        )
    )
    print(f"results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
