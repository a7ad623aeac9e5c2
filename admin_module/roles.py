"""Roles and what each may do. The panel checks permissions, never role names, in its views."""

from __future__ import annotations

ADMIN = "admin"
MANAGER = "manager"
ACCOUNTANT = "accountant"
ROLES: tuple[str, ...] = (ADMIN, MANAGER, ACCOUNTANT)

# view_calls: the call log and missed calls; all_calls: everyone's, not only one's own extension;
# popups: live call popups on every page.
PERMISSIONS: dict[str, frozenset[str]] = {
    ADMIN: frozenset(
        {
            "view_calls",
            "all_calls",
            "recordings",
            "callback",
            "popups",
            "stats",
            "settings",
            "connectors",
            "employees",
        }
    ),
    MANAGER: frozenset({"view_calls", "recordings", "callback", "popups"}),
    ACCOUNTANT: frozenset({"view_calls", "all_calls", "stats"}),
}


def can(role: str | None, permission: str) -> bool:
    return permission in PERMISSIONS.get(role or "", frozenset())


def can_dial(role: str | None, extension: str | None) -> bool:
    """Whether Call buttons make sense for this user: the permission, and an extension whose phone rings
    first (a user without one would only get "no extension" back)."""
    return can(role, "callback") and bool(extension)
