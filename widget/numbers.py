"""Which numbers a site's widget may dial: its allowed countries and number types (toll-fraud guard).

Pure: takes an E.164 number and the site's settings, says why the number is refused (or None). The number
type and country come from `phonenumbers` (`number_type`, `region_code_for_number`); numbers of
international networks and satellite services (+881, +882, +883) have no country ("001") and are refused
everywhere, as are premium rate, shared cost, personal, UAN, VoIP, pager, voicemail and unknown numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType

__all__ = ["NumberRefused", "check_number", "describe_number"]

_TYPE_NAMES: dict[int, str] = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
    PhoneNumberType.UNKNOWN: "unknown",
}
NON_GEOGRAPHIC = "001"  # phonenumbers' region for international networks and satellite services


@dataclass(frozen=True)
class NumberRefused:
    """Why a number is not dialled: `reason` is "country" or "type"; the message is for logs and APIs."""

    reason: str
    country: str
    kind: str

    @property
    def message(self) -> str:
        if self.reason == "country":
            where = "an international network" if self.country == NON_GEOGRAPHIC else self.country
            return f"this site does not call numbers in {where}"
        return f"this site does not call {self.kind.replace('_', ' ')} numbers"


def describe_number(e164: str) -> tuple[str, str]:
    """The number's country (ISO code, "001" for international networks, "" if none) and type name."""
    parsed = phonenumbers.parse(e164)
    country = phonenumbers.region_code_for_number(parsed) or ""
    kind = _TYPE_NAMES.get(phonenumbers.number_type(parsed), "unknown")
    return country, kind


def check_number(e164: str, countries: Iterable[str], types: Iterable[str]) -> NumberRefused | None:
    """None when a number in E.164 may be dialled for a site allowing `countries` and `types`."""
    country, kind = describe_number(e164)
    if country == NON_GEOGRAPHIC or country not in set(countries):
        return NumberRefused("country", country, kind)
    if kind not in set(types):
        return NumberRefused("type", country, kind)
    return None
