"""Roles and what each may do, as Mango's cabinet has them. The panel checks permissions, never role names,
in its views (`auth.requires`, `can`); what a role may see of the calls is `scope.py`'s."""

from __future__ import annotations

ADMIN = "admin"
EMPLOYEE = "employee"  # was `manager`: their own calls and recordings
TEAM_LEADER = "team_leader"
MARKETER = "marketer"
ACCOUNTANT = "accountant"
ROLES: tuple[str, ...] = (ADMIN, EMPLOYEE, TEAM_LEADER, MARKETER, ACCOUNTANT)
# Names still accepted for a role (a stored `manager` is migrated by revision a003).
ALIASES: dict[str, str] = {"manager": EMPLOYEE}

# view_calls: the call log and missed calls; all_calls: everyone's, not only one's own extension;
# team_calls: the calls of the members of the groups one leads; popups: live call popups on every page;
# callback_requests: the website widget's requests; widget: its sites and texts; utm: the requests' pages
# and UTM tags; settings: the technical settings (IP telephony, history, quarantine).
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
            "callback_requests",
            "widget",
            "utm",
        }
    ),
    EMPLOYEE: frozenset({"view_calls", "recordings", "callback", "popups", "callback_requests", "utm"}),
    TEAM_LEADER: frozenset(
        {"view_calls", "team_calls", "recordings", "callback", "popups", "stats", "callback_requests", "utm"}
    ),
    MARKETER: frozenset({"stats", "callback_requests", "widget", "utm"}),
    ACCOUNTANT: frozenset({"view_calls", "all_calls", "stats", "callback_requests", "utm"}),
}


def normalize(role: str) -> str:
    """The role a name stands for (`manager` is `employee`)."""
    return ALIASES.get(role, role)


def can(role: str | None, permission: str) -> bool:
    return permission in PERMISSIONS.get(normalize(role or ""), frozenset())


def can_dial(role: str | None, extension: str | None) -> bool:
    """Whether Call buttons make sense for this user: the permission, and an extension whose phone rings
    first (a user without one would only get "no extension" back)."""
    return can(role, "callback") and bool(extension)
