"""A small YClients REST client over the shared HTTP layer: auth headers, the envelope, errors, the limit.

Every request carries ``Accept: application/vnd.yclients.v2+json`` and ``Authorization: Bearer <partner>``,
with ``, User <user token>`` added for what needs a user (client search, visits). Every request of the
process first takes a token from one bucket of ``requests_per_second`` with a burst of 1, so YClients'
limit of 200 a minute and 5 a second per address holds whatever mix of deliveries and lookups runs.

Answers are classified like every connector's (`bridge.connector_api.http.send`) and then read through
YClients' envelope ``{"success", "data", "meta"}``, so a refusal says YClients' own words
(``meta.message``, ``meta.errors`` of a 422, or ``errors.message``, the other shape seen on 401 and 404)
in the delivery's ``last_error``:

* 2xx with ``success`` not false: ``data`` (None for the telephony endpoint's ``202 Accepted``);
* 401: `YClientsAuthError`, retryable after a minute (a token fixed by the admin lets the deliveries through);
* 429: `YClientsRateLimited` with ``Retry-After`` (2 s when YClients sends none); the bucket is emptied
  for that long, so no thread of this process sends until then;
* other 4xx, and a 2xx saying ``success: false``: `YClientsPermanentError`; 5xx and network errors:
  `YClientsRetryableError`; 3xx: permanent (redirects are not followed: the tokens must not travel).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from bridge.connector_api import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from bridge.connector_api.http import DEFAULT_USER_AGENT, make_session, redact, send
from bridge.connector_api.ratelimit import TokenBucket

ACCEPT = "application/vnd.yclients.v2+json"
USER_AGENT = DEFAULT_USER_AGENT.replace("callbridge/", "callbridge-yclients/")
DEFAULT_429_PAUSE = 2.0
AUTH_PAUSE = 60.0


class YClientsError(DeliveryError):
    """What YClients said about a failed request, for messages and tests."""

    status: int | None = None
    message: str | None = None  # meta.message
    errors: Any = None  # meta.errors (422)


class YClientsRetryableError(YClientsError, RetryableDeliveryError):
    """A 5xx, a timeout or a connection error: try again later."""


class YClientsPermanentError(YClientsError, PermanentDeliveryError):
    """YClients refused the request (400, 403, 404, 422, success: false): trying again cannot help."""


class YClientsRateLimited(YClientsRetryableError):
    """429 Too Many Requests."""


class YClientsAuthError(YClientsRetryableError):
    """401: the partner or user token was refused."""


class YClientsClient:
    """Requests to one YClients API address. Thread-safe; share one per connector instance."""

    def __init__(
        self,
        api_url: str,
        partner_token: str,
        user_token: str | None = None,
        *,
        rate: float = 3.0,
        timeout: float = 10.0,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._partner = partner_token
        self._user = user_token
        self.session = session or make_session(user_agent=USER_AGENT)
        self.bucket = TokenBucket(rate, 1, clock=clock, sleep=sleep)
        self.timeout: tuple[float, float] = (min(3.05, timeout), timeout)
        self.requests_sent = 0  # for tests and the benchmark
        self._clock = clock
        self._paused_until = 0.0
        self._pause_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"YClientsClient({self.api_url!r}, user_token={'set' if self._user else 'none'})"

    @property
    def has_user(self) -> bool:
        return bool(self._user)

    def get(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        user: bool = False,
        max_wait: float | None = None,
    ) -> Any:
        return self.request("GET", path, params=params, user=user, max_wait=max_wait)

    def post(self, path: str, body: Any, *, user: bool = False, max_wait: float | None = None) -> Any:
        return self.request("POST", path, json=body, user=user, max_wait=max_wait)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        user: bool = False,
        max_wait: float | None = None,
    ) -> Any:
        """Send one request; return the envelope's ``data``. See the module docstring.

        `max_wait`: give up (`YClientsRateLimited`, nothing sent) when no request slot frees up within that
        many seconds; None waits as long as it takes (deliveries).
        """
        where = f"YClients {method} {path}"
        if user and not self._user:
            raise YClientsPermanentError(f"{where}: needs a user token (user_token is not set)")
        if not self.bucket.acquire(timeout=max_wait):
            raise YClientsRateLimited(
                f"{where}: not sent, no request slot within {max_wait:g} s "
                "(the connector is at its rate limit)"
            )
        auth = f"Bearer {self._partner}" + (f", User {self._user}" if user else "")
        headers = {"Accept": ACCEPT, "Authorization": auth}
        self.requests_sent += 1
        try:
            response = send(
                self.session,
                method,
                self.api_url + path,
                params=params,
                json=json,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except DeliveryError as exc:
            raise self._translate(where, exc) from None
        status = response.status_code
        if 300 <= status < 400:
            err = YClientsPermanentError(f"{where}: HTTP {status} redirect: check api_url")
            err.status = status
            raise err
        envelope = _envelope(response)
        if envelope.get("success") is False:
            err = YClientsPermanentError(f"{where}: HTTP {status} success=false{_describe(envelope)}")
            err.status, err.message, err.errors = status, _meta_message(envelope), _meta_errors(envelope)
            raise err
        return envelope.get("data")

    def _pause(self, seconds: float) -> None:
        """Hold every request of this client for `seconds` from now (several 429s at once mean the same
        pause: it is extended to the latest end, never added up)."""
        with self._pause_lock:
            now = self._clock()
            extra = now + seconds - max(now, self._paused_until)
            if extra > 0:
                self.bucket.penalise(extra)
                self._paused_until = now + seconds

    def _translate(self, where: str, exc: DeliveryError) -> YClientsError:
        response: requests.Response | None = getattr(exc, "response", None)
        status: int | None = response.status_code if response is not None else getattr(exc, "status", None)
        if status is None:  # network: the shared layer's words name no secret
            text = str(exc)
            return YClientsRetryableError(f"{where}: {text.split(': ', 1)[-1]}")
        envelope = _envelope(response) if response is not None else {}
        message = f"{where}: HTTP {status}{_describe(envelope)}"
        retry_after = getattr(exc, "retry_after", None)
        err: YClientsError
        if status == 429:
            pause = retry_after if retry_after is not None else DEFAULT_429_PAUSE
            self._pause(pause)
            err = YClientsRateLimited(f"{message} (rate limit; pausing {pause:g} s)", retry_after=pause)
        elif status == 401:
            err = YClientsAuthError(f"{message}: a token was refused", retry_after=AUTH_PAUSE)
        elif isinstance(exc, RetryableDeliveryError):
            err = YClientsRetryableError(message, retry_after=retry_after)
        else:
            err = YClientsPermanentError(message)
        err.status, err.message, err.errors = status, _meta_message(envelope), _meta_errors(envelope)
        return err


def _envelope(response: requests.Response) -> dict[str, Any]:
    if not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _meta(envelope: dict[str, Any]) -> dict[str, Any]:
    meta = envelope.get("meta")
    return meta if isinstance(meta, dict) else {}


def _meta_message(envelope: dict[str, Any]) -> str | None:
    """``meta.message``, or ``errors.message`` of the other error shape YClients answers 401 and 404 with."""
    message = _meta(envelope).get("message")
    errors = envelope.get("errors")
    if message in (None, "") and isinstance(errors, dict):
        message = errors.get("message")
    return redact(str(message), 200) if message not in (None, "") else None


def _meta_errors(envelope: dict[str, Any]) -> Any:
    return _meta(envelope).get("errors")


def _describe(envelope: dict[str, Any]) -> str:
    """`` (Invalid phone; phone: required)`` from YClients' ``meta.message`` and ``meta.errors``."""
    parts = []
    message = _meta_message(envelope)
    if message:
        parts.append(message)
    errors = _meta_errors(envelope)
    lines: list[str] = []
    if isinstance(errors, dict):
        errors = [errors]
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, dict):
                lines += [f"{field}: {text}" for field, text in item.items()]
    if lines:
        parts.append("; ".join(lines[:5]))
    text = redact("; ".join(parts), 400)
    return f" ({text})" if text else ""


__all__ = [
    "YClientsAuthError",
    "YClientsClient",
    "YClientsError",
    "YClientsPermanentError",
    "YClientsRateLimited",
    "YClientsRetryableError",
]
