"""The events a `commands/callback_group` causes (mango.md §3 table, §5; PDF §3.2.2).

group -> number: the group's operators ring in parallel (one leg each, `to.acd_group` set, the visitor's
number shown as the caller, as in the click-to-call sequence of §2.5); one answers, the other legs end;
then a new leg from the answering operator (`taken_from_call_id`) dials the visitor.
number -> group: the visitor is dialled first; once they answer, the group rings.
Every leg carries the command's `command_id`; the entry ends with one `/events/summary`.
Ids follow the shape of §2.1 (base64 of a product-scoped counter) and are opaque to the bridge.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

ANSWERED = "answered"
NO_ANSWER = "no_answer"
BUSY = "busy"
OUTCOMES = (ANSWERED, NO_ANSWER, BUSY)

# Disconnect reasons (mango.md §4)
NORMAL = 1100
BY_CALLER = 1110
NO_ANSWER_TIMEOUT = 1111
BY_CALLEE = 1120
CALLEE_BUSY = 1121
INTERCEPTED = 1182


@dataclass
class _Builder:
    """Accumulates (path, payload) pairs with per-leg seq counters."""

    rng: random.Random
    product: int
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    seqs: dict[str, int] = field(default_factory=dict)

    def new_call_id(self) -> str:
        raw = f"1:{self.product}:{self.rng.randint(500, 599)}:{self.rng.randint(10**8, 10**9 - 1)}"
        return base64.b64encode(raw.encode()).decode()

    def leg(self, call_id: str, entry_id: str, ts: int, state: str, **fields: Any) -> None:
        self.seqs[call_id] = self.seqs.get(call_id, 0) + 1
        payload: dict[str, Any] = {
            "entry_id": entry_id,
            "call_id": call_id,
            "timestamp": ts,
            "seq": self.seqs[call_id],
            "call_state": state,
        }
        payload.update({k: v for k, v in fields.items() if v is not None})
        payload.setdefault("dct", {"type": 0})
        self.events.append(("events/call", payload))


def new_entry_id(rng: random.Random) -> str:
    """An entry id shaped like Mango's: base64 of an 11-digit number."""
    return base64.b64encode(str(rng.randint(10**10, 10**11 - 1)).encode()).decode()


def sip_uri(extension: str, product: int) -> str:
    return f"sip:user{extension}@vpbx{product}.mangosip.ru"


def callback_group_events(
    *,
    group: str,
    operators: Sequence[str],
    number: str,
    line: str,
    command_id: str,
    group_first: bool = True,
    operator_outcome: str = ANSWERED,
    visitor_outcome: str = ANSWERED,
    answering_index: int = 0,
    losing_reason: int = INTERCEPTED,
    start: int,
    rng: random.Random,
    product: int = 400000001,
) -> list[tuple[str, dict[str, Any]]]:
    """(path, payload) pairs in event order for one group callback.

    `operator_outcome` says whether anyone in the group answers (`answered`) or not (`no_answer`, `busy`);
    `answering_index` picks the operator who does. `visitor_outcome` is the external number's behaviour.
    """
    if not operators:
        raise ValueError(f"group {group} has no operators")
    for outcome in (operator_outcome, visitor_outcome):
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    b = _Builder(rng=rng, product=product)
    entry_id = new_entry_id(rng)
    t = start
    visitor_answered_at = 0
    operator_answered_at = 0
    winner = operators[answering_index % len(operators)]
    visitor_leg = None
    end_reason = NORMAL

    def ring_visitor(t: int, taken_from: str | None, from_: dict[str, Any]) -> tuple[int, int, str]:
        call_id = b.new_call_id()
        to = {"number": number, "line_number": line}
        common = {"location": "abonent", "from": from_, "to": to, "command_id": command_id}
        if taken_from:
            common["from"] = {**from_, "taken_from_call_id": taken_from}
        b.leg(call_id, entry_id, t, "Appeared", **common)
        if visitor_outcome == BUSY:
            b.leg(call_id, entry_id, t + 2, "Disconnected", **common, disconnect_reason=CALLEE_BUSY)
            return t + 2, 0, call_id
        if visitor_outcome == NO_ANSWER:
            b.leg(call_id, entry_id, t + 30, "Disconnected", **common, disconnect_reason=NO_ANSWER_TIMEOUT)
            return t + 30, 0, call_id
        b.leg(call_id, entry_id, t + 6, "Connected", **common)
        return t + 6, t + 6, call_id

    def ring_group(t: int, caller: dict[str, Any]) -> tuple[int, int, str | None]:
        legs = []
        for ext in operators:
            call_id = b.new_call_id()
            fields = {
                "location": "abonent",
                "from": caller,
                "to": {
                    "extension": ext,
                    "number": sip_uri(ext, product),
                    "line_number": line,
                    "acd_group": group,
                },
                "command_id": command_id,
            }
            b.leg(call_id, entry_id, t, "Appeared", **fields)
            legs.append((ext, call_id, fields))
        if operator_outcome != ANSWERED:
            reason = CALLEE_BUSY if operator_outcome == BUSY else NO_ANSWER_TIMEOUT
            wait = 2 if operator_outcome == BUSY else 30
            for _, call_id, fields in legs:
                b.leg(call_id, entry_id, t + wait, "Disconnected", **fields, disconnect_reason=reason)
            return t + wait, 0, None
        won = None
        for ext, call_id, fields in legs:
            if ext == winner:
                b.leg(call_id, entry_id, t + 4, "Connected", **fields)
                won = (call_id, fields)
        for ext, call_id, fields in legs:
            if ext != winner:
                b.leg(call_id, entry_id, t + 4, "Disconnected", **fields, disconnect_reason=losing_reason)
        assert won is not None
        return t + 4, t + 4, won[0]

    if group_first:
        t, operator_answered_at, op_leg = ring_group(t, {"number": number})
        if op_leg is not None:
            op_fields = {
                "location": "abonent",
                "from": {"number": number},
                "to": {
                    "extension": winner,
                    "number": sip_uri(winner, product),
                    "line_number": line,
                    "acd_group": group,
                },
                "command_id": command_id,
            }
            t, visitor_answered_at, visitor_leg = ring_visitor(
                t + 1, op_leg, {"extension": winner, "number": sip_uri(winner, product)}
            )
            if visitor_answered_at:
                t += 60
                visitor_fields = {
                    "location": "abonent",
                    "from": {
                        "extension": winner,
                        "number": sip_uri(winner, product),
                        "taken_from_call_id": op_leg,
                    },
                    "to": {"number": number, "line_number": line},
                    "command_id": command_id,
                }
                b.leg(visitor_leg, entry_id, t, "Disconnected", **visitor_fields, disconnect_reason=BY_CALLEE)
                end_reason = BY_CALLEE
            else:
                end_reason = CALLEE_BUSY if visitor_outcome == BUSY else NO_ANSWER_TIMEOUT
            b.leg(op_leg, entry_id, t, "Disconnected", **op_fields, disconnect_reason=NORMAL)
        else:
            end_reason = CALLEE_BUSY if operator_outcome == BUSY else NO_ANSWER_TIMEOUT
        talk_time = visitor_answered_at if (operator_answered_at and visitor_answered_at) else 0
        summary_from: dict[str, Any] = {"extension": winner} if operator_answered_at else {}
        summary_to: dict[str, Any] = {"number": number}
    else:
        t, visitor_answered_at, visitor_leg = ring_visitor(t, None, {"number": line})
        talk_time = 0
        if visitor_answered_at:
            t, operator_answered_at, op_leg = ring_group(
                t + 1, {"number": number, "taken_from_call_id": visitor_leg}
            )
            if op_leg is not None:
                t += 60
                b.leg(
                    op_leg,
                    entry_id,
                    t,
                    "Disconnected",
                    location="abonent",
                    **{
                        "from": {"number": number, "taken_from_call_id": visitor_leg},
                        "to": {
                            "extension": winner,
                            "number": sip_uri(winner, product),
                            "line_number": line,
                            "acd_group": group,
                        },
                    },
                    command_id=command_id,
                    disconnect_reason=BY_CALLER,
                )
                talk_time = operator_answered_at
                end_reason = BY_CALLER
            else:
                end_reason = CALLEE_BUSY if operator_outcome == BUSY else NO_ANSWER_TIMEOUT
            b.leg(
                visitor_leg,
                entry_id,
                t,
                "Disconnected",
                location="abonent",
                **{"from": {"number": line}, "to": {"number": number, "line_number": line}},
                command_id=command_id,
                disconnect_reason=BY_CALLER if talk_time else NORMAL,
            )
        else:
            end_reason = CALLEE_BUSY if visitor_outcome == BUSY else NO_ANSWER_TIMEOUT
        summary_from = {"number": number}
        summary_to = {"extension": winner} if talk_time else {"extension": operators[0]}

    b.events.append(
        (
            "events/summary",
            {
                "entry_id": entry_id,
                "call_direction": 2,
                "from": summary_from,
                "to": summary_to,
                "line_number": line,
                "create_time": start,
                "forward_time": start,
                "talk_time": talk_time,
                "end_time": t,
                "entry_result": 1 if talk_time else 0,
                "disconnect_reason": end_reason,
            },
        )
    )
    return b.events
