"""amoCRM's one-time tokens: who sent a widget's request (docs/connectors/amocrm.md, "The widget").

The widget's ``self.$authorizedAjax`` adds an ``X-Auth-Token`` header: a JWT signed HS256 with the
integration's secret key, naming the account (``iss``, its address; ``account_id``) and the user
(``user_id``), valid for a short while (``iat``, ``nbf``, ``exp``) and unique (``jti``). A token is
accepted once: a replayed ``jti`` is refused until the token would have expired anyway. The used ``jti``s
are kept in the connector's shared state when one is given (so every web worker and instance refuses a
replay), else in this process.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import jwt

from bridge.connector_api import StateStore

LEEWAY_SECONDS = 5.0  # clock skew between amoCRM and this host
MAX_TOKEN = 4096
REQUIRED = ("iss", "exp", "iat", "jti", "user_id")
USED_KEY = "widget_used_tokens"
CAS_ATTEMPTS = 20


class WidgetTokenError(Exception):
    """The token cannot be used; the message says why (never the token itself)."""


@dataclass(frozen=True)
class WidgetUser:
    """The amoCRM user (and account) a verified token speaks for."""

    user_id: str
    account_id: str | None
    issuer: str


def _netloc(address: str) -> str:
    text = address.strip().rstrip("/")
    return urlsplit(text if "://" in text else f"https://{text}").netloc.lower()


class WidgetTokens:
    """Verifies one-time tokens for one account under the integration's secret key."""

    def __init__(
        self,
        secret: str,
        account_url: str,
        *,
        clock: Callable[[], float] = time.time,
        memory: int = 10_000,
        state: Callable[[], StateStore | None] = lambda: None,
    ) -> None:
        if not secret:
            raise ValueError("the integration's secret key is empty")
        self._secret = secret
        self._account = _netloc(account_url)
        self._clock = clock
        self._seen: dict[str, float] = {}  # jti -> exp
        self._memory = memory
        self._state = state
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show the secret
        return f"WidgetTokens(account={self._account!r})"

    def verify(self, token: str | None) -> WidgetUser:
        """The user `token` names; raises `WidgetTokenError` for a missing, forged, expired, replayed or
        foreign-account one."""
        if not token:
            raise WidgetTokenError("missing X-Auth-Token")
        if len(token) > MAX_TOKEN:
            raise WidgetTokenError("malformed token")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                options={"require": list(REQUIRED), "verify_aud": False},
                leeway=LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            raise WidgetTokenError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise WidgetTokenError("token not valid yet") from None
        except jwt.InvalidSignatureError:
            raise WidgetTokenError("invalid token (bad signature)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise WidgetTokenError(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError:
            raise WidgetTokenError("malformed token") from None
        issuer = str(claims["iss"])
        if _netloc(issuer) != self._account:
            raise WidgetTokenError("token issued by another account")
        user = str(claims["user_id"]).strip()
        if not user.isdigit():
            raise WidgetTokenError("malformed token (user_id)")
        self._once(str(claims["jti"]), float(claims["exp"]))
        account = claims.get("account_id")
        return WidgetUser(user, str(account) if account not in (None, "") else None, issuer)

    def _once(self, jti: str, expires: float) -> None:
        now = self._clock()
        state = self._state()
        with self._lock:
            if state is None:
                self._seen = self._remember(self._seen, jti, expires, now)
                return
            for _ in range(CAS_ATTEMPTS):  # another worker wrote first: read again
                current = state.get(USED_KEY)
                seen = json.loads(current[0]) if current else {}
                fresh = self._remember(seen, jti, expires, now)
                if state.compare_and_set(USED_KEY, json.dumps(fresh), current[1] if current else None):
                    return
        raise WidgetTokenError("too many requests at once; try again")

    def _remember(self, seen: dict[str, float], jti: str, expires: float, now: float) -> dict[str, float]:
        """`seen` plus `jti`, without the entries that have expired; raises for a `jti` already there."""
        if jti in seen:
            raise WidgetTokenError("token already used")
        seen = {k: v for k, v in seen.items() if v + LEEWAY_SECONDS > now}
        while len(seen) >= self._memory:
            seen.pop(next(iter(seen)))
        seen[jti] = expires
        return seen
