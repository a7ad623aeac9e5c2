"""Golden tests for PHP-serialized shop data (docs: /work/shared/docs/apis/php-serialization.md)."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.shop import phpdata

GOLDEN: list[tuple[str, Any]] = [
    ("b:1;", True),
    ("b:0;", False),
    ("i:42;", 42),
    ("i:-7;", -7),
    ("d:1250.5;", 1250.5),
    ("N;", None),
    ('s:5:"hello";', "hello"),
    ('s:8:"Иван";', "Иван"),  # byte length, not characters
    ('a:1:{s:8:"customer";b:1;}', {"customer": True}),
    ('a:2:{i:0;s:1:"a";i:1;s:1:"b";}', {"0": "a", "1": "b"}),
    (
        'a:2:{s:7:"billing";a:2:{s:5:"phone";s:17:"8 (916) 123-45-67";'
        's:4:"city";s:12:"Москва";}s:1:"n";i:3;}',
        {"billing": {"phone": "8 (916) 123-45-67", "city": "Москва"}, "n": 3},
    ),
]


@pytest.mark.parametrize(("text", "expected"), GOLDEN)
def test_golden_values_decode(text: str, expected: Any) -> None:
    assert phpdata.loads(text) == expected
    assert phpdata.loads(text.encode("utf-8")) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "r:1;",  # PHP reference: unsupported by phpserialize, rejected
        "a:1:{i:0;a:1:{i:0;R:2;}}",
        'C:3:"Foo":0:{}',  # custom-serialized object
        'a:1:{s:8:"customer";b:1;',  # truncated
        's:9:"Иван";',  # wrong byte length
        "",
        "plain text",
        None,
        12,
    ],
)
def test_bad_or_unsupported_data_decodes_to_none(bad: Any) -> None:
    assert phpdata.loads(bad) is None


def test_double_serialized_strings_are_decoded_twice() -> None:
    inner = 'a:1:{s:8:"customer";b:1;}'
    outer = f's:{len(inner)}:"{inner}";'
    assert phpdata.loads(outer) == {"customer": True}


def test_objects_become_plain_dicts_and_no_class_is_built() -> None:
    value = phpdata.loads('O:8:"stdClass":1:{s:5:"phone";s:11:"79161234567";}')
    assert value == {"phone": "79161234567"}
    assert value.class_name == "stdClass"


def test_oversized_cells_are_not_decoded() -> None:
    big = f's:{phpdata.MAX_BYTES + 1}:"' + "x" * (phpdata.MAX_BYTES + 1) + '";'
    assert phpdata.loads(big) is None


def test_deep_nesting_does_not_raise() -> None:
    deep = "a:1:{i:0;" * 5000 + "N;" + "}" * 5000
    assert phpdata.loads(deep) is None  # RecursionError inside phpserialize, caught


@pytest.mark.parametrize(
    ("data", "path", "expected"),
    [
        ({"customer": True, "subscriber": False}, ["*"], "customer"),
        ({"administrator": True, "customer": 1}, ["*"], "administrator, customer"),
        ({"billing": {"phone": "8 916"}}, ["billing", "phone"], "8 916"),
        ({"billing": {}}, ["billing", "phone"], None),
        (["a", "b"], ["1"], "b"),
        ("text", ["x"], None),
        ({}, ["*"], None),
    ],
)
def test_pick_follows_a_path(data: Any, path: list[str], expected: Any) -> None:
    assert phpdata.pick(data, path) == expected


def test_value_or_text_passes_plain_cells_through() -> None:
    assert phpdata.value_or_text("8 (916) 123-45-67") == "8 (916) 123-45-67"
    assert phpdata.value_or_text(b"abc") == "abc"
    assert phpdata.value_or_text('a:1:{s:1:"a";i:1;}') == {"a": 1}
    assert phpdata.value_or_text("a:broken") == "a:broken"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("  x ", "x"), (5, "5"), (True, "yes"), (None, None), ({"a": "1", "b": 2}, "1, 2"), ([{}], None)],
)
def test_scalar_text(value: Any, expected: Any) -> None:
    assert phpdata.scalar_text(value) == expected
