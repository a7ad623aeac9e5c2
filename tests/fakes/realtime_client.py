"""A WebSocket client for tests: connects to the hub with a token and collects every message."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

DEMO_NUMBER = "79161234567"
DEMO_NAME = "Ivan Petrov"


def demo_env(delay_ms: float = 0.0, **extra: str) -> dict[str, str]:
    """Environment that enables the demo connector with one known caller."""
    contacts = {
        "+7 (916) 123-45-67": {
            "name": DEMO_NAME,
            "company": "Petrov & Sons",
            "responsible": "101",
            "responsible_name": "Olga",
            "url": "https://crm.example.com/contacts/1",
            "deals": [{"title": "Kitchen set", "amount": 120000, "stage": "proposal"}],
            "orders": [{"number": "A-1001", "total": 5400, "status": "delivered"}],
        }
    }
    return {
        "CALLBRIDGE_CONNECTORS_DEMO_CONTACTS": json.dumps(contacts),
        "CALLBRIDGE_CONNECTORS_DEMO_DELAY_MS": str(delay_ms),
        **extra,
    }


def ws_url(port: int, token: str, last_event_id: int | None = None) -> str:
    url = f"ws://127.0.0.1:{port}/ws?token={token}"
    return url + (f"&last_event_id={last_event_id}" if last_event_id is not None else "")


class Client:
    """Collects messages in a background thread; `wait_for` blocks until a matching one arrives."""

    def __init__(self, port: int, token: str, last_event_id: int | None = None) -> None:
        self.url = ws_url(port, token, last_event_id)
        self.messages: list[dict[str, Any]] = []
        self.closed: tuple[int | None, str | None] | None = None
        self._cond = threading.Condition()
        # connect() as a context manager works with every websockets version we support
        self.connection: ClientConnection = connect(self.url, compression=None, open_timeout=5).__enter__()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self.connection:
                message = json.loads(raw)
                message["_received"] = time.monotonic()
                with self._cond:
                    self.messages.append(message)
                    self._cond.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                self.closed = (self.connection.close_code, self.connection.close_reason)
                self._cond.notify_all()

    def events(self) -> list[dict[str, Any]]:
        """Call messages only (not hello/heartbeat/pong)."""
        with self._cond:
            return [m for m in self.messages if "id" in m and m.get("type") not in ("hello",)]

    def wait_for(
        self, type_: str, where: Callable[[dict[str, Any]], bool] | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for message in self.messages:
                    if message.get("type") == type_ and (where is None or where(message)):
                        return message
                left = deadline - time.monotonic()
                if left <= 0 or self.closed is not None and not self._thread.is_alive():
                    seen = [m.get("type") for m in self.messages]
                    raise AssertionError(f"no {type_} within {timeout}s; got {seen}")
                self._cond.wait(left)

    def wait_closed(self, timeout: float = 10.0) -> tuple[int | None, str | None]:
        self._thread.join(timeout)
        assert self.closed is not None, "the connection is still open"
        return self.closed

    def close(self) -> None:
        self.connection.close()
        self._thread.join(5)

    @property
    def last_id(self) -> int | None:
        ids = [m["id"] for m in self.events()]
        return max(ids) if ids else None


def refused_status(port: int, token: str) -> int:
    """The HTTP status the hub answers a handshake with this token (raises if it accepts)."""
    try:
        connection = connect(ws_url(port, token), open_timeout=5).__enter__()
    except InvalidStatus as exc:
        return exc.response.status_code
    connection.close()
    raise AssertionError("the hub accepted the connection")
