"""Ingest benchmark (docs/performance.md item 1): signed Mango events accepted and committed per second.

In one run, loaded the same way (closed loop, N connections, keep-alive, a ~620-byte signed
`events/call` form, every request a different event):
  (a) baseline: a bare Flask endpoint that parses the form (bench/bare_flask.py), granian WSGI with
      the same workers x threads as the daemon;
  (b) peer: the `mango-vpbx` npm package's Express receiver (bench/peer/server.js) under node;
  (c) callbridge exactly as `callbridge run` serves it (the real CLI, a fresh SQLite file, key and
      salt set); after the load, the stored raw_events are counted against the 200 answers.
Then a steady, paced 300 events/s run against (c) for the ack latency p50/p99 (and against (a), for the
tail the machine itself gives), then the same paced run again with `--slow` (48) slow clients holding
connections open (three quarters trickle a body, a quarter their headers; each one the server cuts is
replaced at once): its p99 over the plain run's p99 is the slow-client ratio. All of it for each
process layout given (workers x threads, via CALLBRIDGE_HTTP_WORKERS / _THREADS). CPU per request is
split into the main process (for (c) the processor, dispatcher and hub) and the HTTP workers, and for
(c) also given with the fold of the burst's backlog that finishes after the load.

    .venv/bin/python bench/ingest.py [--duration 8] [--connections 16] [--rate 300]

Load generator: wrk (apt-get installed when missing and root), else a Python multi-process one.
Results: a table on stdout and the same as JSON in bench/results/ingest-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _load  # noqa: E402
from _load import LoadResult, Server, SlowClients  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_BIN = Path(sys.executable).parent
PEER_DIR = BENCH / ".peer"
PEER_VERSION = json.loads((BENCH / "peer" / "package.json").read_text())["dependencies"]["mango-vpbx"]
API_KEY = "bench-vpbx-key-0123456789abcdef"
API_SALT = "bench-vpbx-salt-fedcba9876543210"
EVENT_PATH = "/mango/events/call"
DEFAULT_LAYOUT = (2, 4)  # bridge/config/model.py HttpSettings defaults

TARGETS = {
    "vs_baseline": 0.8,  # callbridge >= 0.8 x bare Flask (same server, same layout)
    "vs_peer": 1.3,  # callbridge >= 1.3 x the mango-vpbx peer
    "steady_p99_ms": 20.0,  # ack p99 < 20 ms at a steady 300 events/s
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(cmd: list[str]) -> str | None:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "node": version(["node", "--version"]),
        "wrk": version(["wrk", "--version"]) if shutil.which("wrk") else None,
        "kernel": platform.release(),
    }


def ensure_peer(allow_install: bool) -> tuple[bool, str]:
    pkg = PEER_DIR / "node_modules" / "mango-vpbx" / "package.json"
    if pkg.exists() and json.loads(pkg.read_text()).get("version") == PEER_VERSION:
        return True, f"mango-vpbx@{PEER_VERSION} present"
    if not allow_install or not shutil.which("npm"):
        return False, "mango-vpbx not installed (npm missing or install disabled)"
    PEER_DIR.mkdir(exist_ok=True)
    proc = subprocess.run(
        [
            "npm",
            "install",
            "--prefix",
            str(PEER_DIR),
            "--no-audit",
            "--no-fund",
            f"mango-vpbx@{PEER_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0 or not pkg.exists():
        return False, "npm install failed: " + proc.stderr.strip()[-300:]
    return True, f"mango-vpbx@{PEER_VERSION} installed with npm"


def group_cpu_seconds(pgid: int) -> tuple[float, float]:
    """User+system CPU seconds of the live processes in a process group (from /proc): the group leader
    (for (c) the parent: processor, dispatcher, hub) and the others (the HTTP workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    leader = others = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid:  # field 5 (pgrp); fields[] starts at field 3
            ticks = int(fields[11]) + int(fields[12])
            if int(entry) == pgid:
                leader += ticks
            else:
                others += ticks
    return leader / tick, others / tick


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.wrk: str | None = None
        self.bodies_file = tmp / "bodies.txt"
        self.bodies: list[bytes] = []

    # -- load --------------------------------------------------------------------------------

    def load(self, port: int, *, start: int, duration: float) -> LoadResult:
        if self.wrk:
            return _load.run_wrk(
                self.wrk,
                port,
                EVENT_PATH,
                self.bodies_file,
                start=start,
                duration=duration,
                connections=self.args.connections,
            )
        return _load.run_python(
            port,
            EVENT_PATH,
            self.bodies_file,
            start=start,
            duration=duration,
            connections=self.args.connections,
        )

    def measure(self, server: Server, port: int, *, start: int = 0) -> tuple[LoadResult, LoadResult]:
        """A short warm-up, then the measured closed-loop run (with the server's CPU time)."""
        warm = self.load(port, start=start, duration=self.args.warmup)
        time.sleep(0.3)
        lead0, rest0 = group_cpu_seconds(server.proc.pid)
        res = self.load(port, start=warm.extra["next_index"], duration=self.args.duration)
        lead1, rest1 = group_cpu_seconds(server.proc.pid)
        cpu, lead = lead1 + rest1 - lead0 - rest0, lead1 - lead0
        res.extra["server_cpu_s"] = round(cpu, 2)
        res.extra["server_cpu_ms_per_req"] = round(1000 * cpu / res.requests, 3) if res.requests else None
        # The main process's share: granian's supervisor for (a), the processor & co. for (c).
        res.extra["main_cpu_ms_per_req"] = round(1000 * lead / res.requests, 3) if res.requests else None
        return warm, res

    # -- targets -----------------------------------------------------------------------------

    def baseline(self, workers: int, threads: int) -> dict:
        port = _load.free_port()
        cmd = [sys.executable, str(BENCH / "bare_flask.py"), "--port", str(port)]
        cmd += ["--workers", str(workers), "--threads", str(threads)]
        t0 = time.monotonic()
        server = Server("bare flask", cmd, env=dict(os.environ), cwd=BENCH, log=self.tmp / "bare.log")
        try:
            server.wait_ready(port, "/healthz", want=200)
            t1 = time.monotonic()
            _warm, res = self.measure(server, port)
            # The same paced run as (c)'s: what ack tail this machine gives a server with no work to do.
            steady = self.steady(port, self.bodies)
            t2 = time.monotonic()
        finally:
            server.stop()
        res.extra["phase_s"] = phases(t0, t1, t2, time.monotonic())
        return {"target": "a", "layout": f"{workers}x{threads}", **res.as_dict(), "steady": steady.as_dict()}

    def steady(self, port: int, bodies: list[bytes]) -> LoadResult:
        return _load.run_paced(
            port,
            EVENT_PATH,
            bodies,
            rate=self.args.rate,
            duration=self.args.steady_duration,
            connections=self.args.connections,
        )

    def slow_run(self, port: int, bodies: list[bytes]) -> dict | None:
        """The paced run again while `--slow` connections trickle requests (None when --slow is 0)."""
        count = self.args.slow
        if not count:
            return None
        with SlowClients(port, body=count - count // 4, header=count // 4, reopen=True) as slow:
            if not slow.wait_trickling(2, timeout=10):
                raise RuntimeError("the slow connections could not all be opened")
            res = self.steady(port, bodies)
            cut = slow.cut()
        out = res.as_dict()
        out["slow_connections"] = count
        out["cut_by_server"] = len(cut)
        out["answered_408"] = sum(c.answer.startswith(b"HTTP/1.1 408") for c in cut)
        return out

    def peer(self) -> dict:
        port = _load.free_port()
        env = dict(
            os.environ, PORT=str(port), NODE_PATH=str(PEER_DIR / "node_modules"), NODE_ENV="production"
        )
        server = Server("peer", ["node", str(BENCH / "peer" / "server.js")], env=env, cwd=BENCH,
                        log=self.tmp / "peer.log")  # fmt: skip
        t0 = time.monotonic()
        try:
            server.wait_ready(port, "/healthz", want=200)
            t1 = time.monotonic()
            _warm, res = self.measure(server, port)
            t2 = time.monotonic()
        finally:
            server.stop()
        res.extra["phase_s"] = phases(t0, t1, t2, time.monotonic())
        return {"target": "b", "layout": "node x1", **res.as_dict()}

    def daemon(self, workers: int, threads: int) -> dict:
        """`callbridge run` with a fresh SQLite file; load, steady-rate run, then count what was stored."""
        run_dir = Path(tempfile.mkdtemp(prefix=f"cb-{workers}x{threads}-", dir=self.tmp))
        db = run_dir / "callbridge.db"
        port = _load.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBRIDGE_")}
        env.update(
            CALLBRIDGE_DATABASE_URL=f"sqlite:///{db}",
            CALLBRIDGE_HTTP_HOST="127.0.0.1",
            CALLBRIDGE_HTTP_PORT=str(port),
            CALLBRIDGE_HTTP_WORKERS=str(workers),
            CALLBRIDGE_HTTP_THREADS=str(threads),
            CALLBRIDGE_MANGO_API_KEY=API_KEY,
            CALLBRIDGE_MANGO_API_SALT=API_SALT,
            # The tree under test, also when the venv's editable install is stale.
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        )
        server = Server("callbridge run", [str(VENV_BIN / "callbridge"), "run"], env=env, cwd=run_dir,
                        log=run_dir / "daemon.log")  # fmt: skip
        out: dict = {"target": "c", "layout": f"{workers}x{threads}"}
        t0 = time.monotonic()
        try:
            server.wait_ready(port, "/healthz", timeout=60, want=200)
            t1 = time.monotonic()
            cpu_before = sum(group_cpu_seconds(server.proc.pid))
            warm, res = self.measure(server, port)
            time.sleep(0.5)  # let the requests in flight at wrk's cut-off commit
            stored_load = count_raw(db)
            ok_load = warm.ok + res.ok
            in_flight = warm.in_flight + res.in_flight
            start = res.extra["next_index"]
            # Steady state: let the parent's processor fold the load phase's backlog first (bounded).
            backlog = count_raw(db, unprocessed=True)[1]
            drain_t0 = time.monotonic()
            while backlog and time.monotonic() - drain_t0 < self.args.drain_timeout:
                time.sleep(0.25)
                backlog = count_raw(db, unprocessed=True)[1]
            drain_s = round(time.monotonic() - drain_t0, 2)
            # CPU per request including the fold of the burst's backlog, finished after the load.
            cpu_drained = sum(group_cpu_seconds(server.proc.pid)) - cpu_before
            answered = warm.requests + res.requests
            # The steady, paced run (drained: every request gets its answer, so the count is exact).
            steady = self.steady(port, self.bodies[start:] or self.bodies)
            time.sleep(0.3)
            stored_steady = count_raw(db) - stored_load
            slow = self.slow_run(port, self.bodies[start + steady.sent :] or self.bodies)
            if slow is not None:
                time.sleep(0.3)
                slow["stored"] = count_raw(db) - stored_load - stored_steady
            t2 = time.monotonic()
        finally:
            server.stop()
        res.extra["phase_s"] = phases(t0, t1, t2, time.monotonic())
        stored_final, unprocessed = count_raw(db, unprocessed=True)
        ok_total = ok_load + steady.ok + (slow["ok"] if slow else 0)
        out.update(res.as_dict())
        out["steady"] = steady.as_dict()
        if slow is not None:
            p99, base = slow["p99_ms"], steady.p99_ms
            slow["p99_ratio"] = round(p99 / base, 2) if p99 is not None and base else None
            out["slow"] = slow
        out["steady"]["backlog_before"] = backlog
        out["steady"]["drain_wait_s"] = drain_s
        out["cpu_ms_per_req_with_drain"] = round(1000 * cpu_drained / answered, 3) if answered else None
        out["verify"] = {
            "ok_200_total": ok_total,
            "stored_after_stop": stored_final,
            "unprocessed_after_stop": unprocessed,
            "load_phase": {"ok_200": ok_load, "stored": stored_load, "in_flight_at_cutoff": in_flight},
            "steady_phase": {"ok_200": steady.ok, "stored": stored_steady},
            # Closed-loop phases: requests in flight when the generator stopped may be stored unanswered.
            "load_phase_ok": ok_load <= stored_load <= ok_load + in_flight,
            "steady_phase_exact": stored_steady == steady.ok
            and (slow is None or slow["stored"] == slow["ok"]),
            "final_ok": ok_total <= stored_final <= ok_total + in_flight and not res.wrapped,
        }
        return out


def phases(t0: float, t1: float, t2: float, t3: float) -> dict:
    """Wall seconds spent starting the server, loading it, and stopping it."""
    return {"start": round(t1 - t0, 1), "load": round(t2 - t1, 1), "stop": round(t3 - t2, 1)}


def count_raw(db: Path, unprocessed: bool = False):
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        total = conn.execute("SELECT count(*) FROM raw_events").fetchone()[0]
        if not unprocessed:
            return total
        pending = conn.execute("SELECT count(*) FROM raw_events WHERE processed_at IS NULL").fetchone()[0]
        return total, pending
    finally:
        conn.close()


def parse_layouts(text: str) -> list[tuple[int, int]]:
    layouts = []
    for part in text.split(","):
        w, _, t = part.strip().lower().partition("x")
        layouts.append((int(w), int(t)))
    return layouts


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(result: dict) -> str:
    lines = []
    gen = result["generator"]
    lines.append(
        f"ingest benchmark - {result['machine']['nproc']} cores, {result['machine']['cpu_model']}; "
        f"generator: {gen}; {result['params']['connections']} connections, {result['params']['duration']} s "
        f"per run; form {result['params']['body_bytes']:.0f} bytes"
    )
    head = (
        f"{'target':<40} {'layout':>8} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'non200':>6} "
        f"{'cpu ms/req':>10} {'(main)':>7}"
    )
    lines.append(
        f"load average before the run: {result.get('loadavg_before')} "
        "(other work on the machine skews figures)"
    )
    lines.append(head)
    lines.append("-" * len(head))
    names = {
        "a": "(a) bare Flask parse-only, granian",
        "b": f"(b) peer mango-vpbx@{PEER_VERSION} Express",
        "c": "(c) callbridge run (SQLite, signed)",
    }
    for row in result["runs"]:
        if "error" in row:
            lines.append(f"{names[row['target']]:<40} {row['layout']:>8}  FAILED: {row['error'][:60]}")
            continue
        lines.append(
            f"{names[row['target']]:<40} {row['layout']:>8} {row['ok_per_s']:>8.0f} "
            f"{fmt(row['p50_ms'], 2):>7} {fmt(row['p99_ms'], 2):>7} {row['non_200'] + row['errors']:>6} "
            f"{fmt(row.get('server_cpu_ms_per_req'), 3):>10} {fmt(row.get('main_cpu_ms_per_req'), 3):>7}"
        )
    lines.append("")
    lines.append(f"steady {result['params']['rate']:.0f} events/s, paced, latency from scheduled send:")
    for row in result["runs"]:
        if row["target"] == "a" and "steady" in row:
            s = row["steady"]
            lines.append(
                f"  {row['layout']:>5} (a), for reference: achieved {s['ok_per_s']:.0f}/s, "
                f"ack p50 {fmt(s['p50_ms'], 2)} ms, p99 {fmt(s['p99_ms'], 2)} ms, "
                f"max {fmt(s['max_ms'], 1)} ms"
            )
    for row in result["runs"]:
        if row["target"] == "c" and "steady" in row:
            s, v = row["steady"], row["verify"]
            lines.append(
                f"  {row['layout']:>5}: achieved {s['ok_per_s']:.0f}/s, ack p50 {fmt(s['p50_ms'], 2)} ms, "
                f"p99 {fmt(s['p99_ms'], 2)} ms, max {fmt(s['max_ms'], 1)} ms; "
                f"stored {v['stored_after_stop']} for {v['ok_200_total']} answers 200 "
                f"(+{v['load_phase']['in_flight_at_cutoff']} in flight at cut-off) -> "
                f"{'OK' if v['final_ok'] and v['steady_phase_exact'] else 'MISMATCH'}; "
                f"waited {s['drain_wait_s']:.1f} s for the processor's backlog first"
                + (f" ({s['backlog_before']} still unprocessed)" if s["backlog_before"] else "")
                + f"; cpu ms/req with that fold {fmt(row.get('cpu_ms_per_req_with_drain'), 3)}"
            )
            if "slow" in row:
                w = row["slow"]
                lines.append(
                    f"  {row['layout']:>5}: the same with {w['slow_connections']} slow connections open: "
                    f"achieved {w['ok_per_s']:.0f}/s, ack p50 {fmt(w['p50_ms'], 2)} ms, "
                    f"p99 {fmt(w['p99_ms'], 2)} ms, max {fmt(w['max_ms'], 1)} ms; "
                    f"p99 ratio to the plain run {w['p99_ratio']}; non-200 {w['non_200'] + w['errors']}; "
                    f"{w['cut_by_server']} slow connections cut by the server ({w['answered_408']} with 408)"
                )
    lines.append("")
    for name, r in result["ratios"].items():
        lines.append(f"  {name}: {r}")
    lines.append("")
    for name, t in result["targets"].items():
        lines.append(
            f"  target {name}: {t['measured']} (want {t['want']}) -> {'MET' if t['met'] else 'MISSED'}"
        )
    if result.get("best_layout"):
        lines.append(f"  best layout for (c): {result['best_layout']}")
    return "\n".join(lines)


def summarise(result: dict) -> None:
    runs = [r for r in result["runs"] if "error" not in r]
    base = {r["layout"]: r for r in runs if r["target"] == "a"}
    peer = next((r for r in runs if r["target"] == "b"), None)
    ours = {r["layout"]: r for r in runs if r["target"] == "c"}
    ratios = {}
    for layout, row in ours.items():
        if layout in base:
            ratios[f"(c)/(a) {layout}"] = round(row["ok_per_s"] / base[layout]["ok_per_s"], 3)
        if peer:
            ratios[f"(c)/(b) {layout}"] = round(row["ok_per_s"] / peer["ok_per_s"], 3)
    result["ratios"] = ratios
    default = f"{DEFAULT_LAYOUT[0]}x{DEFAULT_LAYOUT[1]}"
    key = default if default in ours else next(iter(ours), None)
    targets = {}
    if key:
        row = ours[key]
        if key in base:
            r = ratios[f"(c)/(a) {key}"]
            targets["(c)/(a) >= 0.8"] = {"layout": key, "measured": r, "want": ">= 0.8", "met": r >= 0.8}
        if peer:
            r = ratios[f"(c)/(b) {key}"]
            targets["(c)/(b) >= 1.3"] = {"layout": key, "measured": r, "want": ">= 1.3", "met": r >= 1.3}
        p99 = row["steady"]["p99_ms"]
        targets["steady ack p99 < 20 ms"] = {
            "layout": key,
            "measured": None if p99 is None else round(p99, 2),
            "want": "< 20 ms",
            "met": p99 is not None and p99 < TARGETS["steady_p99_ms"],
        }
        targets["stored == 200 answers"] = {
            "layout": "all",
            "measured": all(
                r["verify"]["final_ok"] and r["verify"]["steady_phase_exact"] for r in ours.values()
            ),
            "want": True,
            "met": all(r["verify"]["final_ok"] and r["verify"]["steady_phase_exact"] for r in ours.values()),
        }
    result["targets"] = targets
    if ours:
        best = max(ours.values(), key=lambda r: r["ok_per_s"])
        d = ours.get(default)
        gain = f" ({best['ok_per_s'] / d['ok_per_s'] - 1:+.0%} vs the default {default})" if d else ""
        result["best_layout"] = f"{best['layout']} at {best['ok_per_s']:.0f} req/s{gain}"


def main() -> int:
    parser = argparse.ArgumentParser(description="Ingest benchmark (docs/performance.md item 1).")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measured run (default 8)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument(
        "--rate", type=float, default=300.0, help="steady-run events/s against (c) (default 300)"
    )
    parser.add_argument(
        "--steady-duration", type=float, default=None, help="steady run seconds (= --duration)"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="warm-up seconds before each run (default 1)"
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=60.0, help="max seconds to wait for the processor's backlog"
    )
    parser.add_argument("--layouts", default="2x4,2x8,1x8", help="callbridge workers x threads to try")
    parser.add_argument(
        "--slow", type=int, default=48, help="slow connections during the second paced run (0: skip it)"
    )
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument(
        "--no-install", action="store_true", help="do not apt-get wrk or npm-install the peer"
    )
    parser.add_argument("--skip", default="", help="comma list of targets to skip: a,b,c")
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="folder for the JSON result")
    args = parser.parse_args()
    args.steady_duration = args.steady_duration or args.duration
    layouts = parse_layouts(args.layouts)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    tmp = Path(tempfile.mkdtemp(prefix="callbridge-bench-"))
    bench = Bench(args, tmp)
    if args.generator != "python":
        bench.wrk, note = _load.ensure_wrk(allow_install=not args.no_install)
        if args.generator == "wrk" and not bench.wrk:
            log(f"wrk required but unavailable: {note}")
            return 2
    else:
        note = "python generator forced"
    generator = "wrk (bench/ingest.lua)" if bench.wrk else "python multi-process (fallback)"
    log(f"load generator: {generator} - {note}")

    peer_ok, peer_note = (False, "skipped") if "b" in skip else ensure_peer(not args.no_install)
    log(f"peer: {peer_note}")

    # Enough distinct bodies for a daemon's warm-up + load + steady run without repeating one.
    per_s = 9000 if bench.wrk else 6000
    paced = int(args.rate * args.steady_duration) * (2 if args.slow else 1)
    count = int(per_s * (args.duration + args.warmup + 1)) + paced + 1000
    t0 = time.perf_counter()
    body_bytes = _load.write_bodies(bench.bodies_file, count, API_KEY, API_SALT)
    bench.bodies = _load.read_bodies(bench.bodies_file)
    log(
        f"signed {count} distinct events/call forms ({body_bytes:.0f} bytes mean) "
        f"in {time.perf_counter() - t0:.1f}s"
    )

    result: dict = {
        "benchmark": "ingest",
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "generator": generator,
        "params": {
            "duration": args.duration,
            "warmup": args.warmup,
            "connections": args.connections,
            "rate": args.rate,
            "steady_duration": args.steady_duration,
            "slow": args.slow,
            "body_bytes": body_bytes,
            "layouts": [f"{w}x{t}" for w, t in layouts],
        },
        "runs": [],
    }
    started = time.monotonic()

    def attempt(label: str, target: str, layout: str, fn, *fn_args) -> None:
        log(f"{label} ...")
        try:
            row = fn(*fn_args)
        except Exception as exc:  # report and go on with the other targets
            log(f"{label} FAILED: {exc}")
            result["runs"].append({"target": target, "layout": layout, "error": str(exc)})
            return
        extra = ""
        if target == "c":
            s = row["steady"]
            v = row["verify"]
            extra = (
                f"; steady {s['ok_per_s']:.0f}/s p99 {fmt(s['p99_ms'], 2)} ms; stored "
                f"{v['stored_after_stop']} for {v['ok_200_total']} answers 200 "
                f"({'OK' if v['final_ok'] and v['steady_phase_exact'] else 'MISMATCH'})"
            )
        log(
            f"{label}: {row['ok_per_s']:.0f} req/s, p50 {fmt(row['p50_ms'], 2)} ms, "
            f"p99 {fmt(row['p99_ms'], 2)} ms, non-200 {row['non_200']}, errors {row['errors']}{extra}; "
            f"phases {row.get('phase_s')}"
        )
        row["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        result["runs"].append(row)

    result["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
    if result["loadavg_before"][0] > 0.7:
        log(f"warning: the machine is busy (load average {result['loadavg_before']}); figures will be noisy")
    try:
        for workers, threads in layouts:
            layout = f"{workers}x{threads}"
            if "a" not in skip:
                attempt(f"(a) bare Flask {layout}", "a", layout, bench.baseline, workers, threads)
            if "c" not in skip:
                attempt(f"(c) callbridge run {layout}", "c", layout, bench.daemon, workers, threads)
        if peer_ok:
            attempt("(b) peer mango-vpbx", "b", "node x1", bench.peer)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    summarise(result)

    text = report(result)
    print()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"ingest-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
          f"(bench took {result['elapsed_s']:.0f} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
