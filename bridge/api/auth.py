"""Bearer-token check for the read API (constant-time)."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from flask import request

from bridge.http_errors import ApiError


def require_bearer(token_source: Callable[[], str]) -> Callable[[], None]:
    """A `before_request` hook that demands `Authorization: Bearer <token>`."""

    def check() -> None:
        token = token_source()
        if not token:
            raise ApiError(503, "the read API is disabled: set CALLBRIDGE_API_TOKEN to enable it")
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise ApiError(401, "missing bearer token (Authorization: Bearer <token>)")
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ApiError(401, "invalid bearer token")

    return check
