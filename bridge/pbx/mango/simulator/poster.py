"""Post notifications to the bridge exactly as Mango does: a signed three-field form to `<base>/<path>`.

`Poster.play` replays a list of notifications with the delivery faults Mango allows (mango.md §2.1, §6):
any order (events are sent in parallel), duplicates, concurrency and a rate cap. Sends never raise: a
refused connection or a timeout is recorded in the report, so a crash test can count what was acked.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests

from bridge.pbx.mango.signing import signed_form
from bridge.ratelimit import TokenBucket

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


class NotificationLike(Protocol):
    """What the poster needs of a notification (`scenarios.Notification` fits)."""

    @property
    def path(self) -> str: ...

    @property
    def payload(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class SendRecord:
    """One HTTP POST of one notification and how the bridge answered it."""

    index: int  # position of the notification in the list given to `play` (0 for `post`)
    notification: NotificationLike
    duplicate: bool  # True for the second copy of a duplicated notification
    status: int | None  # HTTP status, None when no answer came (refused, reset, timeout)
    error: str | None  # why the send failed, None when the bridge answered 200
    started: float  # seconds after the start of the run
    elapsed: float  # seconds the request took
    body: str = ""  # the start of the bridge's answer, for diagnostics

    @property
    def acked(self) -> bool:
        """Only a 200 counts as acknowledged: the bridge promises it has stored the event."""
        return self.status == 200

    @property
    def path(self) -> str:
        return self.notification.path

    @property
    def payload(self) -> Mapping[str, Any]:
        return self.notification.payload

    def to_dict(self) -> dict[str, Any]:
        payload = self.notification.payload
        return {
            "index": self.index,
            "path": self.path,
            "entry_id": payload.get("entry_id"),
            "call_id": payload.get("call_id"),
            "seq": payload.get("seq"),
            "command_id": payload.get("command_id"),
            "duplicate": self.duplicate,
            "status": self.status,
            "acked": self.acked,
            "error": self.error,
            "started": round(self.started, 6),
            "elapsed": round(self.elapsed, 6),
        }


@dataclass
class PlayReport:
    """Every send of a run, in the order they started."""

    sends: list[SendRecord] = field(default_factory=list)
    duration: float = 0.0

    @property
    def sent(self) -> int:
        return len(self.sends)

    @property
    def acked(self) -> list[SendRecord]:
        return [s for s in self.sends if s.acked]

    @property
    def errors(self) -> list[SendRecord]:
        """Sends not answered 200: connection errors and non-200 statuses alike."""
        return [s for s in self.sends if not s.acked]

    @property
    def acked_indexes(self) -> set[int]:
        """Indexes of the notifications acknowledged at least once (a duplicate may have been the one)."""
        return {s.index for s in self.sends if s.acked}

    def latency(self, quantile: float) -> float:
        """The `quantile` (0..1) of request latency in seconds over answered sends; 0.0 when none."""
        times = sorted(s.elapsed for s in self.sends if s.status is not None)
        if not times:
            return 0.0
        position = min(len(times) - 1, max(0, round(quantile * (len(times) - 1))))
        return times[position]

    @property
    def rate(self) -> float:
        """Sends per second achieved."""
        return self.sent / self.duration if self.duration > 0 else 0.0

    def summary(self) -> str:
        return (
            f"sent {self.sent}, acked 200 {len(self.acked)}, errors {len(self.errors)}, "
            f"{self.duration:.2f}s ({self.rate:.0f}/s), "
            f"latency p50 {self.latency(0.5) * 1000:.1f}ms p95 {self.latency(0.95) * 1000:.1f}ms"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "acked": len(self.acked),
            "errors": len(self.errors),
            "duration": round(self.duration, 6),
            "sends": [s.to_dict() for s in self.sends],
        }


class Poster:
    """Signs and posts notifications to a Mango receiver (`bridge_url` like `http://127.0.0.1:8080/mango`)."""

    def __init__(
        self,
        bridge_url: str,
        api_key: str,
        api_salt: str,
        *,
        session: requests.Session | None = None,
        timeout: float = 10,
    ) -> None:
        self.bridge_url = bridge_url.rstrip("/")
        self.api_key = api_key
        self._api_salt = api_salt
        self.timeout = timeout
        self._shared_session = session
        self._local = threading.local()
        self._own_sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()

    def __repr__(self) -> str:  # never show the salt
        return f"Poster({self.bridge_url!r}, api_key={self.api_key!r})"

    def __enter__(self) -> Poster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the sessions this poster opened (a session passed in is left to its owner)."""
        with self._sessions_lock:
            for session in self._own_sessions:
                session.close()
            self._own_sessions.clear()
        self._local = threading.local()

    def _session(self) -> requests.Session:
        if self._shared_session is not None:
            return self._shared_session
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
            with self._sessions_lock:
                self._own_sessions.append(session)
        return session

    def url_for(self, path: str) -> str:
        return f"{self.bridge_url}/{path.strip('/')}"

    def form_for(self, notification: NotificationLike) -> dict[str, str]:
        """The three signed fields Mango would send for this notification."""
        return signed_form(self.api_key, self._api_salt, dict(notification.payload))

    def post(
        self,
        notification: NotificationLike,
        *,
        index: int = 0,
        duplicate: bool = False,
        clock_start: float | None = None,
    ) -> SendRecord:
        """Send one notification; never raises for network failures (they are in the record)."""
        form = self.form_for(notification)
        start = time.perf_counter()
        status: int | None = None
        error: str | None = None
        body = ""
        try:
            response = self._session().post(
                self.url_for(notification.path),
                data=form,
                headers={"Content-Type": FORM_CONTENT_TYPE},
                timeout=self.timeout,
                allow_redirects=False,
            )
            status = response.status_code
            body = response.text[:200]
            if status != 200:
                error = f"HTTP {status}"
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"
        end = time.perf_counter()
        origin = start if clock_start is None else clock_start
        return SendRecord(
            index=index,
            notification=notification,
            duplicate=duplicate,
            status=status,
            error=error,
            started=start - origin,
            elapsed=end - start,
            body=body,
        )

    def play(
        self,
        notifications: Iterable[NotificationLike],
        *,
        shuffle: bool = False,
        duplicate: float = 0.0,
        concurrency: int = 1,
        rng: random.Random | None = None,
        rate: float | None = None,
        on_send: Callable[[SendRecord], None] | None = None,
    ) -> PlayReport:
        """Send every notification once, plus a second copy with probability `duplicate`.

        `shuffle` permutes the delivery order (copies included); without it each copy follows its original.
        `concurrency` threads send at once, `rate` caps sends per second over all threads.
        `on_send` is called (from the sending thread) after each send.
        """
        if not 0.0 <= duplicate <= 1.0:
            raise ValueError("duplicate must be a probability between 0 and 1")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        items = list(notifications)
        plan = delivery_plan(len(items), shuffle=shuffle, duplicate=duplicate, rng=rng or random.Random())
        bucket = TokenBucket(rate, burst=1) if rate else None
        clock_start = time.perf_counter()
        lock = threading.Lock()
        sends: list[SendRecord] = []

        def send(step: tuple[int, bool]) -> None:
            index, is_copy = step
            if bucket is not None:
                bucket.acquire()
            record = self.post(items[index], index=index, duplicate=is_copy, clock_start=clock_start)
            with lock:
                sends.append(record)
            if on_send is not None:
                on_send(record)

        if concurrency == 1:
            for step in plan:
                send(step)
        else:
            with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="mango-poster") as pool:
                for future in [pool.submit(send, step) for step in plan]:
                    future.result()
        sends.sort(key=lambda s: s.started)
        return PlayReport(sends=sends, duration=time.perf_counter() - clock_start)


def delivery_plan(
    count: int, *, shuffle: bool, duplicate: float, rng: random.Random
) -> list[tuple[int, bool]]:
    """The order of sends as (notification index, is-duplicate-copy) pairs."""
    plan: list[tuple[int, bool]] = []
    for index in range(count):
        plan.append((index, False))
        if duplicate and rng.random() < duplicate:
            plan.append((index, True))
    if shuffle:
        rng.shuffle(plan)
    return plan
