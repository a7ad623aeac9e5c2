"""Whose calls a panel user may see: everyone's (`all_calls`), their own extension's, and for a team leader
(`team_calls`) also those of the members of the Mango groups they lead, as Mango lists them (`groups`,
read at most every `ttl` seconds; a failed read counts as no members and is asked again after `miss_ttl`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from admin_module.roles import can
from admin_module.users import PanelUser
from bridge.pbx.port import PbxCommands, PbxError, PbxGroup

log = logging.getLogger("callbridge.admin")

__all__ = ["TeamRoster", "may_see_call", "visible_extensions"]


class TeamRoster:
    """Mango's groups and their operators' extensions, cached."""

    def __init__(
        self,
        client: Callable[[], PbxCommands] | None,
        *,
        ttl: float = 300.0,
        miss_ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.ttl, self.miss_ttl, self.clock = ttl, miss_ttl, clock
        self._groups: tuple[PbxGroup, ...] = ()
        self._expires = 0.0
        self._lock = threading.Lock()

    def groups(self) -> tuple[PbxGroup, ...]:
        with self._lock:
            if self.clock() < self._expires or self._client is None:
                return self._groups
            try:
                client = self._client()
                try:
                    self._groups = tuple(client.groups())
                finally:
                    client.close()
                self._expires = self.clock() + self.ttl
            except (PbxError, ValueError, OSError) as exc:
                log.warning("admin.teams Mango's groups unreadable: %s", exc)
                self._expires = self.clock() + self.miss_ttl
            return self._groups

    def members(self, teams: Iterable[str]) -> frozenset[str]:
        """The extensions of the groups named in `teams` (a group's id, short number or name)."""
        wanted = {t.strip().lower() for t in teams if t.strip()}
        if not wanted:
            return frozenset()
        found: set[str] = set()
        for group in self.groups():
            names = {group.group_id, group.extension or "", group.name or ""}
            if wanted & {n.lower() for n in names if n}:
                found.update(group.operators)
        return frozenset(found)


def visible_extensions(user: PanelUser, roster: TeamRoster | None) -> frozenset[str] | None:
    """None: every call; else the extensions whose calls `user` may see (maybe none)."""
    if can(user.role, "all_calls"):
        return None
    own = {user.extension} if user.extension else set()
    if can(user.role, "team_calls") and roster is not None:
        own |= roster.members(user.teams)
    return frozenset(own)


def may_see_call(visible: frozenset[str] | None, call: Mapping[str, Any]) -> bool:
    """Whether a call reached one of the `visible` extensions (every call when None)."""
    if visible is None:
        return True
    touched = {call.get("answered_by"), call.get("responsible"), *(call.get("extensions") or [])}
    return bool(visible & touched)


def for_request(user: PanelUser) -> frozenset[str] | None:
    """`visible_extensions` of `user`, with the blueprint's roster, once per request."""
    from flask import g

    if "visible_extensions" not in g:
        g.visible_extensions = visible_extensions(user, g.get("team_roster"))
    visible: frozenset[str] | None = g.visible_extensions
    return visible
