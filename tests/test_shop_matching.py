"""Phone matching in the shop connector: free text in, a match level (or none) out."""

from __future__ import annotations

import pytest

from bridge.connector_api.phones import match_keys
from connectors.shop.query import exact_forms, match_level, needle, read_only_url

IVAN = match_keys("+79161234567")


@pytest.mark.parametrize(
    ("stored", "level"),
    [
        ("+79161234567", 0),
        ("8 (916) 123-45-67", 0),
        ("+7 916 1234567", 0),
        ("79161234567", 0),
        ("916 123 45 67", 0),
        ("тел. 8-916-123-45-67 (Иван)", 0),
        ("+7(495)111-22-33 доб. 12, моб. 8 916 123 45 67", 0),
        ("8 916 123-45-67 доб. 5", 0),
        ("89161234567 89031112233", 2),  # run together: only the digits can tell
        ("ИНН 7916123456789", None),  # the digits are inside a longer number
        ("+7 916 123-45-68", None),
        ("", None),
        (None, None),
        ("+380 91 612 3456", None),
    ],
)
def test_match_level_of_stored_text(stored: str | None, level: int | None) -> None:
    assert match_level(stored, IVAN, "RU") == level


def test_a_foreign_number_with_the_same_last_ten_digits_matches_weakest() -> None:
    # +1 916 123 4567 (US) shares the last 10 digits with the Russian number.
    assert match_level("+1 916-123-4567", IVAN, "RU") == 2


def test_needle_is_the_last_ten_digits_or_a_short_national_number() -> None:
    assert needle(IVAN) == "9161234567"
    assert needle(match_keys("+3726123456")) == "6123456"  # Estonia: 7-digit national number


def test_exact_forms_cover_the_usual_spellings() -> None:
    forms = exact_forms(IVAN, "RU")
    for form in (
        "+79161234567",
        "79161234567",
        "89161234567",
        "9161234567",
        "8 (916) 123-45-67",
        "+7 916 123-45-67",
    ):
        assert form in forms


def test_sqlite_is_opened_read_only_by_uri() -> None:
    url = read_only_url("sqlite:////var/lib/shop.db")
    assert url.database == "file:/var/lib/shop.db?mode=ro"
    assert url.query["uri"] == "true"
