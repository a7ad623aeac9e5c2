"""A directory entry as a person, through the configured `[ldap.fields]` attribute names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FIELDS: tuple[str, ...] = ("name", "email", "department", "position")


@dataclass(frozen=True)
class DirectoryPerson:
    """One directory entry: its DN, the extension (empty when it has none) and the other fields."""

    dn: str
    extension: str
    values: Mapping[str, str | None]


def _first(value: Any) -> str | None:
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if value is None:
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text.strip() or None


def person_from_entry(dn: str, attributes: Mapping[str, Any], fields: Mapping[str, str]) -> DirectoryPerson:
    """Map one entry; attribute names compare case-insensitively, as LDAP's do."""
    lowered = {name.lower(): value for name, value in attributes.items()}

    def read(field: str) -> str | None:
        attribute = fields.get(field)
        return _first(lowered.get(attribute.lower())) if attribute else None

    extension = (read("extension") or "").replace(" ", "")
    return DirectoryPerson(dn=dn, extension=extension, values={f: read(f) for f in FIELDS})


def wanted_attributes(fields: Mapping[str, str]) -> list[str]:
    """The attributes a search asks for."""
    return sorted({attribute for attribute in fields.values() if attribute})
