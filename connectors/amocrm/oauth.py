"""OAuth 2 tokens for amoCRM, kept in the connector's state store and rotated safely across processes.

amoCRM's refresh token is single-use: every refresh returns a new one and kills the old. Two processes
(or threads) that both refresh with the same refresh token would leave one of them, and possibly the
account, without a valid token. So a refresh is *claimed* first:

1. read the record and its version;
2. `compare_and_set` it to the same record plus a lease (owner, until); only one writer can win this;
3. the winner alone calls ``POST /oauth2/access_token`` and stores the new pair with `compare_and_set`
   from the version it claimed (clearing the lease);
4. losers wait for the lease to clear and use the stored token (they never touch the refresh token).

A lease outlives the HTTP timeout (`LEASE_SECONDS`); a winner that crashed before calling amoCRM leaves a
lease that expires, then the next caller claims it. One that crashed *after* amoCRM answered but before
storing has consumed the refresh token: the integration must then be authorised again (documented).

Seeds: an ``authorization_code`` (or ``refresh_token``) in the config is exchanged once; its fingerprint is
remembered in the record, so a restart does not try to reuse it, and a *new* code in the config replaces
the stored tokens (re-authorisation). The OAuth callback (hooks.py) does the same with the code amoCRM
sends to the redirect URI.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from bridge.connector_api import StateStore
from bridge.connector_api.oauth import TokenPair, TokenVault
from connectors.amocrm.client import (
    AmoApiError,
    AmoAuthError,
    AmoPermanentError,
    AmoRetryableError,
)

log = logging.getLogger("callbridge.connectors.amocrm")

STATE_KEY = "oauth_tokens"
LEASE_SECONDS = 30.0  # longer than the token request's worst case (connect 3 s + read 10 s)
EARLY_REFRESH_SECONDS = 120.0  # refresh this long before the access token expires
REAUTH_PAUSE = 300.0  # retry deliveries every 5 minutes while the integration needs authorising


class SeedRefused(AmoPermanentError):
    """amoCRM refused a code or refresh token from the config or the callback; working tokens were kept."""


@dataclass(frozen=True)
class TokenRecord(TokenPair):
    """What is stored under `STATE_KEY` (JSON). Secrets: access_token, refresh_token."""

    seeds_used: tuple[str, ...] = ()  # fingerprints of codes/refresh tokens taken from config or callback


@dataclass(frozen=True)
class Grant:
    """One token request: the grant and what to remember it by."""

    grant_type: str  # "authorization_code" | "refresh_token"
    value: str
    fingerprint: str | None = None  # set for seeds (config or callback), None for routine refreshes
    label: str = "refresh"


def fingerprint(kind: str, secret: str) -> str:
    """A short, non-reversible tag for a seed, so the record can say it was used without storing it."""
    return kind + ":" + hashlib.sha256(f"{kind}:{secret}".encode()).hexdigest()[:16]


@dataclass
class OAuthTokens:
    """The `TokenSource` for OAuth mode. `state` and `redirect_uri` are callables: known after `bind`."""

    client_id: str
    client_secret: str
    post_token: Callable[[dict[str, Any]], dict[str, Any]]
    state: Callable[[], StateStore | None]
    redirect_uri: Callable[[], str | None]
    seed: Grant | None = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    lease_seconds: float = LEASE_SECONDS
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    refreshes: int = field(default=0, repr=False)  # token requests this instance made (tests)
    _replaced: dict[str, str] = field(default_factory=dict, repr=False)  # old access token -> newer one
    _vault: TokenVault[TokenRecord] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Clock and sleep are read at each use: tests swap them on a built instance.
        self._vault = TokenVault(
            self.state,
            STATE_KEY,
            TokenRecord,
            unbound=lambda: AmoAuthError(
                "amoCRM OAuth: the connector is not bound to a state store", retry_after=1.0
            ),
            lease_seconds=self.lease_seconds,
            clock=lambda: self.clock(),
            sleep=lambda seconds: self.sleep(seconds),
        )

    def fresher(self, token: str) -> str:
        """The newer access token if this process already replaced `token` (no I/O): a request that
        waited for its rate-limit slot while another thread refreshed goes out with the new token."""
        seen: set[str] = set()
        while token in self._replaced and token not in seen:
            seen.add(token)
            token = self._replaced[token]
        return token

    # ------------------------------------------------------------------------------ TokenSource

    def token(self) -> str:
        deadline = self.clock() + self.lease_seconds + 5
        while True:
            record, version = self._load()
            now = self.clock()
            if self._seed_pending(record):
                if record is not None and record.leased(now):
                    if now > deadline:
                        raise AmoRetryableError("amoCRM OAuth: another process is still obtaining the token")
                    self._vault.pause()
                    continue
                with self._lock:
                    record, version = self._load()
                    if self._seed_pending(record) and not (
                        record is not None and record.leased(self.clock())
                    ):
                        assert self.seed is not None
                        try:
                            return self._rotate(record, version, self.seed)
                        except SeedRefused:
                            pass  # the stored tokens are kept; go on with them
                continue
            if record is None or not record.access_token:
                raise self._unauthorised(record)
            if record.expires_at - now > EARLY_REFRESH_SECONDS:
                return record.access_token
            if record.expires_at > now and record.leased(now):
                return record.access_token  # someone is refreshing early; this one still works
            with self._lock:
                return self._refresh_if_still(record.access_token)

    def _seed_pending(self, record: TokenRecord | None) -> bool:
        return self.seed is not None and (record is None or self.seed.fingerprint not in record.seeds_used)

    def after_unauthorized(self, failed_token: str) -> str | None:
        with self._lock:
            record, _ = self._load()
            if record is None or (not record.refresh_token and not record.access_token):
                raise self._unauthorised(record)
            return self._refresh_if_still(failed_token)

    # ------------------------------------------------------------------------------ entry points

    def exchange_code(self, code: str) -> TokenRecord:
        """Exchange an authorization code (the OAuth callback, or a new code in the config)."""
        grant = Grant("authorization_code", code, fingerprint("code", code), "authorization code")
        with self._lock:
            deadline = self.clock() + self.lease_seconds + 5
            while True:
                record, version = self._load()
                if record is not None and grant.fingerprint in record.seeds_used:
                    if record.access_token:
                        return record
                    raise self._unauthorised(record)
                if record is not None and record.leased(self.clock()) and self.clock() < deadline:
                    self._vault.pause()
                    continue
                self._rotate(record, version, grant)
                stored, _ = self._load()
                assert stored is not None
                return stored

    def status(self) -> TokenRecord | None:
        """The stored record (for `check`); never log it."""
        return self._load()[0]

    # ------------------------------------------------------------------------------ internals

    def _load(self) -> tuple[TokenRecord | None, int | None]:
        return self._vault.load()

    def _refresh_if_still(self, failed_token: str) -> str:
        """Refresh unless another thread or process already replaced `failed_token` (then use theirs)."""
        deadline = self.clock() + self.lease_seconds + 5
        while True:
            record, version = self._load()
            now = self.clock()
            if record is None:
                raise self._unauthorised(record)
            if record.leased(now):
                if now > deadline:
                    raise AmoRetryableError("amoCRM OAuth: another process is still refreshing the token")
                self._vault.pause()
                continue
            if record.access_token and record.access_token != failed_token and record.expires_at > now:
                if failed_token:
                    self._replaced[failed_token] = record.access_token
                return record.access_token
            if not record.refresh_token:
                raise self._unauthorised(record)
            return self._rotate(record, version, Grant("refresh_token", record.refresh_token))

    def _rotate(self, record: TokenRecord | None, version: int | None, grant: Grant) -> str:
        """Claim the record, ask amoCRM for a new pair with `grant`, store it; return the access token."""
        base = record or TokenRecord()
        claimed = self._vault.claim(base, version)
        if claimed is None:
            # Someone else changed the record first: never use the same grant twice; take theirs.
            if grant.grant_type == "refresh_token":
                return self._refresh_if_still(base.access_token or "")
            return self.token() if grant is self.seed else self._after_lost_claim(grant)
        claimed_version = claimed[1]
        seeds = base.seeds_used + ((grant.fingerprint,) if grant.fingerprint else ())
        payload = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "grant_type": grant.grant_type,
            "code" if grant.grant_type == "authorization_code" else "refresh_token": grant.value,
        }
        redirect = self.redirect_uri()
        if redirect:
            payload["redirect_uri"] = redirect
        self.refreshes += 1
        try:
            answer = self.post_token(payload)
        except AmoPermanentError as exc:
            # The code or refresh token is dead (used, expired, revoked) or the client is wrong.
            reason = _oauth_reason(exc)
            if grant.fingerprint is not None and base.access_token and base.refresh_token:
                # A stale code or token in the config (or a replayed callback) must not throw away a
                # working pair: remember the seed as used and keep what is stored.
                kept = replace(base, seeds_used=seeds).released()
                self._write_after(kept, claimed_version)
                log.warning(
                    "amoCRM OAuth: the %s was refused (%s); keeping the stored tokens", grant.label, reason
                )
                raise SeedRefused(f"amoCRM refused the {grant.label}: {reason}") from None
            dead = replace(
                base,
                access_token=None,
                refresh_token=None,
                expires_at=0.0,
                seeds_used=seeds,
                lease_owner=None,
                lease_until=0.0,
                error=f"amoCRM refused the {grant.label}: {reason}",
            )
            self._write_after(dead, claimed_version)
            log.error(
                "amoCRM OAuth: the %s was refused; the integration must be authorised again", grant.label
            )
            raise self._unauthorised(dead) from None
        except AmoApiError:
            # Transient (5xx, 429, network): release the claim; the next caller tries again.
            released = base.released()
            self._write_after(released, claimed_version)
            raise
        now = self.clock()
        expires_in = _number(answer.get("expires_in"), 86400.0)
        fresh = TokenRecord(
            access_token=str(answer["access_token"]),
            refresh_token=str(answer["refresh_token"]),
            expires_at=now + expires_in,
            refreshed_at=now,
            generation=base.generation + 1,
            seeds_used=seeds[-20:],
        )
        self._write_after(fresh, claimed_version)
        if base.access_token and fresh.access_token:
            if len(self._replaced) > 100:
                self._replaced.clear()
            self._replaced[base.access_token] = fresh.access_token
        log.info(
            "amoCRM OAuth: new token pair stored via %s generation=%d expires_in=%ds",
            grant.label,
            fresh.generation,
            int(expires_in),
        )
        return fresh.access_token or ""

    def _after_lost_claim(self, grant: Grant) -> str:
        deadline = self.clock() + self.lease_seconds + 5
        while self.clock() < deadline:
            record, version = self._load()
            if record is not None and record.leased(self.clock()):
                self._vault.pause()
                continue
            return self._rotate(record, version, grant)
        raise AmoRetryableError("amoCRM OAuth: another process is still refreshing the token")

    def _write_after(self, record: TokenRecord, claimed_version: int) -> None:
        """Store `record` over our claim. If the claim was taken over (our lease expired while amoCRM was
        slow), the pair we hold is still the newest one amoCRM issued, so it wins."""
        if self._vault.write_over(record, claimed_version) is None:
            raise AmoRetryableError("amoCRM OAuth: could not store the new tokens (the record kept changing)")

    def _unauthorised(self, record: TokenRecord | None) -> AmoAuthError:
        why = record.error if record is not None and record.error else "no tokens yet"
        return AmoAuthError(
            f"amoCRM is not authorised ({why}): open <public_url>/connectors/amocrm/oauth/start, or put a "
            "fresh authorization_code from the integration's Keys tab into [connectors.amocrm]",
            retry_after=REAUTH_PAUSE,
        )


def _oauth_reason(exc: AmoApiError) -> str:
    parts = [p for p in (exc.hint, exc.detail) if p]
    return "; ".join(parts) if parts else f"HTTP {exc.status}"


def _number(value: Any, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if number > 0 else default
