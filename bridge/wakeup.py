"""Loopback datagrams from the HTTP worker processes to the parent process of `callbridge run`.

The processor polls `raw_events` every 20 ms when idle; a worker that has just committed events sends
one tiny UDP datagram so the parent processes them at once instead (a few hundred microseconds, not up to
20 ms, of the popup's latency). Workers also use the same socket to hand the realtime hub events that
happen in a request (`bridge.realtime.publish`). The parent binds 127.0.0.1 on a free port and passes
the address to the workers it spawns in `WAKEUP_ENV`; a lost datagram only costs one poll interval.

Datagram kinds: ``b"w"`` (raw events committed) and ``b"e" + JSON`` (a list of CallEvent dicts). Each
datagram starts with a random key the parent makes at start and hands only to its workers, so another
local user cannot inject popups by writing to the port.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

# Not a CALLBRIDGE_* name: those are settings keys, and the config loader refuses unknown ones.
WAKEUP_ENV = "_CALLBRIDGE_WAKEUP_ADDR"
WAKE = b"w"
EVENTS = b"e"
MAX_DATAGRAM = 60_000
_KEY_BYTES = 16


class WakeupListener:
    """The parent's end: a UDP socket on loopback and a thread that dispatches datagrams by kind."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._key = secrets.token_bytes(_KEY_BYTES)
        self._handlers: dict[bytes, Callable[[bytes], None]] = {}
        self._thread = threading.Thread(target=self._run, name="wakeup", daemon=True)
        self._stopped = False

    @property
    def address(self) -> str:
        """``host:port#key``: what a sender needs (keep it out of logs)."""
        host, port = self._sock.getsockname()
        return f"{host}:{port}#{self._key.hex()}"

    def on(self, kind: bytes, handler: Callable[[bytes], None]) -> None:
        """Call `handler(body)` for each datagram of `kind` (from the listener's thread)."""
        self._handlers[kind] = handler

    def start(self) -> WakeupListener:
        self._thread.start()
        return self

    def export(self) -> None:
        """Put the address where spawned worker processes find it."""
        os.environ[WAKEUP_ENV] = self.address

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as poke:
            poke.sendto(b"", self._sock.getsockname())  # unblock recv()
        self._thread.join(2.0)
        self._sock.close()

    def _run(self) -> None:
        while not self._stopped:
            try:
                data = self._sock.recv(65_535)
            except OSError:
                return
            if len(data) <= _KEY_BYTES or not hmac.compare_digest(data[:_KEY_BYTES], self._key):
                continue
            data = data[_KEY_BYTES:]
            handler = self._handlers.get(data[:1])
            if handler is None:
                continue
            try:
                handler(data[1:])
            except Exception:
                log.exception("wake-up handler failed")


class WakeupSender:
    """A worker's end: fire-and-forget datagrams to the parent (thread-safe, never raises)."""

    def __init__(self, address: str) -> None:
        where, _, key = address.partition("#")
        host, _, port = where.rpartition(":")
        self._target = (host, int(port))
        self._key = bytes.fromhex(key)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def send(self, kind: bytes, body: bytes = b"") -> bool:
        if len(body) > MAX_DATAGRAM:
            log.warning("datagram of %d bytes is too large for the local relay; dropped", len(body))
            return False
        try:
            self._sock.sendto(self._key + kind + body, self._target)
            return True
        except OSError:  # the parent is gone or its buffer is full: the poll interval covers a wake-up
            return False

    def wake(self) -> None:
        self.send(WAKE)

    __call__ = wake


_sender: WakeupSender | None = None
_sender_lock = threading.Lock()


def sender_from_env() -> WakeupSender | None:
    """The process's sender to the parent, or None when not started by `callbridge run`."""
    global _sender
    address = os.environ.get(WAKEUP_ENV)
    if not address:
        return None
    with _sender_lock:
        if _sender is None:
            try:
                _sender = WakeupSender(address)
            except (ValueError, OSError) as exc:
                log.warning("cannot reach the parent process: %s", type(exc).__name__)
                return None
        return _sender
