"""A small amoCRM API v4 client over the shared HTTP layer: auth header, client-side rate limit, errors.

Every request (the OAuth token endpoint included) passes two limits, shared by every thread of the
process:

* a token bucket of ``requests_per_second`` with a burst of 1, which spaces requests evenly;
* a `RequestWindow` of ``floor(requests_per_second)`` permits: a request holds one from before it is sent
  until one second after its answer arrived. So whatever delays a request on its way (a thread that lost
  the CPU between taking its turn and sending, a slow network), amoCRM can never see more than that many
  requests within any one second: of any 8 requests it receives, two used the same permit, and the later
  one was sent a second after the earlier one was answered.

Answers are classified like every connector's (`bridge.connector_api.http.send`), then enriched with
amoCRM's problem+json details (``title``, ``detail``, ``validation-errors``, OAuth ``hint``), so that a
rejected request says *why* in the delivery's ``last_error``:

* 2xx: the decoded JSON, or None for 204 No Content (amoCRM's answer for an empty list) and empty bodies;
* 401: one refresh through the token source (OAuth), then `AmoAuthError` (retryable: a token fixed by the
  admin lets the waiting deliveries through);
* 429: `AmoRateLimited` with ``Retry-After`` (1 s when amoCRM sends none); the bucket is emptied for that
  long, so no thread of this process sends until then;
* other 4xx: `AmoPermanentError`; 5xx and network errors: `AmoRetryableError`;
* 3xx: `AmoPermanentError` (redirects are not followed: the token must not travel to another host).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import requests

from bridge.connector_api import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from bridge.connector_api.http import DEFAULT_USER_AGENT, make_session, redact, send
from bridge.connector_api.ratelimit import TokenBucket

log = logging.getLogger("callbridge.connectors.amocrm")

TOKEN_PATH = "/oauth2/access_token"
USER_AGENT = DEFAULT_USER_AGENT.replace("callbridge/", "callbridge-amocrm/")
DEFAULT_429_PAUSE = 1.0  # amoCRM's limit is per second; its 429 carries no Retry-After that we know of
AUTH_PAUSE = 60.0  # after a refused token: retry deliveries slowly until the admin fixes it


class AmoApiError(DeliveryError):
    """What amoCRM said about a failed request (the problem+json fields), for messages and tests."""

    status: int | None = None
    title: str | None = None
    detail: str | None = None
    hint: str | None = None
    validation_errors: list[Any] | None = None
    body: Any = None
    sent_token: str | None = None  # the bearer token the failed request carried (never shown)


class AmoRetryableError(AmoApiError, RetryableDeliveryError):
    """A 5xx, a timeout or a connection error: try again later."""


class AmoPermanentError(AmoApiError, PermanentDeliveryError):
    """amoCRM rejected the request (400, 403, 404, ...): trying again cannot help."""


class AmoRateLimited(AmoRetryableError):
    """429 Too Many Requests."""


class AmoAuthError(AmoRetryableError):
    """The token was refused (401) or cannot be obtained (OAuth not done, refresh token revoked)."""


class TokenSource(Protocol):
    """Where the client gets its bearer token."""

    def token(self) -> str:
        """The current access token (may refresh it first); raises `AmoAuthError`."""
        ...

    def after_unauthorized(self, failed_token: str) -> str | None:
        """A fresh token after `failed_token` got a 401, or None when there is no way to get one."""
        ...

    def fresher(self, token: str) -> str:
        """`token`, or the one that already replaced it in this process (in memory, no I/O)."""
        ...


class StaticToken:
    """A long-lived token: nothing to refresh."""

    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str:
        return self._token

    def after_unauthorized(self, failed_token: str) -> str | None:
        return None

    def fresher(self, token: str) -> str:
        return token


class RequestWindow:
    """At most `limit` requests in any `window` seconds, counted from before a request is sent until
    `window` seconds after it was answered (module docstring). Thread-safe; waits by polling `sleep`, so
    tests can drive it with a fake clock."""

    def __init__(
        self,
        limit: int,
        window: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._in_flight = 0
        self._frees_at: list[float] = []  # heap: when the permits of answered requests come free

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a permit (True), or give up after `timeout` seconds (False)."""
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            with self._lock:
                now = self._clock()
                while self._frees_at and self._frees_at[0] <= now:
                    heapq.heappop(self._frees_at)
                if self._in_flight + len(self._frees_at) < self.limit:
                    self._in_flight += 1
                    return True
                wait = self._frees_at[0] - now if self._frees_at else 0.01  # else: all still in flight
            if deadline is not None and now + wait > deadline:
                return False
            self._sleep(min(max(wait, 0.001), 0.05))

    def release(self) -> None:
        """The request was answered (or failed): its permit frees one window from now."""
        with self._lock:
            self._in_flight -= 1
            heapq.heappush(self._frees_at, self._clock() + self.window)


class AmoClient:
    """Requests to one amoCRM account. Thread-safe; share one per connector instance."""

    def __init__(
        self,
        account_url: str,
        auth: TokenSource | None = None,
        *,
        rate: float = 7.0,
        timeout: float = 10.0,
        session: requests.Session | None = None,
        bucket: TokenBucket | None = None,
        window: RequestWindow | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.account_url = account_url.rstrip("/")
        self.auth = auth
        self.session = session or make_session(user_agent=USER_AGENT)
        self.bucket = bucket or TokenBucket(rate, 1, clock=clock, sleep=sleep)
        self.window = window or RequestWindow(max(1, int(rate)), clock=clock, sleep=sleep)
        self.timeout: tuple[float, float] = (min(3.05, timeout), timeout)
        self.requests_sent = 0  # for tests and the benchmark
        self._clock = clock
        self._paused_until = 0.0
        self._pause_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AmoClient({self.account_url!r})"

    # ------------------------------------------------------------------------------------------ API

    def get(self, path: str, params: dict[str, Any] | None = None, *, max_wait: float | None = None) -> Any:
        return self.request("GET", path, params=params, max_wait=max_wait)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, json=body)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        max_wait: float | None = None,
    ) -> Any:
        """Send an authenticated request; return the decoded JSON (None for 204/empty). See module doc.

        `max_wait`: give up (`AmoRateLimited`, nothing sent) when no rate-limit slot frees up within that
        many seconds; None waits as long as it takes (deliveries).
        """
        if self.auth is None:
            raise AmoAuthError("amoCRM: no credentials configured")
        token = self.auth.token()
        try:
            return self._send(method, path, token, params=params, json=json, max_wait=max_wait)
        except AmoAuthError as exc:
            if exc.status != 401:
                raise
            fresh = self.auth.after_unauthorized(exc.sent_token or token)
            if fresh is None:
                raise
            log.info("amoCRM answered 401; retrying once with a refreshed token path=%s", path)
            return self._send(method, path, fresh, params=params, json=json, max_wait=max_wait)

    def post_token(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``POST /oauth2/access_token`` (no bearer token); returns the token answer."""
        body = self._send("POST", TOKEN_PATH, None, json=payload)
        if not isinstance(body, dict) or not body.get("access_token") or not body.get("refresh_token"):
            raise AmoRetryableError(
                "amoCRM POST /oauth2/access_token: the answer has no access/refresh token"
            )
        return body

    # ------------------------------------------------------------------------------------ internals

    def _pause(self, seconds: float) -> None:
        """Hold every request of this client for `seconds` from now. Several 429s at once (one per thread)
        mean the same second: the pause is extended to the latest end, never added up."""
        with self._pause_lock:
            now = self._clock()
            extra = now + seconds - max(now, self._paused_until)
            if extra > 0:
                self.bucket.penalise(extra)
                self._paused_until = now + seconds

    def _send(
        self,
        method: str,
        path: str,
        token: str | None,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        max_wait: float | None = None,
    ) -> Any:
        headers = {"Accept": "application/json"}
        deadline = None if max_wait is None else self._clock() + max_wait
        if not self.bucket.acquire(timeout=max_wait) or not self.window.acquire(
            timeout=None if deadline is None else max(0.0, deadline - self._clock())
        ):
            raise AmoRateLimited(
                f"amoCRM {method} {path}: not sent, no request slot within {max_wait:g} s "
                "(the connector is busy at its rate limit)"
            )
        try:
            if token is not None:
                if self.auth is not None:
                    token = self.auth.fresher(token)
                headers["Authorization"] = f"Bearer {token}"
            self.requests_sent += 1
            response = send(
                self.session,
                method,
                self.account_url + path,
                params=params,
                json=json,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except DeliveryError as exc:
            err = self._translate(method, path, exc)
            err.sent_token = token
            raise err from None
        finally:
            self.window.release()
        status = response.status_code
        if 300 <= status < 400:
            err = AmoPermanentError(
                f"amoCRM {method} {path}: HTTP {status} redirect: check account_url "
                "(the account's own address, e.g. https://example.amocrm.ru)"
            )
            err.status = status
            raise err
        if status == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise AmoRetryableError(
                f"amoCRM {method} {path}: HTTP {status} with a body that is not JSON"
            ) from None

    def _translate(self, method: str, path: str, exc: DeliveryError) -> AmoApiError:
        status: int | None = getattr(exc, "status", None)
        response: requests.Response | None = getattr(exc, "response", None)
        if response is not None:
            status = response.status_code
        problem = _problem(response)
        where = f"amoCRM {method} {path}"
        if status is None:  # network: keep the shared layer's words (they name no secret)
            text = str(exc)
            reason = text.split(": ", 1)[1] if ": " in text else text
            err: AmoApiError = AmoRetryableError(f"{where}: {reason}")
        else:
            message = f"{where}: HTTP {status}{_describe(problem, response)}"
            retry_after = getattr(exc, "retry_after", None)
            if status == 429:
                pause = retry_after if retry_after is not None else DEFAULT_429_PAUSE
                self._pause(pause)
                err = AmoRateLimited(f"{message} (rate limit; pausing {pause:g} s)", retry_after=pause)
            elif status == 401 and path != TOKEN_PATH:
                err = AmoAuthError(
                    f"{message}: the token was refused (expired or revoked)", retry_after=AUTH_PAUSE
                )
            elif isinstance(exc, RetryableDeliveryError):
                err = AmoRetryableError(message, retry_after=retry_after)
            else:
                err = AmoPermanentError(message)
        err.status = status
        if problem:
            err.title = _text(problem.get("title"))
            err.detail = _text(problem.get("detail"))
            err.hint = _text(problem.get("hint"))
            errors = problem.get("validation-errors")
            err.validation_errors = errors if isinstance(errors, list) else None
            err.body = problem
        return err


def _problem(response: requests.Response | None) -> dict[str, Any]:
    if response is None or not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _text(value: Any) -> str | None:
    return redact(str(value), 200) if value not in (None, "") else None


def _describe(problem: dict[str, Any], response: requests.Response | None) -> str:
    """`` Bad Request: Request validation failed; field.path: Code (detail)`` from a problem+json body."""
    title = _text(problem.get("title")) or (redact(response.reason or "", 60) if response is not None else "")
    parts = [title or ""]
    detail = _text(problem.get("detail"))
    hint = _text(problem.get("hint"))
    if detail:
        parts.append(f": {detail}")
    if hint:
        parts.append(f" ({hint})")
    problems = _validation_lines(problem.get("validation-errors"))
    if problems:
        parts.append("; " + "; ".join(problems[:5]))
        if len(problems) > 5:
            parts.append(f"; and {len(problems) - 5} more")
    text = redact("".join(parts), 400)
    return f" {text}" if text and not text.startswith(":") else text


def _validation_lines(errors: Any) -> list[str]:
    lines: list[str] = []
    if not isinstance(errors, list):
        return lines
    for item in errors:
        if not isinstance(item, dict):
            continue
        request_id = item.get("request_id")
        for error in item.get("errors") or []:
            if not isinstance(error, dict):
                continue
            where = str(error.get("path") or "?")
            code = str(error.get("code") or "")
            detail = str(error.get("detail") or "")
            prefix = f"item {request_id}: " if request_id not in (None, "") else ""
            lines.append(f"{prefix}{where}: {code}{f' ({detail})' if detail else ''}")
    return lines


__all__ = [
    "AmoApiError",
    "AmoAuthError",
    "AmoClient",
    "AmoPermanentError",
    "AmoRateLimited",
    "AmoRetryableError",
    "RequestWindow",
    "StaticToken",
    "TokenSource",
]
