"""The golden Mango scenarios are faithful to mango.md: shapes, ids, ordering, and the parser accepts them."""

from __future__ import annotations

import base64
import json
import re
import time
from collections import defaultdict

import pytest

from bridge.pbx.events import CallLegEvent, SummaryEvent
from bridge.pbx.mango import scenarios
from bridge.pbx.mango.parse import is_known_path, parse
from bridge.pbx.mango.scenarios import Notification, Scenario

START = 1_700_000_000
NAMES = scenarios.SCENARIO_NAMES


def build(name: str, **kwargs) -> Scenario:
    return scenarios.build(name, start=START, **kwargs)


def calls(sc: Scenario | list[Notification]) -> list[dict]:
    notes = sc.notifications if isinstance(sc, Scenario) else sc
    return [n.payload for n in notes if n.path == "events/call"]


def by_leg(sc: Scenario) -> dict[str, list[dict]]:
    legs: dict[str, list[dict]] = defaultdict(list)
    for payload in calls(sc):
        legs[payload["call_id"]].append(payload)
    return legs


def paths(sc: Scenario) -> list[str]:
    return [n.path for n in sc.notifications]


def test_the_required_scenarios_exist() -> None:
    required = {
        "incoming_answered",
        "incoming_missed",
        "ring_group_second_answers",
        "blind_transfer",
        "click_to_call",
        "ivr_then_route",
    }
    assert required <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_notification_parses_and_is_json(name: str) -> None:
    sc = build(name)
    assert sc.name == name
    for note in sc.notifications:
        assert is_known_path(note.path)
        assert json.loads(json.dumps(note.payload, separators=(",", ":"))) == note.payload
        event = parse(note.path, note.payload)
        if hasattr(event, "entry_id"):
            assert event.entry_id == sc.entry_id


@pytest.mark.parametrize("name", NAMES)
def test_field_types_are_as_real_traffic_sends_them(name: str) -> None:
    for note in build(name).notifications:
        payload = note.payload
        for key in ("seq", "timestamp", "disconnect_reason", "call_direction", "entry_result", "talk_time"):
            if key in payload:
                assert type(payload[key]) is int, (note.path, key)
        for party in ("from", "to"):
            for key in ("extension", "acd_group", "number"):
                if key in payload.get(party, {}):
                    assert isinstance(payload[party][key], str), (note.path, party, key)


@pytest.mark.parametrize("name", NAMES)
def test_legs_follow_the_state_machine(name: str) -> None:
    sc = build(name)
    for call_id, events in by_leg(sc).items():
        assert [e["seq"] for e in events] == list(range(events[0]["seq"], events[0]["seq"] + len(events)))
        assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
        assert events[-1]["call_state"] == "Disconnected", call_id
        assert isinstance(events[-1]["disconnect_reason"], int)
        assert [e["call_state"] for e in events].count("Disconnected") == 1
        assert all("disconnect_reason" not in e for e in events[:-1])
        assert all(e["dct"] == {"type": 0} for e in events)


@pytest.mark.parametrize("name", NAMES)
def test_summary_is_last_of_the_calls_and_recordings_come_after(name: str) -> None:
    sc = build(name)
    order = paths(sc)
    assert order.count("events/summary") == 1
    at = order.index("events/summary")
    assert "events/call" not in order[at:]
    assert all(p != "events/record/added" for p in order[:at])
    summary = sc.notifications[at].payload
    assert summary["end_time"] >= max(e["timestamp"] for e in calls(sc))
    assert summary["create_time"] == min(e["timestamp"] for e in calls(sc))
    completed = [n for n in sc.notifications if n.payload.get("recording_state") == "Completed"]
    assert all(order.index("events/summary") < sc.notifications.index(n) for n in completed)


@pytest.mark.parametrize("name", NAMES)
def test_recordings_only_for_answered_calls(name: str) -> None:
    with_rec = build(name)
    added = [n.payload["recording_id"] for n in with_rec.notifications if n.path == "events/record/added"]
    assert tuple(added) == with_rec.expected.recording_ids
    assert bool(added) == (with_rec.expected.answered_by is not None)
    started = [n.payload for n in with_rec.notifications if n.payload.get("recording_state") == "Started"]
    assert [p["recording_id"] for p in started] == added
    without = build(name, recording=False)
    assert not [n for n in without.notifications if "recording" in n.path or "record/" in n.path]
    assert without.expected.recording_ids == ()


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_scenario(name: str) -> None:
    assert build(name, seed=4) == build(name, seed=4)
    assert build(name, seed=4).entry_id != build(name, seed=5).entry_id


def test_ids_are_unique_across_scenarios_and_seeds() -> None:
    entries, legs, records = set(), set(), set()
    count = 0
    for name in NAMES:
        for seed in [*range(12), 2**31 - 1, 10**12]:
            sc = build(name, seed=seed)
            count += 1
            entries.add(sc.entry_id)
            legs.update(by_leg(sc))
            records.update(
                n.payload["recording_id"] for n in sc.notifications if n.path == "events/record/added"
            )
    assert len(entries) == count
    assert len(legs) == sum(
        len(by_leg(build(n, seed=s))) for n in NAMES for s in [*range(12), 2**31 - 1, 10**12]
    )
    assert records


def test_ids_have_mango_shape() -> None:
    sc = build("ring_group_second_answers", seed=2)
    assert re.fullmatch(r"\d{11}", base64.b64decode(sc.entry_id).decode())
    for call_id in by_leg(sc):
        assert re.fullmatch(rf"1:{scenarios.PRODUCT_ID}:\d+:\d+", base64.b64decode(call_id).decode())
    digits = base64.b64decode(sc.entry_id).decode()
    for rid in sc.expected.recording_ids:
        assert re.fullmatch(rf"1:{scenarios.PRODUCT_ID}:{digits}:\d+", base64.b64decode(rid).decode())


def test_some_ids_need_url_encoding() -> None:
    ids = []
    for seed in range(8):
        sc = build("incoming_answered", seed=seed)
        ids += [sc.entry_id, *by_leg(sc), *sc.expected.recording_ids]
    for char in "+/=":
        assert any(char in i for i in ids), char
    opaque = build("incoming_answered", seed=3)
    assert {"+", "/", "="} <= set(opaque.entry_id) and {"+", "/"} <= set(opaque.expected.recording_ids[0])
    assert all(len(i.encode()) <= 128 for i in ids)


def test_start_defaults_to_now() -> None:
    sc = scenarios.build("incoming_answered")
    first = sc.notifications[0].payload["timestamp"]
    assert abs(first - time.time()) < 5
    assert build("incoming_answered").notifications[0].payload["timestamp"] == START


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        scenarios.build("nope")
    with pytest.raises(ValueError, match="at least 2 extensions"):
        scenarios.build("blind_transfer", extensions=("101",))
    with pytest.raises(ValueError, match="seed"):
        scenarios.build("incoming_answered", seed=-1)


def test_custom_parties() -> None:
    sc = build(
        "incoming_answered", customer="79990001122", line="sip:line@vpbx.mangosip.ru", extensions=("555",)
    )
    first = sc.notifications[0].payload
    assert first["from"] == {"number": "79990001122"}
    assert first["to"]["line_number"] == "sip:line@vpbx.mangosip.ru"
    assert sc.expected.answered_by == "555" and sc.expected.customer_number == "79990001122"


# ------------------------------------------------------------------------------------------ faithfulness


def test_incoming_enters_the_ivr_then_the_employee_leg_is_taken_from_it() -> None:
    sc = build("incoming_answered")
    legs = list(by_leg(sc).values())
    ivr, employee = legs
    assert ivr[0]["location"] == "ivr" and "extension" not in ivr[0]["to"]
    assert ivr[-1]["disconnect_reason"] == 1100
    assert employee[0]["from"]["taken_from_call_id"] == ivr[0]["call_id"]
    assert [e["call_state"] for e in employee] == ["Appeared", "Connected", "Disconnected"]
    assert employee[0]["to"]["extension"] == "101" and employee[0]["to"]["line_number"] == "74951234567"


def test_ring_group_gives_one_leg_per_employee_and_losers_end_with_the_loser_reason() -> None:
    for reason in (1182, 1120, 1110):
        sc = build("ring_group_second_answers", loser_reason=reason)
        group = [events for events in by_leg(sc).values() if events[0]["location"] == "abonent"]
        assert sorted(e[0]["to"]["extension"] for e in group) == ["101", "102", "103"]
        assert all(e[0]["to"]["acd_group"] == scenarios.GROUP for e in group)
        for events in group:
            if events[0]["to"]["extension"] == "102":
                assert [e["call_state"] for e in events] == ["Appeared", "Connected", "Disconnected"]
            else:
                assert [e["call_state"] for e in events] == ["Appeared", "Disconnected"]
                assert events[-1]["disconnect_reason"] == reason
    assert build("ring_group_second_answers").expected.answered_by == "102"


def test_missed_group_ends_every_leg_with_1110_and_names_the_first_party() -> None:
    sc = build("incoming_missed")
    group = [events for events in by_leg(sc).values() if events[0]["location"] == "abonent"]
    assert len(group) == 3
    assert all(events[-1]["disconnect_reason"] == 1110 for events in group)
    summary = sc.notifications[-1].payload
    assert summary["entry_result"] == 0 and summary["talk_time"] == 0
    assert summary["to"] == {"extension": "101"}  # `number` is absent for a failed group call
    assert sc.expected.missed and sc.expected.responsible == "101"
    single = build("incoming_missed", extensions=("107",))
    assert "acd_group" not in calls(single)[-1]["to"]


@pytest.mark.parametrize("api_v2", [False, True])
def test_blind_transfer_follows_the_documented_sequence(api_v2: bool) -> None:
    sc = build("blind_transfer", api_v2=api_v2)
    _, first, new = by_leg(sc).values()
    assert [e["call_state"] for e in first] == ["Appeared", "Connected", "OnHold", "Disconnected"]
    assert first[-1]["disconnect_reason"] == 1120
    assert new[0]["call_state"] == "Appeared" and new[0]["from"]["extension"] == "101"
    assert "taken_from_call_id" not in new[0]["from"]  # as in the PDF's example
    assert new[1]["from"] == {
        "number": sc.expected.customer_number,
        "taken_from_call_id": first[0]["call_id"],
    }
    assert [e["call_state"] for e in new] == ["Appeared", "Appeared", "Connected", "Disconnected"]
    assert new[0]["to"]["extension"] == "102" == sc.expected.transferred_to
    assert ("transfer" in new[1]) == api_v2
    assert (first[-1]["to"].get("was_transferred") is True) == api_v2


def test_consultative_transfer_consults_then_hands_over() -> None:
    sc = build("consultative_transfer")
    _, first, new = by_leg(sc).values()
    assert [e["call_state"] for e in new] == ["Appeared", "Connected", "Connected", "Disconnected"]
    assert (
        new[1]["from"]["extension"] == "101" and new[1]["from"]["taken_from_call_id"] == first[0]["call_id"]
    )
    assert "extension" not in new[2]["from"]
    assert sc.expected.transferred_to == "102" and sc.expected.answered_by == "101"


def test_click_to_call_rings_the_employee_first_and_every_leg_has_the_command_id() -> None:
    sc = scenarios.click_to_call(
        extension="104", number="79031112233", command_id="cmd-7", line=None, start=START
    )
    assert sc.notifications[0] == Notification("result/callback", {"command_id": "cmd-7", "result": 1000})
    a, b = by_leg(sc).values()
    assert a[0]["to"]["extension"] == "104" and a[0]["from"] == {"number": "79031112233"}
    assert [e["call_state"] for e in a] == ["Appeared", "Connected", "Disconnected"]
    assert b[0]["from"]["extension"] == "104" and b[0]["from"]["taken_from_call_id"] == a[0]["call_id"]
    assert b[0]["to"] == {"number": "79031112233"}
    assert all(e["command_id"] == "cmd-7" for e in calls(sc))
    assert sc.expected.direction == "outgoing" and sc.expected.answered_by == "104"
    summary = next(n.payload for n in sc.notifications if n.path == "events/summary")
    assert "line_number" not in summary and summary["from"]["extension"] == "104"


@pytest.mark.parametrize(("outcome", "reason"), [("no_answer", 1111), ("busy", 1121)])
def test_click_to_call_that_the_target_does_not_answer(outcome: str, reason: int) -> None:
    sc = scenarios.click_to_call(
        extension="104",
        number="79031112233",
        command_id="c",
        line="74950000000",
        outcome=outcome,
        start=START,
    )
    _, b = by_leg(sc).values()
    assert [e["call_state"] for e in b] == ["Appeared", "Disconnected"]
    assert b[-1]["disconnect_reason"] == reason
    summary = sc.notifications[-1].payload
    assert (summary["entry_result"], summary["talk_time"], summary["call_direction"]) == (0, 0, 2)
    assert sc.expected.answered_by is None and not sc.expected.missed and sc.expected.recording_ids == ()
    assert scenarios.click_to_call(
        extension="1", number="2", command_id="c", line=None, answered=False
    ).name == ("click_to_call_no_answer")


def test_routed_from_ivr_is_what_mango_sends_after_route() -> None:
    notes = scenarios.routed_from_ivr(
        ivr_call_id="IVRLEG==",
        entry_id="ENTRY==",
        to_extension="123",
        command_id="c111",
        ivr_seq=3,
        start=START,
    )
    first = notes[0].payload
    assert (first["call_id"], first["seq"], first["call_state"]) == ("IVRLEG==", 4, "Disconnected")
    assert first["disconnect_reason"] == 1100 and first["location"] == "ivr"
    new = [n.payload for n in notes if n.path == "events/call" and n.payload["call_id"] != "IVRLEG=="]
    assert [e["call_state"] for e in new] == ["Appeared", "Connected", "Disconnected"]
    assert new[0]["location"] == "abonent" and new[0]["command_id"] == "c111"
    assert new[0]["from"]["taken_from_call_id"] == "IVRLEG==" and new[0]["to"]["extension"] == "123"
    assert new[-1]["disconnect_reason"] == 1120
    assert Notification("result/route", {"command_id": "c111", "result": 1000}) in notes
    assert [n.path for n in notes].count("events/summary") == 1
    assert all(n.payload.get("entry_id", "ENTRY==") == "ENTRY==" for n in notes)
    for note in notes:
        parse(note.path, note.payload)


def test_routed_from_ivr_accepts_what_the_simulator_knows() -> None:
    notes = scenarios.routed_from_ivr(
        ivr_call_id="X",
        entry_id="E",
        to_extension="5",
        command_id="",
        customer=None,
        line=None,
        ivr_seq=None,
        summary=False,
        answered=False,
        seed=9,
    )
    assert [n.path for n in notes] == ["events/call", "result/route", "events/call"]
    assert notes[0].payload["from"] == {"taken_from_call_id": "X"}
    assert notes[-1].payload["disconnect_reason"] == 1110


def test_ivr_then_route_has_dtmf_and_a_routed_leg() -> None:
    sc = build("ivr_then_route")
    order = paths(sc)
    assert "events/dtmf" in order and "result/route" in order
    ivr, routed = by_leg(sc).values()
    assert ivr[0]["location"] == "ivr" and ivr[-1]["disconnect_reason"] == 1100
    assert routed[0]["from"]["taken_from_call_id"] == ivr[0]["call_id"] and routed[0]["command_id"]


def test_summaries_match_the_expected_outcome() -> None:
    for name in NAMES:
        sc = build(name)
        summary = parse(
            "events/summary", next(n.payload for n in sc.notifications if n.path == "events/summary")
        )
        assert isinstance(summary, SummaryEvent)
        assert summary.answered == (sc.expected.answered_by is not None), name
        assert {0: "internal", 1: "incoming", 2: "outgoing"}[summary.direction] == sc.expected.direction
        legs = [parse(n.path, n.payload) for n in sc.notifications if n.path == "events/call"]
        assert all(isinstance(e, CallLegEvent) for e in legs)
