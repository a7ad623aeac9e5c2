"""Bitrix24 errors as DeliveryErrors: the dispatcher retries the retryable ones and parks the rest.

Every error carries the method, Bitrix's `code` (``ERROR_CORE``, ``QUERY_LIMIT_EXCEEDED``...) and its
`description` (redacted). Messages name the method and the portal's host, never a URL path (webhook
secrets live there) nor a token.
"""

from __future__ import annotations

from bridge.connector_api import PermanentDeliveryError, RetryableDeliveryError
from bridge.connector_api.http import redact

# Codes that say the request was never executed and may simply be sent again later.
RETRYABLE_CODES = frozenset(
    {"QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT", "INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER"}
)
# Codes that mean the credentials are wrong or the application is not (or no longer) installed.
AUTH_CODES = frozenset(
    {
        "NO_AUTH_FOUND",
        "invalid_token",
        "INVALID_CREDENTIALS",
        "insufficient_scope",
        "ACCESS_DENIED",
        "WRONG_AUTH_TYPE",
        "user_access_error",
        "PAYMENT_REQUIRED",
        "OVERLOAD_LIMIT",
        "PORTAL_DELETED",
        "INVALID_REQUEST",
    }
)

_EXPLAIN = {
    "QUERY_LIMIT_EXCEEDED": "too many requests (the portal's leaky bucket is full)",
    "OPERATION_TIME_LIMIT": "the method is blocked for a while (its run-time budget is spent)",
    "expired_token": "the access token has expired",
    "invalid_token": "the access token is not valid: reinstall the local application",
    "NO_AUTH_FOUND": "no credentials reached Bitrix24",
    "INVALID_CREDENTIALS": "the incoming webhook URL is wrong or the webhook was deleted",
    "insufficient_scope": "the application or webhook lacks a permission (telephony, crm, user, task)",
    "ACCESS_DENIED": "REST is not available on this portal's plan",
    "WRONG_AUTH_TYPE": "this method works only for the local application (OAuth), not a webhook",
    "user_access_error": "the user of the token has no access to the application",
    "PAYMENT_REQUIRED": "the application's paid period is over",
    "OVERLOAD_LIMIT": "REST is blocked for this portal by Bitrix24 support",
    "ERROR_METHOD_NOT_FOUND": "no such method, or the application lacks its scope",
}


def explain(code: str | None, description: str | None) -> str:
    """A short plain-words reason from Bitrix's code and description."""
    words = _EXPLAIN.get(code or "")
    text = redact((description or "").replace("<br>", " "), 160).strip().rstrip(".")
    if words and text:
        return f"{code}: {words} ({text})"
    if words:
        return f"{code}: {words}"
    if code and text:
        return f"{code}: {text}"
    return code or text or "no details"


class BitrixError(Exception):
    """Mixin with the fields every Bitrix24 error has."""

    method: str
    code: str | None
    description: str | None
    status: int | None


class BitrixRetryable(RetryableDeliveryError, BitrixError):
    """Try again later: the request was refused for now (rate limit, method block, server error)."""

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        code: str | None = None,
        description: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.method, self.code, self.description, self.status = method, code, description, status


class BitrixPermanent(PermanentDeliveryError, BitrixError):
    """Bitrix24 rejected the command; sending it again cannot help."""

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        code: str | None = None,
        description: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.method, self.code, self.description, self.status = method, code, description, status


class QueryLimitExceeded(BitrixRetryable):
    """HTTP 503 QUERY_LIMIT_EXCEEDED: the portal's leaky bucket is full."""


class MethodBlocked(BitrixRetryable):
    """HTTP 429 OPERATION_TIME_LIMIT: one method is blocked until its run-time budget frees up."""


class TokenExpired(BitrixRetryable):
    """HTTP 401 expired_token: refresh and send again (the client does this once by itself)."""


class NotAuthorised(BitrixRetryable):
    """No usable credentials yet (not installed, refresh refused, wrong secret): the rows wait for a fix."""


def command_error(
    method: str, host: str, code: str | None, description: str | None, status: int | None = None
) -> BitrixError:
    """The exception for one failed command (a plain call or one command of a batch)."""
    message = f"{method} at {host}: " + (f"HTTP {status} " if status else "") + explain(code, description)
    kw = {"method": method, "code": code, "description": description, "status": status}
    if code == "QUERY_LIMIT_EXCEEDED":
        return QueryLimitExceeded(message, **kw)
    if code == "OPERATION_TIME_LIMIT":
        return MethodBlocked(message, **kw)
    if code == "expired_token":
        return TokenExpired(message, **kw)
    if code in AUTH_CODES:
        if code == "WRONG_AUTH_TYPE":
            message += ": configure the local application (client_id, client_secret) and install it"
        return NotAuthorised(message, **kw)
    if code in RETRYABLE_CODES or (status is not None and status >= 500):
        return BitrixRetryable(message, **kw)
    return BitrixPermanent(message, **kw)
