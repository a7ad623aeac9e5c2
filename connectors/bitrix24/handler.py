"""CallEvent -> Bitrix24 command parameters: pure functions, no I/O (the connector sends them).

Field names and values follow telephony-external-call-register.md, -finish.md, -attach-record.md,
-show.md/-hide.md and tasks-task-add.md.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from bridge.connector_api import CallEvent
from bridge.connector_api.phones import InvalidPhoneNumber, to_e164

# register TYPE
TYPE_OUTGOING = 1
TYPE_INCOMING = 2
TYPE_INCOMING_REDIRECTED = 3
TYPE_CALLBACK = 4

# finish STATUS_CODE
STATUS_OK = "200"
STATUS_MISSED = "304"
STATUS_DECLINED = "603"
STATUS_CANCELLED = "603-S"
STATUS_FORBIDDEN = "403"
STATUS_INVALID_NUMBER = "404"
STATUS_BUSY = "486"
STATUS_DIRECTION_UNAVAILABLE = "503"
STATUS_UNAVAILABLE = "480"
STATUS_NO_FUNDS = "402"
STATUS_BLOCKED = "423"
STATUS_OTHER = "OTHER"

# Mango disconnect reasons (mango.md §4) of a call nobody answered -> Bitrix24 STATUS_CODE.
_REASON_STATUS: dict[int, str] = {
    1110: STATUS_CANCELLED,  # our side hung up before an answer
    1111: STATUS_MISSED,  # no answer within the timeout
    1121: STATUS_BUSY,
    1122: STATUS_DECLINED,
    1123: STATUS_DECLINED,  # do-not-disturb
    1124: STATUS_DECLINED,
    1130: STATUS_FORBIDDEN,
    1131: STATUS_UNAVAILABLE,
    1132: STATUS_UNAVAILABLE,
    1133: STATUS_INVALID_NUMBER,
    1135: STATUS_FORBIDDEN,
    1140: STATUS_FORBIDDEN,
    1150: STATUS_FORBIDDEN,
    1151: STATUS_BLOCKED,
    1152: STATUS_BLOCKED,
    1190: STATUS_UNAVAILABLE,
    1191: STATUS_UNAVAILABLE,
    1192: STATUS_UNAVAILABLE,
    1193: STATUS_BUSY,
    2110: STATUS_BLOCKED,
    2240: STATUS_NO_FUNDS,
    2300: STATUS_DIRECTION_UNAVAILABLE,
    3136: STATUS_INVALID_NUMBER,
    3200: STATUS_INVALID_NUMBER,
    4200: STATUS_UNAVAILABLE,
}

# CRM_ENTITY_TYPE -> the prefix tasks use in UF_CRM_TASK (tasks-task-add.md: L_4, C_7, CO_5, D_10).
_TASK_PREFIX = {"LEAD": "L", "CONTACT": "C", "COMPANY": "CO", "DEAL": "D"}


@dataclass(frozen=True)
class Who:
    """A Bitrix24 user as a command names them: USER_ID, or USER_PHONE_INNER (Bitrix24 finds the user)."""

    user_id: str | None = None
    inner: str | None = None

    def params(self) -> dict[str, Any]:
        if self.user_id is not None:
            return {"USER_ID": int(self.user_id)}
        return {"USER_PHONE_INNER": self.inner}

    def key(self) -> str:
        """How it is kept in the reference store."""
        return f"id:{self.user_id}" if self.user_id is not None else f"inner:{self.inner}"

    @classmethod
    def from_key(cls, text: str | None) -> Who | None:
        if not text:
            return None
        kind, _, value = text.partition(":")
        if kind == "id":
            return cls(user_id=value)
        if kind == "inner":
            return cls(inner=value)
        return None


def phone_number(event: CallEvent, region: str) -> str | None:
    """The customer's number for PHONE_NUMBER: E.164 when it parses, else its digits; None if absent."""
    raw = event.customer_number
    if not raw:
        return None
    try:
        return to_e164(raw, region)
    except InvalidPhoneNumber:
        digits = re.sub(r"\D", "", raw.split("@", 1)[0])
        return digits or None


def iso(ts: float) -> str:
    """ISO-8601 with the time zone, as CALL_START_DATE and DEADLINE want it (UTC)."""
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="seconds")


def call_type(event: CallEvent) -> int:
    """register TYPE: 1 outgoing (click-to-call included), 2 incoming."""
    return TYPE_OUTGOING if event.direction == "outgoing" else TYPE_INCOMING


def answered(event: CallEvent) -> bool:
    return event.answered_at is not None or (event.talk_seconds or 0) > 0


def duration(event: CallEvent) -> int:
    """DURATION: seconds of conversation (0 when nobody answered)."""
    return max(0, int(event.talk_seconds or 0)) if answered(event) else 0


def status_code(event: CallEvent) -> str:
    """finish STATUS_CODE from the call's outcome: 200 answered, 304 missed incoming, else the reason."""
    if answered(event):
        return STATUS_OK
    if event.direction != "outgoing":
        return STATUS_MISSED
    return _REASON_STATUS.get(int(event.disconnect_reason or 0), STATUS_MISSED)


def register_params(
    event: CallEvent,
    who: Who,
    *,
    phone: str,
    crm_create: bool,
    crm_source: str | None,
    line_number: str | None,
    show: bool,
) -> dict[str, Any]:
    params: dict[str, Any] = {
        **who.params(),
        "PHONE_NUMBER": phone,
        "TYPE": call_type(event),
        "CALL_START_DATE": iso(event.started_at or event.occurred_at),
        "CRM_CREATE": 1 if crm_create else 0,
        "SHOW": 1 if show else 0,
        # A unique id per call defeats register's 30-minute dedup of PHONE_NUMBER+TYPE+USER.
        "EXTERNAL_CALL_ID": event.entry_id,
    }
    if crm_source:
        params["CRM_SOURCE"] = crm_source
    if line_number:
        params["LINE_NUMBER"] = line_number
    return params


def finish_params(call_id: Any, who: Who, event: CallEvent) -> dict[str, Any]:
    """`call_id` is the CALL_ID or a batch reference to register's result."""
    params: dict[str, Any] = {
        "CALL_ID": call_id,
        **who.params(),
        "DURATION": duration(event),
        "STATUS_CODE": status_code(event),
        "ADD_TO_CHAT": 0,
    }
    if not answered(event) and event.disconnect_reason:
        params["FAILED_REASON"] = f"Mango {event.disconnect_reason}"
    return params


def task_binding(entity_type: str | None, entity_id: str | None) -> str | None:
    """``L_12`` / ``C_7`` / ``CO_5`` / ``D_10`` for UF_CRM_TASK, or None."""
    prefix = _TASK_PREFIX.get((entity_type or "").upper())
    return f"{prefix}_{entity_id}" if prefix and entity_id else None


def task_fields(
    event: CallEvent,
    user_id: str,
    *,
    phone: str,
    binding: str | None,
    title: str,
    description: str,
    deadline_minutes: int,
    now: float,
) -> dict[str, Any]:
    """tasks.task.add ``fields`` for a missed call."""
    values = _Fill(number=phone, time=iso(event.started_at or event.occurred_at), entry_id=event.entry_id)
    fields: dict[str, Any] = {
        "TITLE": title.format_map(values)[:400],
        "DESCRIPTION": description.format_map(values),
        "RESPONSIBLE_ID": int(user_id),
        "DEADLINE": iso(now + deadline_minutes * 60),
    }
    if binding:
        fields["UF_CRM_TASK"] = [binding]
    return fields


class _Fill(dict[str, str]):
    """format_map that leaves unknown ``{names}`` as they are instead of raising."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
