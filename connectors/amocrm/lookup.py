"""Finding the caller among amoCRM contacts: the queries to send and how to pick the right contact.

amoCRM's ``GET /api/v4/contacts?query=`` is a full-text search over the contact's fields, phones
included (amocrm.md §2.2); it answers 204 No Content when nothing matches. It does not say how it
normalises numbers, so we query the E.164 digits first, then the national significant number, and compare
the digits of every returned phone ourselves, in the project's matching order: E.164 first, then the
national significant number, then the last 10 digits (design.md, `bridge.connector_api.phones`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.connector_api.phones import MatchKeys, match_keys

PHONE_FIELD_CODE = "PHONE"


@dataclass(frozen=True)
class Match:
    """A contact that has the number, and how well (0 = E.164, 1 = national number, 2 = last 10 digits)."""

    contact: Mapping[str, Any]
    rank: int
    phone: str

    @property
    def contact_id(self) -> int:
        return int(self.contact["id"])


def query_terms(number: str, region: str = "RU") -> list[str]:
    """What to put in ``?query=``, best first, without repeats: E.164 digits, national number, last 10."""
    keys = match_keys(number, region)
    terms: list[str] = []
    for term in (keys.e164.lstrip("+") if keys.e164 else None, keys.national, keys.last10):
        if term and term not in terms:
            terms.append(term)
    return terms


def phone_values(contact: Mapping[str, Any]) -> list[str]:
    """The values of the contact's ``PHONE`` field (``custom_fields_values[].values[].value``)."""
    values: list[str] = []
    for field in contact.get("custom_fields_values") or []:
        if not isinstance(field, Mapping) or field.get("field_code") != PHONE_FIELD_CODE:
            continue
        for item in field.get("values") or []:
            if isinstance(item, Mapping) and item.get("value") not in (None, ""):
                values.append(str(item["value"]))
    return values


def rank(stored: str, wanted: MatchKeys, region: str = "RU") -> int | None:
    """How `stored` (as typed in amoCRM) matches the wanted number: 0, 1, 2 or None (no match)."""
    have = match_keys(stored, region)
    if wanted.e164 and have.e164 and wanted.e164 == have.e164:
        return 0
    if wanted.national and have.national and wanted.national == have.national:
        return 1
    if wanted.last10 and have.last10 and wanted.last10 == have.last10:
        return 2
    return None


def best_match(contacts: Iterable[Mapping[str, Any]], number: str, region: str = "RU") -> Match | None:
    """The contact whose phone matches best; ties go to the first one amoCRM returned."""
    wanted = match_keys(number, region)
    best: Match | None = None
    for contact in contacts:
        if not isinstance(contact, Mapping) or "id" not in contact:
            continue
        for phone in phone_values(contact):
            found = rank(phone, wanted, region)
            if found is not None and (best is None or found < best.rank):
                best = Match(contact, found, phone)
    return best


def contacts_of(body: Any) -> list[Mapping[str, Any]]:
    """``_embedded.contacts`` of a list answer (None for 204 gives [])."""
    if not isinstance(body, Mapping):
        return []
    embedded = body.get("_embedded")
    contacts = embedded.get("contacts") if isinstance(embedded, Mapping) else None
    return [c for c in contacts or [] if isinstance(c, Mapping)]


def lead_ids(contact: Mapping[str, Any]) -> list[int]:
    """Ids of the deals linked to a contact (present when queried ``with=leads``)."""
    embedded = contact.get("_embedded")
    leads = embedded.get("leads") if isinstance(embedded, Mapping) else None
    ids = []
    for lead in leads or []:
        if isinstance(lead, Mapping) and str(lead.get("id", "")).isdigit():
            ids.append(int(lead["id"]))
    return ids
