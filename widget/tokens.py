"""Form tokens: signed by `GET /widget/config`, each good for one accepted request.

A token carries when the widget was shown (for the minimum fill time and the 12-hour age limit) and a
random nonce. An accepted request stores the token's digest in `widget_form_tokens` in the same
transaction as the request, with an insert that does nothing on a conflict: of two requests carrying one
token, the second waits for the first (PostgreSQL's unique index; SQLite's write transaction) and finds the
digest taken. A refused request rolls its transaction back, so its token stays usable.
"""

from __future__ import annotations

import hashlib
import secrets

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import Connection, delete
from sqlalchemy.dialects import postgresql, sqlite

from widget.errors import WidgetError
from widget.tables import widget_form_tokens

__all__ = ["FORM_TOKEN_MAX_AGE", "claim", "digest", "issue", "prune", "verify"]

FORM_TOKEN_MAX_AGE = 12 * 3600
_FORM_SALT = "callbridge-widget-form"


def _serializer(secret: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=_FORM_SALT)


def issue(secret: str, now: float) -> str:
    """A new token for a site (signed with the site's secret), shown at `now`."""
    return str(_serializer(secret).dumps({"t": round(now, 3), "n": secrets.token_urlsafe(9)}))


def digest(token: str) -> str:
    """What `widget_form_tokens` keeps of a used token."""
    return hashlib.sha256(token.encode()).hexdigest()


def verify(secret: str, token: str, now: float, min_fill_seconds: float) -> None:
    """Refuse a token that is not ours, sent too soon after the form was shown, or too old."""
    try:
        issued = float(_serializer(secret).loads(token)["t"])
    except (BadSignature, KeyError, TypeError, ValueError):
        raise WidgetError(
            400, "refused", "the request has no valid form token: load the widget's config first"
        ) from None
    age = now - issued
    if age < min_fill_seconds:
        raise WidgetError(400, "refused", "the form was sent too quickly after it was shown")
    if age > FORM_TOKEN_MAX_AGE:
        raise WidgetError(400, "expired", "the form is too old: reload the page and send it again")


def claim(conn: Connection, token: str, site_key: str, now: float) -> bool:
    """Mark the token used in the caller's transaction; False when another request has used it."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(widget_form_tokens)
        .values(digest=digest(token), site_key=site_key, used_at=now)
        .on_conflict_do_nothing(index_elements=["digest"])
        .returning(widget_form_tokens.c.digest)
    )
    return conn.execute(statement).first() is not None


def prune(conn: Connection, older_than: float) -> int:
    """Forget tokens used before `older_than`; tokens that old are refused as expired anyway."""
    return (
        conn.execute(delete(widget_form_tokens).where(widget_form_tokens.c.used_at < older_than)).rowcount
        or 0
    )
