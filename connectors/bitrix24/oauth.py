"""OAuth tokens of the local application, shared by every thread and process through the state store.

The pair lives under the state key ``oauth`` as JSON. Bitrix24 rotates the refresh token on every
refresh (the docs do not say whether the old one keeps working, so we assume it does not): two
processes refreshing with the same refresh token at once could leave one of them holding a pair that
the other one's refresh already invalidated. So a refresh is a small protocol on the versioned store
(its mechanics are the kit's `bridge.connector_api.oauth.TokenVault`):

1. Re-read the record. If its access token is no longer the one that failed, someone else refreshed:
   use theirs (no request).
2. Take a *lease*: compare-and-set the record with a lease (owner, until). Only the winner
   talks to the OAuth server; a process that finds a live lease waits and re-reads.
3. The winner stores the new pair with compare-and-set on the version it leased. If that write loses
   (the lease ran out and someone else took over), it keeps retrying for as long as the stored refresh
   token is still the one it used, so the newest pair is never overwritten by an older one and never lost.

Inside one process a lock lets one thread do this while the others wait for its result.
The install handler writes a fresh pair unconditionally (a new install supersedes everything).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import requests

from bridge.connector_api import DeliveryError, StateStore
from bridge.connector_api.http import safe_host, send
from bridge.connector_api.oauth import TokenPair, TokenVault
from connectors.bitrix24.errors import NotAuthorised, explain

log = logging.getLogger("callbridge.connectors.bitrix24")

TOKENS_KEY = "oauth"
APP_TOKEN_KEY = "application_token"
ACCESS_TOKEN_TTL = 3600.0  # settings/oauth: an access token lasts 1 h
LEASE_SECONDS = 30.0


@dataclass(frozen=True)
class TokenRecord(TokenPair):
    """The stored pair and what came with it. `generation` counts installs and refreshes."""

    generation: int = 1
    member_id: str | None = None
    domain: str | None = None
    installed_at: float = 0.0

    @property
    def refreshing_until(self) -> float:
        """Until when a refresh holds the lease (0 when none does)."""
        return self.lease_until


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
        self._vault = TokenVault(
            state,
            TOKENS_KEY,
            TokenRecord,
            unbound=lambda: NotAuthorised(
                "bitrix24: the connector is not bound to the daemon's state store yet"
            ),
            lease_seconds=lease,
            clock=clock,
            sleep=sleep,
        )
        self._client_id = client_id
        self._client_secret = client_secret
        self._token_url = token_url
        self._session = session
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self.refreshes = 0  # refreshes this process made (for check() and tests)

    # ------------------------------------------------------------------ reading

    def load(self) -> tuple[TokenRecord, int] | None:
        record, version = self._vault.load()
        if record is None or version is None:
            return None
        if record.error:
            log.error("bitrix24: the stored OAuth tokens are unreadable; reinstall the application")
            return None
        return (record, version) if record.access_token else None  # empty after an uninstall

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
            return self.refresh(record.access_token or "")
        return record.access_token or ""

    # ------------------------------------------------------------------ writing

    def install(self, record: TokenRecord) -> TokenRecord:
        """Store a pair from an install event, superseding whatever is stored."""

        def fresh(current: TokenRecord | None) -> TokenRecord:
            generation = current.generation + 1 if current is not None and not current.error else 1
            return replace(record, generation=generation).released()

        stored = self._vault.supersede(fresh)
        if stored is None:
            raise NotAuthorised("bitrix24: could not store the tokens (the state kept changing); try again")
        return stored

    def forget(self) -> None:
        """Drop the pair (uninstall): calls wait for the next install."""
        if self._vault.load()[0] is None:
            return
        self._vault.supersede(
            lambda current: TokenRecord("", "", 0.0, generation=current.generation if current else 1)
        )

    def refresh(self, stale_access_token: str) -> str:
        """A working access token after `stale_access_token` failed; at most one refresh per rotation."""
        with self._lock:
            deadline = self._clock() + self._vault.lease_seconds + 5
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
                if record.leased(now):
                    if now > deadline:
                        raise NotAuthorised("bitrix24: another process is refreshing the token; try again")
                    self._vault.pause()
                    continue
                claimed = self._vault.claim(record, version)
                if claimed is None:
                    continue  # someone else moved first: look again
                return self._refresh_leased(*claimed)

    def _refresh_leased(self, leased: TokenRecord, lease_version: int) -> str:
        try:
            answer = self._post_refresh(leased.refresh_token or "")
        except BaseException:
            # Give the lease back so that the next attempt does not wait for it to run out.
            self._vault.write_over(leased.released(), lease_version, attempts=1)
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
        ).released()
        self.refreshes += 1
        # A newer install or refresh (another refresh token than ours) wins; ours is older then.
        ours = (leased.refresh_token, fresh.refresh_token)
        stands = self._vault.write_over(
            fresh, lease_version, keep_newer=lambda stored: stored.refresh_token not in ours, attempts=50
        )
        if stands is None:
            log.error("bitrix24: could not store refreshed tokens; the next call will refresh again")
            return fresh.access_token or ""
        if stands is fresh:
            log.info("bitrix24: OAuth tokens refreshed (pair #%d)", fresh.generation)
        return stands.access_token or ""

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
