"""The call-history CSV of `stats/result` (§3.1 item 4) into typed rows."""

from __future__ import annotations

import pytest

from bridge.pbx.mango.stats import (
    DEFAULT_FIELDS,
    KNOWN_FIELDS,
    MANGO_DEFAULT_FIELDS,
    StatsResult,
    normalise_fields,
    parse_records,
    parse_stats_csv,
)

# One incoming call (entry MTYx...) to a DID: the IVR leg, then the group rings two employees in
# parallel; 101 answers (recorded), 102 loses with 1182. Plus an unrelated outgoing call.
MULTI_LEG = (
    "[];1670060527;1670060530;0;;79607164646;;74951234567;1100;74951234567;ivr;MTYxNzM5NjY0OTE=\n"
    "[MToxMDA4NjI3Nzo1MDI6NjQ0MjQzNTM5];1670060530;1670060661;1670060542;;79607164646;101;"
    "sip:ivan@vpbx400076322.mangosip.ru;1110;74951234567;abonent;MTYxNzM5NjY0OTE=\n"
    "[];1670060530;1670060542;0;;79607164646;102;sip:olga@vpbx400076322.mangosip.ru;1182;74951234567;"
    "abonent;MTYxNzM5NjY0OTI=\n"
    "[rec-a,rec-b];1670070000;1670070100;1670070010;101;sip:ivan@vpbx400076322.mangosip.ru;;79161234567;"
    "1120;74951234567;abonent;MTYxNzM5NzAwMDA=\n"
)


def test_multi_leg_report_gives_one_row_per_leg() -> None:
    rows = parse_stats_csv(MULTI_LEG, DEFAULT_FIELDS)
    assert len(rows) == 4

    ivr, answered, lost, outgoing = rows
    assert ivr.location == "ivr"
    assert ivr.records == ()
    assert ivr.answer == 0 and not ivr.answered
    assert ivr.from_extension is None
    assert ivr.to_extension is None
    assert ivr.disconnect_reason == 1100

    assert answered.answered
    assert answered.to_extension == "101"
    assert answered.to_number == "sip:ivan@vpbx400076322.mangosip.ru"
    assert answered.records == ("MToxMDA4NjI3Nzo1MDI6NjQ0MjQzNTM5",)
    assert answered.talk_seconds == 1670060661 - 1670060542
    assert answered.entry_id == "MTYxNzM5NjY0OTE="

    assert lost.disconnect_reason == 1182 and not lost.answered and lost.talk_seconds == 0

    assert outgoing.from_extension == "101"
    assert outgoing.records == ("rec-a", "rec-b")
    assert outgoing.line_no == 4


def test_rows_group_by_entry() -> None:
    result = StatsResult(key="k", fields=DEFAULT_FIELDS, rows=tuple(parse_stats_csv(MULTI_LEG)))
    groups = result.by_entry()
    assert [len(groups[e]) for e in ("MTYxNzM5NjY0OTE=", "MTYxNzM5NjY0OTI=", "MTYxNzM5NzAwMDA=")] == [2, 1, 1]


def test_grouping_needs_entry_id_among_fields() -> None:
    result = StatsResult(key="k", fields=MANGO_DEFAULT_FIELDS, rows=())
    with pytest.raises(ValueError, match="entry_id"):
        result.by_entry()


def test_crlf_rows_trailing_blank_line_and_extra_whitespace_are_tolerated() -> None:
    text = "[] ; 100 ; 200 ; 150 ; 101 ; 79161234567 \r\n[];300;400;0;;79161234568\r\n\r\n"
    fields = ("records", "start", "finish", "answer", "from_extension", "from_number")
    rows = parse_stats_csv(text, fields)
    assert [(r.start, r.finish, r.answer, r.from_extension, r.from_number) for r in rows] == [
        (100, 200, 150, "101", "79161234567"),
        (300, 400, 0, None, "79161234568"),
    ]


def test_fields_not_requested_are_none_and_columns_follow_the_request_order() -> None:
    rows = parse_stats_csv("MTYx;1110;79161234567\n", ("entry_id", "disconnect_reason", "from_number"))
    (row,) = rows
    assert row.entry_id == "MTYx" and row.disconnect_reason == 1110 and row.from_number == "79161234567"
    assert row.start is None and row.records == () and row.location is None
    assert dict(row.raw) == {"entry_id": "MTYx", "disconnect_reason": "1110", "from_number": "79161234567"}


def test_create_column_is_parsed_as_a_time() -> None:
    (row,) = parse_stats_csv("[];10;20;0;1;2;3;4;1100;5;ivr;7;E\n", KNOWN_FIELDS)
    assert row.create == 7 and row.entry_id == "E"


def test_wrong_column_count_names_the_line() -> None:
    text = "[];1;2;0;;a;;b;1100;c;ivr;E1\n[];1;2;0;;a;;b;1100;c;ivr;E2\n[];1;2;0;;a\n"
    with pytest.raises(ValueError, match=r"line 3: expected 12 columns .*got 6"):
        parse_stats_csv(text, DEFAULT_FIELDS)


def test_non_numeric_time_names_line_and_column() -> None:
    with pytest.raises(ValueError, match=r"line 2: column 'answer' should be an integer, got 'soon'"):
        parse_stats_csv("[];1;2;0\n[];1;2;soon\n", ("records", "start", "finish", "answer"))


def test_empty_body_is_an_empty_report() -> None:
    assert parse_stats_csv("", DEFAULT_FIELDS) == []
    assert parse_stats_csv("\n\n", DEFAULT_FIELDS) == []


def test_a_header_row_and_a_bom_are_skipped() -> None:
    text = "\ufeffrecords;start;finish\n[];1;2\n"
    rows = parse_stats_csv(text, ("records", "start", "finish"))
    assert len(rows) == 1 and rows[0].line_no == 2


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ("[]", ()),
        ("", ()),
        ("[a]", ("a",)),
        ("[a,b,c]", ("a", "b", "c")),
        ("a,b", ("a", "b")),
        ("[ a , b ]", ("a", "b")),
    ],
)
def test_records_column(value: str, ids: tuple[str, ...]) -> None:
    assert parse_records(value) == ids


def test_fields_accept_mangos_comma_string_and_reject_unknown_names() -> None:
    assert normalise_fields("records, start,finish") == ("records", "start", "finish")
    with pytest.raises(ValueError, match="unknown stats field"):
        normalise_fields(["records", "duration"])
    with pytest.raises(ValueError, match="repeat"):
        normalise_fields(["start", "start"])
    with pytest.raises(ValueError):
        normalise_fields("")


def test_default_fields_are_mangos_default_plus_entry_id() -> None:
    assert DEFAULT_FIELDS[:11] == MANGO_DEFAULT_FIELDS
    assert DEFAULT_FIELDS[-1] == "entry_id"
    assert "create" not in MANGO_DEFAULT_FIELDS and "entry_id" not in MANGO_DEFAULT_FIELDS
