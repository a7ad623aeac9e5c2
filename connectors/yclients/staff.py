"""Mango extensions to YClients staff, matched by name (YClients' staff list has no e-mail or extension).

`GET /api/v1/staff/{company_id}` (the partner token suffices) lists the branch's staff: ``id``, ``name``,
``specialization``, ``position``, ``hidden``, ``fired``. A Mango employee and a staff member match when
their names have the same words, whatever the order and case (``Мария Иванова`` = ``ИВАНОВА мария``;
``ё`` = ``е``). A name two staff members or two extensions share is left out, never guessed; fired staff
are not matched. The ``[connectors.yclients.staff]`` table always wins over the imported map.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

STAFF_PATH = "/api/v1/staff/{company_id}"


def name_key(value: Any) -> str | None:
    """The words of a name, case-folded and sorted: the key two spellings of one person share."""
    words = str(value or "").casefold().replace("ё", "е").split()
    return " ".join(sorted(words)) or None


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)


@dataclass
class StaffSuggestion:
    """What the import matched and what it left over (its `report` is what a person reads)."""

    mapped: dict[str, str] = field(default_factory=dict)  # extension -> staff id
    names: dict[str, str] = field(default_factory=dict)  # extension -> the matched name
    no_name: list[str] = field(default_factory=list)  # extensions whose Mango employee has no name
    unmatched: list[str] = field(default_factory=list)  # extensions no staff member's name matches
    ambiguous: list[str] = field(default_factory=list)  # names used twice (by staff or by extensions)
    unused_staff: list[str] = field(default_factory=list)  # staff ids no extension maps to

    def report(self) -> str:
        lines = [f"{len(self.mapped)} extension(s) matched to YClients staff by name:"]
        lines += [f"  {ext} -> {self.mapped[ext]} ({self.names[ext]})" for ext in sorted(self.mapped)]
        if self.no_name:
            lines.append("no name in Mango for extension(s): " + ", ".join(sorted(self.no_name)))
        if self.unmatched:
            lines.append(
                "no YClients staff member of the same name for extension(s): "
                + ", ".join(sorted(self.unmatched))
            )
        if self.ambiguous:
            lines.append("name(s) used more than once, left out: " + ", ".join(sorted(self.ambiguous)))
        if self.unused_staff:
            lines.append("YClients staff without an extension: " + ", ".join(sorted(self.unused_staff)))
        return "\n".join(lines)


def suggest(staff: Iterable[Any], pbx_users: Iterable[Any]) -> StaffSuggestion:
    """Pair PBX employees (``extension``, ``name``) with the branch's staff (``id``, ``name``) by name."""
    by_name: dict[str, list[str]] = {}
    ids: list[str] = []
    for member in staff:
        if not isinstance(member, Mapping) or member.get("fired") or not str(member.get("id", "")).isdigit():
            continue
        ids.append(str(member["id"]))
        key = name_key(member.get("name"))
        if key:
            by_name.setdefault(key, []).append(str(member["id"]))
    people = [(str(_field(u, "extension")), _field(u, "name")) for u in pbx_users if _field(u, "extension")]
    per_name: dict[str, int] = {}
    for _, name in people:
        key = name_key(name)
        if key:
            per_name[key] = per_name.get(key, 0) + 1
    result = StaffSuggestion()
    ambiguous: set[str] = set()
    for extension, name in people:
        key = name_key(name)
        if key is None:
            result.no_name.append(extension)
        elif key not in by_name:
            result.unmatched.append(extension)
        elif len(by_name[key]) > 1 or per_name[key] > 1:
            ambiguous.add(str(name))
        else:
            result.mapped[extension] = by_name[key][0]
            result.names[extension] = str(name)
    result.ambiguous = sorted(ambiguous)
    used = set(result.mapped.values())
    result.unused_staff = [i for i in ids if i not in used]
    return result
