"""Mapping PBX extensions to CRM users, the same way for every connector.

A connector's config holds an explicit map and a policy for extensions it does not know; an import
helper can store a suggested map in the connector's state (key ``employee_map``), which the explicit
map overrides.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from bridge.connector_api.base import StateStore
from bridge.connector_api.manifest import Title

IMPORTED_MAP_KEY = "employee_map"


class EmployeeMapping(BaseModel):
    """Config fields a connector includes (as a nested model or by inheritance) to map employees."""

    users: dict[str, str] = Field(default_factory=dict, description="extension -> CRM user id")
    unmapped: Literal["skip", "default"] = "skip"
    default_user: str | None = None

    @model_validator(mode="after")
    def _default_needs_user(self) -> EmployeeMapping:
        if self.unmapped == "default" and not self.default_user:
            raise ValueError("unmapped = 'default' needs default_user (the CRM user id to use)")
        return self


class EmployeeResolver:
    """Resolves extensions to CRM user ids: explicit config, then the imported map, then the policy."""

    def __init__(self, mapping: EmployeeMapping, state: StateStore | None = None) -> None:
        self._mapping = mapping
        self._state = state

    def imported(self) -> dict[str, str]:
        if self._state is None:
            return {}
        stored = self._state.get(IMPORTED_MAP_KEY)
        return json.loads(stored[0]) if stored else {}

    def mapped(self) -> dict[str, str]:
        """Every mapped extension -> CRM user id in force: the imported map, overridden by the config's."""
        return {**self.imported(), **self._mapping.users}

    def user_for(self, extension: str | None) -> str | None:
        """The CRM user for an extension, or None when the policy says skip."""
        if extension and extension in self._mapping.users:
            return self._mapping.users[extension]
        if extension:
            imported = self.imported()
            if extension in imported:
                return imported[extension]
        return self._mapping.default_user if self._mapping.unmapped == "default" else None

    def extension_for(self, user_id: str) -> str | None:
        """The reverse lookup (e.g. who clicked a number in the CRM)."""
        for source in (self._mapping.users, self.imported()):
            for extension, user in source.items():
                if str(user) == str(user_id):
                    return extension
        return None

    def save_imported(self, mapping: Mapping[str, str]) -> None:
        """Store an imported map (replacing the previous one)."""
        if self._state is None:
            raise RuntimeError("no state store bound")
        for _ in range(5):
            current = self._state.get(IMPORTED_MAP_KEY)
            version = current[1] if current else None
            if self._state.compare_and_set(IMPORTED_MAP_KEY, json.dumps(dict(mapping)), version) is not None:
                return
        raise RuntimeError("the employee map kept changing while saving; try again")


EMPLOYEE_SETTINGS: dict[str, Title] = {
    "users": Title("Extension → CRM user", "Добавочный → пользователь CRM"),
    "unmapped": Title("Extensions without a CRM user", "Добавочные без пользователя CRM"),
    "default_user": Title("Default CRM user", "Пользователь CRM по умолчанию"),
}
"""Settings titles in both panel languages, by key (the manifest's `settings`)."""
