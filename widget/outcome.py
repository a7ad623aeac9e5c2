"""What a group callback has reached so far, decided from the legs its command created. Pure logic.

`commands/callback_group` from the managers' group to the visitor (mango.md §3, §5) makes these legs,
every one carrying the command's `command_id`:
- one leg per manager ringing (`to.extension`, `to.acd_group`); one is Connected when a manager answers;
- then a leg from that manager (`from.extension`) to the visitor's number; Connected when they answer.
The command's own asynchronous result (`/result/callback_group`) says whether Mango could start it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

CALLING_MANAGERS = "calling_managers"
CONNECTING = "connecting"
CONNECTED = "connected"
FAILED = "failed"

# Why an attempt failed.
COMMAND_REFUSED = "command_refused"  # Mango's result for the command was not 1000
MANAGERS_UNAVAILABLE = "managers_unavailable"  # nobody in the group answered
VISITOR_NO_ANSWER = "visitor_no_answer"  # a manager answered, the visitor did not
NO_EVENTS = "no_events"  # nothing came back from the PBX in time

_OK = 1000


@dataclass(frozen=True)
class Leg:
    state: str  # Appeared | Connected | OnHold | Disconnected
    from_extension: str | None = None
    from_number: str | None = None
    to_extension: str | None = None
    to_number: str | None = None
    connected_at: float | None = None


@dataclass(frozen=True)
class Progress:
    phase: str  # calling_managers | connecting | connected | failed
    reason: str | None = None  # for failed

    @property
    def final(self) -> bool:
        return self.phase in (CONNECTED, FAILED)


def _digits(text: str | None) -> str:
    return re.sub(r"\D", "", text or "")


def _is_visitor(number: str | None, visitor_digits: str) -> bool:
    digits = _digits(number)
    return bool(digits) and (digits == visitor_digits or digits[-10:] == visitor_digits[-10:])


def progress(
    legs: Iterable[Leg], visitor_digits: str, *, async_result: int | None, call_closed: bool
) -> Progress:
    """Where the callback stands. `connected` means the visitor is talking to a manager (success)."""
    if async_result is not None and async_result != _OK:
        return Progress(FAILED, COMMAND_REFUSED)
    legs = list(legs)
    managers = [leg for leg in legs if leg.to_extension and not _is_visitor(leg.to_number, visitor_digits)]
    visitor_legs = [leg for leg in legs if _is_visitor(leg.to_number, visitor_digits)]
    visitor_answered = any(leg.connected_at is not None for leg in visitor_legs)
    manager_answered = any(leg.connected_at is not None for leg in managers)
    all_ended = bool(legs) and all(leg.state == "Disconnected" for leg in legs)
    if visitor_answered:
        return Progress(CONNECTED)
    if manager_answered:
        # Between the manager's leg ending and the leg to the visitor appearing, every leg can look ended:
        # only a visitor leg that ended unanswered, or the closed call, says the visitor was not reached.
        visitor_gave_up = bool(visitor_legs) and all(leg.state == "Disconnected" for leg in visitor_legs)
        if call_closed or (all_ended and visitor_gave_up):
            return Progress(FAILED, VISITOR_NO_ANSWER)
        return Progress(CONNECTING)
    if call_closed or (all_ended and managers):
        return Progress(FAILED, MANAGERS_UNAVAILABLE)
    return Progress(CALLING_MANAGERS)
