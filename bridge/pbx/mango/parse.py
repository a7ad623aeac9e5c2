"""Parse Mango notification payloads into typed PbxEvents, tolerant of the vendor's quirks.

Quirks handled (mango.md §2.5, §6): numbers sent as strings or ints, the misspelt `locaton`,
`line_number` in `to`, `from` or at top level, the Cyrillic "С" in `callback_initiator`,
and unknown fields (kept untouched in `raw`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from typing import Any

from bridge.pbx.events import (
    CallLegEvent,
    CallTimeoutEvent,
    CommandResultEvent,
    DtmfEvent,
    Party,
    PbxEvent,
    PingEvent,
    RecordAddedEvent,
    RecordingEvent,
    SmsEvent,
    StatReadyEvent,
    SummaryEvent,
)
from bridge.pbx.port import PbxParseError
from bridge.pbx.timeout import TIMEOUT_PATH, parse_timeout, timeout_dedup_key

COMMAND_RESULT_PATHS = (
    "callback",
    "callback_group",
    "call/hangup",
    "route",
    "transfer",
    "recording/start",
    "play/start",
    "sms",
)
# Paths Mango can send that we accept and keep but do not interpret.
KEPT_UNINTERPRETED_PATHS = (
    "events/record/tagged",
    "events/recognized/offline",
    "events/user/status_changed",
    "events/user/session_end",
)
MAX_ID_LENGTH = 128
MAX_DEPTH = 32  # objects and arrays inside one another; Mango's payloads nest three deep
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
_NESTED = f"the 'json' field is nested deeper than {MAX_DEPTH} levels"
_OUT_OF_RANGE = "is out of range (integers must fit in 64 bits, signed)"
_CALL_STATES = {"Appeared", "Connected", "OnHold", "Disconnected"}


class ParseError(PbxParseError):
    """The payload is not a valid Mango notification; the message says which field and why."""


def _field(payload: dict[str, Any], name: str, *, where: str = "") -> Any:
    if name not in payload or payload[name] in (None, ""):
        raise ParseError(f"missing field '{where}{name}'")
    return payload[name]


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ParseError(f"field '{name}' must be an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value.strip()) <= 20:
        number = int(value.strip())
    else:
        raise ParseError(f"field '{name}' must be an integer, got {type(value).__name__}")
    if not INT64_MIN <= number <= INT64_MAX:
        raise ParseError(f"field '{name}' {_OUT_OF_RANGE}")
    return number


def _opt_int(payload: dict[str, Any], name: str) -> int | None:
    value = payload.get(name)
    return None if value in (None, "") else _int(value, name)


def _req_int(payload: dict[str, Any], name: str) -> int:
    return _int(_field(payload, name), name)


def _id(payload: dict[str, Any], name: str) -> str:
    value = _field(payload, name)
    if not isinstance(value, str | int):
        raise ParseError(f"field '{name}' must be a string")
    text = str(value)
    if len(text.encode()) > MAX_ID_LENGTH:
        raise ParseError(f"field '{name}' is longer than {MAX_ID_LENGTH} bytes")
    return text


def _opt_str(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value in (None, ""):
        return None
    if isinstance(value, dict | list):
        raise ParseError(f"field '{name}' must be a string")
    return str(value)


def _opt_bool(payload: dict[str, Any], name: str) -> bool | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _party(payload: dict[str, Any], name: str) -> Party:
    value = payload.get(name) or {}
    if not isinstance(value, dict):
        raise ParseError(f"field '{name}' must be an object")
    return Party(
        extension=_opt_str(value, "extension"),
        number=_opt_str(value, "number"),
        taken_from_call_id=_opt_str(value, "taken_from_call_id"),
        was_transferred=_opt_bool(value, "was_transferred"),
        hold_initiator=_opt_bool(value, "hold_initiator"),
        acd_group=_opt_str(value, "acd_group"),
    )


def _line_number(payload: dict[str, Any]) -> str | None:
    """`line_number` may sit in `to`, in `from` or at the top level (mango.md §6 item 4)."""
    for holder in (payload.get("to"), payload.get("from"), payload):
        if isinstance(holder, dict) and holder.get("line_number") not in (None, ""):
            return str(holder["line_number"])
    return None


def normalise_initiator(value: str | None) -> str | None:
    """Mango prints "MissGroupСallCallback" with a Cyrillic "С"; accept both spellings as Latin."""
    return value.replace("\u0421", "C").replace("\u0441", "c") if value else value


def _call(payload: dict[str, Any]) -> CallLegEvent:
    state = str(_field(payload, "call_state"))
    if state not in _CALL_STATES:
        raise ParseError(f"field 'call_state' has unknown value '{state[:32]}'")
    return CallLegEvent(
        entry_id=_id(payload, "entry_id"),
        call_id=_id(payload, "call_id"),
        seq=_req_int(payload, "seq"),
        timestamp=_req_int(payload, "timestamp"),
        state=state,
        location=_opt_str(payload, "location") or _opt_str(payload, "locaton"),
        from_=_party(payload, "from"),
        to=_party(payload, "to"),
        line_number=_line_number(payload),
        disconnect_reason=_opt_int(payload, "disconnect_reason"),
        command_id=_opt_str(payload, "command_id"),
        task_id=_opt_int(payload, "task_id"),
        callback_initiator=normalise_initiator(_opt_str(payload, "callback_initiator")),
        transfer=_opt_str(payload, "transfer"),
        raw=payload,
    )


def _summary(payload: dict[str, Any]) -> SummaryEvent:
    return SummaryEvent(
        entry_id=_id(payload, "entry_id"),
        direction=_req_int(payload, "call_direction"),
        from_=_party(payload, "from"),
        to=_party(payload, "to"),
        line_number=_line_number(payload),
        create_time=_req_int(payload, "create_time"),
        forward_time=_opt_int(payload, "forward_time") or 0,
        talk_time=_opt_int(payload, "talk_time") or 0,
        end_time=_req_int(payload, "end_time"),
        entry_result=_opt_int(payload, "entry_result") or 0,
        disconnect_reason=_opt_int(payload, "disconnect_reason"),
        raw=payload,
    )


def _recording(payload: dict[str, Any]) -> RecordingEvent:
    return RecordingEvent(
        entry_id=_id(payload, "entry_id"),
        call_id=_opt_str(payload, "call_id"),
        recording_id=_id(payload, "recording_id"),
        state=str(_field(payload, "recording_state")),
        seq=_opt_int(payload, "seq") or 0,
        timestamp=_req_int(payload, "timestamp"),
        extension=_opt_str(payload, "extension"),
        completion_code=_opt_int(payload, "completion_code"),
        recipient=_opt_str(payload, "recipient"),
        command_id=_opt_str(payload, "command_id"),
        raw=payload,
    )


def _record_added(payload: dict[str, Any]) -> RecordAddedEvent:
    return RecordAddedEvent(
        entry_id=_id(payload, "entry_id"),
        recording_id=_id(payload, "recording_id"),
        timestamp=_req_int(payload, "timestamp"),
        product_id=_opt_int(payload, "product_id"),
        user_id=_opt_int(payload, "user_id"),
        raw=payload,
    )


def _dtmf(payload: dict[str, Any]) -> DtmfEvent:
    return DtmfEvent(
        entry_id=_id(payload, "entry_id"),
        call_id=_id(payload, "call_id"),
        seq=_opt_int(payload, "seq") or 0,
        timestamp=_req_int(payload, "timestamp"),
        dtmf=str(payload.get("dtmf") or ""),
        location=_opt_str(payload, "location"),
        from_number=_opt_str(payload, "from_number"),
        to_number=_opt_str(payload, "to_number"),
        line_number=_opt_str(payload, "line_number"),
        raw=payload,
    )


def _sms(payload: dict[str, Any]) -> SmsEvent:
    return SmsEvent(
        command_id=_id(payload, "command_id"),
        timestamp=_req_int(payload, "timestamp"),
        reason=_req_int(payload, "reason"),
        raw=payload,
    )


def _stat(payload: dict[str, Any]) -> StatReadyEvent:
    return StatReadyEvent(key=_id(payload, "key"), request_id=_opt_str(payload, "request_id"), raw=payload)


_PARSERS: dict[str, Callable[[dict[str, Any]], PbxEvent]] = {
    "events/call": _call,
    "events/summary": _summary,
    "events/recording": _recording,
    "events/record/added": _record_added,
    "events/dtmf": _dtmf,
    "events/sms": _sms,
    "result/stat": _stat,
    "ping": lambda payload: PingEvent(raw=payload),
}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def load_json(text: str) -> Any:
    """The `json` field decoded and checked against `check_bounds`; raises ParseError saying why not."""
    try:
        payload = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"the 'json' field is not valid JSON: {exc.msg} at {exc.pos}") from None
    except ValueError as exc:
        raise ParseError(f"the 'json' field is not valid JSON: {exc}") from None
    except RecursionError:
        raise ParseError(_NESTED) from None
    check_bounds(payload)
    return payload


def check_bounds(payload: Any) -> None:
    """Values every store and tracker can hold: integers within signed 64 bits, finite numbers, no NUL
    or lone surrogate in any string or key, at most `MAX_DEPTH` levels of nesting. Raises ParseError."""
    found = _problem(payload, 1)
    if found is None:
        return
    path, problem = found
    if problem == _NESTED:
        raise ParseError(_NESTED)
    name = ".".join(str(key).encode("unicode_escape").decode("ascii")[:48] for key in path)
    raise ParseError(f"field '{name or '(top level)'}' {problem}")


def _problem(value: Any, depth: int) -> tuple[list[object], str] | None:
    """The path to the first out-of-bounds value and what is wrong with it, or None (no names are built
    unless something is wrong: this runs for every event)."""
    if isinstance(value, str):
        return None if _BAD_TEXT.search(value) is None else ([], _text_problem(value))
    if isinstance(value, dict | list):
        if depth > MAX_DEPTH:
            return [], _NESTED
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            if isinstance(key, str) and _BAD_TEXT.search(key) is not None:
                return [key], _text_problem(key)
            found = _problem(child, depth + 1)
            if found is not None:
                found[0].insert(0, key)
                return found
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return [], _OUT_OF_RANGE
    if isinstance(value, float) and not math.isfinite(value):
        return [], "is not a finite number"
    return None


def _text_problem(text: str) -> str:
    found = _BAD_TEXT.search(text)
    bad = found.group() if found else ""
    return (
        "contains a NUL character"
        if bad == "\x00"
        else "contains a lone UTF-16 surrogate (not valid Unicode)"
    )


def is_known_path(path: str) -> bool:
    """Whether `path` (relative to the integration's base URL) is a Mango notification we accept."""
    if path in _PARSERS or path in KEPT_UNINTERPRETED_PATHS:
        return True
    return path.startswith("result/") and path[len("result/") :] in COMMAND_RESULT_PATHS


def parse(path: str, payload: Any) -> PbxEvent | None:
    """The typed event for a notification; None for accepted paths that we keep but do not interpret."""
    if not isinstance(payload, dict):
        raise ParseError("the 'json' field must hold a JSON object")
    if path == TIMEOUT_PATH:  # callbridge's own event; never a known path for the Mango receiver
        return parse_timeout(payload)
    if path in _PARSERS:
        return _PARSERS[path](payload)
    if path.startswith("result/") and path[len("result/") :] in COMMAND_RESULT_PATHS:
        return CommandResultEvent(
            command=path[len("result/") :],
            command_id=_id(payload, "command_id"),
            result=_req_int(payload, "result"),
            raw=payload,
        )
    if path in KEPT_UNINTERPRETED_PATHS:
        return None
    raise ParseError(f"unknown notification path '{path[:64]}'")


def dedup_key(path: str, event: PbxEvent | None, json_text: str) -> str:
    """The key under which a notification is stored once, whatever Mango resends."""
    match event:
        case CallLegEvent():
            return f"call:{event.call_id}:{event.seq}:{event.state}"
        case SummaryEvent():
            return f"summary:{event.entry_id}"
        case RecordingEvent():
            return f"recording:{event.recording_id}:{event.state}:{event.seq}"
        case RecordAddedEvent():
            return f"record_added:{event.recording_id}"
        case DtmfEvent():
            return f"dtmf:{event.call_id}:{event.seq}:{event.dtmf[:32]}"
        case CommandResultEvent():
            return f"result:{event.command}:{event.command_id}:{event.result}"
        case StatReadyEvent():
            return f"stat:{event.key}"
        case CallTimeoutEvent():
            return timeout_dedup_key(event.entry_id)
    digest = hashlib.sha256(f"{path}\n{json_text}".encode()).hexdigest()
    return f"{path}:{digest}"


def entry_id_of(event: PbxEvent | None) -> str | None:
    return getattr(event, "entry_id", None)


def decode(path: str, text: str) -> PbxEvent | None:
    """The typed event for a stored notification: its `json` field decoded (`load_json`), then `parse`d.
    The port's `EventDecoder` for Mango."""
    return parse(path, load_json(text))
