"""Mango result, disconnect and error codes (API v1.9, "Список кодов результатов") as data.

Codes are four digits grouped into classes (1xxx done / call ended, 2xxx billing, 3xxx bad request,
4xxx cannot be done, 5xxx server) and subclasses by hundreds and tens. Mango's rule for a code we do
not know is to read it as its nearest known class: 2219 -> 2210, 1090 -> 1000. `resolve` applies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

OK = 1000

_CODES: dict[int, str] = {
    # 1xxx: done; 11xx call ended; 12xx contact-centre sessions; 13xx auto-dialler
    1000: "action completed",
    1001: "action completed with remarks",
    1100: "call ended normally",
    1110: "call ended by the caller",
    1111: "no answer within the timeout",
    1120: "call ended by the callee",
    1121: "callee busy",
    1122: "call rejected by the callee",
    1123: "do-not-disturb signal received",
    1124: "callee is in contact-centre do-not-disturb status",
    1125: "operator stopped the outbound campaign task",
    1130: "restrictions on the called number",
    1131: "called number unavailable",
    1132: "called number not served",
    1133: "called number does not exist",
    1134: "too many forwards",
    1135: "forwarding forbidden",
    1140: "calls to this region are forbidden by the PBX settings",
    1150: "restrictions on the calling number",
    1151: "calling number is blacklisted",
    1152: "calling number is not whitelisted",
    1160: "group call failed",
    1161: "hold forbidden by the PBX settings",
    1162: "hold queue full",
    1163: "hold queue timeout",
    1164: "all operators unavailable",
    1170: "call ended by the forwarding scheme",
    1171: "forwarding scheme misconfigured",
    1180: "call ended by a user command",
    1181: "call ended by an external-system command",
    1182: "call intercepted by another operator",
    1183: "new operator assigned",
    1190: "called number inactive or off schedule",
    1191: "called number deactivated in the cabinet",
    1192: "called number inactive by schedule",
    1193: "called number busy and auto-reject is on",
    1200: "contact-centre session error",
    1201: "contact-centre connection limit reached",
    1202: "contact-centre session data not found",
    1210: "contact-centre server cannot accept the connection",
    1211: "contact-centre maintenance mode",
    1212: "contact-centre server lost its database",
    1230: "contact-centre session ended for reasons outside the user's control",
    1231: "contact-centre server restart",
    1232: "contact-centre session ended by an administrator",
    1233: "contact-centre session ended by an administrator, reconnect recommended",
    1234: "contact-centre session ended by an administrator, staying offline recommended",
    1235: "contact-centre server lost its database",
    1236: "contact-centre session critical data changed",
    1300: "auto-dialler call ended normally",
    1310: "answering machine detected",
    1311: "answering machine: subscriber unavailable",
    1312: "answering machine: subscriber busy",
    1313: "answering machine: voicemail",
    1314: "answering machine: anti-robot server timeout",
    # 2xxx: billing
    2000: "billing restriction",
    2100: "account unavailable",
    2110: "account blocked",
    2120: "account closed",
    2130: "account frozen",
    2140: "account invalid",
    2200: "account access restricted",
    2210: "restricted by the usage period",
    2211: "daily usage limit reached",
    2212: "monthly usage limit reached",
    2220: "too many simultaneous calls or actions",
    2230: "service unavailable on the account",
    2240: "insufficient funds",
    2250: "service usage count limit reached",
    2251: "IVR scheme limit of the tariff reached",
    2252: "more schedules than licences",
    2253: "screen-service storage full",
    2300: "direction blocked",
    2400: "billing error",
    # 3xxx: bad request
    3000: "bad request",
    3100: "bad command parameters",
    3101: "request method is not POST",
    3102: "signature mismatch",
    3103: "required parameter missing",
    3104: "parameter in a wrong format",
    3105: "invalid API key",
    3106: "value already in use",
    3107: "invalid quantity or attribute",
    3108: "value below the minimum",
    3109: "value above the maximum",
    3110: "field and its confirmation differ",
    3111: "invalid from/to dates",
    3112: "invalid email address",
    3113: "invalid email host name",
    3114: "email domain has no MX record",
    3115: "email address is not routable",
    3116: "email address contains invalid characters",
    3117: "email address is not a valid quoted-string",
    3118: "email address contains an invalid name",
    3119: "email address too long",
    3120: "password too weak",
    3121: "invalid SIP account login",
    3122: "invalid SIP account domain",
    3123: "give only one of the parameters",
    3124: "line cannot be used as the outgoing number",
    3125: "parameter must be given together with the related ones",
    3126: "loop in the IVR scheme",
    3127: "invalid auth_token",
    3128: "invalid URL",
    3129: "wrong audio channel count",
    3130: "unknown password change error",
    3131: "password contains forbidden characters",
    3132: "password lacks required characters",
    3133: "password reused too recently",
    3134: "password is in the weak-password list",
    3135: "one of the parameters is required",
    3136: "wrong number format",
    3137: "password changed too recently",
    3200: "invalid subscriber number",
    3300: "object does not exist",
    3310: "call not found",
    3320: "recording not found",
    3330: "number not found at the PBX or the employee",
    3340: "file not found",
    3400: "invalid JSON",
    3503: "search request too big",
    # 4xxx: cannot be done
    4000: "action cannot be performed",
    4001: "command not supported",
    4002: "recording too short, not saved",
    4100: "not possible under the PBX logic",
    4101: "call ended or does not exist",
    4102: "already recording",
    4104: "too many forwards",
    4200: "subscriber cannot be reached now",
    4290: "rate limit exceeded",
    4300: "SMS sending failed",
    4301: "SMS expired",
    4391: "SMS lost (operator status)",
    4392: "SMS rejected (operator status)",
    4393: "SMS cancelled (operator status)",
    4400: "cannot add a conference participant",
    4401: "conference hardware error",
    4402: "conference service unavailable",
    4403: "conference resources insufficient",
    4404: "conference participant limit exceeded",
    4405: "joining forbidden by the conference room settings",
    4500: "security restriction",
    4501: "call frequency limit",
    4502: "calling number blacklisted for incoming calls",
    4503: "file too large",
    4504: "file size unknown",
    4505: "file format not allowed",
    4506: "call does not match the security profile",
    4507: "subscriber blocked",
    # 5xxx: server
    5000: "server error",
    5001: "server overload",
    5002: "server restart",
    5003: "technical problem",
    5004: "database access problem",
    5005: "action forbidden in service mode",
    5006: "service access error",
    5007: "remote side internal error",
    5008: "service unavailable",
    5009: "service cannot be added",
    5010: "not enough money to enable the service",
    5011: "service request timeout",
    5100: "campaign or task error",
    5200: "groups and employees error",
}

CODES: Mapping[int, str] = MappingProxyType(_CODES)
"""Every known code and its short English meaning."""


def _as_int(code: int | str) -> int:
    if isinstance(code, bool):
        raise TypeError("a result code is an int, not a bool")
    return int(code)


def resolve(code: int | str) -> int | None:
    """The known code that `code` reads as: itself, else its subclass by tens, hundreds, then class.

    `resolve(2219) == 2210`, `resolve(1090) == 1000`; None when not even the class is known.
    """
    value = _as_int(code)
    for step in (1, 10, 100, 1000):
        candidate = value - value % step
        if candidate in _CODES:
            return candidate
    return None


def describe(code: int | str) -> str:
    """A short English meaning of `code`, using the class fallback for codes not in the table."""
    known = resolve(code)
    if known is None:
        return f"unknown result code {code}"
    return _CODES[known]


def code_class(code: int | str) -> int:
    """The class of a code: 1000, 2000, 3000, 4000 or 5000 (2219 -> 2000)."""
    value = _as_int(code)
    return value - value % 1000


def is_success(code: int | str) -> bool:
    """True for 10xx: the command or query was done (1000, 1001, and unknown 10xx such as 1090).

    11xx-13xx are also class 1 but mean a call ended; as a command's answer they are not success.
    """
    return 1000 <= _as_int(code) <= 1099


def is_call_ended(code: int | str) -> bool:
    """True for 11xx-13xx, the disconnect reasons of a call leg."""
    return 1100 <= _as_int(code) <= 1399
