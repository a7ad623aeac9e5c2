"""The shared HTTP session layer for connectors.

Every connector talks to its vendor through `make_session` and `send`, so that all of them classify vendor
answers the same way:

* connection errors, timeouts, 408, 429 and 5xx raise `RetryableDeliveryError` (with the vendor's
  ``Retry-After`` hint, seconds or HTTP-date, in `retry_after`);
* any other 4xx raises `PermanentDeliveryError`;
* everything else (1xx, 2xx, 3xx) is returned to the connector.

Error messages name the method, the host and the status only: never the path or query (vendor tokens often
live there, e.g. Bitrix24 inbound webhooks), never a header, never a body. `redact` cleans any other text a
connector wants to put into an error message. The exceptions carry `status` (int or None) and `response`
(the `requests.Response` or None) for connectors that want to look closer, e.g. to refresh an OAuth token
on a 401.

`idempotency_key` is the one definition of the per-delivery key that the outbox stores and connectors send
to vendors that accept one (``Idempotency-Key`` headers, external ids).
"""

from __future__ import annotations

import email.utils
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from bridge import __version__
from bridge.connector_api.base import PermanentDeliveryError, RetryableDeliveryError

if TYPE_CHECKING:
    from bridge.connector_api.events import CallEvent

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_USER_AGENT",
    "RETRYABLE_STATUSES",
    "idempotency_key",
    "make_session",
    "parse_retry_after",
    "redact",
    "safe_host",
    "send",
]

DEFAULT_USER_AGENT = f"callbridge/{__version__}"
# (connect, read) seconds; connect slightly above a multiple of 3 s, the TCP retransmission window.
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 10)
RETRYABLE_STATUSES = frozenset({408, 425, 429})  # plus every 5xx

_MAX_REASON = 80


def idempotency_key(connector_name: str, event: CallEvent) -> str:
    """``<connector>:<entry_id>:<event key>``: unique per delivery, stable across redelivery."""
    return f"{connector_name}:{event.entry_id}:{event.key}"


def make_session(user_agent: str = DEFAULT_USER_AGENT, pool: int = 10) -> requests.Session:
    """A `requests.Session` with a connection pool of `pool` and no transport-level retries.

    Retries belong to the outbox (with backoff, budget and visibility), not to urllib3, so the adapter is
    mounted with ``max_retries=0``. The session is safe to share between the dispatcher's worker threads
    for plain requests (do not change its headers or cookies concurrently).
    """
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=pool, pool_maxsize=pool, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent
    return session


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    **kw: Any,
) -> requests.Response:
    """Send one request and classify the outcome (see the module docstring).

    Keyword arguments go to `requests.Session.request` (``json=``, ``data=``, ``headers=``, ``params=``,
    ``allow_redirects=`` ...). Returns the response for 1xx/2xx/3xx; raises a `DeliveryError` subclass
    otherwise.
    """
    method = method.upper()
    where = f"{method} {safe_host(url)}"
    try:
        response = session.request(method, url, timeout=timeout, **kw)
    except requests.Timeout as exc:
        kind = "connect" if isinstance(exc, requests.ConnectTimeout) else "read"
        raise _retryable(f"{where}: {kind} timeout", None, None) from None
    except requests.exceptions.InvalidURL:
        raise _permanent(f"{where}: invalid URL", None, None) from None
    except (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema):
        raise _permanent(f"{where}: URL scheme must be http or https", None, None) from None
    except requests.exceptions.InvalidHeader:
        raise _permanent(f"{where}: invalid request header", None, None) from None
    except requests.exceptions.SSLError:
        raise _retryable(f"{where}: TLS handshake failed (certificate or protocol)", None, None) from None
    except requests.ConnectionError as exc:
        raise _retryable(f"{where}: connection failed ({_connection_reason(exc)})", None, None) from None
    except requests.TooManyRedirects:
        raise _permanent(f"{where}: too many redirects", None, None) from None
    except requests.RequestException as exc:
        raise _retryable(f"{where}: request failed ({type(exc).__name__})", None, None) from None

    status = response.status_code
    if status < 400:
        return response
    reason = _short_reason(response)
    message = f"{where}: HTTP {status}{' ' + reason if reason else ''}"
    if status in RETRYABLE_STATUSES or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is not None:
            message += f" (Retry-After {retry_after:g} s)"
        response.close()
        raise _retryable(message, retry_after, response)
    response.close()
    raise _permanent(message, status, response)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date; None if absent/bad.

    Dates in the past give 0. `now` (Unix seconds) is for tests.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:  # RFC 9110 dates are always GMT
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def safe_host(url: str) -> str:
    """``scheme://host[:port]`` of a URL, without user info, path or query: safe for logs and errors."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if not parts.scheme or not host:
        return "<invalid url>"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}"


_URL_RE = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_KV_SECRET_RE = re.compile(
    r"(?i)\b(pass(?:word|wd)?|secret|token|access_token|refresh_token|api[_-]?key|apikey|auth|"
    r"authorization|client_secret|sign(?:ature)?|key)\b(\s*[=:]\s*)(?:bearer\s+|basic\s+)?[^\s,;&'\"]+"
)
_BEARER_RE = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_LONG_TOKEN_RE = re.compile(
    r"(?<![A-Za-z0-9])(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{32,}"
)


def redact(text: str, limit: int = 300) -> str:
    """Make free text safe for a log line or a stored error: secrets out, length bounded.

    URLs are cut down to scheme and host (``/***`` marks a removed path or query), ``key=value`` pairs
    whose key sounds secret lose their value, bearer/basic credentials and long token-like strings become
    ``***``; the result is at most `limit` characters on one line. Applying it twice changes nothing.
    """
    text = _URL_RE.sub(_redact_url, text)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)} ***", text)
    text = _KV_SECRET_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    text = _LONG_TOKEN_RE.sub("***", text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: max(0, limit - 3)] + "..."
    return text


def _redact_url(match: re.Match[str]) -> str:
    url = match.group(0)
    core = url.rstrip(".,;:!?)]}")  # punctuation after a URL belongs to the sentence
    return safe_host(core) + ("/***" if _has_path(core) else "") + url[len(core) :]


def _has_path(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return True
    return bool(parts.path.strip("/") or parts.query or parts.fragment)


def _short_reason(response: requests.Response) -> str:
    reason = response.reason or ""
    if isinstance(reason, bytes):
        reason = reason.decode("latin-1", "replace")
    return redact(reason, _MAX_REASON)


def _connection_reason(exc: Exception) -> str:
    text = str(exc).lower()
    for needle, words in (
        ("refused", "connection refused"),
        ("name or service not known", "host not found"),
        ("nodename nor servname", "host not found"),
        ("temporary failure in name resolution", "DNS lookup failed"),
        ("failed to resolve", "DNS lookup failed"),
        ("getaddrinfo failed", "DNS lookup failed"),
        ("network is unreachable", "network unreachable"),
        ("no route to host", "no route to host"),
        ("reset by peer", "connection reset"),
        ("remotedisconnected", "connection closed without a response"),
        ("remote end closed", "connection closed without a response"),
        ("aborted", "connection aborted"),
    ):
        if needle in text:
            return words
    return type(exc).__name__


def _retryable(message: str, retry_after: float | None, response: requests.Response | None) -> Exception:
    err = RetryableDeliveryError(message, retry_after=retry_after)
    err.status = response.status_code if response is not None else None  # type: ignore[attr-defined]
    err.response = response  # type: ignore[attr-defined]
    return err


def _permanent(message: str, status: int | None, response: requests.Response | None) -> Exception:
    err = PermanentDeliveryError(message)
    err.status = status  # type: ignore[attr-defined]
    err.response = response  # type: ignore[attr-defined]
    return err
