"""Access tokens for the Dataverse Web API from Microsoft Entra ID, through msal (client credentials).

msal keeps the token in its in-memory cache and asks for a new one before the old expires (it never serves
a token with less than five minutes left). Two things are ours:

* the application is built on first use, not in the constructor: msal reads the authority's OpenID
  configuration when it is built, and a connector is built before anything may be sent. With a sign-in
  host other than Microsoft's (a sovereign cloud, a test fake), msal's online instance discovery at
  login.microsoftonline.com is switched off (``instance_discovery=False``);
* a token the Web API refused (401) is removed from msal's cache by `refused`, since msal would hand the
  same one back until it expires.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import msal

from bridge.connector_api import PermanentDeliveryError, RetryableDeliveryError
from bridge.connector_api.http import redact, safe_host

log = logging.getLogger("callbridge.connectors.dynamics")

# AADSTS errors that no retry fixes: a wrong secret, client or tenant, a missing consent.
PERMANENT_ERRORS = frozenset({"invalid_client", "unauthorized_client", "invalid_scope", "invalid_request"})


class TokenError(RetryableDeliveryError):
    """No token now (the sign-in host unreachable or failing): try again later."""


class TokenRefused(PermanentDeliveryError):
    """The sign-in host refused the app's credentials (wrong secret, client or tenant)."""


class TokenSource:
    """Bearer tokens for one environment. Thread-safe; one per connector instance."""

    def __init__(
        self,
        *,
        authority: str,
        client_id: str,
        client_secret: str,
        scope: str,
        instance_discovery: bool,
        timeout: float = 10.0,
    ) -> None:
        self._authority = authority
        self._client_id = client_id
        self._secret = client_secret
        self._scope = scope
        self._instance_discovery = instance_discovery
        self._timeout = timeout
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenSource({self._authority!r}, client_id={self._client_id!r})"

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            try:
                self._app = msal.ConfidentialClientApplication(
                    self._client_id,
                    client_credential=self._secret,
                    authority=self._authority,
                    instance_discovery=self._instance_discovery,
                    timeout=self._timeout,
                )
            except ValueError as exc:  # msal's words for an unreachable or unknown authority
                raise TokenError(f"sign-in host: {redact(str(exc), 200)}") from None
            except Exception as exc:  # network errors surface as requests' exceptions
                raise TokenError(f"sign-in host unreachable ({type(exc).__name__})") from None
        return self._app

    def token(self) -> str:
        """A token that is not about to expire: msal's cached one, or a new one."""
        with self._lock:
            app = self._application()
            try:
                result: dict[str, Any] = app.acquire_token_for_client(scopes=[self._scope])
            except Exception as exc:
                raise TokenError(f"sign-in host unreachable ({type(exc).__name__})") from None
        if "access_token" in result:
            if result.get("token_source") == "identity_provider":  # not msal's cache: say so, once
                log.info(
                    "dynamics: new access token from %s, valid %s s",
                    safe_host(self._authority),
                    result.get("expires_in"),
                )
            return str(result["access_token"])
        error = str(result.get("error") or "unknown_error")
        words = redact(str(result.get("error_description") or ""), 240)
        message = f"sign-in refused: {error}{': ' + words if words else ''}"
        if error in PERMANENT_ERRORS:
            raise TokenRefused(message)
        raise TokenError(message)

    def refused(self, token: str) -> None:
        """Forget a token the Web API answered 401 to, so the next `token` asks for a new one."""
        with self._lock:
            if self._app is None:
                return
            cache = self._app.token_cache
            for item in list(cache.search(cache.CredentialType.ACCESS_TOKEN, query={"secret": token})):
                cache.remove_at(item)
