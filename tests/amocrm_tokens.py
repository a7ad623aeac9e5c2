"""amoCRM's one-time tokens as amoCRM makes them (developers.kommo.com/docs/one-time-tokens), for tests."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt


def one_time_token(
    secret: str,
    account_url: str,
    user_id: int,
    /,
    *,
    account_id: int = 29843211,
    audience: str = "https://calls.example.com",
    lifetime: float = 60.0,
    issued_at: float | None = None,
    **claims: Any,
) -> str:
    """The ``X-Auth-Token`` amoCRM's ``$authorizedAjax`` sends for `user_id` of the account at
    `account_url`; `claims` replace (None: drop) any of the standard ones."""
    now = int(issued_at if issued_at is not None else time.time())
    body: dict[str, Any] = {
        "iss": account_url,
        "aud": audience,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "nbf": now,
        "exp": int(now + lifetime),
        "account_id": account_id,
        "subdomain": account_url.split("//", 1)[-1].split(".", 1)[0],
        "client_uuid": "5c1b0e6a-3f0c-4a43-9c5e-0b8b7a0f4e21",
        "user_id": user_id,
    }
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, secret, algorithm="HS256")
