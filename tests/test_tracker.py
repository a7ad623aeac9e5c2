"""Unit tests of the call tracker: Mango's quirks one at a time, the emission rules, the snapshot shape."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest

import bridge.tracker as tracker_package
from bridge.connector_api.events import CALL_ENDED, CallEvent
from bridge.pbx.events import (
    CallLegEvent,
    DtmfEvent,
    Party,
    RecordAddedEvent,
    RecordingEvent,
    SmsEvent,
    SummaryEvent,
)
from bridge.pbx.mango import scenarios
from bridge.pbx.mango.parse import parse
from bridge.store import schema
from bridge.tracker import CallSnapshot, LegSnapshot, RecordingSnapshot, track, transfers_of

ENTRY = "MTYxNzM5NjY0OTE="
CUSTOMER = "79607164646"
LINE = "74951234567"
T0 = 1_670_060_527


def leg(
    call_id: str,
    seq: int,
    state: str,
    ts: int,
    *,
    to_ext: str | None = "101",
    from_ext: str | None = None,
    from_number: str | None = CUSTOMER,
    to_number: str | None = None,
    location: str | None = "abonent",
    taken_from: str | None = None,
    reason: int | None = None,
    command_id: str | None = None,
    transfer: str | None = None,
    acd_group: str | None = None,
    line: str | None = LINE,
) -> CallLegEvent:
    return CallLegEvent(
        entry_id=ENTRY,
        call_id=call_id,
        seq=seq,
        timestamp=ts,
        state=state,
        location=location,
        from_=Party(extension=from_ext, number=from_number, taken_from_call_id=taken_from),
        to=Party(extension=to_ext, number=to_number, acd_group=acd_group),
        line_number=line,
        disconnect_reason=reason,
        command_id=command_id,
        transfer=transfer,
    )


def summary(
    *,
    direction: int = 1,
    to_ext: str | None = "101",
    talk: int = T0 + 15,
    result: int = 1,
    end: int = T0 + 134,
    from_ext: str | None = None,
    from_number: str | None = CUSTOMER,
    to_number: str | None = None,
    reason: int = 1110,
) -> SummaryEvent:
    return SummaryEvent(
        entry_id=ENTRY,
        direction=direction,
        from_=Party(extension=from_ext, number=from_number),
        to=Party(extension=to_ext, number=to_number),
        line_number=LINE,
        create_time=T0,
        forward_time=T0 + 5,
        talk_time=talk,
        end_time=end,
        entry_result=result,
        disconnect_reason=reason,
    )


def recording(
    state: str, seq: int, ts: int, *, code: int | None = None, recipient: str | None = None, rid="R1"
):
    return RecordingEvent(
        entry_id=ENTRY,
        call_id="A",
        recording_id=rid,
        state=state,
        seq=seq,
        timestamp=ts,
        extension="101",
        completion_code=code,
        recipient=recipient,
    )


def added(ts: int, rid: str = "R1") -> RecordAddedEvent:
    return RecordAddedEvent(entry_id=ENTRY, recording_id=rid, timestamp=ts, product_id=1, user_id=2)


def run(events, emitted=frozenset(), *, now: float = 1000.0, last: float | None = 1000.0, close_after=120.0):
    return track(events, frozenset(emitted), now=now, close_after=close_after, last_event_at=last)


def feed(events, *, close: bool = True):
    """One event at a time, as the processor does; optionally a last call that lets the timeout close."""
    known, emitted, out = [], frozenset(), []
    result = None
    for event in events:
        known.append(event)
        result = run(known, emitted)
        emitted = result.emitted
        out.extend(result.new_events)
    if close:
        result = run(known, emitted, now=10_000.0, last=1000.0)
        out.extend(result.new_events)
    return result, out


def types(events: list[CallEvent]) -> list[str]:
    return [e.type for e in events]


ANSWERED_CALL = [
    leg("A", 1, "Appeared", T0 + 5),
    leg("A", 2, "Connected", T0 + 15),
    leg("A", 3, "Disconnected", T0 + 134, reason=1110),
]


# ------------------------------------------------------------------------------------------ shape


def _columns(table, *excluded: str) -> set[str]:
    return {c.name for c in table.columns} - set(excluded)


def test_snapshots_map_onto_the_store_tables() -> None:
    assert {f.name for f in fields(CallSnapshot)} == _columns(
        schema.calls, "emitted", "last_event_at", "updated_at"
    )
    assert {f.name for f in fields(LegSnapshot)} == _columns(schema.legs)
    assert {f.name for f in fields(RecordingSnapshot)} == _columns(schema.recordings, "updated_at")


def test_tracker_imports_nothing_that_does_io() -> None:
    allowed = ("bridge.tracker", "bridge.pbx.events", "bridge.connector_api.events", "__future__")
    stdlib = ("collections", "dataclasses", "typing", "functools", "itertools")
    for path in Path(tracker_package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert name.startswith(allowed) or name.split(".")[0] in stdlib, f"{path}: imports {name}"


def test_result_carries_snapshots_of_legs_and_recordings() -> None:
    events = [*ANSWERED_CALL, recording("Started", 1, T0 + 15), summary()]
    result = run(events)
    assert [(leg.call_id, leg.state, leg.seq) for leg in result.legs] == [("A", "Disconnected", 3)]
    only = result.legs[0]
    assert (only.appeared_at, only.connected_at, only.ended_at) == (T0 + 5.0, T0 + 15.0, T0 + 134.0)
    assert (only.to_extension, only.from_number, only.disconnect_reason) == ("101", CUSTOMER, 1110)
    assert result.recordings == [
        RecordingSnapshot(recording_id="R1", entry_id=ENTRY, call_id="A", extension="101", state="Started")
    ]


def test_empty_or_mixed_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        run([])
    with pytest.raises(ValueError, match="at least one"):
        run([SmsEvent(command_id="c", timestamp=1, reason=1000)])
    other = CallLegEvent(
        ENTRY + "x", "B", 1, T0, "Appeared", "abonent", Party(number="1"), Party(extension="1")
    )
    with pytest.raises(ValueError, match="several entries"):
        run([ANSWERED_CALL[0], other])


def test_untracked_events_are_ignored() -> None:
    with_sms = run([*ANSWERED_CALL[:1], SmsEvent(command_id="c", timestamp=1, reason=1000)])
    assert with_sms.call == run(ANSWERED_CALL[:1]).call


# ------------------------------------------------------------------------------------------ quirks


def test_stale_seq_is_dropped() -> None:
    """A Connected (seq 2) arriving after the Disconnected (seq 3) does not reopen the leg."""
    result, out = feed([ANSWERED_CALL[0], ANSWERED_CALL[2], ANSWERED_CALL[1]], close=False)
    assert result.legs[0].state == "Disconnected"
    assert result.legs[0].connected_at == T0 + 15  # the stale event still tells when the leg connected
    assert types(out) == ["call.ringing", "call.answered"]


def test_duplicates_change_nothing() -> None:
    once = run(ANSWERED_CALL)
    twice = run(ANSWERED_CALL + ANSWERED_CALL[::-1])
    assert once.call == twice.call and once.legs == twice.legs
    assert [e.key for e in once.new_events] == [e.key for e in twice.new_events]


def test_onhold_then_connected_answers_once() -> None:
    events = [
        leg("A", 1, "Appeared", T0 + 5),
        leg("A", 2, "Connected", T0 + 15),
        leg("A", 3, "OnHold", T0 + 40),
        leg("A", 4, "Connected", T0 + 50),
    ]
    result, out = feed(events, close=False)
    assert result.legs[0].state == "Connected"
    assert result.legs[0].connected_at == T0 + 15
    assert types(out) == ["call.ringing", "call.answered"]
    assert result.call.status == "answered" and result.call.answered_by == "101"


def test_onhold_alone_means_the_leg_was_answered() -> None:
    result = run([leg("A", 3, "OnHold", T0 + 40)])
    assert result.call.answered_by == "101"
    assert [e.key for e in result.new_events] == ["call.answered:A"]
    assert "call.ringing:A" in result.emitted  # it can never ring any more


def test_summary_ivr_quirk_result_1_with_talk_time_0_is_not_answered() -> None:
    ivr = [
        leg("I", 1, "Appeared", T0, to_ext=None, location="ivr", to_number=LINE),
        leg("I", 2, "Disconnected", T0 + 7, to_ext=None, location="ivr", to_number=LINE, reason=1110),
    ]
    result = run([*ivr, summary(to_ext=None, to_number=LINE, talk=0, result=1, end=T0 + 7)])
    assert result.call.missed and result.call.status == "missed"
    assert result.call.answered_by is None and result.call.responsible is None
    assert types(result.new_events) == ["call.ended", "call.missed"]
    assert result.call.talk_seconds == 0 and result.call.wait_seconds == 7


def test_summary_entry_result_0_is_missed_with_the_first_party_responsible() -> None:
    events = [
        leg("A", 1, "Appeared", T0 + 5, to_ext="102"),
        leg("A", 2, "Disconnected", T0 + 30, to_ext="102", reason=1110),
        summary(to_ext="101", talk=0, result=0, end=T0 + 30),
    ]
    result = run(events)
    missed = result.new_events[-1]
    assert (missed.type, missed.key, missed.extension) == ("call.missed", "call.missed", "101")
    assert result.call.responsible == "101"
    assert result.call.extensions == ("101", "102")


# ------------------------------------------------------------------------------------------ close


def test_timeout_close_without_summary() -> None:
    result, out = feed(ANSWERED_CALL, close=False)
    assert not result.call.closed and result.call.status == "answered"
    assert "call.ended" not in types(out)
    too_soon = run(ANSWERED_CALL, result.emitted, now=1000.0 + 119, last=1000.0)
    assert not too_soon.call.closed and too_soon.new_events == []
    closed = run(ANSWERED_CALL, result.emitted, now=1000.0 + 120, last=1000.0)
    assert closed.call.closed and closed.call.status == "ended"
    assert types(closed.new_events) == ["call.ended"]
    ended = closed.new_events[0]
    assert (ended.extension, ended.occurred_at, ended.duration, ended.talk_seconds) == (
        "101",
        T0 + 134.0,
        129,
        119,
    )
    assert (ended.wait_seconds, ended.disconnect_reason, ended.direction) == (10, 1110, "incoming")
    again = run(ANSWERED_CALL, closed.emitted, now=99_999.0, last=1000.0)
    assert again.new_events == [] and again.call.closed


def test_no_timeout_close_while_a_leg_is_live_or_without_a_clock() -> None:
    events = [*ANSWERED_CALL, leg("B", 1, "Appeared", T0 + 60, to_ext="102")]
    assert not run(events, now=99_999.0, last=1000.0).call.closed
    assert not run(ANSWERED_CALL, now=99_999.0, last=None).call.closed


def test_summary_after_timeout_close_improves_the_snapshot_but_emits_nothing() -> None:
    closed = run(ANSWERED_CALL, now=10_000.0, last=1000.0)
    assert types(closed.new_events) == ["call.ended"]  # closed at once: no live event any more
    late = run([*ANSWERED_CALL, summary(talk=T0 + 14, end=T0 + 140)], closed.emitted)
    assert late.new_events == []
    assert late.emitted == closed.emitted
    assert (late.call.started_at, late.call.answered_at, late.call.ended_at) == (T0, T0 + 14.0, T0 + 140.0)
    assert late.call.duration == 140 and late.call.talk_seconds == 126


def test_summary_after_timeout_close_does_not_emit_a_late_missed() -> None:
    """Closed by timeout as outgoing-looking (an employee dialled out); the summary says incoming, missed."""
    events = [
        leg("A", 1, "Appeared", T0, to_ext=None, from_ext="101", to_number=CUSTOMER),
        leg("A", 2, "Disconnected", T0 + 20, to_ext=None, from_ext="101", to_number=CUSTOMER, reason=1111),
    ]
    closed = run(events, now=10_000.0, last=1000.0)
    assert closed.call.direction == "outgoing" and not closed.call.missed
    late = run([*events, summary(talk=0, result=0)], closed.emitted)
    assert late.call.missed and late.new_events == []


def test_summary_closes_at_once_and_drops_the_live_events() -> None:
    result = run([summary(), *ANSWERED_CALL[:2]])
    assert types(result.new_events) == ["call.ended"]
    assert {"call.ringing:A", "call.answered:A", CALL_ENDED} <= result.emitted
    assert result.call.answered_by == "101" and result.call.status == "ended"


# ------------------------------------------------------------------------------------------ ringing


def test_ringing_after_the_leg_moved_on_is_dropped_for_good() -> None:
    result = run([ANSWERED_CALL[1]])  # Connected arrives first
    assert [e.key for e in result.new_events] == ["call.answered:A"]
    assert "call.ringing:A" in result.emitted
    later = run(ANSWERED_CALL[:2], result.emitted)
    assert later.new_events == []


def test_ringing_carries_the_popup_data() -> None:
    event = run([leg("A", 1, "Appeared", T0 + 5, acd_group="200")]).new_events[0]
    assert (event.type, event.key, event.extension, event.call_id) == (
        "call.ringing",
        "call.ringing:A",
        "101",
        "A",
    )
    assert (event.customer_number, event.line_number, event.direction) == (CUSTOMER, LINE, "incoming")
    assert event.occurred_at == T0 + 5.0 and event.extra == {"acd_group": "200"}


def test_ivr_leg_does_not_ring_anyone() -> None:
    result = run([leg("I", 1, "Appeared", T0, to_ext=None, location="ivr")])
    assert result.new_events == [] and result.call.status == "ringing"


def test_one_losing_leg_of_a_ring_group_is_not_a_missed_call() -> None:
    events = [
        leg("A", 1, "Appeared", T0 + 5, to_ext="101", acd_group="200"),
        leg("B", 1, "Appeared", T0 + 5, to_ext="102", acd_group="200"),
        leg("A", 2, "Disconnected", T0 + 9, to_ext="101", acd_group="200", reason=1120),
    ]
    result = run(events, now=10_000.0, last=1000.0)
    assert not result.call.closed and not result.call.missed and result.call.status == "ringing"
    done = run([*events, leg("B", 2, "Connected", T0 + 10, to_ext="102")])
    assert done.call.answered_by == "102"


def test_missed_without_summary_blames_the_earliest_ringing_employee() -> None:
    events = [
        leg("B", 1, "Appeared", T0 + 8, to_ext="102"),
        leg("A", 1, "Appeared", T0 + 5, to_ext="103"),
        leg("A", 2, "Disconnected", T0 + 30, to_ext="103", reason=1110),
        leg("B", 2, "Disconnected", T0 + 30, to_ext="102", reason=1110),
    ]
    result = run(events, now=10_000.0, last=1000.0)
    assert result.call.missed and result.call.responsible == "103"
    assert [(e.type, e.extension) for e in result.new_events][-2:] == [
        ("call.ended", None),
        ("call.missed", "103"),
    ]


# ------------------------------------------------------------------------------------------ recordings


def test_recording_ready_waits_for_the_call_to_end() -> None:
    ready = recording("Completed", 2, T0 + 136, code=1000, recipient="Cloud")
    early = run([*ANSWERED_CALL, recording("Started", 1, T0 + 15), ready])
    assert "call.recording_ready:R1" not in early.emitted
    assert early.recordings[0].ready
    closed = run([*ANSWERED_CALL, recording("Started", 1, T0 + 15), ready, summary()], early.emitted)
    assert types(closed.new_events) == ["call.ended", "call.recording_ready"]
    event = closed.new_events[1]
    assert (event.recording_id, event.recording_ids, event.call_id, event.occurred_at) == (
        "R1",
        ("R1",),
        "A",
        T0 + 136.0,
    )
    assert closed.new_events[0].recording_ids == ("R1",)


def test_recording_ready_after_close_is_emitted_later() -> None:
    closed = run([*ANSWERED_CALL, summary()])
    assert types(closed.new_events) == ["call.ended"]
    late = run([*ANSWERED_CALL, summary(), added(T0 + 140)], closed.emitted)
    assert [e.key for e in late.new_events] == ["call.recording_ready:R1"]
    assert late.recordings[0].ready and late.recordings[0].state is None


def test_recording_too_short_or_mail_only_is_not_ready() -> None:
    short = recording("Completed", 2, T0 + 136, code=4002, recipient="Cloud")
    mail = recording("Completed", 2, T0 + 136, code=1000, recipient="Mail", rid="R2")
    result = run([*ANSWERED_CALL, summary(), short, mail])
    assert types(result.new_events) == ["call.ended"]
    assert [(r.recording_id, r.ready, r.completion_code) for r in result.recordings] == [
        ("R1", False, 4002),
        ("R2", False, 1000),
    ]


# ------------------------------------------------------------------------------------------ direction


def test_direction_is_inferred_from_the_legs_until_the_summary_says() -> None:
    outgoing = leg(
        "A", 1, "Appeared", T0, from_ext="101", to_ext=None, from_number="sip:a@x", to_number=CUSTOMER
    )
    result = run([outgoing])
    assert result.call.direction == "outgoing" and result.call.customer_number == CUSTOMER
    assert [(e.type, e.extension) for e in result.new_events] == [("call.ringing", "101")]
    internal = leg("A", 1, "Appeared", T0, from_ext="101", to_ext="102")
    assert run([internal]).call.direction == "internal"
    assert run([internal]).call.customer_number is None
    assert run(ANSWERED_CALL).call.direction == "incoming"
    assert run([*ANSWERED_CALL, summary(direction=0)]).call.direction == "internal"


def test_outgoing_answered_by_the_dialling_employee() -> None:
    common = {"from_ext": "101", "to_ext": None, "from_number": "sip:a@x", "to_number": CUSTOMER}
    events = [leg("A", 1, "Appeared", T0, **common), leg("A", 2, "Connected", T0 + 9, **common)]
    result, out = feed(events, close=False)
    assert result.call.answered_by == "101" and result.call.status == "answered"
    assert [(e.type, e.extension) for e in out] == [
        ("call.ringing", "101"),
        ("call.answered", "101"),
    ]


def test_click_to_call_rings_the_initiator_and_is_answered_by_the_target() -> None:
    sc = scenarios.click_to_call(extension="105", number=CUSTOMER, command_id="cmd-1", line=LINE, start=T0)
    events = [parse(n.path, n.payload) for n in sc.notifications]
    events = [e for e in events if not type(e).__name__.startswith("Command")]
    legs = [e for e in events if isinstance(e, CallLegEvent)]
    leg_a = [e for e in legs if e.call_id == legs[0].call_id]  # Appeared, Connected, Disconnected at 105
    first_three, _ = feed(leg_a, close=False)
    assert first_three.call.direction == "outgoing"
    assert first_three.call.answered_by is None, "the initiator picking up is not the target answering"
    result, out = feed(events)
    assert [(e.type, e.extension) for e in out][:2] == [("call.ringing", "105"), ("call.answered", "105")]
    assert out[1].call_id != legs[0].call_id
    assert result.call.command_id == "cmd-1" and result.call.customer_number == CUSTOMER
    assert result.call.line_number == LINE


def test_line_number_is_read_from_legs_or_dtmf() -> None:
    assert run(ANSWERED_CALL).call.line_number == LINE
    dtmf = DtmfEvent(ENTRY, "I", 1, T0 + 3, "2", location="ivr", from_number=CUSTOMER, line_number="7800")
    only = run([leg("I", 1, "Appeared", T0, to_ext=None, location="ivr", line=None), dtmf])
    assert only.call.line_number == "7800"
    ended = run([*ANSWERED_CALL, dtmf, summary()]).new_events[-1]
    assert ended.extra["dtmf"] == ["2"]


# ------------------------------------------------------------------------------------------ transfers


def _transfer_events(api_v2: bool) -> list[CallLegEvent]:
    kind = "blind" if api_v2 else None
    return [
        leg("A", 1, "Appeared", T0 + 5),
        leg("A", 2, "Connected", T0 + 10),
        leg("A", 3, "OnHold", T0 + 40),
        leg("B", 1, "Appeared", T0 + 42, from_ext="101", from_number="sip:101", to_ext="102"),
        leg("A", 4, "Disconnected", T0 + 44, reason=1120),
        leg("B", 2, "Appeared", T0 + 44, to_ext="102", taken_from="A", transfer=kind),
        leg("B", 3, "Connected", T0 + 50, to_ext="102", taken_from="A", transfer=kind),
    ]


@pytest.mark.parametrize("api_v2", [False, True])
def test_blind_transfer_is_emitted_once_for_the_new_leg(api_v2: bool) -> None:
    result, out = feed(_transfer_events(api_v2), close=False)
    moved = [e for e in out if e.type == "call.transferred"]
    assert len(moved) == 1
    event = moved[0]
    assert (event.key, event.extension, event.transferred_from, event.transfer_kind) == (
        "call.transferred:B",
        "102",
        "101",
        "blind",
    )
    assert event.occurred_at == T0 + 44.0
    assert result.call.answered_by == "101" and result.call.responsible == "102"
    assert transfers_of(_transfer_events(api_v2))[0].to_extension == "102"


def test_transfer_field_alone_is_enough() -> None:
    events = [leg("B", 1, "Appeared", T0, from_ext="101", to_ext="102", transfer="consultative")]
    [moved] = transfers_of(events)
    assert (moved.to_extension, moved.from_extension, moved.kind) == ("102", "101", "consultative")


def test_consult_call_that_is_not_handed_over_is_no_transfer() -> None:
    events = [
        leg("A", 1, "Appeared", T0 + 5),
        leg("A", 2, "Connected", T0 + 10),
        leg("B", 1, "Appeared", T0 + 42, from_ext="101", to_ext="102", taken_from="A"),
        leg("B", 2, "Connected", T0 + 45, from_ext="101", to_ext="102", taken_from="A"),
        leg("B", 3, "Disconnected", T0 + 60, from_ext="101", to_ext="102", taken_from="A", reason=1120),
    ]
    assert transfers_of(events) == []
    assert run(events).call.responsible == "101"


def test_route_from_ivr_is_no_transfer() -> None:
    events = [
        leg("I", 1, "Appeared", T0, to_ext=None, location="ivr"),
        leg("I", 2, "Disconnected", T0 + 5, to_ext=None, location="ivr", reason=1100),
        leg("R", 1, "Appeared", T0 + 6, taken_from="I", command_id="c111"),
        leg("R", 2, "Connected", T0 + 9, taken_from="I", command_id="c111"),
    ]
    result = run(events)
    assert transfers_of(events) == []
    assert result.call.direction == "incoming" and result.call.answered_by == "101"
    assert result.call.command_id == "c111"
    assert types(result.new_events) == ["call.answered"]  # R was already connected: no ringing


def test_keys_are_unique_and_stable_across_calls() -> None:
    sc = scenarios.build("ring_group_second_answers", seed=5, start=T0)
    events = [parse(n.path, n.payload) for n in sc.notifications]
    _, first = feed(events)
    _, second = feed(events)
    assert [e.key for e in first] == [e.key for e in second]
    assert len({e.key for e in first}) == len(first)
    assert all(e.entry_id == sc.entry_id for e in first)
