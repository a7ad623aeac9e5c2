"""The panel's language for this request: the signed-in user's choice, else the browser's (ru or en)."""

from __future__ import annotations

from flask import g, request

LANGUAGES = ("ru", "en")


def panel_language() -> str:
    """`ru` or `en` for the current request."""
    user = g.get("admin_user")
    if user is not None and user.lang:
        return str(user.lang)
    return request.accept_languages.best_match(list(LANGUAGES), "ru") or "ru"
