"""What callbridge sends to amoCRM for a CallEvent: pure functions from events to request bodies.

The field names follow amocrm.md §2.2 to the letter. Nothing here does I/O; `connector.py` decides which
of these to send, in which order, and remembers what was created.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.connector_api import CallEvent

# call_status (amocrm.md §2.2): 1 left a message, 2 call back later, 3 not available, 4 conversation held,
# 5 wrong number, 6 no answer, 7 busy.
STATUS_HELD = 4
STATUS_WRONG_NUMBER = 5
STATUS_NO_ANSWER = 6
STATUS_BUSY = 7

# Mango disconnect reasons (bridge/pbx/mango/codes.py) that tell why an outgoing call was not answered.
BUSY_REASONS = frozenset({1121, 1193, 1312})
WRONG_NUMBER_REASONS = frozenset({1130, 1132, 1133})

DIRECTIONS = {"incoming": "inbound", "outgoing": "outbound"}

_TEXTS: dict[str, dict[str, str]] = {
    "ru": {
        "held": "Разговор состоялся",
        "missed": "Пропущенный звонок",
        "no_answer": "Не дозвонились",
        "busy": "Занято",
        "wrong_number": "Неверный номер",
        "lead": "Звонок с {number}",
        "task": "Пропущенный звонок с {number}: перезвонить",
        "employee_called": "Перезвонили клиенту",
        "customer_called": "Клиент дозвонился сам",
    },
    "en": {
        "held": "Conversation held",
        "missed": "Missed call",
        "no_answer": "No answer",
        "busy": "Busy",
        "wrong_number": "Wrong number",
        "lead": "Call from {number}",
        "task": "Missed call from {number}: call back",
        "employee_called": "The customer was called back",
        "customer_called": "The customer got through later",
    },
}


@dataclass(frozen=True)
class Outcome:
    """How a finished call is shown in amoCRM: ``call_status`` and the ``call_result`` text."""

    status: int
    result: str


def answered(event: CallEvent) -> bool:
    """Someone talked to the customer (the tracker's answer, not one leg's)."""
    return event.answered_at is not None and not event.extra.get("missed")


def outcome(event: CallEvent, language: str = "ru") -> Outcome:
    """``call_status`` and ``call_result`` for `call.ended`."""
    texts = _TEXTS[language]
    if answered(event):
        return Outcome(STATUS_HELD, texts["held"])
    if event.direction == "incoming":
        return Outcome(STATUS_NO_ANSWER, texts["missed"])
    reason = event.disconnect_reason
    if reason in BUSY_REASONS:
        return Outcome(STATUS_BUSY, texts["busy"])
    if reason in WRONG_NUMBER_REASONS:
        return Outcome(STATUS_WRONG_NUMBER, texts["wrong_number"])
    return Outcome(STATUS_NO_ANSWER, texts["no_answer"])


def duration(event: CallEvent) -> int:
    """Seconds of conversation (0 when nobody answered): what amoCRM's player and reports show."""
    if not answered(event):
        return 0
    return max(0, int(event.talk_seconds or 0))


def recording_link(event: CallEvent, recording_url: Callable[[str], str | None] | None) -> str | None:
    """The core's signed link (``<public_url>/recordings/<id>?t=...``) to the call's first recording, or
    None: no recording, nobody answered, or the core gives no link (no public URL, linking switched off).
    """
    if recording_url is None or not event.recording_ids or not answered(event):
        return None
    return recording_url(event.recording_ids[0])


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and str(value).isdigit() else None


def _unix(value: float | None, fallback: float) -> int:
    return int(value if value is not None else fallback)


def popup_body(phone: str, user_ids: list[str]) -> dict[str, Any]:
    """``POST /api/v2/events``: a ``phone_call`` notification to exactly these users.

    `user_ids` must not be empty: without ``users`` amoCRM notifies everyone.
    """
    if not user_ids:
        raise ValueError("a popup needs at least one user (without users amoCRM notifies everyone)")
    return {"add": [{"type": "phone_call", "phone_number": phone, "users": [int(u) for u in user_ids]}]}


def call_body(
    event: CallEvent,
    *,
    phone: str,
    source: str,
    user_id: str | None,
    link: str | None,
    language: str = "ru",
) -> list[dict[str, Any]]:
    """``POST /api/v4/calls`` (an array) for a finished call with a known number."""
    result = outcome(event, language)
    item: dict[str, Any] = {
        "direction": DIRECTIONS[event.direction],
        "uniq": event.entry_id,
        "duration": duration(event),
        "source": source,
        "phone": phone,
        "call_result": result.result,
        "call_status": result.status,
        "created_at": _unix(event.started_at, event.occurred_at),
    }
    if link:
        item["link"] = link
    uid = _int(user_id)
    if uid is not None:
        item["responsible_user_id"] = uid
        item["call_responsible"] = uid
    return [item]


def unsorted_body(
    event: CallEvent,
    *,
    phone: str,
    source_name: str,
    source_uid: str,
    service_code: str,
    user_id: str | None,
    link: str | None,
    pipeline_id: int | None,
    language: str = "ru",
) -> list[dict[str, Any]]:
    """``POST /api/v4/leads/unsorted/sip`` for an incoming call from a number amoCRM does not know.

    ``metadata.from`` is the caller and ``metadata.phone`` the number called (our line), as in the SDK's
    example and Kommo's reference; the contact carries the caller's number so that accepting the lead
    makes the number known.
    """
    called_at = _unix(event.started_at, event.occurred_at)
    uid = _int(user_id)
    metadata: dict[str, Any] = {
        "uniq": event.entry_id,
        "duration": duration(event),
        "service_code": service_code,
        "phone": (event.line_number or event.extension or "").lstrip("+") or phone,
        "called_at": called_at,
        "from": phone,
        "is_call_event_needed": True,
    }
    if link:
        metadata["link"] = link
    if uid is not None:
        metadata["call_responsible"] = uid
    lead: dict[str, Any] = {"name": _TEXTS[language]["lead"].format(number=phone)}
    contact: dict[str, Any] = {
        "name": phone,
        "custom_fields_values": [
            {"field_code": "PHONE", "values": [{"value": phone, "enum_code": "WORK"}]},
        ],
    }
    if uid is not None:
        lead["responsible_user_id"] = uid
        contact["responsible_user_id"] = uid
    item: dict[str, Any] = {
        "source_name": source_name,
        "source_uid": source_uid,
        "created_at": called_at,
        "metadata": metadata,
        "_embedded": {"leads": [lead], "contacts": [contact]},
    }
    if pipeline_id is not None:
        item["pipeline_id"] = pipeline_id
    return [item]


def task_body(
    event: CallEvent,
    *,
    phone: str,
    user_id: str,
    entity: tuple[str, int] | None,
    text: str | None,
    due_minutes: int,
    language: str = "ru",
) -> list[dict[str, Any]]:
    """``POST /api/v4/tasks``: a follow-up call (task_type_id 1) for the responsible user."""
    template = text or _TEXTS[language]["task"]
    missed_at = event.ended_at if event.ended_at is not None else event.occurred_at
    item: dict[str, Any] = {
        "text": template.replace("{number}", phone),
        "complete_till": int(missed_at + due_minutes * 60),
        "responsible_user_id": int(user_id),
        "task_type_id": 1,
    }
    if entity is not None:
        item["entity_type"], item["entity_id"] = entity
    return [item]


def embedded(body: Any, name: str) -> list[dict[str, Any]]:
    """``_embedded.<name>`` of an answer, as a list of dicts."""
    if not isinstance(body, dict):
        return []
    inner = body.get("_embedded")
    items = inner.get(name) if isinstance(inner, dict) else None
    return [item for item in items or [] if isinstance(item, dict)]


def task_completion(task_id: int, event: CallEvent, *, language: str) -> dict[str, Any]:
    """A `PATCH /api/v4/tasks` item completing a missed-call task, with the result text (who and how)."""
    texts = _TEXTS.get(language, _TEXTS["en"])
    how = str(event.extra.get("how") or "employee_called")
    text = texts.get(how, texts["employee_called"])
    if event.extension:
        text = f"{text} ({event.extension})"
    return {"id": task_id, "is_completed": True, "result": {"text": text}}
