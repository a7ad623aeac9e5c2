"""What a browser page needs to open the live hub: a short-lived token and where the hub listens."""

from __future__ import annotations

import time
from typing import Any

from bridge.config import Settings
from bridge.realtime.auth import Identity, TokenSigner


def browser_session(
    settings: Settings, signer: TokenSigner, identity: Identity, *, not_after: float | None = None
) -> dict[str, Any]:
    """A hub token for `identity`, valid for `ws.token_ttl_seconds` but never past `not_after` (the login's
    own end), with the hub's address: `ws_url` when set, else the page builds ws://<its host>:<ws_port>/ws."""
    now = time.time()
    ttl = float(settings.ws.token_ttl_seconds)
    if not_after is not None:
        ttl = min(ttl, not_after - now)
    ttl = max(1.0, ttl)
    return {
        "identity": identity.to_dict(),
        "token": signer.issue(identity, ttl),
        "expires_at": now + ttl,
        "ws_url": settings.ws.public_url or None,
        "ws_port": settings.ws.port,
        "heartbeat_seconds": settings.ws.heartbeat_seconds,
    }
