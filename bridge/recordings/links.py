"""Signed, expiring links to recordings for CRMs: `<public_url>/recordings/<id>?t=<expiry>.<signature>`.

The signature is an HMAC-SHA256 over the recording id and the expiry under the security secret (the one
`bridge.realtime.auth.resolve_secret` gives every process), so any instance can check a link another
made. A link names one recording; changing the id, the expiry or the signature makes it invalid.
Links are bearer credentials: they are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from urllib.parse import quote

from sqlalchemy import Engine

from bridge.config import Settings
from bridge.realtime.auth import resolve_secret
from bridge.settings_store import SettingsStore

_CONTEXT = b"callbridge-recording-link-v1"


class LinkError(Exception):
    """A link that cannot be used; the message says why (missing, expired, forged)."""


class RecordingLinks:
    """Makes (`url`) and checks (`verify`) recording links.

    `secret` is called once, on first use (the generated secret may need a database read); `enabled`
    is asked on every new link (the panel's "recordings may be linked" option).
    """

    def __init__(
        self,
        secret: Callable[[], str],
        public_url: str | None,
        *,
        ttl_seconds: float,
        enabled: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("a recording link needs a positive lifetime")
        self._secret_source = secret
        self._secret: bytes | None = None
        self._lock = threading.Lock()
        self.public_url = (public_url or "").rstrip("/") or None
        self.ttl_seconds = ttl_seconds
        self._enabled = enabled
        self._clock = clock

    def __repr__(self) -> str:  # never show the secret
        return f"RecordingLinks({self.public_url!r}, ttl_seconds={self.ttl_seconds})"

    def _key(self) -> bytes:
        if self._secret is None:
            with self._lock:
                if self._secret is None:
                    secret = self._secret_source()
                    if not secret:
                        raise ValueError("the security secret is empty")
                    self._secret = secret.encode("utf-8")
        return self._secret

    def _sign(self, recording_id: str, expires: int) -> str:
        message = _CONTEXT + b"\0" + recording_id.encode("utf-8") + b"\0" + str(expires).encode()
        digest = hmac.new(self._key(), message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def token(self, recording_id: str) -> str:
        """`<expiry>.<signature>` for one recording."""
        expires = int(self._clock() + self.ttl_seconds)
        return f"{expires}.{self._sign(recording_id, expires)}"

    def url(self, recording_id: str) -> str | None:
        """The link a CRM can keep; None without `http.public_url` or when linking is switched off."""
        if not self.public_url or not recording_id or not self._enabled():
            return None
        return f"{self.public_url}/recordings/{quote(recording_id, safe='')}?t={self.token(recording_id)}"

    def verify(self, recording_id: str, token: str | None) -> None:
        """Raise `LinkError` unless `token` is a valid, unexpired link to `recording_id`."""
        if not token:
            raise LinkError("this recording link has no signature (the t parameter is missing)")
        expires_text, _, signature = token.partition(".")
        if not expires_text.isdigit() or not signature or len(token) > 200:
            raise LinkError("this recording link is malformed")
        expires = int(expires_text)
        if not hmac.compare_digest(signature.encode(), self._sign(recording_id, expires).encode()):
            raise LinkError("this recording link is not valid (its signature does not match)")
        if expires <= self._clock():
            raise LinkError("this recording link has expired; open the call in callbridge for a new one")


def panel_allows_links(settings: Settings, engine: Engine) -> Callable[[], bool]:
    """The panel's "recordings may be linked" option, read from the store on each call."""
    store = SettingsStore(engine, settings)
    return lambda: store.panel().recordings


def links_for(
    settings: Settings, engine: Engine, *, enabled: Callable[[], bool] | None = None
) -> RecordingLinks:
    """Links under `http.public_url`, signed with the security secret, valid `recordings.link_ttl_days`."""
    return RecordingLinks(
        lambda: resolve_secret(settings, engine),
        settings.http.public_url,
        ttl_seconds=settings.recordings.link_ttl_days * 86400,
        enabled=enabled or panel_allows_links(settings, engine),
    )
