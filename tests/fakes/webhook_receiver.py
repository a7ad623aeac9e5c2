"""A loopback HTTP server that receives the webhook connector's POSTs like a careful user's endpoint.

It verifies the HMAC signature, deduplicates by Idempotency-Key, and can be told to fail first
(e.g. 503 for a while, then 429 with Retry-After), recording everything for assertions.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    key: str
    body: dict[str, Any]
    at: float
    status: int


@dataclass
class WebhookReceiver:
    secret: str
    plan: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)  # answers to give first
    requests: list[Received] = field(default_factory=list)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> body (first accepted)
    duplicates: list[str] = field(default_factory=list)  # keys accepted again after success
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                return

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers = receiver._answer(self.headers, body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, headers: Any, body: bytes) -> tuple[int, dict[str, str]]:
        stamp = headers.get("X-Callbridge-Timestamp", "")
        given = headers.get("X-Callbridge-Signature", "")
        expected = (
            "sha256="
            + hmac.new(self.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        )
        key = headers.get("Idempotency-Key", "")
        with self.lock:
            if not hmac.compare_digest(given, expected):
                self.bad_signatures += 1
                return 401, {}
            payload = json.loads(body)
            if self.plan:
                status, extra = self.plan.popleft()
                self.requests.append(Received(key, payload, time.time(), status))
                return status, extra
            self.requests.append(Received(key, payload, time.time(), 200))
            if key in self.accepted:
                self.duplicates.append(key)
            else:
                self.accepted[key] = payload
            return 200, {}

    def accepted_for(self, entry_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for body in self.accepted.values() if body.get("entry_id") == entry_id]

    def wait_for(self, count: int, timeout: float = 30.0) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if len(self.accepted) >= count:
                    return True
            time.sleep(0.05)
        return False
