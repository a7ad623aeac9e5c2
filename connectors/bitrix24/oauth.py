"""OAuth tokens of the local application, shared by every thread and process through the state store.

The pair lives under the state key ``oauth`` as JSON. Bitrix24 rotates the refresh token on every
refresh (the docs do not say whether the old one keeps working, so we assume it does not): two
processes refreshing with the same refresh token at once could leave one of them holding a pair that
the other one's refresh already invalidated. So a refresh is a small protocol on the versioned store:

1. Re-read the record. If its access token is no longer the one that failed, someone else refreshed:
   use theirs (no request).
2. Take a *lease*: compare-and-set the record with ``refreshing_until = now + lease``. Only the winner
   talks to the OAuth server; a process that finds a live lease waits and re-reads.
3. The winner stores the new pair with compare-and-set on the version it leased. If that write loses
   (the lease ran out and someone else took over), it keeps retrying for as long as the stored refresh
   token is still the one it used, so the newest pair is never overwritten by an older one and never lost.

Inside one process a lock lets one thread do this while the others wait for its result.
The install handler writes a fresh pair unconditionally (a new install supersedes everything).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import requests

from bridge.connector_api import DeliveryError, StateStore
from bridge.connector_api.http import safe_host, send
from connectors.bitrix24.errors import NotAuthorised, explain

log = logging.getLogger("callbridge.connectors.bitrix24")

TOKENS_KEY = "oauth"
APP_TOKEN_KEY = "application_token"
ACCESS_TOKEN_TTL = 3600.0  # settings/oauth: an access token lasts 1 h
LEASE_SECONDS = 30.0
_WAIT_STEP = 0.05


@dataclass(frozen=True)
class TokenRecord:
    """The stored pair and what came with it. `generation` counts installs and refreshes."""

    access_token: str
    refresh_token: str
    expires_at: float
    member_id: str | None = None
    domain: str | None = None
    generation: int = 1
    installed_at: float = 0.0
    refreshed_at: float = 0.0
    refreshing_until: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TokenRecord:
        data = json.loads(text)
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


class OAuthTokens:
    """The shared token pair of one portal (see the module docstring).

    `state` is a callable because the connector gets its state store only when bound. `client_id` and
    `client_secret` may be missing right after the install (Bitrix24 shows them only after the install
    handler ran): the stored access token then works until it expires, and refreshing says what to set.
    """

    def __init__(
        self,
        state: Callable[[], StateStore | None],
        *,
        client_id: str | None,
        client_secret: str | None,
        token_url: str,
        session: requests.Session,
        timeout: tuple[float, float] = (3.05, 15.0),
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        lease: float = LEASE_SECONDS,
    ) -> None:
        self._state = state
        self._client_id = client_id
        self._client_secret = client_secret
        self._token_url = token_url
        self._session = session
        self._timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self._lease = lease
        self._lock = threading.Lock()
        self.refreshes = 0  # refreshes this process made (for check() and tests)

    # ------------------------------------------------------------------ reading

    def _store(self) -> StateStore:
        store = self._state()
        if store is None:
            raise NotAuthorised("bitrix24: the connector is not bound to the daemon's state store yet")
        return store

    def load(self) -> tuple[TokenRecord, int] | None:
        stored = self._store().get(TOKENS_KEY)
        if stored is None:
            return None
        try:
            record = TokenRecord.from_json(stored[0])
        except (ValueError, TypeError):
            log.error("bitrix24: the stored OAuth tokens are unreadable; reinstall the application")
            return None
        return (record, stored[1]) if record.access_token else None  # empty after an uninstall

    def installed(self) -> bool:
        return self.load() is not None

    def access_token(self) -> str:
        """The current access token; refreshed first when it is known to have expired."""
        loaded = self.load()
        if loaded is None:
            raise NotAuthorised(
                "bitrix24: the local application is not installed yet (no OAuth tokens): open the "
                "application in Bitrix24 or reinstall it so that its install handler runs",
                retry_after=None,
            )
        record = loaded[0]
        if record.expires_at and self._clock() >= record.expires_at - 5:
            # Known to be dead: refreshing now saves a request that would only earn a 401.
            return self.refresh(record.access_token)
        return record.access_token

    # ------------------------------------------------------------------ writing

    def install(self, record: TokenRecord) -> TokenRecord:
        """Store a pair from an install event, superseding whatever is stored."""
        store = self._store()
        for _ in range(20):
            current = store.get(TOKENS_KEY)
            version = current[1] if current else None
            generation = 1
            if current:
                with contextlib.suppress(ValueError, TypeError):
                    generation = TokenRecord.from_json(current[0]).generation + 1
            fresh = replace(record, generation=generation, refreshing_until=0.0)
            if store.compare_and_set(TOKENS_KEY, fresh.to_json(), version) is not None:
                return fresh
        raise NotAuthorised("bitrix24: could not store the tokens (the state kept changing); try again")

    def forget(self) -> None:
        """Drop the pair (uninstall): calls wait for the next install."""
        store = self._store()
        for _ in range(20):
            current = store.get(TOKENS_KEY)
            if current is None:
                return
            gone = TokenRecord("", "", 0.0, generation=TokenRecord.from_json(current[0]).generation)
            if store.compare_and_set(
                TOKENS_KEY, json.dumps({"uninstalled": True, **asdict(gone)}), current[1]
            ):
                return

    def refresh(self, stale_access_token: str) -> str:
        """A working access token after `stale_access_token` failed; at most one refresh per rotation."""
        with self._lock:
            deadline = self._clock() + self._lease + 5
            while True:
                loaded = self.load()
                if loaded is None or not loaded[0].refresh_token:
                    raise NotAuthorised(
                        "bitrix24: no refresh token stored: reinstall the local application", retry_after=60
                    )
                record, version = loaded
                now = self._clock()
                if record.access_token != stale_access_token and record.access_token:
                    return record.access_token  # another thread or process refreshed already
                if record.refreshing_until > now:
                    if now > deadline:
                        raise NotAuthorised("bitrix24: another process is refreshing the token; try again")
                    self._sleep(_WAIT_STEP)
                    continue
                leased = replace(record, refreshing_until=now + self._lease)
                lease_version = self._store().compare_and_set(TOKENS_KEY, leased.to_json(), version)
                if lease_version is None:
                    continue  # someone else moved first: look again
                return self._refresh_leased(leased, lease_version)

    def _refresh_leased(self, leased: TokenRecord, lease_version: int) -> str:
        store = self._store()
        try:
            answer = self._post_refresh(leased.refresh_token)
        except BaseException:
            # Give the lease back so that the next attempt does not wait for it to run out.
            store.compare_and_set(TOKENS_KEY, replace(leased, refreshing_until=0.0).to_json(), lease_version)
            raise
        now = self._clock()
        fresh = replace(
            leased,
            access_token=str(answer["access_token"]),
            refresh_token=str(answer.get("refresh_token") or leased.refresh_token),
            expires_at=now + _float(answer.get("expires_in"), ACCESS_TOKEN_TTL),
            member_id=str(answer.get("member_id") or leased.member_id or "") or None,
            generation=leased.generation + 1,
            refreshed_at=now,
            refreshing_until=0.0,
        )
        self.refreshes += 1
        version = lease_version
        for _ in range(50):
            if store.compare_and_set(TOKENS_KEY, fresh.to_json(), version) is not None:
                log.info("bitrix24: OAuth tokens refreshed (pair #%d)", fresh.generation)
                return fresh.access_token
            current = store.get(TOKENS_KEY)
            if current is None:
                version = None
                continue
            stored = TokenRecord.from_json(current[0])
            if stored.refresh_token not in (leased.refresh_token, fresh.refresh_token):
                # A newer install or refresh won; ours is older. Use the stored one.
                return stored.access_token
            version = current[1]
        log.error("bitrix24: could not store refreshed tokens; the next call will refresh again")
        return fresh.access_token

    def _post_refresh(self, refresh_token: str) -> dict[str, Any]:
        if not self._client_id or not self._client_secret:
            raise NotAuthorised(
                "bitrix24: the access token expired and no client_id/client_secret are configured to "
                "refresh it: copy them from the local application's card into [connectors.bitrix24]",
                retry_after=60,
            )
        where = safe_host(self._token_url)
        form = {
            "grant_type": "refresh_token",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "refresh_token": refresh_token,
        }
        try:
            response = send(self._session, "POST", self._token_url, data=form, timeout=self._timeout)
            body = _json(response)
        except DeliveryError as exc:
            response = getattr(exc, "response", None)
            body = _json(response) if response is not None else {}
            code = body.get("error")
            if not code:
                raise NotAuthorised(
                    f"bitrix24: token refresh at {where} failed: {exc}", retry_after=30
                ) from None
            body = {"error": code, "error_description": body.get("error_description")}
        if body.get("error") or not body.get("access_token"):
            code = str(body.get("error") or "no access_token in the answer")
            hint = {
                "invalid_grant": "the refresh token was refused (expired after 180 days, or the application "
                "was reinstalled): reinstall the local application",
                "invalid_client": "client_id or client_secret is wrong (or the application was deleted)",
                "PAYMENT_REQUIRED": "the application's paid period is over",
            }.get(code, explain(code, body.get("error_description")))
            raise NotAuthorised(f"bitrix24: token refresh at {where} refused: {hint}", retry_after=60)
        return body


def _json(response: requests.Response | None) -> dict[str, Any]:
    if response is None:
        return {}
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _float(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default
