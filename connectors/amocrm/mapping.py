"""Employee mapping: Mango extensions to amoCRM users, matched by e-mail.

amoCRM users have no extension field (amocrm.md §2.2), so the bridge keeps its own map. The import
helper reads amoCRM's users (``GET /api/v4/users``) and Mango's employees (``config/users/request``,
given by the caller as `MangoUser` objects or the raw reply items) and pairs them by e-mail, compared
case-insensitively. Explicit ``users`` in the config always win over the imported map
(`bridge.connector_api.employees.EmployeeResolver`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Person:
    """One side of the match: an id (extension or amoCRM user id), a name and an e-mail."""

    key: str
    email: str | None
    name: str | None = None


@dataclass
class MappingSuggestion:
    """The result of matching: what was paired, and what was left over (for a readable report)."""

    mapped: dict[str, str] = field(default_factory=dict)  # extension -> amoCRM user id
    names: dict[str, str] = field(default_factory=dict)  # extension -> "Mango name -> amo name"
    no_email: list[str] = field(default_factory=list)  # extensions whose Mango user has no e-mail
    unmatched: list[str] = field(default_factory=list)  # extensions whose e-mail no amoCRM user has
    ambiguous: list[str] = field(default_factory=list)  # e-mails two amoCRM users (or extensions) share
    unused_users: list[str] = field(default_factory=list)  # amoCRM user ids nobody maps to

    def report(self) -> str:
        """A plain-words summary, one line per fact."""
        lines = [f"{len(self.mapped)} extension(s) matched to amoCRM users by e-mail:"]
        lines += [f"  {ext} -> {self.mapped[ext]} ({self.names.get(ext, '')})" for ext in sorted(self.mapped)]
        if self.no_email:
            lines.append("no e-mail in Mango for extension(s): " + ", ".join(sorted(self.no_email)))
        if self.unmatched:
            lines.append(
                "no amoCRM user with the same e-mail for extension(s): " + ", ".join(sorted(self.unmatched))
            )
        if self.ambiguous:
            lines.append("e-mail(s) used more than once, left out: " + ", ".join(sorted(self.ambiguous)))
        if self.unused_users:
            lines.append("amoCRM user(s) without an extension: " + ", ".join(sorted(self.unused_users)))
        return "\n".join(lines)


def normalise_email(value: Any) -> str | None:
    text = str(value).strip().casefold() if value not in (None, "") else ""
    return text if "@" in text else None


def _get(item: Any, dotted: str) -> Any:
    value = item
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else getattr(value, part, None)
        if value is None:
            return None
    return value


def mango_people(users: Iterable[Any]) -> list[Person]:
    """Mango employees with an extension: `MangoUser` objects (``.extension``, ``.email``, ``.name``) or raw
    ``config/users/request`` items (``telephony.extension``, ``general.email``, ``general.name``)."""
    people = []
    for user in users:
        extension = _get(user, "extension") or _get(user, "telephony.extension")
        if extension in (None, ""):
            continue
        email = _get(user, "email") if not isinstance(user, Mapping) else _get(user, "general.email")
        name = _get(user, "name") if not isinstance(user, Mapping) else _get(user, "general.name")
        people.append(Person(str(extension), normalise_email(email), str(name) if name else None))
    return people


def amo_people(users: Iterable[Mapping[str, Any]]) -> list[Person]:
    """amoCRM users from ``GET /api/v4/users`` (``_embedded.users[]``: ``id``, ``name``, ``email``)."""
    people = []
    for user in users:
        if not isinstance(user, Mapping) or not str(user.get("id", "")).isdigit():
            continue
        people.append(Person(str(user["id"]), normalise_email(user.get("email")), user.get("name")))
    return people


def suggest_mapping(amo_users: Iterable[Mapping[str, Any]], mango_users: Iterable[Any]) -> MappingSuggestion:
    """Pair Mango extensions with amoCRM users whose e-mail is the same (case-insensitive).

    An e-mail that two amoCRM users or two extensions share is ambiguous and left out, never guessed.
    """
    amo = amo_people(amo_users)
    mango = mango_people(mango_users)
    result = MappingSuggestion()
    by_email: dict[str, list[Person]] = {}
    for person in amo:
        if person.email:
            by_email.setdefault(person.email, []).append(person)
    ext_count: dict[str, int] = {}
    for person in mango:
        if person.email:
            ext_count[person.email] = ext_count.get(person.email, 0) + 1
    ambiguous: set[str] = set()
    for person in mango:
        if not person.email:
            result.no_email.append(person.key)
            continue
        candidates = by_email.get(person.email, [])
        if not candidates:
            result.unmatched.append(person.key)
        elif len(candidates) > 1 or ext_count[person.email] > 1:
            ambiguous.add(person.email)
        else:
            user = candidates[0]
            result.mapped[person.key] = user.key
            result.names[person.key] = f"{person.name or '?'} -> {user.name or '?'}"
    result.ambiguous = sorted(ambiguous)
    used = set(result.mapped.values())
    result.unused_users = [p.key for p in amo if p.key not in used]
    return result
