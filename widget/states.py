"""The life of a callback request (`widget_requests.status`), shared by intake, the dialler and progress.

submit -- inside hours --> queued -- claim --> dialling -- Mango 1000 --> calling -- talks --> done
submit -- outside hours -> scheduled -- schedule opens: claim --^           |
calling -- attempt failed --> retry (attempts left; dialled again when due) or failed
"""

from __future__ import annotations

from datetime import UTC, datetime

SCHEDULED, QUEUED, DIALLING, CALLING, RETRY, DONE, FAILED = (
    "scheduled",
    "queued",
    "dialling",
    "calling",
    "retry",
    "done",
    "failed",
)
WAITING = (SCHEDULED, QUEUED, RETRY)  # waiting to be dialled (by the scheduler, when due)


def iso(ts: float | None) -> str | None:
    """A timestamp as the widget shows it (ISO 8601 UTC with `Z`), or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


__all__ = ["CALLING", "DIALLING", "DONE", "FAILED", "QUEUED", "RETRY", "SCHEDULED", "WAITING", "iso"]
