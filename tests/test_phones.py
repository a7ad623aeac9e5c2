"""Phone numbers are parsed to E.164 and matched E.164 first, then national, then the last 10 digits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.connector_api.phones import InvalidPhoneNumber, mango_digits, match_keys, same_number, to_e164


@pytest.mark.parametrize(
    "raw",
    [
        "8 (916) 123-45-67",
        "+7 916 123-45-67",
        "79161234567",
        "9161234567",
        "sip:79161234567@vpbx1.mangosip.ru",
    ],
)
def test_every_common_format_gives_the_same_e164(raw: str) -> None:
    assert to_e164(raw) == "+79161234567"
    assert mango_digits(to_e164(raw)) == "79161234567"


@pytest.mark.parametrize("raw", ["", "   ", "12", "hello", "+7 916 123", "1" * 50])
def test_nonsense_is_refused_with_a_reason(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as excinfo:
        to_e164(raw)
    assert str(excinfo.value)


def test_foreign_numbers_keep_their_country() -> None:
    assert to_e164("+380 44 123 4567") == "+380441234567"
    assert to_e164("380441234567") == "+380441234567"
    assert to_e164("8 (701) 123-45-67", region="KZ") == "+77011234567"


def test_match_keys_fall_back_to_last_ten_digits() -> None:
    keys = match_keys("sip:user@vpbx1.mangosip.ru")
    assert keys.e164 is None
    assert match_keys("(916) 123-45-67 доб. 5").last10 is not None
    assert same_number("8 (916) 123-45-67", "+7 916 1234567")
    assert not same_number("+79161234567", "+79161234568")


@given(st.from_regex(r"9[0-9]{9}", fullmatch=True))
def test_national_and_international_forms_always_match(national: str) -> None:
    assert same_number("8" + national, "+7" + national)
    assert same_number("7" + national, national)
