"""The employee import: Mango extensions to retailCRM users, matched by e-mail.

retailCRM's users (``GET /api/v5/users``) carry no extension a PBX could use, so the map lives in
callbridge (and goes to retailCRM as the module's ``additionalCodes``). A Mango employee and a retailCRM
user are the same person when they share an e-mail address (case-insensitive), and only one of each does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ImportedMap:
    """What matched, and what did not, in words a person reads (`ImportResult`)."""

    mapped: dict[str, str] = field(default_factory=dict)  # extension -> retailCRM user id
    unmatched: list[str] = field(default_factory=list)  # extensions without a retailCRM user
    ambiguous: list[str] = field(default_factory=list)  # e-mails more than one person has

    def report(self) -> str:
        lines = [f"{len(self.mapped)} extension(s) matched to retailCRM users by e-mail"]
        lines += [f"  {ext} -> user {uid}" for ext, uid in sorted(self.mapped.items())]
        if self.unmatched:
            lines.append("no retailCRM user with the same e-mail for: " + ", ".join(sorted(self.unmatched)))
        if self.ambiguous:
            lines.append("e-mails shared by several people (skipped): " + ", ".join(sorted(self.ambiguous)))
        return "\n".join(lines)


def _email(value: Any) -> str | None:
    text = str(value or "").strip().lower()
    return text if "@" in text else None


def _field(item: Any, *names: str) -> Any:
    for name in names:
        node = item
        for part in name.split("."):
            node = node.get(part) if isinstance(node, Mapping) else getattr(node, part, None)
        if node not in (None, ""):
            return node
    return None


def match(pbx_users: Iterable[Any], crm_users: Iterable[Mapping[str, Any]]) -> ImportedMap:
    """Pair Mango employees (``PbxUser`` objects or raw ``config/users/request`` items) with active
    retailCRM users by e-mail."""
    pbx = [
        (str(ext), _email(_field(u, "email", "general.email")))
        for u in pbx_users
        if (ext := _field(u, "extension", "telephony.extension")) is not None
    ]
    crm = [(str(u["id"]), _email(u.get("email"))) for u in crm_users if u.get("id") is not None]
    crm_count = Counter(mail for _, mail in crm if mail)
    pbx_count = Counter(mail for _, mail in pbx if mail)
    by_mail = {mail: uid for uid, mail in crm if mail}
    result = ImportedMap()
    for ext, mail in pbx:
        if mail and (crm_count[mail] > 1 or pbx_count[mail] > 1):
            if mail not in result.ambiguous:
                result.ambiguous.append(mail)
        elif mail and mail in by_mail:
            result.mapped[ext] = by_mail[mail]
        else:
            result.unmatched.append(ext)
    return result
