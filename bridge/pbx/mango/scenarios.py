"""Golden Mango call scenarios: the notifications Mango would POST for typical calls, and the outcome.

Both the tests and the simulator (`callbridge simulate`) use these. The shapes follow mango.md §2 and the
PDF's documented sequences (§2.5): an incoming call enters an IVR leg (location ivr) and is forwarded to a
new leg per employee (location abonent, `taken_from_call_id` = the IVR leg, `to.acd_group` when a group
rings); losing legs end Disconnected (1110 when nobody answers, `loser_reason` — 1182 by default — after
someone answered); `/events/summary` comes after the last Disconnected; recordings (Started, Completed,
`/events/record/added`) come last, and only for answered calls.

Ids have the shape of §2.1: entry_id = base64 of a digit string, call_id = base64 of
"1:<product>:<node>:<n>", recording_id = base64 of "1:<product>:<entry digits>:<k>". They are unique per
(scenario, seed, run): `run` is a string of digits mixed into every id (empty by default), so that the
simulator can replay a scenario with fresh ids (`fresh_run()`) while tests keep fixed ones. Every fourth
seed (seed % 4 == 3) makes *opaque* ids whose base64 holds `+`, `/` and `=`, so that URL encoding of ids
gets exercised (Mango's ids are opaque, §2.1).
"""

from __future__ import annotations

import base64
import random
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PRODUCT_ID = 400000001  # the simulator's product (bridge.pbx.mango.simulator.command_server.PRODUCT_ID)
GROUP = "200"  # the ring group's short number (`to.acd_group`)

# disconnect reasons (mango.md §4)
NORMAL = 1000
IVR_DONE = 1100
BY_CALLER = 1110
NO_ANSWER = 1111
BY_CALLEE = 1120
BUSY = 1121
INTERCEPTED = 1182

ANSWERED, NOT_ANSWERED, CALLEE_BUSY = "answered", "no_answer", "busy"

SCENARIO_NAMES: tuple[str, ...] = (
    "incoming_answered",
    "incoming_missed",
    "ring_group_second_answers",
    "blind_transfer",
    "consultative_transfer",
    "click_to_call",
    "click_to_call_no_answer",
    "ivr_then_route",
    "ivr_abandoned",
    "outgoing_answered",
    "internal_call",
)
_ROUTED_INDEX = 90  # id space of `routed_from_ivr` when used on its own
_TRANSFER_INDEX = 91  # id space of `transferred`


@dataclass(frozen=True)
class Notification:
    """One POST Mango makes to the integration: the path under its base URL and the JSON body."""

    path: str  # "events/call", "events/summary", "events/recording", "events/record/added", "result/route"
    payload: dict[str, Any]


@dataclass(frozen=True)
class Expected:
    """The outcome the tracker must reach once every notification of the scenario is in."""

    status: str
    direction: str
    answered_by: str | None
    missed: bool
    responsible: str | None
    extensions: tuple[str, ...]
    recording_ids: tuple[str, ...]
    customer_number: str | None
    transferred_to: str | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    entry_id: str
    notifications: tuple[Notification, ...]
    expected: Expected


# ---------------------------------------------------------------------------------------------- ids


def _b64(text: str, opaque: bool) -> str:
    data = text.encode()
    if opaque:  # align, then bytes that encode to "++++////", then one byte that forces "=" padding
        data += b":" * (-len(data) % 3) + b"\xfb\xef\xbe\xff\xff\xff" + b"7"
    return base64.b64encode(data).decode()


def sip_uri(extension: str, product: int = PRODUCT_ID) -> str:
    return f"sip:user{extension}@vpbx{product}.mangosip.ru"


def _user_id(extension: str | None) -> int:
    return 300000000 + int(extension) if extension and extension.isdigit() else -1


@dataclass
class _Builder:
    """Accumulates notifications of one entry, with a seq counter per leg and per recording."""

    index: int
    seed: int
    rng: random.Random
    product: int = PRODUCT_ID
    notes: list[Notification] = field(default_factory=list)
    seqs: dict[str, int] = field(default_factory=dict)
    legs: int = 0
    records: int = 0
    recording_ids: list[str] = field(default_factory=list)
    entry_id: str = ""
    run: str = ""

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not (self.run == "" or self.run.isdigit()):
            raise ValueError(f"run must be a string of digits, got {self.run!r}")
        self.opaque = self.seed % 4 == 3
        self.digits = f"{7 + self.index % 3}{self.index:02d}{self.run}{self.seed:08d}"
        self.entry_id = self.entry_id or _b64(self.digits, self.opaque)

    def new_leg(self) -> str:
        self.legs += 1
        node = 500 + self.seed % 100
        leg = f"{self.run}{self.index:02d}{self.seed:08d}{self.legs:02d}"
        return _b64(f"1:{self.product}:{node}:{leg}", self.opaque)

    def leg(
        self,
        call_id: str,
        ts: int,
        state: str,
        *,
        location: str | None,
        from_: dict[str, Any],
        to: dict[str, Any],
        disconnect_reason: int | None = None,
        command_id: str | None = None,
        **extra: Any,
    ) -> None:
        self.seqs[call_id] = self.seqs.get(call_id, 0) + 1
        payload: dict[str, Any] = {
            "entry_id": self.entry_id,
            "call_id": call_id,
            "timestamp": ts,
            "seq": self.seqs[call_id],
            "call_state": state,
        }
        if location is not None:
            payload["location"] = location
        payload["from"] = {k: v for k, v in from_.items() if v not in (None, "")}
        payload["to"] = {k: v for k, v in to.items() if v not in (None, "")}
        if disconnect_reason is not None:
            payload["disconnect_reason"] = disconnect_reason
        if command_id is not None:
            payload["command_id"] = command_id
        payload.update({k: v for k, v in extra.items() if v is not None})
        payload["dct"] = {"type": 0}
        self.notes.append(Notification("events/call", payload))

    def summary(
        self,
        *,
        direction: int,
        from_: dict[str, Any],
        to: dict[str, Any],
        line: str | None,
        create: int,
        forward: int,
        talk: int,
        end: int,
        result: int,
        reason: int,
    ) -> None:
        self.notes.append(
            summary_notification(
                self.entry_id,
                direction=direction,
                from_=from_,
                to=to,
                line=line,
                times=(create, forward, talk, end),
                result=result,
                reason=reason,
            )
        )

    def recording_started(self, call_id: str, extension: str, ts: int, command_id: str | None = None) -> str:
        self.records += 1
        recording_id = _b64(f"1:{self.product}:{self.digits}:{self.records}", self.opaque)
        self.seqs[recording_id] = 1
        payload: dict[str, Any] = {
            "recording_id": recording_id,
            "recording_state": "Started",
            "seq": 1,
            "entry_id": self.entry_id,
            "call_id": call_id,
            "extension": extension,
            "timestamp": ts,
        }
        if command_id:
            payload["command_id"] = command_id
        self.notes.append(Notification("events/recording", payload))
        return recording_id

    def recording_finished(self, recording_id: str, call_id: str, extension: str, ts: int) -> None:
        """Completed (1000, Cloud) and, a little later, `/events/record/added`."""
        self.seqs[recording_id] += 1
        self.notes.extend(
            recording_completed(
                recording_id=recording_id,
                entry_id=self.entry_id,
                call_id=call_id,
                extension=extension,
                seq=self.seqs[recording_id],
                ts=ts,
                added_ts=ts + self.rng.randint(1, 5),
                product=self.product,
            )
        )
        self.recording_ids.append(recording_id)

    def ivr_leg(self, ts: int, customer: str | None, line: str | None) -> str:
        call_id = self.new_leg()
        self.leg(call_id, ts, "Appeared", location="ivr", from_=_customer(customer), to=_line_party(line))
        return call_id

    def end_ivr(
        self, call_id: str, ts: int, customer: str | None, line: str | None, reason: int = IVR_DONE
    ) -> None:
        self.leg(
            call_id,
            ts,
            "Disconnected",
            location="ivr",
            from_=_customer(customer),
            to=_line_party(line),
            disconnect_reason=reason,
        )

    def through_ivr(
        self,
        t0: int,
        customer: str,
        line: str,
        *,
        wait: tuple[int, int] = (3, 8),
        reason: int = IVR_DONE,
    ) -> tuple[str, int]:
        """An IVR leg from `t0` that ends after `wait` seconds; returns (its id, when it ended)."""
        ivr = self.ivr_leg(t0, customer, line)
        t = t0 + self.rng.randint(*wait)
        self.end_ivr(ivr, t, customer, line, reason)
        return ivr, t

    def answer(
        self, call_id: str, ts: int, common: dict[str, Any], extension: str, recording: bool
    ) -> str | None:
        """The leg is Connected at `ts`; `extension`'s recording starts then if `recording` (its id)."""
        self.leg(call_id, ts, "Connected", **common)
        return self.recording_started(call_id, extension, ts) if recording else None

    def finish_recording(self, recording_id: str | None, call_id: str, extension: str, ts: int) -> None:
        """A started recording (if any) is finished 1-3 s after the call's end `ts`."""
        if recording_id:
            self.recording_finished(recording_id, call_id, extension, ts + self.rng.randint(1, 3))

    def incoming_summary(
        self,
        customer: str | None,
        to: dict[str, Any],
        line: str | None,
        *,
        create: int,
        forward: int,
        talk: int,
        end: int,
        reason: int,
        result: int | None = None,
    ) -> None:
        """The summary of an incoming entry; `entry_result` is 1 when it was talked (unless `result`)."""
        self.summary(
            direction=1,
            from_=_customer(customer),
            to=to,
            line=line,
            create=create,
            forward=forward,
            talk=talk,
            end=end,
            result=(1 if talk else 0) if result is None else result,
            reason=reason,
        )

    def outgoing_summary(
        self, extension: str, number: str, line: str | None, *, start: int, talk: int, end: int, reason: int
    ) -> None:
        """The summary of an employee's call out to `number`."""
        self.summary(
            direction=2,
            from_=_employee(extension),
            to={"number": number},
            line=line,
            create=start,
            forward=start,
            talk=talk,
            end=end,
            result=1 if talk else 0,
            reason=reason,
        )


def summary_notification(
    entry_id: str,
    *,
    direction: int,
    from_: Mapping[str, Any],
    to: Mapping[str, Any],
    line: str | None,
    times: tuple[int, int, int, int],
    result: int,
    reason: int,
) -> Notification:
    """`/events/summary` as Mango posts it; `times` are create, forward, talk and end (0 = none)."""
    create, forward, talk, end = times
    payload: dict[str, Any] = {
        "entry_id": entry_id,
        "call_direction": direction,
        "from": {k: v for k, v in from_.items() if v not in (None, "")},
        "to": {k: v for k, v in to.items() if v not in (None, "")},
    }
    if line:
        payload["line_number"] = line
    payload.update(
        create_time=create,
        forward_time=forward,
        talk_time=talk,
        end_time=end,
        entry_result=result,
        disconnect_reason=reason,
    )
    return Notification("events/summary", payload)


def recording_completed(
    *,
    recording_id: str,
    entry_id: str,
    call_id: str,
    extension: str,
    seq: int,
    ts: int,
    added_ts: int | None = None,
    product: int = PRODUCT_ID,
) -> list[Notification]:
    """A recording's `Completed` (1000, Cloud) at `ts` and its `/events/record/added` at `added_ts`."""
    return [
        Notification(
            "events/recording",
            {
                "recording_id": recording_id,
                "recording_state": "Completed",
                "seq": seq,
                "entry_id": entry_id,
                "call_id": call_id,
                "extension": extension,
                "timestamp": ts,
                "completion_code": 1000,
                "recipient": "Cloud",
            },
        ),
        Notification(
            "events/record/added",
            {
                "entry_id": entry_id,
                "product_id": product,
                "user_id": _user_id(extension),
                "timestamp": ts + 1 if added_ts is None else added_ts,
                "recording_id": recording_id,
            },
        ),
    ]


def _customer(number: str | None, taken_from: str | None = None) -> dict[str, Any]:
    return {"number": number, "taken_from_call_id": taken_from}


def _employee(extension: str, line: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"extension": extension, "number": sip_uri(extension), "line_number": line, **extra}


def _line_party(line: str | None) -> dict[str, Any]:
    return {"number": line, "line_number": line}


def fresh_run() -> str:
    """A new random `run` tag (8 digits): ids built with it differ from every other run's."""
    return f"{secrets.randbelow(10**8):08d}"


def _start(start: int | None) -> int:
    return int(time.time()) if start is None else int(start)


def _rng(name: str, seed: int) -> random.Random:
    return random.Random(f"{name}:{seed}")


def _need(extensions: Sequence[str], n: int, name: str) -> list[str]:
    exts = [str(e) for e in extensions]
    if len(exts) < n:
        raise ValueError(f"scenario {name!r} needs at least {n} extensions, got {len(exts)}")
    return exts


# ---------------------------------------------------------------------------------------------- scenarios


def _incoming_answered(
    b: _Builder, t0: int, customer: str, line: str, exts: list[str], recording: bool
) -> Expected:
    ext = exts[0]
    ivr, t = b.through_ivr(t0, customer, line)
    forward = t
    leg = b.new_leg()
    common: dict[str, Any] = {
        "location": "abonent",
        "from_": _customer(customer, ivr),
        "to": _employee(ext, line),
    }
    b.leg(leg, t, "Appeared", **common)
    t += b.rng.randint(4, 15)
    talk = t
    rec = b.answer(leg, t, common, ext, recording)
    t += b.rng.randint(20, 180)
    b.leg(leg, t, "Disconnected", **common, disconnect_reason=BY_CALLER)
    b.incoming_summary(
        customer, _employee(ext), line, create=t0, forward=forward, talk=talk, end=t, reason=BY_CALLER
    )
    b.finish_recording(rec, leg, ext, t)
    return Expected("ended", "incoming", ext, False, ext, (ext,), tuple(b.recording_ids), customer)


def _ring_group(
    b: _Builder,
    t0: int,
    customer: str,
    line: str,
    exts: list[str],
    recording: bool,
    winner: str | None,
    loser_reason: int,
) -> tuple[int, int, str | None]:
    """IVR, then every extension rings in parallel; `winner` answers (or nobody). Returns (end, talk, leg)."""
    ivr, t = b.through_ivr(t0, customer, line)
    forward = t
    group = GROUP if len(exts) > 1 else None
    legs: dict[str, tuple[str, dict[str, Any]]] = {}
    for ext in exts:
        call_id = b.new_leg()
        common: dict[str, Any] = {
            "location": "abonent",
            "from_": _customer(customer, ivr),
            "to": _employee(ext, line, acd_group=group),
        }
        b.leg(call_id, t, "Appeared", **common)
        legs[ext] = (call_id, common)
    if winner is None:
        t += b.rng.randint(15, 40)
        for call_id, common in legs.values():
            b.leg(call_id, t, "Disconnected", **common, disconnect_reason=BY_CALLER)
        first = exts[0]
        to = {"extension": first} if group else _employee(first)  # no `number` for a failed group call
        b.incoming_summary(customer, to, line, create=t0, forward=forward, talk=0, end=t, reason=BY_CALLER)
        return t, 0, None
    t += b.rng.randint(4, 15)
    talk = t
    win_leg, win_common = legs[winner]
    b.leg(win_leg, t, "Connected", **win_common)
    for ext, (call_id, common) in legs.items():
        if ext != winner:
            b.leg(call_id, t, "Disconnected", **common, disconnect_reason=loser_reason)
    rec = b.recording_started(win_leg, winner, t) if recording else None
    t += b.rng.randint(20, 180)
    reason = b.rng.choice((BY_CALLER, BY_CALLEE))
    b.leg(win_leg, t, "Disconnected", **win_common, disconnect_reason=reason)
    b.incoming_summary(
        customer, _employee(winner), line, create=t0, forward=forward, talk=talk, end=t, reason=reason
    )
    b.finish_recording(rec, win_leg, winner, t)
    return t, talk, win_leg


def _transfer(
    b: _Builder,
    t0: int,
    customer: str,
    line: str,
    exts: list[str],
    recording: bool,
    *,
    consultative: bool,
    api_v2: bool,
) -> Expected:
    """§2.5 item 4 (PDF 248, 249): e0 answers, holds, calls e1; the customer replaces e0 on the new leg."""
    first, second = exts[0], exts[1]
    ivr, t = b.through_ivr(t0, customer, line)
    forward = t
    a = b.new_leg()
    a_common: dict[str, Any] = {
        "location": "abonent",
        "from_": _customer(customer, ivr),
        "to": _employee(first, line),
    }
    b.leg(a, t, "Appeared", **a_common)
    t += b.rng.randint(4, 12)
    talk = t
    rec_a = b.answer(a, t, a_common, first, recording)
    t += b.rng.randint(20, 60)
    t, new, rec_b = _hand_over(
        b,
        t,
        a=a,
        customer=customer,
        ivr=ivr,
        line=line,
        first=first,
        second=second,
        consultative=consultative,
        api_v2=api_v2,
        recording=recording,
    )
    b.incoming_summary(
        customer, _employee(first), line, create=t0, forward=forward, talk=talk, end=t, reason=BY_CALLER
    )
    b.finish_recording(rec_a, a, first, t)
    b.finish_recording(rec_b, new, second, t)
    return Expected(
        "ended",
        "incoming",
        first,
        False,
        second,
        tuple(sorted({first, second})),
        tuple(b.recording_ids),
        customer,
        transferred_to=second,
    )


def _hand_over(
    b: _Builder,
    t: int,
    *,
    a: str,
    customer: str | None,
    ivr: str | None,
    line: str | None,
    first: str,
    second: str,
    consultative: bool,
    api_v2: bool,
    recording: bool,
    command_id: str | None = None,
) -> tuple[int, str, str | None]:
    """The answered leg `a` (customer <-> `first`) is transferred to `second` at `t`, who talks with the
    customer until the customer hangs up. Returns (that end time, the new leg, its recording id if any).

    `a` goes OnHold; a new leg rings `second` from `first` (consultative: `taken_from_call_id` = `a`, and
    they talk first); `a` ends 1120; the customer replaces `first` as the new leg's calling party, with
    `taken_from_call_id` = `a` (blind: a second Appeared). `api_v2` adds `hold_initiator`,
    `was_transferred` and `transfer`. `command_id` marks the new leg when a command made it.
    """
    kind = "consultative" if consultative else "blind"
    held_to = _employee(first, line, hold_initiator=True if api_v2 else None)
    b.leg(a, t, "OnHold", location="abonent", from_=_customer(customer, ivr), to=held_to)
    t += b.rng.randint(1, 5)
    new = b.new_leg()
    consult: dict[str, Any] = {"location": "abonent", "to": _employee(second), "command_id": command_id}
    employee_from = {"extension": first, "number": sip_uri(first)}
    if consultative:
        employee_from["taken_from_call_id"] = a
    b.leg(new, t, "Appeared", from_=employee_from, **consult)
    if consultative:
        t += b.rng.randint(3, 10)
        b.leg(new, t, "Connected", from_=employee_from, **consult)
        t += b.rng.randint(5, 20)
    else:
        t += b.rng.randint(1, 5)
    gone_to = _employee(first, line, was_transferred=True if api_v2 else None)
    b.leg(
        a,
        t,
        "Disconnected",
        location="abonent",
        from_=_customer(customer, ivr),
        to=gone_to,
        disconnect_reason=BY_CALLEE,
    )
    handed: dict[str, Any] = {
        "from_": _customer(customer, a),
        **consult,
        "transfer": kind if api_v2 else None,
    }
    if not consultative:
        b.leg(new, t, "Appeared", **handed)
        t += b.rng.randint(3, 10)
    rec = b.answer(new, t, handed, second, recording and not consultative)
    t += b.rng.randint(20, 120)
    b.leg(new, t, "Disconnected", **handed, disconnect_reason=BY_CALLER)
    return t, new, rec


def transferred(
    *,
    call_id: str,
    entry_id: str,
    seq: int,
    first: str,
    to_extension: str,
    consultative: bool,
    command_id: str | None = None,
    customer: str | None = "79161234567",
    line: str | None = "74951234567",
    taken_from: str | None = None,
    start: int | None = None,
    seed: int = 0,
    run: str = "",
    api_v2: bool = True,
    recording: bool = True,
) -> list[Notification]:
    """What Mango sends after `commands/transfer` of the Connected leg `call_id` (its last seq `seq`), which
    joins the customer and employee `first`, to employee `to_extension` (§2.5 item 4, PDF 248, 249).

    The call's legs up to the customer hanging up on `to_extension`; no summary (the caller adds the one
    for the whole entry). `taken_from` is the leg `call_id` came from (the IVR leg).
    """
    b = _Builder(_TRANSFER_INDEX, seed, _rng("transferred", seed), entry_id=entry_id, run=run)
    b.seqs[call_id] = int(seq)
    _hand_over(
        b,
        _start(start),
        a=call_id,
        customer=customer,
        ivr=taken_from,
        line=line,
        first=str(first),
        second=str(to_extension),
        consultative=consultative,
        api_v2=api_v2,
        recording=recording,
        command_id=command_id or None,
    )
    return list(b.notes)


def _ivr_abandoned(b: _Builder, t0: int, customer: str, line: str) -> Expected:
    """The caller hangs up in the IVR. The summary has the doc's quirk: entry_result 1 with talk_time 0."""
    _, t = b.through_ivr(t0, customer, line, wait=(5, 20), reason=BY_CALLER)
    b.incoming_summary(
        customer, {"number": line}, line, create=t0, forward=t0, talk=0, end=t, reason=BY_CALLER, result=1
    )
    return Expected("missed", "incoming", None, True, None, (), (), customer)


def _outgoing(b: _Builder, t0: int, customer: str, line: str, ext: str, recording: bool) -> Expected:
    """§2.5 item 1 (PDF 245): an employee dials out from the phone; Appeared, Connected, Disconnected 1120."""
    leg = b.new_leg()
    common: dict[str, Any] = {
        "location": "abonent",
        "from_": {
            "extension": ext,
            "number": sip_uri(ext),
            "line_number": line,
        },  # §6 item 4: from.line_number
        "to": {"number": customer},
    }
    b.leg(leg, t0, "Appeared", **common)
    t = t0 + b.rng.randint(5, 20)
    talk = t
    rec = b.answer(leg, t, common, ext, recording)
    t += b.rng.randint(20, 180)
    b.leg(leg, t, "Disconnected", **common, disconnect_reason=BY_CALLEE)
    b.outgoing_summary(ext, customer, line, start=t0, talk=talk, end=t, reason=BY_CALLEE)
    b.finish_recording(rec, leg, ext, t)
    return Expected("ended", "outgoing", ext, False, ext, (ext,), tuple(b.recording_ids), customer)


def _internal(b: _Builder, t0: int, exts: list[str], recording: bool) -> Expected:
    caller, callee = exts[0], exts[1]
    leg = b.new_leg()
    common: dict[str, Any] = {"location": "abonent", "from_": _employee(caller), "to": _employee(callee)}
    b.leg(leg, t0, "Appeared", **common)
    t = t0 + b.rng.randint(3, 12)
    talk = t
    rec = b.answer(leg, t, common, caller, recording)
    t += b.rng.randint(10, 120)
    b.leg(leg, t, "Disconnected", **common, disconnect_reason=BY_CALLEE)
    b.summary(
        direction=0,
        from_=_employee(caller),
        to=_employee(callee),
        line=None,
        create=t0,
        forward=t0,
        talk=talk,
        end=t,
        result=1,
        reason=BY_CALLEE,
    )
    b.finish_recording(rec, leg, caller, t)
    return Expected(
        "ended",
        "internal",
        callee,
        False,
        callee,
        tuple(sorted({caller, callee})),
        tuple(b.recording_ids),
        None,
    )


def _click_to_call(
    b: _Builder,
    t0: int,
    *,
    extension: str,
    number: str,
    command_id: str,
    line: str | None,
    outcome: str,
    recording: bool,
) -> Expected:
    """§2.5 item 2 (PDF 246): leg A rings the initiator (from = the target), then leg B dials the target."""
    b.notes.append(Notification("result/callback", {"command_id": command_id, "result": 1000}))
    a = b.new_leg()
    a_common: dict[str, Any] = {
        "location": "abonent",
        "from_": {"number": number},
        "to": {"extension": extension, "number": sip_uri(extension)},
        "command_id": command_id,
    }
    b.leg(a, t0, "Appeared", **a_common)
    t = t0 + b.rng.randint(2, 6)
    b.leg(a, t, "Connected", **a_common)
    t += b.rng.randint(1, 2)
    b.leg(a, t, "Disconnected", **a_common, disconnect_reason=NORMAL)
    t += 1
    leg = b.new_leg()
    common: dict[str, Any] = {
        "location": "abonent",
        "from_": {
            "extension": extension,
            "number": sip_uri(extension),
            "taken_from_call_id": a,
            "line_number": line,
        },
        "to": {"number": number},
        "command_id": command_id,
    }
    b.leg(leg, t, "Appeared", **common)
    talk, rec = 0, None
    if outcome == ANSWERED:
        t += b.rng.randint(5, 20)
        talk = t
        rec = b.answer(leg, t, common, extension, recording)
        t += b.rng.randint(20, 180)
        reason = b.rng.choice((BY_CALLER, BY_CALLEE))
    elif outcome == CALLEE_BUSY:
        t += 2
        reason = BUSY
    else:
        t += 30
        reason = NO_ANSWER
    b.leg(leg, t, "Disconnected", **common, disconnect_reason=reason)
    b.outgoing_summary(extension, number, line, start=t0, talk=talk, end=t, reason=reason)
    b.finish_recording(rec, leg, extension, t)
    answered_by = extension if outcome == ANSWERED else None
    return Expected(
        "ended", "outgoing", answered_by, False, extension, (extension,), tuple(b.recording_ids), number
    )


def click_to_call(
    *,
    extension: str,
    number: str,
    command_id: str,
    line: str | None,
    answered: bool = True,
    seed: int = 0,
    start: int | None = None,
    outcome: str | None = None,
    recording: bool = True,
    run: str = "",
) -> Scenario:
    """What Mango sends after `commands/callback` (§2.5 item 2), `/result/callback` first; every leg carries
    `command_id`. `outcome` ("answered", "no_answer", "busy") overrides `answered` for the dialled target."""
    outcome = outcome or (ANSWERED if answered else NOT_ANSWERED)
    if outcome not in (ANSWERED, NOT_ANSWERED, CALLEE_BUSY):
        raise ValueError(f"outcome must be one of answered, no_answer, busy; got {outcome!r}")
    name = "click_to_call" if outcome == ANSWERED else "click_to_call_no_answer"
    b = _Builder(SCENARIO_NAMES.index(name), seed, _rng(name, seed), run=run)
    expected = _click_to_call(
        b,
        _start(start),
        extension=str(extension),
        number=str(number),
        command_id=command_id,
        line=line,
        outcome=outcome,
        recording=recording,
    )
    return Scenario(name, b.entry_id, tuple(b.notes), expected)


def routed_from_ivr(
    *,
    ivr_call_id: str,
    entry_id: str,
    to_extension: str,
    command_id: str,
    customer: str | None = "79161234567",
    line: str | None = "74951234567",
    ivr_seq: int | None = 1,
    start: int | None = None,
    ivr_started_at: int | None = None,
    seed: int = 0,
    answered: bool = True,
    summary: bool = True,
    recording: bool = True,
    run: str = "",
) -> list[Notification]:
    """What Mango sends after `commands/route` for a leg waiting in the IVR (§2.5 item 3, PDF 247).

    The IVR leg (whose last seq was `ivr_seq`; None to leave it out) ends Disconnected 1100; a new leg
    appears at `to_extension` with `command_id` and `taken_from_call_id` = the IVR leg, then Connected and
    Disconnected 1120 (or, if not `answered`, Disconnected 1110 when the caller gives up); `/result/route`
    1000 comes after the new leg appears. With `summary`, the entry's summary (create_time =
    `ivr_started_at` or `start`) and, for an answered call with `recording`, the recording events follow.
    """
    b = _Builder(_ROUTED_INDEX, seed, _rng("routed_from_ivr", seed), entry_id=entry_id, run=run)
    _routed(
        b,
        ivr_call_id=ivr_call_id,
        to_extension=str(to_extension),
        command_id=command_id,
        customer=customer,
        line=line,
        ivr_seq=ivr_seq,
        start=_start(start),
        ivr_started_at=ivr_started_at,
        answered=answered,
        summary=summary,
        recording=recording,
    )
    return list(b.notes)


def _routed(
    b: _Builder,
    *,
    ivr_call_id: str,
    to_extension: str,
    command_id: str,
    customer: str | None,
    line: str | None,
    ivr_seq: int | None,
    start: int,
    ivr_started_at: int | None,
    answered: bool,
    summary: bool,
    recording: bool,
) -> None:
    t = start
    created = t if ivr_started_at is None else int(ivr_started_at)
    if ivr_seq is not None:
        b.seqs[ivr_call_id] = int(ivr_seq)
        b.end_ivr(ivr_call_id, t, customer, line)
    ext = str(to_extension)
    leg = b.new_leg()
    common: dict[str, Any] = {
        "location": "abonent",
        "from_": _customer(customer, ivr_call_id),
        "to": _employee(ext, line),
        "command_id": command_id,
    }
    forward = t
    t += 1
    b.leg(leg, t, "Appeared", **common)
    b.notes.append(Notification("result/route", {"command_id": command_id, "result": 1000}))
    talk, rec = 0, None
    if answered:
        t += b.rng.randint(4, 12)
        talk = t
        rec = b.answer(leg, t, common, ext, recording)
        t += b.rng.randint(20, 180)
        reason = BY_CALLEE
    else:
        t += b.rng.randint(15, 40)
        reason = BY_CALLER
    b.leg(leg, t, "Disconnected", **common, disconnect_reason=reason)
    if summary:
        b.incoming_summary(
            customer, _employee(ext), line, create=created, forward=forward, talk=talk, end=t, reason=reason
        )
        b.finish_recording(rec, leg, ext, t)


def _ivr_then_route(
    b: _Builder, t0: int, customer: str, line: str, exts: list[str], recording: bool
) -> Expected:
    """IVR leg, a DTMF choice, then the integration routes the call to an extension (§2.5 item 3, §5)."""
    ext = exts[0]
    ivr = b.ivr_leg(t0, customer, line)
    t = t0 + b.rng.randint(2, 6)
    b.notes.append(
        Notification(
            "events/dtmf",
            {
                "seq": 1,
                "dtmf": "1",
                "timestamp": t,
                "call_id": ivr,
                "entry_id": b.entry_id,
                "location": "ivr",
                "initiator": customer,
                "from_number": customer,
                "to_number": line,
                "line_number": line,
            },
        )
    )
    command_id = f"route-{b.seed}"
    _routed(
        b,
        ivr_call_id=ivr,
        to_extension=ext,
        command_id=command_id,
        customer=customer,
        line=line,
        ivr_seq=1,
        start=t + b.rng.randint(1, 4),
        ivr_started_at=t0,
        answered=True,
        summary=True,
        recording=recording,
    )
    return Expected("ended", "incoming", ext, False, ext, (ext,), tuple(b.recording_ids), customer)


def build(
    name: str,
    *,
    seed: int = 0,
    start: int | None = None,
    customer: str = "79161234567",
    line: str = "74951234567",
    extensions: Sequence[str] = ("101", "102", "103"),
    recording: bool = True,
    loser_reason: int = INTERCEPTED,
    api_v2: bool = False,
    run: str = "",
) -> Scenario:
    """The scenario `name` (one of SCENARIO_NAMES) with ids unique to (name, seed, run), starting at `start`.

    `loser_reason` is the disconnect reason of the ring-group legs that lose after someone answered (the
    real value is unknown, mango.md §2.4: 1182, 1110 or 1120). `api_v2` adds the API v2 fields
    (`transfer`, `was_transferred`, `hold_initiator`) to the transfer scenarios. `run` (digits, see
    `fresh_run()`) is mixed into every id: the same scenario with another run is another call.
    """
    if name not in SCENARIO_NAMES:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIO_NAMES)}")
    if name in ("click_to_call", "click_to_call_no_answer"):
        exts = _need(extensions, 1, name)
        return click_to_call(
            extension=exts[0],
            number=customer,
            command_id=f"c2c-{seed}",
            line=line,
            answered=name == "click_to_call",
            seed=seed,
            start=start,
            recording=recording,
            run=run,
        )
    b = _Builder(SCENARIO_NAMES.index(name), seed, _rng(name, seed), run=run)
    t0 = _start(start)
    if name == "incoming_answered":
        expected = _incoming_answered(b, t0, customer, line, _need(extensions, 1, name), recording)
    elif name == "incoming_missed":
        exts = _need(extensions, 1, name)
        _ring_group(b, t0, customer, line, exts, recording, None, loser_reason)
        expected = Expected("missed", "incoming", None, True, exts[0], tuple(sorted(set(exts))), (), customer)
    elif name == "ring_group_second_answers":
        exts = _need(extensions, 2, name)
        _ring_group(b, t0, customer, line, exts, recording, exts[1], loser_reason)
        expected = Expected(
            "ended",
            "incoming",
            exts[1],
            False,
            exts[1],
            tuple(sorted(set(exts))),
            tuple(b.recording_ids),
            customer,
        )
    elif name in ("blind_transfer", "consultative_transfer"):
        expected = _transfer(
            b,
            t0,
            customer,
            line,
            _need(extensions, 2, name),
            recording,
            consultative=name == "consultative_transfer",
            api_v2=api_v2,
        )
    elif name == "ivr_then_route":
        expected = _ivr_then_route(b, t0, customer, line, _need(extensions, 1, name), recording)
    elif name == "ivr_abandoned":
        expected = _ivr_abandoned(b, t0, customer, line)
    elif name == "outgoing_answered":
        expected = _outgoing(b, t0, customer, line, _need(extensions, 1, name)[0], recording)
    else:  # internal_call
        expected = _internal(b, t0, _need(extensions, 2, name), recording)
    return Scenario(name, b.entry_id, tuple(b.notes), expected)
