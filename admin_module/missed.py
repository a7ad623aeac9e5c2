"""Missed calls and their follow-up: called back (by whom, how long after) or still open.

A missed call counts as called back by the first *answered outgoing* call to the same customer number
(matched on the last 10 digits) that started after the missed call began. Pure functions here; the
query that feeds them is `load_calls` in `calllog`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_DIGITS = re.compile(r"\D+")


def number_key(number: str | None) -> str | None:
    """The last 10 digits of a number (CRMs and PBXs write numbers in every format)."""
    if not number:
        return None
    digits = _DIGITS.sub("", number)
    return digits[-10:] or None


@dataclass(frozen=True)
class FollowUp:
    entry_id: str  # the missed call
    callback_entry_id: str | None  # the call that answered it, if any
    by: str | None  # extension of the employee who called back
    after_seconds: float | None  # from the start of the missed call to the start of the callback

    @property
    def done(self) -> bool:
        return self.callback_entry_id is not None


def is_answered(call: Mapping[str, Any]) -> bool:
    return call.get("answered_at") is not None or bool(call.get("answered_by"))


def employee_of(call: Mapping[str, Any]) -> str | None:
    """Whose call it is: who answered, else the responsible employee, else the first extension that rang."""
    if call.get("answered_by"):
        return str(call["answered_by"])
    if call.get("responsible"):
        return str(call["responsible"])
    extensions = call.get("extensions") or []
    return str(extensions[0]) if extensions else None


def follow_ups(calls: Iterable[Mapping[str, Any]]) -> dict[str, FollowUp]:
    """For every missed call in `calls`: its follow-up, found among the same `calls`."""
    items = sorted(calls, key=lambda c: (c.get("started_at") or 0.0, c["entry_id"]))
    callbacks: dict[str, list[Mapping[str, Any]]] = {}
    for call in items:
        key = number_key(call.get("customer_number"))
        if key and call.get("direction") == "outgoing" and is_answered(call):
            callbacks.setdefault(key, []).append(call)
    result: dict[str, FollowUp] = {}
    for call in items:
        if not call.get("missed"):
            continue
        started = call.get("started_at") or 0.0
        found = next(
            (
                cb
                for cb in callbacks.get(number_key(call.get("customer_number")) or "", [])
                if (cb.get("started_at") or 0.0) > started
            ),
            None,
        )
        if found is None:
            result[call["entry_id"]] = FollowUp(call["entry_id"], None, None, None)
        else:
            result[call["entry_id"]] = FollowUp(
                call["entry_id"],
                found["entry_id"],
                employee_of(found),
                (found.get("started_at") or 0.0) - started,
            )
    return result
