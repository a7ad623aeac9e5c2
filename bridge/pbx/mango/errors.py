"""Exceptions of the Mango client: one class per code class, with messages a person can act on.

Each is also the PBX port's kind for it (`bridge.pbx.port`): `MangoRateLimited` is a `PbxRateLimited`, so
the core catches the port's kinds and never names Mango's.

Messages carry the code, its meaning and the API path, never the salt, a signature or a payload.
`retryable` tells a dispatcher whether the same request can succeed later without a change.
"""

from __future__ import annotations

from bridge.pbx.mango.codes import describe, is_call_ended
from bridge.pbx.port import (
    PbxBadKey,
    PbxBadRequest,
    PbxBadSignature,
    PbxBillingError,
    PbxError,
    PbxRateLimited,
    PbxTransportError,
)


class MangoError(PbxError):
    """A Mango request failed. `code` is Mango's result code, or None when Mango gave none."""

    retryable: bool = False


class MangoCallEnded(MangoError):
    """11xx-13xx returned as an error: the call (leg) ended, so the command has nothing to act on."""


class MangoBillingError(MangoError, PbxBillingError):
    """2xxx: the account's balance, tariff or limits forbid it. Fix it in the Mango cabinet."""


class MangoBadRequest(MangoError, PbxBadRequest):
    """3xxx: Mango rejected the request itself. Repeating it unchanged fails again.

    Mango allows one invalid request per 2 minutes; after a second one it answers HTTP 401 to
    everything from this product for 2 minutes (see `MangoAccessBlocked`).
    """


class MangoBadSign(MangoBadRequest, PbxBadSignature):
    """3102: the signature does not match: the API salt is wrong."""


class MangoBadKey(MangoBadRequest, PbxBadKey):
    """3105: the API key (product code) is wrong."""


class MangoAccessBlocked(MangoBadRequest):
    """HTTP 401: Mango blocked the API for 2 minutes after repeated invalid (3xxx) requests."""

    retryable = True

    def __init__(self, message: str, *, path: str | None = None, retry_after: float = 120.0) -> None:
        super().__init__(None, message, path=path, http_status=401)
        self.retry_after = retry_after


class MangoCannotDo(MangoError):
    """4xxx: the request is valid but cannot be done in the current state of the PBX or call."""


class MangoCallNotFound(MangoCannotDo):
    """4101: the call has already ended or never existed."""


class MangoRateLimited(MangoCannotDo, PbxRateLimited):
    """4290 or HTTP 429: too many requests. `retry_after` is the wait in seconds, when known.

    `local` is True when the client's own limiter refused before sending anything.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        local: bool = False,
        path: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(4290, message, path=path, http_status=http_status)
        self.retry_after = retry_after
        self.local = local


class MangoStatsKeyNotFound(MangoCannotDo):
    """stats/result answered 404: the key is unknown or the report expired (kept at least 1 min)."""


class MangoStatsTimeout(MangoError):
    """The report behind a stats key was not ready within the caller's timeout."""

    retryable = True


class MangoServerError(MangoError):
    """5xxx or HTTP 5xx: a fault on Mango's side. Pause, then retry."""

    retryable = True


class MangoTransportError(MangoError, PbxTransportError):
    """No usable answer: network error, timeout, TLS failure, or a reply that is not Mango's JSON.

    `maybe_delivered` is True when the request may have reached Mango (a read timeout, a broken
    reply), so a non-idempotent command such as a callback may already be running.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        http_status: int | None = None,
        maybe_delivered: bool = True,
    ) -> None:
        super().__init__(None, message, path=path, http_status=http_status)
        self.maybe_delivered = maybe_delivered


def _where(path: str | None) -> str:
    return f" on {path}" if path else ""


def error_for(
    code: int,
    *,
    path: str | None = None,
    http_status: int | None = None,
    retry_after: float | None = None,
) -> MangoError:
    """The specific exception for a non-success Mango result `code`, with an actionable message."""
    meaning = describe(code)
    where = _where(path)
    if code == 3102:
        return MangoBadSign(
            code,
            f"Mango rejected the signature (3102){where}: check the API salt (vpbx_api_salt, "
            "'Ключ для создания подписи' on the cabinet's 'API коннектор' page)",
            path=path,
            http_status=http_status,
        )
    if code == 3105:
        return MangoBadKey(
            code,
            f"Mango rejected the API key (3105){where}: check the API key (vpbx_api_key, "
            "'Уникальный код вашей АТС' on the cabinet's 'API коннектор' page)",
            path=path,
            http_status=http_status,
        )
    if code == 4101:
        return MangoCallNotFound(
            code,
            f"The call has already ended or does not exist (4101){where}: refresh the call state "
            "instead of retrying",
            path=path,
            http_status=http_status,
        )
    if code == 4290:
        wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
        return MangoRateLimited(
            f"Mango rate limit exceeded (4290){where}: slow down{wait}",
            retry_after=retry_after,
            path=path,
            http_status=http_status,
        )
    if is_call_ended(code):
        return MangoCallEnded(
            code,
            f"The call ended ({code}: {meaning}){where}: there is no live call to act on",
            path=path,
            http_status=http_status,
        )
    klass = code - code % 1000
    if klass == 2000:
        return MangoBillingError(
            code,
            f"Mango refused for a billing reason ({code}: {meaning}){where}: check the balance, "
            "tariff and limits in the Mango cabinet",
            path=path,
            http_status=http_status,
        )
    if klass == 3000:
        return MangoBadRequest(
            code,
            f"Mango rejected the request as invalid ({code}: {meaning}){where}: fix the request; "
            "Mango blocks the API for 2 minutes after a second invalid request within 2 minutes",
            path=path,
            http_status=http_status,
        )
    if klass == 4000:
        return MangoCannotDo(
            code,
            f"Mango cannot do this now ({code}: {meaning}){where}",
            path=path,
            http_status=http_status,
        )
    if klass == 5000:
        return MangoServerError(
            code,
            f"Mango server error ({code}: {meaning}){where}: pause or slow down, then retry",
            path=path,
            http_status=http_status,
        )
    return MangoError(
        code, f"Mango answered with result {code} ({meaning}){where}", path=path, http_status=http_status
    )
