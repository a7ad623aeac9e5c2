"""The events a `commands/callback_group` causes (mango.md §3 table, §5; PDF §3.2.2).

Built with the conventions of `scenarios.click_to_call` (§2.5 item 2, PDF 246), of which this is the group
variant:
- group -> number: the group's operators ring in parallel, one leg each with `to.acd_group`, showing the
  visitor's number as `from`. One operator answers; the other legs end (`losing_reason`, 1182 by default);
  the answering leg ends (1000) as a new leg from that operator (`taken_from_call_id`) dials the visitor.
- number -> group: the visitor's leg comes first; once they answer it ends (1000) as the group's legs ring
  with `taken_from_call_id` = the visitor's leg.
Every leg carries the command's `command_id`; `seq` counts per leg; the entry ends with one
`/events/summary` (outgoing: from = the operator, to = the visitor). No recording events.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.pbx.mango.scenarios import (
    BUSY,
    BY_CALLEE,
    BY_CALLER,
    INTERCEPTED,
    NO_ANSWER,
    NORMAL,
    PRODUCT_ID,
    sip_uri,
)

ANSWERED, NOT_ANSWERED, CALLEE_BUSY = "answered", "no_answer", "busy"
OUTCOMES = (ANSWERED, NOT_ANSWERED, CALLEE_BUSY)


def _clean(party: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in party.items() if v not in (None, "")}


@dataclass
class _Entry:
    """The notifications of one entry, with a `seq` counter per leg."""

    entry_id: str
    command_id: str
    product: int
    rng: random.Random
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    seqs: dict[str, int] = field(default_factory=dict)
    legs: int = 0

    def new_leg(self) -> str:
        self.legs += 1
        raw = f"1:{self.product}:{self.rng.randint(500, 599)}:{self.rng.randrange(10**9):09d}{self.legs:02d}"
        return base64.b64encode(raw.encode()).decode()

    def leg(
        self,
        call_id: str,
        ts: int,
        state: str,
        from_: dict[str, Any],
        to: dict[str, Any],
        reason: int | None = None,
    ) -> None:
        self.seqs[call_id] = self.seqs.get(call_id, 0) + 1
        payload: dict[str, Any] = {
            "entry_id": self.entry_id,
            "call_id": call_id,
            "timestamp": ts,
            "seq": self.seqs[call_id],
            "call_state": state,
            "location": "abonent",
            "from": _clean(from_),
            "to": _clean(to),
        }
        if reason is not None:
            payload["disconnect_reason"] = reason
        if self.command_id:
            payload["command_id"] = self.command_id
        payload["dct"] = {"type": 0}
        self.notes.append(("events/call", payload))


def new_entry_id(rng: random.Random) -> str:
    """An entry id shaped like Mango's: base64 of an 11-digit number."""
    return base64.b64encode(str(rng.randint(10**10, 10**11 - 1)).encode()).decode()


def _failed(outcome: str) -> tuple[int, int]:
    """(seconds rung, disconnect reason) of a party that does not answer."""
    return (2, BUSY) if outcome == CALLEE_BUSY else (30, NO_ANSWER)


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
    product: int = PRODUCT_ID,
) -> list[tuple[str, dict[str, Any]]]:
    """(path, payload) pairs in event order for one group callback.

    `operator_outcome` says whether someone in the group answers; `answering_index` picks who.
    `visitor_outcome` is what the external number does. Outcomes: "answered", "no_answer", "busy".
    """
    operators = [str(o) for o in operators]
    if not operators:
        raise ValueError(f"group {group} has no operators")
    for outcome in (operator_outcome, visitor_outcome):
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}; got {outcome!r}")
    e = _Entry(new_entry_id(rng), command_id, product, rng)
    winner = operators[answering_index % len(operators)]
    visitor = {"number": number}

    def operator(ext: str) -> dict[str, Any]:
        return {"extension": ext, "number": sip_uri(ext, product), "line_number": line, "acd_group": group}

    def ring_group(t: int, caller: dict[str, Any]) -> tuple[int, str | None]:
        """All operators ring; returns (time, the answering leg or None)."""
        legs = {ext: e.new_leg() for ext in operators}
        for ext, call_id in legs.items():
            e.leg(call_id, t, "Appeared", caller, operator(ext))
        if operator_outcome != ANSWERED:
            wait, reason = _failed(operator_outcome)
            for ext, call_id in legs.items():
                e.leg(call_id, t + wait, "Disconnected", caller, operator(ext), reason)
            return t + wait, None
        t += rng.randint(3, 8)
        e.leg(legs[winner], t, "Connected", caller, operator(winner))
        for ext, call_id in legs.items():
            if ext != winner:
                e.leg(call_id, t, "Disconnected", caller, operator(ext), losing_reason)
        return t, legs[winner]

    t = start
    talk = 0
    if group_first:
        t, won = ring_group(t, visitor)
        if won is None:
            reason = _failed(operator_outcome)[1]
        else:
            t += rng.randint(1, 2)
            e.leg(won, t, "Disconnected", visitor, operator(winner), NORMAL)  # taken into the new leg
            t += 1
            dialler = {
                "extension": winner,
                "number": sip_uri(winner, product),
                "taken_from_call_id": won,
                "line_number": line,
            }
            out = e.new_leg()
            e.leg(out, t, "Appeared", dialler, visitor)
            if visitor_outcome == ANSWERED:
                t += rng.randint(5, 15)
                talk = t
                e.leg(out, t, "Connected", dialler, visitor)
                t += rng.randint(20, 180)
                reason = BY_CALLEE
            else:
                wait, reason = _failed(visitor_outcome)
                t += wait
            e.leg(out, t, "Disconnected", dialler, visitor, reason)
    else:
        first = e.new_leg()
        pbx = {"number": line, "line_number": line}
        e.leg(first, t, "Appeared", pbx, visitor)
        if visitor_outcome != ANSWERED:
            wait, reason = _failed(visitor_outcome)
            t += wait
            e.leg(first, t, "Disconnected", pbx, visitor, reason)
        else:
            t += rng.randint(5, 15)
            e.leg(first, t, "Connected", pbx, visitor)
            t, won = ring_group(t + 1, {**visitor, "taken_from_call_id": first})
            if won is None:
                reason = _failed(operator_outcome)[1]
                e.leg(first, t, "Disconnected", pbx, visitor, reason)
            else:
                talk = t
                e.leg(first, t, "Disconnected", pbx, visitor, NORMAL)  # taken into the operator's leg
                t += rng.randint(20, 180)
                reason = BY_CALLER
                caller = {**visitor, "taken_from_call_id": first}
                e.leg(won, t, "Disconnected", caller, operator(winner), reason)

    summary_from = {"extension": winner, "number": sip_uri(winner, product)} if talk else {}
    e.notes.append(
        (
            "events/summary",
            {
                "entry_id": e.entry_id,
                "call_direction": 2,
                "from": summary_from,
                "to": dict(visitor),
                "line_number": line,
                "create_time": start,
                "forward_time": start,
                "talk_time": talk,
                "end_time": t,
                "entry_result": 1 if talk else 0,
                "disconnect_reason": reason,
            },
        )
    )
    return e.notes
