"""A small Dataverse Web API client over the shared HTTP layer: the bearer token, OData headers, the
service-protection limits.

dynamics.md: ``<url>/api/data/v9.2/<entity set>``; every request carries ``Authorization: Bearer``,
``OData-Version: 4.0``, ``OData-MaxVersion: 4.0`` and ``Accept: application/json``; errors are
``{"error": {"code": "0x…", "message": "…"}}``. TLS is always verified (requests' CA bundle, or the one
``REQUESTS_CA_BUNDLE`` names).

Every request first takes a token from one bucket of ``requests_per_second`` (burst 1) shared by every
thread of the process. Answers are classified like every connector's (`bridge.connector_api.http.send`)
and given Dataverse's words:

* 429 (service protection): `DataverseRateLimited`, retryable; the bucket is emptied for ``Retry-After``
  (5 s without one), so no thread of this process sends until then;
* 401: the token is dropped from msal's cache and the request is sent once more with a new one; a second
  401 is `DataverseAuthError` (retryable slowly: the application user may be missing or disabled);
* 403 (no privilege on the table): `DataverseAuthError` as well, with Dataverse's words;
* other 4xx: `DataversePermanentError`; other 5xx, timeouts, connection errors: `DataverseRetryableError`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from bridge.connector_api import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from bridge.connector_api.http import DEFAULT_USER_AGENT, make_session, redact, send
from bridge.connector_api.ratelimit import TokenBucket
from connectors.dynamics.tokens import TokenSource

API = "/api/data/v9.2"
USER_AGENT = DEFAULT_USER_AGENT.replace("callbridge/", "callbridge-dynamics/")
DEFAULT_429_PAUSE = 5.0
AUTH_PAUSE = 60.0


class DataverseError(DeliveryError):
    """What Dataverse said about a failed request."""

    status: int | None = None
    code: str | None = None


class DataverseRetryableError(DataverseError, RetryableDeliveryError):
    """A 5xx, a timeout or a connection error: try again later."""


class DataverseRateLimited(DataverseRetryableError):
    """429: a service protection limit was hit."""


class DataverseAuthError(DataverseRetryableError):
    """401 twice, or 403: the application user is missing, disabled or lacks a privilege."""


class DataversePermanentError(DataverseError, PermanentDeliveryError):
    """Dataverse rejected the request (400, 404, 412 ...): trying again cannot help."""


class DataverseClient:
    """Requests to one Dataverse environment. Thread-safe; share one per connector instance."""

    def __init__(
        self,
        url: str,
        tokens: TokenSource,
        *,
        rate: float = 10.0,
        timeout: float = 10.0,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.tokens = tokens
        self.session = session or make_session(user_agent=USER_AGENT)
        self.bucket = TokenBucket(rate, 1, clock=clock, sleep=sleep)
        self.timeout: tuple[float, float] = (min(3.05, timeout), timeout)
        self.requests_sent = 0
        self._clock = clock
        self._paused_until = 0.0
        self._pause_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DataverseClient({self.url!r})"

    def get(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        max_wait: float | None = None,
    ) -> Any:
        return self.request("GET", path, params=dict(params or {}), headers=headers, max_wait=max_wait)

    def get_link(self, link: str, *, headers: Mapping[str, str] | None = None) -> Any:
        """Follow an ``@odata.nextLink`` (an absolute URL of this environment's Web API)."""
        base = f"{self.url}{API}"
        if not link.startswith(base + "/"):
            raise DataversePermanentError("Dataverse: a next-page link outside this environment's Web API")
        return self.request("GET", link[len(base) :], headers=headers)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: dict[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        max_wait: float | None = None,
    ) -> Any:
        """Send one request to ``/api/data/v9.2<path>``; return the decoded body (None when empty).

        `max_wait`: give up (`DataverseRateLimited`, nothing sent) when no request slot frees up within
        that many seconds; None waits as long as it takes (deliveries).
        """
        where = f"Dataverse {method} {path.split('?', 1)[0]}"
        for attempt in (1, 2):
            token = self.tokens.token()
            if not self.bucket.acquire(timeout=max_wait):
                raise DataverseRateLimited(f"{where}: not sent, no request slot within {max_wait:g} s")
            self.requests_sent += 1
            sent = {
                "Authorization": f"Bearer {token}",
                "OData-Version": "4.0",
                "OData-MaxVersion": "4.0",
                "Accept": "application/json",
                **(headers or {}),
            }
            try:
                response = send(
                    self.session,
                    method,
                    f"{self.url}{API}{path}",
                    params=params or None,
                    json=dict(body) if body is not None else None,
                    headers=sent,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except DeliveryError as exc:
                if getattr(exc, "status", None) == 401 and attempt == 1:
                    self.tokens.refused(token)  # msal would hand the same token back
                    continue
                raise self._translate(where, exc) from None
            if 300 <= response.status_code < 400:
                err = DataversePermanentError(f"{where}: HTTP {response.status_code} redirect: check url")
                err.status = response.status_code
                raise err
            return _json(response)
        raise AssertionError("unreachable")

    def _pause(self, seconds: float) -> None:
        """Hold every request of this client for `seconds` from now (several 429s: the latest end)."""
        with self._pause_lock:
            now = self._clock()
            extra = now + seconds - max(now, self._paused_until)
            if extra > 0:
                self.bucket.penalise(extra)
                self._paused_until = now + seconds

    def _translate(self, where: str, exc: DeliveryError) -> DataverseError:
        response: requests.Response | None = getattr(exc, "response", None)
        status = response.status_code if response is not None else getattr(exc, "status", None)
        if status is None:  # network: the shared layer's words name no secret
            return DataverseRetryableError(f"{where}: {str(exc).split(': ', 1)[-1]}")
        code, said = _words(_json(response) if response is not None else None)
        message = f"{where}: HTTP {status}{' ' + code if code else ''}{': ' + said if said else ''}"
        retry_after = getattr(exc, "retry_after", None)
        err: DataverseError
        if status == 429:
            pause = retry_after if retry_after is not None else DEFAULT_429_PAUSE
            self._pause(pause)
            err = DataverseRateLimited(
                f"{message} (service protection; pausing {pause:g} s)", retry_after=pause
            )
        elif status in (401, 403):
            err = DataverseAuthError(
                f"{message}: the application user is missing, disabled or lacks a privilege",
                retry_after=AUTH_PAUSE,
            )
        elif isinstance(exc, RetryableDeliveryError):
            err = DataverseRetryableError(message, retry_after=retry_after)
        else:
            err = DataversePermanentError(message)
        err.status, err.code = status, code or None
        return err


def _json(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _words(body: Any) -> tuple[str, str]:
    """(code, message) of Dataverse's error body, cleaned of anything secret-looking and bounded."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return redact(str(error.get("code") or ""), 40), redact(str(error.get("message") or ""), 300)


__all__ = [
    "API",
    "DataverseAuthError",
    "DataverseClient",
    "DataverseError",
    "DataversePermanentError",
    "DataverseRateLimited",
    "DataverseRetryableError",
]
