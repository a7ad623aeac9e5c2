"""The Bitrix24 REST client: one portal, OAuth or incoming webhook, its leaky bucket, and `batch`.

Calls are ``POST <portal>/rest/<method>`` with a JSON body (plus ``auth`` = the access token), or
``POST <webhook url><method>`` for an incoming webhook. Everything goes through one token bucket per
portal (Bitrix24 counts requests per portal and per source IP; limits.md), a little under the vendor's
burst so that network jitter cannot push the portal's counter over it.

Coalescing. `call` and `batch` hand the client a *unit* (one command, or several that belong together,
e.g. ``register`` then ``finish`` referring to ``$result[register][CALL_ID]``). When a token is free a
unit goes out at once, alone. When the bucket is empty, units of concurrent callers queue up, and the
thread that gets the next token sends every queued unit as ONE ``batch`` request (at most 50 commands):
the portal counts one request. Each caller gets its own results and errors back.

Errors (see `connectors.bitrix24.errors`): 503 QUERY_LIMIT_EXCEEDED empties the local bucket and backs
off; 429 OPERATION_TIME_LIMIT blocks that method locally until the ``operating_reset_at`` Bitrix24
last reported for it (other methods go on); 401 expired_token refreshes the token once (shared by all
threads and processes, see `oauth.py`) and sends the same request again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

import requests

from bridge.connector_api import DeliveryError, RetryableDeliveryError
from bridge.connector_api.http import safe_host, send
from bridge.connector_api.ratelimit import TokenBucket
from connectors.bitrix24.errors import (
    BitrixError,
    BitrixPermanent,
    BitrixRetryable,
    MethodBlocked,
    NotAuthorised,
    QueryLimitExceeded,
    TokenExpired,
    command_error,
)

log = logging.getLogger("callbridge.connectors.bitrix24")

MAX_BATCH = 50  # batch.md: at most 50 commands per batch
# Methods that work only with the application's OAuth context (telephony/index.md "Limitations").
APP_ONLY_METHODS = frozenset(
    {
        "telephony.externalCall.register",
        "telephony.externalCall.finish",
        "telephony.externalLine.add",
        "telephony.externalLine.get",
        "telephony.externalLine.update",
        "telephony.externalLine.delete",
        "event.bind",
        "event.unbind",
        "event.get",
    }
)
# Headroom under the vendor's burst: the portal counts arrivals (we count departures), and the rare
# requests of the web workers (install, a click's user lookup) come from buckets of their own.
BURST_MARGIN_SHARE = 0.1
MIN_BURST_MARGIN = 2
DEFAULT_BLOCK_SECONDS = 60.0  # an OPERATION_TIME_LIMIT without a known operating_reset_at
MAX_QUERY_LIMIT_BACKOFF = 30.0


@dataclass(frozen=True)
class Ref:
    """``$result[<key>][<path>...]``: a value of an earlier command of the same unit (batch only)."""

    key: str
    path: tuple[str | int, ...]

    def render(self, prefix: str) -> str:
        return f"$result[{prefix}{self.key}]" + "".join(f"[{p}]" for p in self.path)


def ref(key: str, *path: str | int) -> Ref:
    return Ref(key, tuple(path))


def build_query(params: Mapping[str, Any], prefix: str = "") -> str:
    """PHP ``http_build_query`` (what Bitrix24 parses a batch command with): nested keys in brackets,
    lists indexed from 0, booleans as 1/0, None left out; `Ref` values rendered for `prefix`."""
    pairs: list[tuple[str, str]] = []

    def walk(name: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{name}[{k}]" if name else str(k), v)
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                walk(f"{name}[{i}]", v)
        elif isinstance(value, Ref):
            pairs.append((name, value.render(prefix)))
        elif isinstance(value, bool):
            pairs.append((name, "1" if value else "0"))
        else:
            pairs.append((name, str(value)))

    walk("", params)
    return urlencode(pairs)


def _has_ref(value: Any) -> bool:
    if isinstance(value, Ref):
        return True
    if isinstance(value, Mapping):
        return any(_has_ref(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_ref(v) for v in value)
    return False


@dataclass(frozen=True)
class Command:
    method: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class BatchResult:
    """Results and errors by command key; a key is in exactly one of the two."""

    results: dict[str, Any]
    errors: dict[str, BitrixError]

    def get(self, key: str) -> Any:
        """The result of `key`, raising its error."""
        if key in self.errors:
            raise self.errors[key]  # type: ignore[misc]
        return self.results.get(key)


class Credentials(Protocol):
    """How requests are authorised: the base URL and the token (None for a webhook)."""

    def endpoint(self, app_only: bool) -> tuple[str, str | None]: ...

    def refresh(self, stale: str) -> str: ...


class WebhookCredentials:
    """An incoming webhook: ``https://<portal>/rest/<user>/<secret>/`` + method; no token."""

    def __init__(self, webhook_url: str) -> None:
        self._url = webhook_url if webhook_url.endswith("/") else webhook_url + "/"

    def endpoint(self, app_only: bool) -> tuple[str, str | None]:
        return self._url, None

    def refresh(self, stale: str) -> str:
        raise NotAuthorised("bitrix24: an incoming webhook has no token to refresh")


class AppCredentials:
    """The local application's OAuth token (`oauth.OAuthTokens`), with an optional webhook to use for the
    methods that accept one while the application is not installed yet."""

    def __init__(self, rest_url: str, tokens: Any, webhook_url: str | None = None) -> None:
        self._rest_url = rest_url
        self.tokens = tokens
        self._webhook = WebhookCredentials(webhook_url) if webhook_url else None

    def endpoint(self, app_only: bool) -> tuple[str, str | None]:
        if self._webhook is not None and not app_only and not self.tokens.installed():
            return self._webhook.endpoint(app_only)
        return self._rest_url, self.tokens.access_token()

    def refresh(self, stale: str) -> str:
        return self.tokens.refresh(stale)


@dataclass
class _Unit:
    commands: dict[str, Command]
    app_only: bool
    deadline: float | None = None  # monotonic time after which the caller no longer wants it sent
    taken: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    result: BatchResult | None = None
    error: BaseException | None = None


class Bitrix24Client:
    """See the module docstring. Thread-safe; one instance per portal per process."""

    def __init__(
        self,
        portal_url: str,
        credentials: Credentials,
        *,
        rate: float = 2.0,
        burst: int = 50,
        session: requests.Session,
        timeout: tuple[float, float] = (3.05, 20.0),
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float = 20.0,
    ) -> None:
        self.host = safe_host(portal_url)
        self.rest_url = portal_url.rstrip("/") + "/rest/"
        self.credentials = credentials
        self.rate = rate
        margin = max(MIN_BURST_MARGIN, int(burst * BURST_MARGIN_SHARE))
        self.bucket = TokenBucket(rate, max(1, burst - margin), clock=clock, sleep=sleep)
        self._session = session
        self._timeout = timeout
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._max_wait = max_wait
        self._cond = threading.Condition()
        self._queue: deque[_Unit] = deque()
        self._leader = False
        self._blocked: dict[str, float] = {}  # method -> wall time its OPERATION_TIME_LIMIT lifts
        self._reset_at: dict[str, float] = {}  # method -> last operating_reset_at seen
        self._limit_hits = 0
        self._hold_until = 0.0  # monotonic time before which nothing is sent (after QUERY_LIMIT_EXCEEDED)
        # Counters for check(), logs and the benchmark.
        self.requests_sent = 0
        self.batches_sent = 0
        self.commands_sent = 0

    # ------------------------------------------------------------------ public

    def call(
        self, method: str, params: Mapping[str, Any] | None = None, *, max_wait: float | None = None
    ) -> Any:
        """One method; returns its ``result`` or raises a `DeliveryError` subclass."""
        return self.batch({"c": Command(method, params or {})}, max_wait=max_wait).get("c")

    def batch(
        self, commands: Mapping[str, Command], *, must_succeed: bool = False, max_wait: float | None = None
    ) -> BatchResult:
        """Several commands that belong together (later ones may hold `ref`s to earlier keys).

        Returns per-key results and errors. A failure of the whole request (network, rate limit, auth)
        raises. With `must_succeed`, the first command error is raised instead of returned. With
        `max_wait`, a unit still queued after that many seconds is dropped unsent (a caller card nobody
        waits for any more must not spend the portal's budget).
        """
        if not commands:
            return BatchResult({}, {})
        if len(commands) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} commands go in one unit")
        for command in commands.values():
            self._check_blocked(command.method)
        unit = _Unit(
            dict(commands),
            app_only=any(c.method in APP_ONLY_METHODS for c in commands.values()),
            deadline=None if max_wait is None else self._clock() + max_wait,
        )
        self._submit(unit)
        if unit.error is not None:
            raise unit.error
        assert unit.result is not None
        if must_succeed and unit.result.errors:
            raise next(iter(unit.result.errors.values()))  # type: ignore[misc]
        return unit.result

    def call_with_token(self, method: str, params: Mapping[str, Any], access_token: str) -> Any:
        """One method with a given access token (the install handler proving a new token); no coalescing,
        no refresh, but the same bucket."""
        if not self._acquire():
            raise BitrixRetryable(f"bitrix24 at {self.host}: rate limit queue full")
        payload = {**params, "auth": access_token}
        try:
            self.requests_sent += 1
            response = send(
                self._session, "POST", self.rest_url + method, json=payload, timeout=self._timeout
            )
        except DeliveryError as exc:
            raise self._classify(method, exc) from None
        body = _body(response)
        if "error" in body:
            raise command_error(method, self.host, body.get("error"), body.get("error_description"))
        return body.get("result")

    def blocked_methods(self) -> dict[str, float]:
        """Methods blocked by OPERATION_TIME_LIMIT and the wall time each one lifts."""
        now = self._wall()
        with self._cond:
            return {m: t for m, t in self._blocked.items() if t > now}

    # ------------------------------------------------------------------ coalescing

    def _submit(self, unit: _Unit) -> None:
        with self._cond:
            self._queue.append(unit)
        while True:
            with self._cond:
                while self._leader and not unit.done.is_set() and not unit.taken:
                    if unit.deadline is not None and self._clock() > unit.deadline:
                        self._queue.remove(unit)
                        raise BitrixRetryable(
                            f"bitrix24 at {self.host}: no request slot within the caller's deadline"
                        )
                    self._cond.wait(0.05)
                if unit.done.is_set():
                    return
                if unit.taken:
                    pass  # another thread is sending it; wait below
                else:
                    self._leader = True
            if unit.taken:
                unit.done.wait()
                return
            try:
                budget = self._max_wait
                if unit.deadline is not None:
                    budget = max(0.0, min(budget, unit.deadline - self._clock()))
                if not self._acquire(budget):
                    raise BitrixRetryable(
                        f"bitrix24 at {self.host}: more requests queued than the portal's rate limit lets "
                        f"out within {budget:.1f} s; trying again later"
                    )
            except BaseException:
                with self._cond:
                    self._leader = False
                    if not unit.taken:
                        self._queue.remove(unit)
                    self._cond.notify_all()
                raise
            with self._cond:
                group = self._take()
                self._leader = False
                self._cond.notify_all()
            self._send_group(group)

    def _take(self) -> list[_Unit]:
        """Queued units, oldest first, up to MAX_BATCH commands, all of one auth kind (under the lock)."""
        group: list[_Unit] = []
        size = 0
        kind = self._queue[0].app_only if self._queue else False
        keep: deque[_Unit] = deque()
        while self._queue:
            unit = self._queue.popleft()
            n = len(unit.commands)
            if (group and size + n > MAX_BATCH) or unit.app_only != kind:
                keep.append(unit)
                continue
            unit.taken = True
            group.append(unit)
            size += n
        self._queue = keep
        return group

    def _send_group(self, group: list[_Unit]) -> None:
        try:
            if len(group) == 1 and len(group[0].commands) == 1 and not _has_ref(group[0].commands):
                key, command = next(iter(group[0].commands.items()))
                group[0].result = self._single(command, key, group[0].app_only)
            else:
                self._batch(group)
        except BaseException as exc:
            for unit in group:
                unit.error = exc
        finally:
            for unit in group:
                unit.done.set()
            with self._cond:
                self._cond.notify_all()

    # ------------------------------------------------------------------ HTTP

    def _single(self, command: Command, key: str, app_only: bool) -> BatchResult:
        body = self._post(command.method, dict(command.params), app_only, commands=1)
        self._note_time(command.method, body.get("time"))
        self.commands_sent += 1
        return BatchResult({key: body.get("result")}, {})

    def _batch(self, group: list[_Unit]) -> None:
        cmd: dict[str, str] = {}
        where: dict[str, tuple[_Unit, str]] = {}
        for n, unit in enumerate(group):
            prefix = f"u{n}_"
            for key, command in unit.commands.items():
                name = prefix + key
                query = build_query(command.params, prefix)
                cmd[name] = command.method + ("?" + query if query else "")
                where[name] = (unit, key)
        body = self._post("batch", {"halt": 0, "cmd": cmd}, group[0].app_only, commands=len(cmd))
        self.batches_sent += 1
        self.commands_sent += len(cmd)
        outer = body.get("result") or {}
        results = _as_dict(outer.get("result"))
        errors = _as_dict(outer.get("result_error"))
        times = _as_dict(outer.get("result_time"))
        for unit in group:
            unit.result = BatchResult({}, {})
        for name, (unit, key) in where.items():
            method = unit.commands[key].method
            self._note_time(method, times.get(name))
            assert unit.result is not None
            if name in errors:
                err = (
                    errors[name] if isinstance(errors[name], Mapping) else {"error_description": errors[name]}
                )
                error = command_error(method, self.host, err.get("error"), err.get("error_description"))
                if isinstance(error, MethodBlocked):
                    self._block(method)
                unit.result.errors[key] = error
            else:
                unit.result.results[key] = results.get(name)

    def _post(self, method: str, params: dict[str, Any], app_only: bool, *, commands: int) -> dict[str, Any]:
        """POST one request (the bucket token is already taken); refresh the token once on expiry."""
        refreshed = False
        while True:
            base, token = self.credentials.endpoint(app_only)
            payload = dict(params)
            if token is not None:
                payload["auth"] = token
            try:
                self.requests_sent += 1
                response = send(self._session, "POST", base + method, json=payload, timeout=self._timeout)
                body = _body(response)
                if "error" in body:  # an error answered with 200 (seen on some portals)
                    raise command_error(method, self.host, body.get("error"), body.get("error_description"))
                self._limit_hits = 0
                return body
            except TokenExpired:
                if refreshed or token is None:
                    raise
            except BitrixError:
                raise
            except DeliveryError as exc:
                error = self._classify(method, exc)
                if not isinstance(error, TokenExpired) or refreshed or token is None:
                    raise error from None
            # expired_token: one refresh (shared), then the same request again with a fresh bucket token.
            self.credentials.refresh(token)
            refreshed = True
            if not self._acquire():
                raise BitrixRetryable(f"bitrix24 at {self.host}: rate limit queue full after a token refresh")

    def _classify(self, method: str, exc: DeliveryError) -> BitrixError:
        status = getattr(exc, "status", None)
        response = getattr(exc, "response", None)
        body = _body(response) if response is not None else {}
        code, description = body.get("error"), body.get("error_description")
        if response is not None:
            status = response.status_code
        if code is None:
            # No Bitrix JSON (a proxy's error page, a timeout): keep the shared layer's verdict.
            if isinstance(exc, BitrixError):
                return exc
            if isinstance(exc, RetryableDeliveryError):
                return BitrixRetryable(str(exc), method=method, status=status, retry_after=exc.retry_after)
            return BitrixPermanent(str(exc), method=method, status=status)
        error = command_error(method, self.host, code, description, status)
        if isinstance(error, QueryLimitExceeded):
            # The portal's counter is at its threshold: empty our bucket and hold every request for a
            # while, longer for each new episode (answers to requests already in flight are the same one).
            now = self._clock()
            with self._cond:
                if now >= self._hold_until:
                    self._limit_hits += 1
                    pause = min(MAX_QUERY_LIMIT_BACKOFF, (1.0 / self.rate) * 2 ** (self._limit_hits - 1))
                    self._hold_until = now + pause
                    log.warning(
                        "bitrix24: %s answered QUERY_LIMIT_EXCEEDED; holding %.1f s", self.host, pause
                    )
                else:
                    pause = self._hold_until - now
            self.bucket.penalise(0)
            error.retry_after = pause
        elif isinstance(error, MethodBlocked):
            error.retry_after = None  # only this method waits (locally), not the whole connector
            self._block(method)
        return error

    def _acquire(self, max_wait: float | None = None) -> bool:
        """A token from the bucket, after any hold a QUERY_LIMIT_EXCEEDED imposed; False after max_wait."""
        deadline = self._clock() + (self._max_wait if max_wait is None else max_wait)
        while True:
            with self._cond:
                hold = self._hold_until - self._clock()
            if hold <= 0:
                break
            if self._clock() + hold > deadline:
                return False
            self._sleep(hold)
        return self.bucket.acquire(timeout=max(0.0, deadline - self._clock()))

    # ------------------------------------------------------------------ OPERATION_TIME_LIMIT

    def _note_time(self, method: str, info: Any) -> None:
        if isinstance(info, Mapping) and info.get("operating_reset_at") is not None:
            try:
                with self._cond:
                    self._reset_at[method] = float(info["operating_reset_at"])
            except (TypeError, ValueError):
                pass

    def _block(self, method: str) -> None:
        now = self._wall()
        with self._cond:
            until = self._reset_at.get(method, 0.0)
            if until <= now:
                until = now + DEFAULT_BLOCK_SECONDS
            self._blocked[method] = until
        log.warning("bitrix24: %s is blocked by OPERATION_TIME_LIMIT for %.0f s", method, until - now)

    def _check_blocked(self, method: str) -> None:
        with self._cond:
            until = self._blocked.get(method)
        if until is not None:
            left = until - self._wall()
            if left > 0:
                raise MethodBlocked(
                    f"{method} at {self.host}: OPERATION_TIME_LIMIT, blocked for another {left:.0f} s",
                    method=method,
                    code="OPERATION_TIME_LIMIT",
                )
            with self._cond:
                self._blocked.pop(method, None)


def _body(response: requests.Response | None) -> dict[str, Any]:
    if response is None:
        return {}
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {"result": data}


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list):  # PHP encodes an empty (or numerically keyed) array as a list
        return {str(i): v for i, v in enumerate(value)}
    return {}


def chunks(items: Iterable[Any], size: int) -> list[list[Any]]:
    out: list[list[Any]] = []
    for item in items:
        if not out or len(out[-1]) >= size:
            out.append([])
        out[-1].append(item)
    return out
