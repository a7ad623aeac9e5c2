"""The webhook signature: ``sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``.

`verify` is what a receiver written in Python does (docs/connectors/webhook.md has a standalone copy).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Callbridge-Signature"
TIMESTAMP_HEADER = "X-Callbridge-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TOLERANCE = 300  # seconds a receiver should accept between the timestamp and its clock


def sign(secret: str, timestamp: str | int, body: bytes) -> str:
    """The ``X-Callbridge-Signature`` value for a body sent with this ``X-Callbridge-Timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether a received request is authentic and fresh (constant-time comparison)."""
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        return False
    expected = sign(secret, timestamp, body).encode("ascii")
    return hmac.compare_digest(expected, signature.strip().encode("utf-8", "replace"))
