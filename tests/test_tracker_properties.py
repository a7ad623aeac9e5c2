"""Property tests: the tracker's outcome does not depend on arrival order or duplicates.

For every golden scenario, any permutation of its events with duplicates mixed in, fed ONE AT A TIME to
`track` as the processor does (carrying `emitted` forward), then once more with `now` far in the future,
reaches the same final snapshot and the same lasting outcome as the scenario's expected one.
"""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.connector_api.events import (
    CALL_ANSWERED,
    CALL_ENDED,
    CALL_MISSED,
    CALL_RECORDING_READY,
    CALL_RINGING,
    CALL_TRANSFERRED,
)
from bridge.pbx.events import TRACKED_EVENT_TYPES, CallLegEvent, LegState, SummaryEvent
from bridge.pbx.mango import scenarios
from bridge.pbx.mango.parse import parse
from bridge.tracker import TrackResult, track

CLOSE_AFTER = 120.0
RECEIVED_AT = 1_800_000_000.0  # the processor's clock; events are fed one per second from here
LIVE_TYPES = (CALL_RINGING, CALL_ANSWERED, CALL_TRANSFERRED)


@cache
def scenario_events(name: str, variant: str) -> tuple:
    """The tracked PbxEvents of a scenario. Variants: plain, no summary, API v2 fields, other loser reason,
    no recording, an opaque-id seed."""
    kwargs: dict = {"seed": 7, "start": 1_700_000_000}
    if variant == "api_v2":
        kwargs["api_v2"] = True
    elif variant == "loser_1120":
        kwargs["loser_reason"] = 1120
    elif variant == "no_recording":
        kwargs["recording"] = False
    elif variant == "opaque":
        kwargs["seed"] = 11
    sc = scenarios.build(name, **kwargs)
    events = [parse(n.path, n.payload) for n in sc.notifications]
    events = [e for e in events if isinstance(e, TRACKED_EVENT_TYPES)]
    if variant == "no_summary":
        events = [e for e in events if not isinstance(e, SummaryEvent)]
    return sc, tuple(events)


def feed(order: list) -> tuple[TrackResult, list, list[list]]:
    """Feed events one at a time like the processor, then let the timeout close the call.

    Returns the final result, every emitted CallEvent in order, and for each emission the events known then.
    """
    known: list = []
    emitted: frozenset[str] = frozenset()
    out: list = []
    known_at: list[list] = []
    received = RECEIVED_AT
    for event in order:
        known.append(event)
        received += 1
        result = track(known, emitted, now=received, close_after=CLOSE_AFTER, last_event_at=received)
        assert not (emitted - result.emitted), "decided keys are never forgotten"
        emitted = result.emitted
        out.extend(result.new_events)
        known_at.extend([list(known)] * len(result.new_events))
    final = track(
        known, emitted, now=received + 10 * CLOSE_AFTER, close_after=CLOSE_AFTER, last_event_at=received
    )
    out.extend(final.new_events)
    known_at.extend([list(known)] * len(final.new_events))
    return final, out, known_at


@st.composite
def deliveries(draw: st.DrawFn, events: tuple) -> list:
    """A permutation of `events` with some of them delivered twice, at random places."""
    order = list(draw(st.permutations(events)))
    for extra in draw(st.lists(st.sampled_from(events), max_size=max(1, len(events) // 2))):
        order.insert(draw(st.integers(0, len(order))), extra)
    return order


def check_outcome(name: str, variant: str, order: list) -> None:
    sc, events = scenario_events(name, variant)
    check(sc, events, order, no_summary=variant == "no_summary", no_recording=variant == "no_recording")


def check(
    sc: scenarios.Scenario, events: tuple, order: list, *, no_summary: bool, no_recording: bool
) -> None:
    expected = sc.expected
    reference, _, _ = feed(list(events))  # in Mango's own order
    final, out, known_at = feed(order)

    # the same final state, whatever the order and duplicates
    assert final.call == reference.call
    assert final.legs == reference.legs
    assert final.recordings == reference.recordings
    call = final.call
    assert call.closed
    assert call.status == expected.status
    assert call.direction == expected.direction
    assert call.answered_by == expected.answered_by
    assert call.missed == expected.missed
    assert call.extensions == expected.extensions
    assert call.customer_number == expected.customer_number
    if not no_summary or not expected.missed:
        assert call.responsible == expected.responsible

    keys = [e.key for e in out]
    assert len(keys) == len(set(keys)), "a key is emitted once"
    assert set(keys) <= final.emitted
    types = [e.type for e in out]
    assert types.count(CALL_ENDED) == 1
    ended_at = types.index(CALL_ENDED)
    missed = [e for e in out if e.type == CALL_MISSED]
    assert len(missed) == (1 if expected.missed else 0)
    if missed:
        assert types.index(CALL_MISSED) == ended_at + 1, "call.missed follows call.ended"
        assert missed[0].extension == call.responsible
    ready = [e for e in out if e.type == CALL_RECORDING_READY]
    want_recordings = set() if no_recording else set(expected.recording_ids)
    assert {e.recording_id for e in ready} == want_recordings
    assert all(types.index(CALL_RECORDING_READY) > ended_at for _ in ready[:1])
    assert all(t not in LIVE_TYPES for t in types[ended_at:]), "nothing live after the call closed"
    assert out[ended_at].extension == expected.answered_by

    # a ringing is never emitted for a leg whose later state was already known
    for event, known in zip(out, known_at, strict=True):
        if event.type == CALL_RINGING:
            states = {e.state for e in known if isinstance(e, CallLegEvent) and e.call_id == event.call_id}
            assert states == {LegState.APPEARED}, (event.call_id, states)


VARIANTS = ["plain", "no_summary", "opaque"]
CASES = [(name, variant) for name in scenarios.SCENARIO_NAMES for variant in VARIANTS]
CASES += [
    ("blind_transfer", "api_v2"),
    ("consultative_transfer", "api_v2"),
    ("incoming_answered", "no_recording"),
]
CASES += [("ring_group_second_answers", "loser_1120"), ("ring_group_second_answers", "no_recording")]


@pytest.mark.parametrize(("name", "variant"), CASES)
@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_order_and_duplicates_reach_the_same_outcome(
    name: str, variant: str, data: st.DataObject
) -> None:
    _, events = scenario_events(name, variant)
    check_outcome(name, variant, data.draw(deliveries(events)))


@pytest.mark.parametrize("name", scenarios.SCENARIO_NAMES)
def test_reverse_order_reaches_the_same_outcome(name: str) -> None:
    """The worst case for ringing: every leg's last state arrives first, so no ringing may be emitted."""
    _, events = scenario_events(name, "plain")
    check_outcome(name, "plain", list(reversed(events)))
    _, out, _ = feed(list(reversed(events)))
    assert not [e for e in out if e.type in LIVE_TYPES]  # the summary came first: the call was closed


@pytest.mark.parametrize("name", scenarios.SCENARIO_NAMES)
def test_in_order_delivery_emits_the_live_events(name: str) -> None:
    sc, events = scenario_events(name, "plain")
    _, out, _ = feed(list(events))
    answered = [e for e in out if e.type == CALL_ANSWERED]
    rang = [e for e in out if e.type == CALL_RINGING]
    if sc.expected.answered_by:
        assert answered and answered[0].extension == sc.expected.answered_by
    else:
        assert not answered
    if sc.expected.extensions and name != "internal_call":
        assert {e.extension for e in rang} == set(sc.expected.extensions)
    transferred = [e for e in out if e.type == CALL_TRANSFERRED]
    if sc.expected.transferred_to:
        assert [e.extension for e in transferred] == [sc.expected.transferred_to]
        assert transferred[0].transferred_from == sc.expected.answered_by
    else:
        assert not transferred


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(scenarios.SCENARIO_NAMES),
    seed=st.integers(0, 2**40),
    start=st.integers(1_000_000_000, 2_000_000_000),
    recording=st.booleans(),
    loser_reason=st.sampled_from([1110, 1120, 1182]),
    extensions=st.lists(
        st.from_regex(r"[1-9][0-9]{1,3}", fullmatch=True), min_size=2, max_size=5, unique=True
    ),
    data=st.data(),
)
def test_generated_calls_reach_their_expected_outcome(
    name: str,
    seed: int,
    start: int,
    recording: bool,
    loser_reason: int,
    extensions: list[str],
    data: st.DataObject,
) -> None:
    sc = scenarios.build(
        name, seed=seed, start=start, recording=recording, loser_reason=loser_reason, extensions=extensions
    )
    events = tuple(
        e for n in sc.notifications if isinstance(e := parse(n.path, n.payload), TRACKED_EVENT_TYPES)
    )
    check(sc, events, data.draw(deliveries(events)), no_summary=False, no_recording=False)
