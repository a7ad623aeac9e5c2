"""The error every widget check raises: an HTTP status, a code the widget picks its text by, a message."""

from __future__ import annotations

__all__ = ["WidgetError"]


class WidgetError(Exception):
    """A request the widget cannot accept: `status` (HTTP), `code` (for the widget's texts), message."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
