"""Load-generation helpers for the benchmarks: signed Mango bodies, wrk, a Python fallback, servers.

Everything here talks to 127.0.0.1 only, and every load loop is bounded in time.

Two generators, each reporting the same `LoadResult`:
- `run_wrk`: wrk (Debian package) with `bench/ingest.lua`, which rotates through a file of pre-signed
  bodies so that each request carries a different event. wrk stops at its deadline without waiting
  for the requests still in flight; the Lua script counts the requests it sent so the caller knows how
  many were in flight at the cut-off.
- `run_python`: a closed-loop generator of our own (one process per core, keep-alive connections,
  `selectors`), used when wrk is missing. It drains its in-flight requests before returning.
`run_paced` is an open-loop generator at a fixed rate: latency is measured from each request's
scheduled send time (so a stalled server cannot hide its queueing), and it drains before returning.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import multiprocessing
import os
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from array import array
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
LUA_SCRIPT = BENCH_DIR / "ingest.lua"
FORM_TYPE = "application/x-www-form-urlencoded"


# --- signed Mango bodies -------------------------------------------------------------------------


def sign(api_key: str, json_text: str, api_salt: str) -> str:
    """mango.md §1: lowercase hex sha256 over key + json + salt (independent of the code under test)."""
    return hashlib.sha256(f"{api_key}{json_text}{api_salt}".encode()).hexdigest()


def call_event(index: int, tag: int = 0) -> dict:
    """A realistic `/events/call` payload (shape of the real one in mango.md §2.1), unique per index."""
    entry = base64.b64encode(f"{16173966491 + tag * 10_000_000 + index // 4}".encode()).decode()
    call = base64.b64encode(f"1:10086277:{502 + tag}:{644243539 + index}".encode()).decode()
    state = ("Appeared", "Connected", "OnHold", "Disconnected")[index % 4]
    event = {
        "entry_id": entry,
        "call_id": call,
        "timestamp": 1670060542 + index // 100,
        "seq": 1 + index % 4,
        "call_state": state,
        "location": "abonent",
        "from": {"number": "79607164646"},
        "to": {
            "extension": "222",
            "number": "79776307393",
            "line_number": "sip:roistat-0758@vpbx400076322.mangosip.ru",
            "acd_group": "999",
        },
        "dct": {"type": 0},
    }
    if state == "Disconnected":
        event["disconnect_reason"] = 1110
    return event


def signed_body(api_key: str, api_salt: str, payload: dict) -> bytes:
    """The url-encoded three-field form exactly as Mango posts it."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    form = {"vpbx_api_key": api_key, "sign": sign(api_key, text, api_salt), "json": text}
    return urllib.parse.urlencode(form).encode()


def write_bodies(path: Path, count: int, api_key: str, api_salt: str, tag: int = 0) -> float:
    """Write `count` distinct signed bodies, one per line; return their mean size in bytes."""
    total = 0
    with path.open("wb") as out:
        for index in range(count):
            body = signed_body(api_key, api_salt, call_event(index, tag))
            total += len(body)
            out.write(body + b"\n")
    return total / max(count, 1)


def read_bodies(path: Path) -> list[bytes]:
    with path.open("rb") as src:
        return [line.rstrip(b"\n") for line in src]


def http_request(port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: {FORM_TYPE}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# --- results -------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    """What one load phase measured. Latencies in milliseconds."""

    generator: str
    duration_s: float
    requests: int  # answers received
    ok: int  # answers with status 200
    non_200: int
    errors: int  # socket errors and timeouts
    sent: int  # requests written (sent - requests - errors = in flight at the cut-off)
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    target_rate: float | None = None
    wrapped: bool = False  # the body file was exhausted and bodies repeated
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0

    @property
    def in_flight(self) -> int:
        return max(0, self.sent - self.requests - self.errors)

    def as_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "extra"}
        out.update(self.extra)
        out["ok_per_s"] = round(self.rate, 1)
        out["in_flight_at_cutoff"] = self.in_flight
        return out


def _percentiles(samples_ns: array) -> tuple[float | None, float | None, float | None]:
    if not samples_ns:
        return None, None, None
    ordered = sorted(samples_ns)
    n = len(ordered)

    def pick(q: float) -> float:
        return ordered[min(n - 1, int(q * n))] / 1e6

    return pick(0.50), pick(0.99), ordered[-1] / 1e6


# --- wrk -----------------------------------------------------------------------------------------


def ensure_wrk(allow_install: bool) -> tuple[str | None, str]:
    """Return (path to wrk or None, a note on how it was found)."""
    found = shutil.which("wrk")
    if found:
        return found, "wrk found on PATH"
    if not allow_install:
        return None, "wrk not installed (install disabled)"
    if os.geteuid() != 0:
        return None, "wrk not installed and not root (cannot apt-get install)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for attempt in (["apt-get", "install", "-y", "-q", "wrk"], ["apt-get", "update", "-q"]):
        try:
            subprocess.run(attempt, env=env, capture_output=True, timeout=180, check=False)
        except (OSError, subprocess.TimeoutExpired):
            break
        found = shutil.which("wrk")
        if found:
            return found, "wrk installed with apt-get"
    # After an `apt-get update`, try the install once more.
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"], env=env, capture_output=True, timeout=180, check=False
        )
    found = shutil.which("wrk")
    return (found, "wrk installed with apt-get") if found else (None, "apt-get install wrk failed")


def run_wrk(
    wrk: str,
    port: int,
    path: str,
    bodies_file: Path,
    *,
    start: int,
    duration: float,
    connections: int,
    threads: int = 2,
) -> LoadResult:
    """One closed-loop wrk run; each request takes the next body of the file (per-thread stride)."""
    threads = max(1, min(threads, connections))
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_SCRIPT),
        f"http://{HOST}:{port}{path}",
        "--",
        str(bodies_file),
        str(start),
        str(threads),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    data = json.loads(line[len("WRKJSON ") :])
    errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    ok = data["requests"] - data["status"]
    return LoadResult(
        generator="wrk",
        duration_s=data["duration_us"] / 1e6,
        requests=data["requests"],
        ok=ok,
        non_200=data["status"],
        errors=errors,
        sent=data["sent"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        wrapped=bool(data["wrapped"]),
        extra={"next_index": start + data["max_thread_sent"] * threads + threads},
    )


# --- a Python closed-loop generator (the fallback) -----------------------------------------------


class _Conn:
    __slots__ = ("sock", "buf", "t0", "busy")

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.t0 = 0
        self.busy = False


def _parse_response(buf: bytes) -> tuple[int, int, bool] | None:
    """(status, bytes consumed, close) if `buf` holds a whole response, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, chunked, close = 0, False, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    if chunked:
        tail = buf.find(b"0\r\n\r\n", end + 4)
        return None if tail < 0 else (status, tail + 5, close)
    total = end + 4 + length
    return None if len(buf) < total else (status, total, close)


def _closed_loop_worker(
    port: int, path: str, bodies_file: str, start: int, stride: int, conns: int, duration: float, out
) -> None:
    bodies = read_bodies(Path(bodies_file))
    n = len(bodies)
    index = start
    sent = requests = ok = errors = 0
    wrapped = False
    lat = array("q")
    sel = selectors.DefaultSelector()
    live: list[_Conn] = []

    def fire(conn: _Conn) -> None:
        nonlocal index, sent, wrapped
        if index >= n:
            wrapped = True
        conn.sock.sendall(http_request(port, path, bodies[index % n]))
        index += stride
        sent += 1
        conn.t0 = time.perf_counter_ns()
        conn.busy = True

    t_start = time.perf_counter()
    deadline = t_start + duration
    for _ in range(conns):
        conn = _Conn(port)
        live.append(conn)
        sel.register(conn.sock, selectors.EVENT_READ, conn)
        fire(conn)
    drain_until = deadline + 10.0
    while True:
        now = time.perf_counter()
        busy = sum(1 for c in live if c.busy)
        if (now >= deadline and busy == 0) or now >= drain_until:
            break
        for key, _ in sel.select(timeout=0.2):
            conn = key.data
            try:
                chunk = conn.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                errors += conn.busy
                conn.busy = False
                sel.unregister(conn.sock)
                conn.sock.close()
                live.remove(conn)
                if time.perf_counter() < deadline:
                    fresh = _Conn(port)
                    live.append(fresh)
                    sel.register(fresh.sock, selectors.EVENT_READ, fresh)
                    fire(fresh)
                continue
            conn.buf += chunk
            parsed = _parse_response(conn.buf)
            if parsed is None:
                continue
            status, used, close = parsed
            conn.buf = conn.buf[used:]
            lat.append(time.perf_counter_ns() - conn.t0)
            requests += 1
            ok += status == 200
            conn.busy = False
            if close:
                sel.unregister(conn.sock)
                conn.sock.close()
                live.remove(conn)
                if time.perf_counter() < deadline:
                    conn = _Conn(port)
                    live.append(conn)
                    sel.register(conn.sock, selectors.EVENT_READ, conn)
            if time.perf_counter() < deadline:
                fire(conn)
    errors += sum(1 for c in live if c.busy)  # still unanswered 10 s after the deadline
    for conn in live:
        conn.sock.close()
    out.put(
        {
            "sent": sent,
            "requests": requests,
            "ok": ok,
            "errors": errors,
            "wrapped": wrapped,
            "lat": lat.tobytes(),
            "next_index": index,
            "elapsed": time.perf_counter() - t_start,
        }
    )


def run_python(
    port: int,
    path: str,
    bodies_file: Path,
    *,
    start: int,
    duration: float,
    connections: int,
    processes: int | None = None,
) -> LoadResult:
    """The fallback closed-loop generator: `processes` processes share `connections` connections."""
    processes = max(1, min(processes or os.cpu_count() or 1, connections))
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    shares = [connections // processes + (i < connections % processes) for i in range(processes)]
    procs = [
        ctx.Process(
            target=_closed_loop_worker,
            args=(port, path, str(bodies_file), start + i, processes, shares[i], duration, out),
            daemon=True,
        )
        for i in range(processes)
    ]
    for proc in procs:
        proc.start()
    parts = [out.get(timeout=duration + 60) for _ in procs]
    for proc in procs:
        proc.join(5)
    lat = array("q")
    for part in parts:
        lat.frombytes(part["lat"])
    p50, p99, mx = _percentiles(lat)
    requests = sum(p["requests"] for p in parts)
    ok = sum(p["ok"] for p in parts)
    return LoadResult(
        generator=f"python x{processes}",
        duration_s=duration,  # the send window; the drain after it is not counted
        requests=requests,
        ok=ok,
        non_200=requests - ok,
        errors=sum(p["errors"] for p in parts),
        sent=sum(p["sent"] for p in parts),
        p50_ms=p50,
        p99_ms=p99,
        max_ms=mx,
        wrapped=any(p["wrapped"] for p in parts),
        extra={"next_index": max(p["next_index"] for p in parts) + processes},
    )


# --- a paced, open-loop generator ----------------------------------------------------------------


def run_paced(
    port: int,
    path: str,
    bodies: list[bytes],
    *,
    rate: float,
    duration: float,
    connections: int,
) -> LoadResult:
    """Send `rate` requests/s for `duration` s; latency counts from each request's scheduled time."""
    sel = selectors.DefaultSelector()
    conns = [_Conn(port) for _ in range(connections)]
    for conn in conns:
        sel.register(conn.sock, selectors.EVENT_READ, conn)
    idle = deque(conns)
    backlog: deque[int] = deque()  # scheduled times (ns) of requests waiting for a free connection
    lat = array("q")
    service = array("q")  # from the actual write, for comparison
    sched_of: dict[int, tuple[int, int]] = {}
    total = int(rate * duration)
    interval_ns = int(1e9 / rate)
    t0 = time.perf_counter_ns() + 20_000_000
    k = sent = requests = ok = errors = 0
    wrapped = False
    drain_until = t0 + int((duration + 10) * 1e9)

    def fire(conn: _Conn, scheduled: int) -> None:
        nonlocal sent, wrapped
        if sent >= len(bodies):
            wrapped = True
        conn.sock.sendall(http_request(port, path, bodies[sent % len(bodies)]))
        sent += 1
        conn.t0 = time.perf_counter_ns()
        sched_of[id(conn)] = (scheduled, conn.t0)
        conn.busy = True

    while True:
        now = time.perf_counter_ns()
        while k < total and t0 + k * interval_ns <= now:
            backlog.append(t0 + k * interval_ns)
            k += 1
        while backlog and idle:
            fire(idle.popleft(), backlog.popleft())
        if k >= total and not backlog and len(idle) == len(conns):
            break
        if now >= drain_until:
            break
        wait = (t0 + k * interval_ns - now) / 1e9 if k < total else 0.2
        for key, _ in sel.select(timeout=max(0.0, min(wait, 0.2))):
            conn = key.data
            try:
                chunk = conn.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                raise RuntimeError("the server closed a connection during the paced run")
            conn.buf += chunk
            parsed = _parse_response(conn.buf)
            if parsed is None:
                continue
            status, used, _close = parsed
            conn.buf = conn.buf[used:]
            done = time.perf_counter_ns()
            scheduled, written = sched_of.pop(id(conn))
            lat.append(done - scheduled)
            service.append(done - written)
            requests += 1
            ok += status == 200
            conn.busy = False
            idle.append(conn)
    errors = sum(1 for c in conns if c.busy) + len(backlog)
    for conn in conns:
        conn.sock.close()
    p50, p99, mx = _percentiles(lat)
    s50, s99, _ = _percentiles(service)
    return LoadResult(
        generator="paced python",
        duration_s=duration,
        requests=requests,
        ok=ok,
        non_200=requests - ok,
        errors=errors,
        sent=sent,
        p50_ms=p50,
        p99_ms=p99,
        max_ms=mx,
        target_rate=rate,
        wrapped=wrapped,
        extra={"service_p50_ms": s50, "service_p99_ms": s99},
    )


# --- slow clients --------------------------------------------------------------------------------


@dataclass
class SlowConn:
    """One trickling connection: `kind` "body" sent whole headers, "header" is still sending them."""

    sock: socket.socket
    kind: str
    opened_at: float
    closed_at: float | None = None
    answer: bytes = b""
    trickled: int = 0  # bytes sent one at a time so far


class SlowClients:
    """Connections that hold requests open by trickling them, the way a slowloris attack does.

    `body` connections send complete headers with a Content-Length and then one body byte every
    `interval` seconds; `header` connections send a request line and then one header byte every
    `interval`. A thread keeps them trickling (for at most `max_seconds`) and notes when the server
    answers or closes each one; with `reopen`, a connection the server cut is replaced by a new one, so
    the pressure stays constant. Use as a context manager: every socket is closed on exit.
    """

    def __init__(
        self,
        port: int,
        *,
        body: int,
        header: int,
        interval: float = 0.25,
        path: str = "/mango/events/call",
        max_seconds: float = 120.0,
        reopen: bool = False,
    ) -> None:
        self.port = port
        self.reopen = reopen
        self.interval = interval
        self.path = path
        self.max_seconds = max_seconds
        self.conns: list[SlowConn] = []
        self._counts = {"body": body, "header": header}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._trickle, name="slow-clients", daemon=True)

    def __enter__(self) -> SlowClients:
        for kind, count in self._counts.items():
            for _ in range(count):
                self._open(kind)
        self._thread.start()
        return self

    def _open(self, kind: str) -> None:
        head = f"POST {self.path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
        sock = socket.create_connection((HOST, self.port), timeout=5)
        if kind == "body":
            sock.sendall(f"{head}Content-Type: {FORM_TYPE}\r\nContent-Length: 10000\r\n\r\n".encode())
        else:
            sock.sendall(f"{head}X-Slow: ".encode())
        sock.setblocking(False)
        with self._lock:
            self.conns.append(SlowConn(sock, kind, time.monotonic()))

    def cut(self) -> list[SlowConn]:
        """The connections the server has closed so far."""
        with self._lock:
            return [c for c in self.conns if c.closed_at is not None]

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(self.interval + 5)
        for conn in self.conns:
            conn.sock.close()

    def open_count(self) -> int:
        with self._lock:
            return sum(1 for c in self.conns if c.closed_at is None)

    def wait_trickling(self, count: int, timeout: float = 30.0) -> bool:
        """Wait (bounded) until every open connection has trickled `count` bytes; whether they did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(c.trickled >= count for c in self.conns if c.closed_at is None):
                return True
            time.sleep(0.05)
        return False

    def wait_closed(self, timeout: float) -> bool:
        """Wait (bounded) until the server has closed every connection; whether it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.open_count() == 0:
                return True
            time.sleep(0.05)
        return self.open_count() == 0

    def _trickle(self) -> None:
        stop_at = time.monotonic() + self.max_seconds
        while not self._stop.wait(self.interval) and time.monotonic() < stop_at:
            for conn in list(self.conns):
                if conn.closed_at is None:
                    self._poke(conn)
                    if conn.closed_at is not None and self.reopen and not self._stop.is_set():
                        conn.sock.close()
                        self._open(conn.kind)

    def _poke(self, conn: SlowConn) -> None:
        """Read what the server sent, then send one more byte; note the time the server closed."""
        closed = False
        try:
            while chunk := conn.sock.recv(4096):
                conn.answer += chunk
            closed = True  # recv returned b"": the server closed
        except BlockingIOError:
            try:
                conn.trickled += conn.sock.send(b"a")
            except BlockingIOError:
                pass  # the server stopped reading: the buffers are full
            except OSError:
                closed = True
        except OSError:
            closed = True
        if closed:
            with self._lock:
                conn.closed_at = time.monotonic()


# --- servers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def http_get(port: int, path: str, timeout: float = 2.0) -> int | None:
    """Status of a GET, or None if nothing answers."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else None
    except (OSError, ValueError, IndexError):
        return None


class Server:
    """A server subprocess in its own process group (so its workers stop with it)."""

    def __init__(self, name: str, cmd: list[str], *, env: dict, cwd: Path, log: Path) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, port: int, path: str, timeout: float = 30.0, want: int | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); log: {self.tail()}")
            status = http_get(port, path)
            if status is not None and (want is None or status == want):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s; log: {self.tail()}")

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            try:
                # The main process only: it stops its own workers (signalling them too races that).
                self.proc.send_signal(signal.SIGINT)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        # Workers left behind in the group (if the parent died first).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log_file.close()
