"""What callbridge sends to retailCRM for a CallEvent: pure functions from events to request fields.

Field names follow retailcrm.md §3.3-3.4 and the official PHP client's models to the letter. Nothing here
does I/O; `connector.py` decides which of these to send and remembers what was sent.

Mango's disconnect reasons (bridge/pbx/mango/codes.py: 1xxx normal, 2xxx restrictions, 3xxx and up
errors) decide two different vocabularies, and the spelling differs between them on purpose:

| what happened | ``hangupStatus`` (popup) | ``result`` (call log) |
| --- | --- | --- |
| answered | ``answered`` | ``answered`` |
| busy (1121, 1193, 1312) | ``busy`` | ``busy`` |
| the caller hung up while it rang (1110) | ``cancel`` | ``no answer`` |
| a colleague took it (this employee's ringing stops) | ``cancel`` | - |
| not answered (1111 and other 1xxx) | ``no answered`` | ``no answer`` |
| a restriction (2xxx) | ``failed`` | ``not allowed`` |
| an error (3xxx and up) | ``failed`` | ``failed`` |
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from bridge.connector_api import CallEvent

BUSY_REASONS = frozenset({1121, 1193, 1312})
BY_CALLER = 1110

TYPES = {"incoming": "in", "outgoing": "out"}

_TASK_TEXT = {"ru": "Перезвонить: пропущенный звонок с {number}"}


def answered(event: CallEvent) -> bool:
    """Someone talked to the customer (the tracker's answer, not one leg's)."""
    return event.answered_at is not None and not event.extra.get("missed")


def hangup_status(event: CallEvent) -> str:
    """``hangupStatus`` for the employees a finished call rang (see the module docstring)."""
    if answered(event):
        return "answered"
    reason = event.disconnect_reason or 0
    if reason in BUSY_REASONS:
        return "busy"
    if reason >= 2000:
        return "failed"
    if reason == BY_CALLER:
        return "cancel"
    return "no answered"


def call_result(event: CallEvent) -> str:
    """``result`` of the call log: ``no answer`` here, never the popup's ``no answered``."""
    if answered(event):
        return "answered"
    reason = event.disconnect_reason or 0
    if reason in BUSY_REASONS:
        return "busy"
    if 2000 <= reason < 3000:
        return "not allowed"
    if reason >= 3000:
        return "failed"
    return "no answer"


def local_time(epoch: float, zone: str, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A Unix time as the account's wall clock (retailCRM reads dates without a zone)."""
    return dt.datetime.fromtimestamp(epoch, ZoneInfo(zone)).strftime(fmt)


def call_event(
    event: CallEvent,
    *,
    kind: str,
    phone: str,
    codes: list[str],
    user_ids: list[int],
    site: str | None,
    hangup: str | None = None,
) -> dict[str, Any]:
    """``event`` of ``telephony/call/event``: a popup (``in``/``out``) or its close (``hangup``)."""
    body: dict[str, Any] = {"phone": phone, "type": kind, "codes": codes, "callExternalId": event.entry_id}
    if user_ids:
        body["userIds"] = user_ids
    if hangup is not None:
        body["hangupStatus"] = hangup
    if event.line_number:
        body["externalPhone"] = event.line_number
    if site:
        body["site"] = site
    return body


def call_log(
    event: CallEvent,
    *,
    phone: str,
    code: str | None,
    user_id: int | None,
    site: str | None,
    record_url: str | None,
    zone: str,
) -> dict[str, Any]:
    """One item of ``calls`` for ``telephony/calls/upload``, from `call.ended`."""
    started = event.started_at if event.started_at is not None else event.occurred_at
    item: dict[str, Any] = {
        "date": local_time(started, zone),
        "type": TYPES[event.direction],
        "phone": phone,
        "result": call_result(event),
        "duration": int(event.talk_seconds or 0),
        "durationWaiting": int(event.wait_seconds or 0),
        "externalId": event.entry_id,
    }
    if code:
        item["code"] = code
    if user_id is not None:
        item["userId"] = user_id
    if event.line_number:
        item["externalPhone"] = event.line_number
    if site:
        item["site"] = site
    if record_url:
        item["recordUrl"] = record_url
    return item


def task(
    event: CallEvent,
    *,
    phone: str,
    performer: int,
    customer_id: int | None,
    text: str | None,
    due_minutes: int,
    zone: str,
) -> dict[str, Any]:
    """``task`` of ``tasks/create`` (the PHP client's Task model): a call back for a missed call."""
    missed_at = event.ended_at or event.occurred_at
    number = phone
    body: dict[str, Any] = {
        "text": (text or _TASK_TEXT["ru"]).format(number=number),
        "commentary": f"Пропущенный звонок {local_time(missed_at, zone, '%d.%m.%Y %H:%M')}, номер {number}",
        "datetime": local_time(missed_at + due_minutes * 60, zone, "%Y-%m-%d %H:%M"),
        "performerId": performer,
        "phone": number,
    }
    if customer_id is not None:
        body["customer"] = {"id": customer_id}
    return body
