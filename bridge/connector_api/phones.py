"""Phone numbers: parsing to E.164 with `phonenumbers`, and the keys numbers are matched on.

CRMs store numbers in every format ("8 (916) 123-45-67", "+7 916 1234567", "79161234567"), and Mango
sends digits without "+" or SIP URIs. Match on E.164 first, then the national significant number, then
the last 10 digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

DEFAULT_REGION = "RU"
_SIP = re.compile(r"^sips?:([^@]+)@", re.IGNORECASE)


class InvalidPhoneNumber(ValueError):
    """The text is not a phone number we can dial; the message says why."""


@dataclass(frozen=True)
class MatchKeys:
    e164: str | None
    national: str | None
    last10: str | None


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _candidate(raw: str) -> str:
    text = raw.strip()
    sip = _SIP.match(text)
    if sip:
        text = sip.group(1)
    return text


def to_e164(raw: str, region: str = DEFAULT_REGION) -> str:
    """Parse a number in any common format into E.164 (`+79161234567`); raise `InvalidPhoneNumber`."""
    if not raw or not raw.strip():
        raise InvalidPhoneNumber("the number is empty")
    text = _candidate(raw)
    if len(text) > 40:
        raise InvalidPhoneNumber("the number is too long")
    digits = _digits(text)
    # Mango and many CRMs write international numbers without the "+" (e.g. 79161234567, 380441234567);
    # 11+ digits not starting with the Russian trunk prefix 8 are taken as already international.
    if not text.lstrip().startswith("+") and len(digits) >= 11 and not digits.startswith("8"):
        text = "+" + digits
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"not a phone number: {exc}") from None
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidPhoneNumber("the number has the wrong length for its country")
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber("the number is not valid for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def mango_digits(e164: str) -> str:
    """The form Mango dials: E.164 without the "+"."""
    return e164.lstrip("+")


def match_keys(raw: str | None, region: str = DEFAULT_REGION) -> MatchKeys:
    """The keys to look a number up by, best first; any may be None for odd input (SIP names, short)."""
    if not raw:
        return MatchKeys(None, None, None)
    text = _candidate(raw)
    digits = _digits(text)
    e164 = national = None
    try:
        e164 = to_e164(text, region)
        national = str(phonenumbers.parse(e164).national_number)
    except InvalidPhoneNumber:
        pass
    last10 = digits[-10:] if len(digits) >= 10 else None
    return MatchKeys(e164, national, last10)


def same_number(a: str | None, b: str | None, region: str = DEFAULT_REGION) -> bool:
    """Whether two numbers in any formats are the same, by the matching order above."""
    ka, kb = match_keys(a, region), match_keys(b, region)
    if ka.e164 and kb.e164:
        return ka.e164 == kb.e164
    if ka.national and kb.national:
        return ka.national == kb.national
    return bool(ka.last10 and ka.last10 == kb.last10)
