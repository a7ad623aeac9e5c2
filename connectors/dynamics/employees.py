"""The employee import: Mango extensions to Dynamics users (``systemuser`` records).

Dataverse has no extension column (dynamics.md, "User by extension"), so the map lives in callbridge. A
Mango employee and an enabled, interactive Dynamics user are the same person when the user's *Main Phone*
(``address1_telephone1``) is the employee's extension, else when they share an e-mail address
(``internalemailaddress``, case-insensitive) and only one of each has it. Application users (an
``applicationid``, such as callbridge's own) are never matched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

USER_COLUMNS = "systemuserid,fullname,internalemailaddress,address1_telephone1,isdisabled,applicationid"


@dataclass
class ImportedUsers:
    """What matched, and how, in words a person reads (`ImportResult`)."""

    by_phone: dict[str, str] = field(default_factory=dict)  # extension -> systemuser id
    by_email: dict[str, str] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)  # e-mails or extensions more than one person has

    @property
    def mapped(self) -> dict[str, str]:
        return {**self.by_email, **self.by_phone}

    def report(self) -> str:
        lines = [
            f"{len(self.mapped)} extension(s) matched to Dynamics users "
            f"({len(self.by_phone)} by Main Phone, {len(self.by_email)} by e-mail)"
        ]
        lines += [f"  {ext} -> systemuser {uid}" for ext, uid in sorted(self.mapped.items())]
        if self.unmatched:
            lines.append(
                "no Dynamics user with that Main Phone or e-mail for: " + ", ".join(sorted(self.unmatched))
            )
        if self.ambiguous:
            lines.append("shared by several people (skipped): " + ", ".join(sorted(self.ambiguous)))
        return "\n".join(lines)


def _email(value: Any) -> str | None:
    text = str(value or "").strip().lower()
    return text if "@" in text else None


def _attr(user: Any, name: str) -> Any:
    return user.get(name) if isinstance(user, Mapping) else getattr(user, name, None)


def people(systemusers: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The enabled, interactive users (application users and disabled ones left out)."""
    return [
        u
        for u in systemusers
        if u.get("systemuserid") and not u.get("isdisabled") and not u.get("applicationid")
    ]


def match(pbx_users: Iterable[Any], systemusers: Iterable[Mapping[str, Any]]) -> ImportedUsers:
    """Pair Mango employees (``PbxUser`` objects or dicts with ``extension`` and ``email``) with Dynamics
    users: by Main Phone = extension first, then by a shared e-mail."""
    crm = people(systemusers)
    pbx = [(str(ext), _email(_attr(u, "email"))) for u in pbx_users if (ext := _attr(u, "extension"))]
    phones = Counter(str(u.get("address1_telephone1") or "").strip() for u in crm)
    mails = Counter(_email(u.get("internalemailaddress")) for u in crm)
    pbx_mails = Counter(mail for _, mail in pbx if mail)
    by_phone = {
        str(u["address1_telephone1"]).strip(): str(u["systemuserid"])
        for u in crm
        if u.get("address1_telephone1")
    }
    by_mail = {m: str(u["systemuserid"]) for u in crm if (m := _email(u.get("internalemailaddress")))}
    result = ImportedUsers()
    for ext, mail in pbx:
        if ext in by_phone:
            if phones[ext] > 1:
                result.ambiguous.append(ext)
            else:
                result.by_phone[ext] = by_phone[ext]
        elif mail and (mails[mail] > 1 or pbx_mails[mail] > 1):
            if mail not in result.ambiguous:
                result.ambiguous.append(mail)
        elif mail and mail in by_mail:
            result.by_email[ext] = by_mail[mail]
        else:
            result.unmatched.append(ext)
    return result
