"""The caller card's YClients part, from a client search and their records: pure functions, no I/O.

A record (``GET /api/v1/records/{company_id}``) is a booking: ``datetime``, ``services[].title``,
``staff`` (id, name), ``company_id`` (the branch), ``attendance`` (1 came, 2 confirmed, 0 waiting,
-1 did not come) and ``deleted``. The *last visit* is the latest past record the client did not miss;
the *next visit* the earliest record still ahead. The client's *usual* staff and branch are the ones of
most of their recent visits (ties go to the latest), which the routing of "a client who calls the general
number goes to the administrator they know" needs; staff are mapped to Mango extensions by the
``[connectors.yclients.staff]`` table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.connector_api.phones import same_number

NO_SHOW = -1


@dataclass(frozen=True)
class Visit:
    """One record, as the card shows it."""

    at: datetime
    service: str | None
    staff_id: str | None
    staff_name: str | None
    branch_id: str | None

    def summary(self) -> str:
        """``2026-12-01 14:00, Haircut, Anna``: one line for a popup."""
        parts = [self.at.strftime("%Y-%m-%d %H:%M")]
        parts += [p for p in (self.service, self.staff_name) if p]
        return ", ".join(parts)


@dataclass(frozen=True)
class Habits:
    """What a client's records say: their last and next visit, their usual staff and branch."""

    last: Visit | None
    next: Visit | None
    usual_staff_id: str | None
    usual_staff_name: str | None
    usual_branch_id: str | None


def search_body(phone_digits: str, page_size: int = 50) -> dict[str, Any]:
    """``POST /api/v1/company/{id}/clients/search``: a quick search by the number (a raw dict: the
    generated SDK's type of ``state.value`` is wrong, yclients.md)."""
    return {
        "page": 1,
        "page_size": page_size,
        "fields": ["id", "name", "phone"],
        "filters": [{"type": "quick_search", "state": {"value": phone_digits}}],
    }


def best_client(data: Any, phone: str, region: str) -> dict[str, Any] | None:
    """The client whose number is the caller's (a quick search also finds partial matches)."""
    clients = data if isinstance(data, list) else []
    for client in clients:
        if (
            isinstance(client, dict)
            and client.get("id") is not None
            and same_number(str(client.get("phone") or ""), phone, region)
        ):
            return client
    return None


def _when(record: dict[str, Any]) -> datetime | None:
    for key in ("datetime", "date"):
        raw = record.get(key)
        if not raw:
            continue
        try:
            when = datetime.fromisoformat(str(raw).replace(" ", "T", 1))
        except ValueError:
            continue
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return None


def _text(value: Any) -> str | None:
    text = " ".join(str(value).split()) if value not in (None, "") else ""
    return text[:120] or None


def visit_of(record: Any, names: Mapping[str, str] | None = None) -> Visit | None:
    """A `Visit` from a record; None for a deleted record or one without a date. `names` (staff id ->
    name, from the staff list) names the staff member when the record carries only ``staff_id``."""
    if not isinstance(record, dict) or record.get("deleted"):
        return None
    when = _when(record)
    if when is None:
        return None
    services = record.get("services")
    listed = services if isinstance(services, list) else []
    titles = [_text(s.get("title")) for s in listed if isinstance(s, dict)]
    staff = record.get("staff") if isinstance(record.get("staff"), dict) else {}
    staff_id = record.get("staff_id") if record.get("staff_id") not in (None, 0, "") else staff.get("id")
    branch = record.get("company_id")
    return Visit(
        at=when,
        service=", ".join(t for t in titles if t) or None,
        staff_id=str(staff_id) if staff_id not in (None, 0, "") else None,
        staff_name=_text(staff.get("name")) or (names or {}).get(str(staff_id)),
        branch_id=str(branch) if branch not in (None, 0, "") else None,
    )


def habits(records: Any, now: datetime, names: Mapping[str, str] | None = None) -> Habits:
    """The last and next visits and the usual staff and branch, from a client's records."""
    items = records if isinstance(records, list) else []
    past: list[Visit] = []
    ahead: list[Visit] = []
    for record in items:
        visit = visit_of(record, names)
        if visit is None:
            continue
        if visit.at >= now:
            ahead.append(visit)
        elif isinstance(record, dict) and record.get("attendance") != NO_SHOW:
            past.append(visit)
    past.sort(key=lambda v: v.at)
    ahead.sort(key=lambda v: v.at)
    staff_id = _usual([v.staff_id for v in past])
    names = {v.staff_id: v.staff_name for v in past if v.staff_name}
    return Habits(
        last=past[-1] if past else None,
        next=ahead[0] if ahead else None,
        usual_staff_id=staff_id,
        usual_staff_name=names.get(staff_id) if staff_id else None,
        usual_branch_id=_usual([v.branch_id for v in past]),
    )


def unnamed_staff(found: Habits) -> bool:
    """Whether a visit or the usual staff member the card shows has a staff id but no name."""
    visits = [v for v in (found.last, found.next) if v is not None]
    return any(v.staff_id and not v.staff_name for v in visits) or bool(
        found.usual_staff_id and not found.usual_staff_name
    )


def _usual(values: list[str | None]) -> str | None:
    """The most frequent value of a list oldest-first; among equals, the one seen last."""
    counts = Counter(v for v in values if v)
    if not counts:
        return None
    latest = {v: i for i, v in enumerate(values) if v}
    return max(counts, key=lambda v: (counts[v], latest[v]))


def details(client: dict[str, Any], found: Habits, usual_extension: str | None) -> dict[str, Any]:
    """The card's ``details`` (scalars only: the lookup service keeps those under ``details.yclients``)."""
    out: dict[str, Any] = {"client_id": client.get("id")}
    for name, visit in (("last_visit", found.last), ("next_visit", found.next)):
        if visit is None:
            continue
        out[name] = visit.summary()
        out[f"{name}_at"] = visit.at.isoformat(timespec="minutes")
        out[f"{name}_service"] = visit.service
        out[f"{name}_staff"] = visit.staff_name
        out[f"{name}_staff_id"] = visit.staff_id
        out[f"{name}_branch_id"] = visit.branch_id
    if found.usual_staff_id:
        out["usual_staff_id"] = found.usual_staff_id
        out["usual_staff"] = found.usual_staff_name
        out["usual_extension"] = usual_extension
    if found.usual_branch_id:
        out["usual_branch_id"] = found.usual_branch_id
    return out
