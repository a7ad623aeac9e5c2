"""The tracker tells the truth over time: calls with no legs, calls whose final events never came (closed by
callbridge's timeout event), answered_by after a transfer the summary names, and the receive time."""

from __future__ import annotations

import json

import pytest

from bridge.connector_api.events import CALL_ENDED, CALL_MISSED, CALL_RECORDING_READY, CALL_RINGING
from bridge.pbx.events import CallTimeoutEvent, DtmfEvent
from bridge.pbx.mango.parse import dedup_key, is_known_path, parse
from bridge.pbx.timeout import TIMEOUT_PATH, timeout_payload
from bridge.tracker import track
from tests.test_tracker import ENTRY, T0, _transfer_events, added, feed, leg, recording, run, summary

TIMEOUT = CallTimeoutEvent(entry_id=ENTRY, at=50_000.0)


def _types(events) -> list[str]:
    return [e.type for e in events]


# ------------------------------------------------------------------------------------ calls with no legs


@pytest.mark.parametrize(
    "events",
    [
        [recording("Started", 1, T0 + 20)],
        [recording("Started", 1, T0 + 20), recording("Completed", 2, T0 + 90, code=1000), added(T0 + 95)],
        [DtmfEvent(entry_id=ENTRY, call_id="A", seq=1, timestamp=T0 + 3, dtmf="2")],
    ],
    ids=["recording-started", "recording-ready", "dtmf"],
)
def test_a_call_with_no_legs_is_not_ringing_and_pops_nothing(events: list) -> None:
    result, out = feed(events, close=True)  # even long after its last event: nothing closes it but a summary
    assert result.call.status == "unknown"
    assert not result.call.closed and not result.call.incomplete
    assert out == []
    assert not [key for key in result.emitted if key.startswith(CALL_RINGING)]


def test_a_call_with_no_legs_but_a_summary_is_ended() -> None:
    result, out = feed([recording("Completed", 2, T0 + 90, code=1000), summary()], close=False)
    assert result.call.status == "ended" and not result.call.incomplete
    assert _types(out) == [CALL_ENDED, CALL_RECORDING_READY]


def test_a_call_with_no_legs_timed_out_ends_incomplete_at_the_timeout() -> None:
    result, out = feed([recording("Started", 1, T0 + 20), TIMEOUT], close=False)
    assert (result.call.status, result.call.closed, result.call.incomplete) == ("ended", True, True)
    [ended] = out
    assert ended.type == CALL_ENDED and ended.extra["incomplete"] is True
    assert ended.ended_at == T0 + 20  # the last moment the PBX told anything
    assert ended.occurred_at == T0 + 20


# ------------------------------------------------------------------------ calls whose final events never come


def _answered_then_silent() -> list:
    return [leg("A", 1, "Appeared", T0), leg("A", 2, "Connected", T0 + 10)]


def _final_events() -> list:
    return [leg("A", 3, "Disconnected", T0 + 130, reason=1110), summary(talk=T0 + 10, end=T0 + 130)]


def test_a_timed_out_answered_call_ends_incomplete_and_emits_call_ended_once() -> None:
    result, out = feed([*_answered_then_silent(), TIMEOUT], close=False)
    call = result.call
    assert (call.status, call.closed, call.incomplete, call.missed) == ("ended", True, True, False)
    assert call.answered_by == "101" and call.ended_at == T0 + 10
    ended = [e for e in out if e.type == CALL_ENDED]
    assert len(ended) == 1 and ended[0].extra["incomplete"] is True and ended[0].extra["status"] == "ended"

    # the final events come after all: the snapshot is completed, nothing is emitted again
    late = track(
        [*_answered_then_silent(), TIMEOUT, *_final_events()],
        result.emitted,
        now=60_000.0,
        close_after=120.0,
        last_event_at=60_000.0,
    )
    assert late.new_events == []
    assert (late.call.status, late.call.incomplete, late.call.ended_at) == ("ended", False, T0 + 130)
    assert late.call.talk_seconds == 120


def test_a_timed_out_call_that_was_still_ringing_is_not_called_missed() -> None:
    """Its answer may be among the events that never came: ended, incomplete, and no call.missed."""
    result, out = feed([leg("A", 1, "Appeared", T0), TIMEOUT], close=False)
    assert (result.call.status, result.call.missed, result.call.incomplete) == ("ended", False, True)
    assert CALL_MISSED not in _types(out)
    assert _types(out) == [CALL_RINGING, CALL_ENDED]


def test_a_call_closed_by_its_legs_before_the_timeout_is_complete() -> None:
    events = [leg("A", 1, "Appeared", T0), leg("A", 2, "Disconnected", T0 + 20, reason=1110), TIMEOUT]
    result = run(events, now=1000.0, last=1000.0)
    assert result.call.closed and not result.call.incomplete
    assert result.call.status == "missed"


def test_the_timeout_event_is_parsed_and_stored_once_but_never_accepted_from_mango() -> None:
    payload = timeout_payload(ENTRY, 1234.5)
    event = parse(TIMEOUT_PATH, json.loads(payload))
    assert event == CallTimeoutEvent(entry_id=ENTRY, at=1234.5)
    assert dedup_key(TIMEOUT_PATH, event, payload) == dedup_key(
        TIMEOUT_PATH, parse(TIMEOUT_PATH, json.loads(timeout_payload(ENTRY, 9999.0))), "other"
    )
    assert not is_known_path(TIMEOUT_PATH)
    with pytest.raises(ValueError, match="entry_id"):
        parse(TIMEOUT_PATH, {"at": 1.0})


# ---------------------------------------------------------------------------------------- transfers


@pytest.mark.parametrize("api_v2", [False, True], ids=["plain", "api_v2"])
def test_answered_by_stays_the_first_answerer_when_the_summary_names_the_transfer_target(
    api_v2: bool,
) -> None:
    events = [*_transfer_events(api_v2), summary(to_ext="102", talk=T0 + 10, end=T0 + 200)]
    result, out = feed(events, close=False)
    assert result.call.answered_by == "101"
    assert result.call.responsible == "102"
    [ended] = [e for e in out if e.type == CALL_ENDED]
    assert ended.extension == "101" and ended.extra["transferred_to"] == "102"
    assert {leg.to_extension for leg in result.legs} == {"101", "102"}


def test_a_consultative_transfer_named_by_the_summary_keeps_the_first_answerer() -> None:
    events = [
        leg("A", 1, "Appeared", T0),
        leg("A", 2, "Connected", T0 + 10),
        leg("A", 3, "OnHold", T0 + 40),
        leg("B", 1, "Appeared", T0 + 41, from_ext="101", from_number=None, to_ext="102", taken_from="A"),
        leg("B", 2, "Connected", T0 + 45, from_ext="101", from_number=None, to_ext="102", taken_from="A"),
        leg("A", 4, "Disconnected", T0 + 60, reason=1110),
        leg("B", 3, "Connected", T0 + 60, to_ext="102", taken_from="A"),
        leg("B", 4, "Disconnected", T0 + 200, to_ext="102", taken_from="A", reason=1100),
        summary(to_ext="102", talk=T0 + 10, end=T0 + 200),
    ]
    result, out = feed(events, close=False)
    [moved] = [e for e in out if e.type == "call.transferred"]
    assert moved.transfer_kind == "consultative"
    assert result.call.answered_by == "101" and result.call.responsible == "102"


def test_the_summary_still_names_who_answered_without_a_transfer() -> None:
    result, _ = feed([leg("A", 1, "Appeared", T0), summary(to_ext="101")], close=False)
    assert result.call.answered_by == "101"


# ---------------------------------------------------------------------------------------- receive time


def test_call_events_carry_callbridges_receive_time_not_mangos() -> None:
    result = track(
        [leg("A", 1, "Appeared", T0)], frozenset(), now=5000.0, close_after=120.0, last_event_at=4999.5
    )
    [ringing] = result.new_events
    assert ringing.occurred_at == T0 and ringing.received_at == 4999.5
    assert ringing.to_dict()["received_at"] == 4999.5
