"""A small retailCRM API v5 client over the shared HTTP layer: the API key, form bodies, the rate limit.

retailcrm.md §3.1: every request carries ``X-API-KEY``; POST bodies are ``application/x-www-form-urlencoded``
with object parameters as JSON strings (``event=<json>``, ``calls=<json>``); answers are
``{"success": true, ...}`` or ``{"success": false, "errorMsg": ..., "errors": ...}``.

Every request first takes a token from one bucket of ``requests_per_second`` (burst 1) shared by every
thread of the process, so requests are spaced evenly. Answers are classified like every connector's
(`bridge.connector_api.http.send`) and then given retailCRM's own words:

* 503 (retailCRM's answer to more than ~10 requests/s): `RetailCrmRateLimited`, retryable; the bucket is
  emptied for ``Retry-After`` (1 s without one), so no thread of this process sends until then;
* 401/403 (a wrong or revoked key, a missing scope): `RetailCrmAuthError`, retryable slowly, so the waiting
  deliveries go through once the administrator fixes the key;
* other 4xx and ``success: false``: `RetailCrmPermanentError` with ``errorMsg`` and ``errors``;
* other 5xx, timeouts, connection errors: `RetailCrmRetryableError`.

Messages name the method, the path and retailCRM's words, never the key.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from bridge.connector_api import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from bridge.connector_api.http import DEFAULT_USER_AGENT, make_session, redact, send
from bridge.connector_api.ratelimit import TokenBucket

API = "/api/v5"
USER_AGENT = DEFAULT_USER_AGENT.replace("callbridge/", "callbridge-retailcrm/")
DEFAULT_503_PAUSE = 1.0
AUTH_PAUSE = 60.0


class RetailCrmError(DeliveryError):
    """What retailCRM said about a failed request."""

    status: int | None = None
    error_msg: str | None = None
    errors: Any = None


class RetailCrmRetryableError(RetailCrmError, RetryableDeliveryError):
    """A 5xx, a timeout or a connection error: try again later."""


class RetailCrmRateLimited(RetailCrmRetryableError):
    """503: more requests than the account allows."""


class RetailCrmAuthError(RetailCrmRetryableError):
    """The API key was refused (401/403)."""


class RetailCrmPermanentError(RetailCrmError, PermanentDeliveryError):
    """retailCRM rejected the request (400, 404, ``success: false``): trying again cannot help."""


def form(fields: Mapping[str, Any]) -> dict[str, str]:
    """A form body: objects and lists as JSON strings, scalars as text (retailcrm.md §3.1)."""
    out: dict[str, str] = {}
    for key, value in fields.items():
        if isinstance(value, dict | list):
            out[key] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        elif isinstance(value, bool):
            out[key] = "1" if value else "0"
        elif value is not None:
            out[key] = str(value)
    return out


class RetailCrmClient:
    """Requests to one retailCRM account. Thread-safe; share one per connector instance."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        rate: float = 8.0,
        timeout: float = 10.0,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self._api_key = api_key
        self.session = session or make_session(user_agent=USER_AGENT)
        self.bucket = TokenBucket(rate, 1, clock=clock, sleep=sleep)
        self.timeout: tuple[float, float] = (min(3.05, timeout), timeout)
        self.requests_sent = 0
        self._clock = clock
        self._paused_until = 0.0
        self._pause_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RetailCrmClient({self.url!r})"

    def get(
        self, path: str, params: Mapping[str, Any] | None = None, *, max_wait: float | None = None
    ) -> Any:
        return self.request("GET", path, params=dict(params or {}), max_wait=max_wait)

    def post(self, path: str, fields: Mapping[str, Any]) -> Any:
        return self.request("POST", path, data=form(fields))

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
        max_wait: float | None = None,
    ) -> dict[str, Any]:
        """Send one request to ``/api/v5<path>`` (`path` itself when it starts with ``/api/``); return
        the decoded answer (see the module docstring).

        `max_wait`: give up (`RetailCrmRateLimited`, nothing sent) when no request slot frees up within
        that many seconds; None waits as long as it takes (deliveries).
        """
        full = path if path.startswith("/api/") else API + path  # /api/credentials has no version
        where = f"retailCRM {method} {full}"
        if not self.bucket.acquire(timeout=max_wait):
            raise RetailCrmRateLimited(f"{where}: not sent, no request slot within {max_wait:g} s")
        self.requests_sent += 1
        try:
            response = send(
                self.session,
                method,
                f"{self.url}{full}",
                params=params,
                data=data,
                headers={"X-API-KEY": self._api_key, "Accept": "application/json"},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except DeliveryError as exc:
            raise self._translate(where, exc) from None
        if 300 <= response.status_code < 400:
            err = RetailCrmPermanentError(
                f"{where}: HTTP {response.status_code} redirect: check url (the account's own address)"
            )
            err.status = response.status_code
            raise err
        body = _json(response)
        if not isinstance(body, dict):
            raise RetailCrmRetryableError(
                f"{where}: HTTP {response.status_code} with a body that is not JSON"
            )
        if body.get("success") is False:
            err = RetailCrmPermanentError(f"{where}: {_words(body) or 'success: false'}")
            err.status, err.error_msg, err.errors = (
                response.status_code,
                body.get("errorMsg"),
                body.get("errors"),
            )
            raise err
        return body

    def _pause(self, seconds: float) -> None:
        """Hold every request of this client for `seconds` from now (several 503s at once: the latest end)."""
        with self._pause_lock:
            now = self._clock()
            extra = now + seconds - max(now, self._paused_until)
            if extra > 0:
                self.bucket.penalise(extra)
                self._paused_until = now + seconds

    def _translate(self, where: str, exc: DeliveryError) -> RetailCrmError:
        response: requests.Response | None = getattr(exc, "response", None)
        status = response.status_code if response is not None else getattr(exc, "status", None)
        if status is None:  # network: the shared layer's words name no secret
            text = str(exc)
            err: RetailCrmError = RetailCrmRetryableError(f"{where}: {text.split(': ', 1)[-1]}")
            return err
        body = _json(response) if response is not None else None
        said = _words(body) if isinstance(body, dict) else ""
        message = f"{where}: HTTP {status}{' ' + said if said else ''}"
        retry_after = getattr(exc, "retry_after", None)
        if status == 503:
            pause = retry_after if retry_after is not None else DEFAULT_503_PAUSE
            self._pause(pause)
            err = RetailCrmRateLimited(f"{message} (rate limit; pausing {pause:g} s)", retry_after=pause)
        elif status in (401, 403):
            err = RetailCrmAuthError(
                f"{message}: the API key was refused (wrong, revoked, or without the needed scopes)",
                retry_after=AUTH_PAUSE,
            )
        elif isinstance(exc, RetryableDeliveryError):
            err = RetailCrmRetryableError(message, retry_after=retry_after)
        else:
            err = RetailCrmPermanentError(message)
        err.status = status
        if isinstance(body, dict):
            err.error_msg = body.get("errorMsg")
            err.errors = body.get("errors")
        return err


def _json(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _words(body: dict[str, Any]) -> str:
    """``errorMsg`` and the ``errors`` detail, cleaned of anything secret-looking and bounded."""
    parts = [str(body.get("errorMsg") or "")]
    errors = body.get("errors")
    if isinstance(errors, dict):
        parts += [f"{k}: {v}" for k, v in list(errors.items())[:5]]
    elif isinstance(errors, list):
        parts += [str(e) for e in errors[:5]]
    return redact("; ".join(p for p in parts if p), 400)


__all__ = [
    "API",
    "RetailCrmAuthError",
    "RetailCrmClient",
    "RetailCrmError",
    "RetailCrmPermanentError",
    "RetailCrmRateLimited",
    "RetailCrmRetryableError",
    "form",
]
