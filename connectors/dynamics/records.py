"""What callbridge sends to Dataverse for a call: pure functions, no I/O.

Field names and binds follow dynamics.md (the ``phonecall``, ``task``, ``lead`` and ``contact`` tables of
the Web API). Every record callbridge creates carries its own primary key, a UUID derived from the call's
entry id, so a create repeated after a lost answer can only meet "duplicate key", never make a second one.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.connector_api import CallEvent
from bridge.connector_api.phones import match_keys, same_number

NAMESPACE = uuid.UUID("6f1c2a1e-8b5d-4c1e-9a57-3d0e5b7c9f21")
PHONE_COLUMNS = ("telephone1", "mobilephone", "telephone2")
# phonecall statecode / statuscode (dynamics.md): Completed = 1; Made = 2 (outgoing), Received = 4 (incoming)
COMPLETED, MADE, RECEIVED = 1, 2, 4
FROM, TO = 1, 2  # activityparty participationtypemask: Sender, To Recipient


@dataclass(frozen=True)
class Party:
    """A Dataverse record a call is about: ``contact`` or ``lead`` and its id."""

    table: str
    id: str
    name: str | None = None
    owner: str | None = None  # the owning systemuser's id

    @property
    def bind(self) -> str:
        return f"/{self.table}s({self.id})"


def record_id(entry_id: str, kind: str) -> str:
    """The primary key callbridge gives the `kind` record of a call: stable across redelivery."""
    return str(uuid.uuid5(NAMESPACE, f"{entry_id}:{kind}"))


def answered(event: CallEvent) -> bool:
    """Someone talked to the other party (the tracker's answer, not one leg's)."""
    return event.answered_at is not None and not event.extra.get("missed")


def who_took_it(event: CallEvent) -> str | None:
    """The tracker's responsible employee (who answered, the last after a transfer, the first rung for a
    missed call, the caller for an outgoing one), else the employee the event is about."""
    responsible = event.extra.get("responsible")
    return str(responsible) if responsible else event.extension


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def talk_seconds(event: CallEvent) -> int:
    return max(0, int(event.talk_seconds or 0)) if answered(event) else 0


def phone_filter(raw: str, region: str) -> str | None:
    """An OData ``$filter`` that finds records whose free-text phone ends in the number's last four digits
    as people write them (``4567``, ``45-67``, ``45 67``); the caller compares the numbers found in full.
    None when the number has fewer than four digits."""
    keys = match_keys(raw, region)
    digits = re.sub(r"\D", "", keys.e164 or raw)
    if len(digits) < 4:
        return None
    tail = digits[-4:]
    forms = (tail, f"{tail[:2]}-{tail[2:]}", f"{tail[:2]} {tail[2:]}")
    return " or ".join(f"contains({column},'{form}')" for column in PHONE_COLUMNS for form in forms)


def best_match(rows: Any, raw: str, region: str) -> dict[str, Any] | None:
    """The first row one of whose phone columns is the same number as `raw`."""
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and any(same_number(row.get(c), raw, region) for c in PHONE_COLUMNS):
            return row
    return None


def subject(event: CallEvent, number: str) -> str:
    if event.direction == "outgoing":
        return f"Outgoing call to {number}" if answered(event) else f"Unanswered call to {number}"
    return f"Incoming call from {number}" if answered(event) else f"Missed call from {number}"


def description(event: CallEvent, link: str | None) -> str:
    seconds = talk_seconds(event)
    lines = [f"Talk time: {seconds // 60} min {seconds % 60} s ({seconds} s)."]
    if link:
        lines.append(f"Recording: {link}")
    lines.append(f"Mango Office call {event.entry_id}")
    return "\n".join(lines)


def phonecall_body(
    event: CallEvent, *, number: str, party: Party | None, user: str | None, link: str | None
) -> dict[str, Any]:
    """``POST /phonecalls``: the call with its parties; created open, closed by `close_body`."""
    incoming = event.direction != "outgoing"
    start = event.started_at if event.started_at is not None else event.occurred_at
    end = event.ended_at if event.ended_at is not None else event.occurred_at
    body: dict[str, Any] = {
        "activityid": record_id(event.entry_id, "phonecall"),
        "subject": subject(event, number),
        "phonenumber": number,
        "directioncode": not incoming,
        "actualstart": iso(start),
        "actualend": iso(end),
        "actualdurationminutes": math.ceil(talk_seconds(event) / 60),
        "description": description(event, link),
    }
    parties: list[dict[str, Any]] = []
    if party is not None:
        body[f"regardingobjectid_{party.table}_phonecall@odata.bind"] = party.bind
        parties.append({f"partyid_{party.table}@odata.bind": party.bind, "participationtypemask": FROM})
    if user is not None:
        body["ownerid@odata.bind"] = f"/systemusers({user})"
        parties.append(
            {"partyid_systemuser@odata.bind": f"/systemusers({user})", "participationtypemask": TO}
        )
    if not incoming:  # the employee called the customer
        for p in parties:
            p["participationtypemask"] = TO if p["participationtypemask"] == FROM else FROM
    if parties:
        body["phonecall_activity_parties"] = parties
    return body


def close_body(event: CallEvent) -> dict[str, Any]:
    """``PATCH /phonecalls(<id>)``: Completed, as Made (outgoing) or Received (incoming)."""
    return {"statecode": COMPLETED, "statuscode": MADE if event.direction == "outgoing" else RECEIVED}


def task_body(
    event: CallEvent, *, number: str, party: Party | None, owner: str | None, due_minutes: int
) -> dict[str, Any]:
    """``POST /tasks``: call the customer back, due `due_minutes` after the call ended."""
    end = event.ended_at if event.ended_at is not None else event.occurred_at
    body: dict[str, Any] = {
        "activityid": record_id(event.entry_id, "task"),
        "subject": f"Call back {number}",
        "description": f"Missed call from {number} at {iso(end)}.\nMango Office call {event.entry_id}",
        "scheduledend": iso(end + timedelta(minutes=due_minutes).total_seconds()),
        "prioritycode": 2,
    }
    if owner is not None:
        body["ownerid@odata.bind"] = f"/systemusers({owner})"
    if party is not None:
        body[f"regardingobjectid_{party.table}_task@odata.bind"] = party.bind
    return body


def new_party_body(table: str, event: CallEvent, number: str, owner: str | None) -> dict[str, Any]:
    """``POST /leads`` or ``POST /contacts`` for a caller Dataverse does not know yet."""
    key = "leadid" if table == "lead" else "contactid"
    body: dict[str, Any] = {key: record_id(event.entry_id, table), "telephone1": number}
    if table == "lead":
        body["subject"] = f"Call from {number}"
        body["lastname"] = number
    else:
        body["lastname"] = number
    if owner is not None:
        body["ownerid@odata.bind"] = f"/systemusers({owner})"
    return body
