"""Mango result codes (§4) and the exception each one maps to."""

from __future__ import annotations

import pytest

from bridge.pbx.mango.codes import CODES, code_class, describe, is_call_ended, is_success, resolve
from bridge.pbx.mango.errors import (
    MangoAccessBlocked,
    MangoBadKey,
    MangoBadRequest,
    MangoBadSign,
    MangoBillingError,
    MangoCallEnded,
    MangoCallNotFound,
    MangoCannotDo,
    MangoError,
    MangoRateLimited,
    MangoServerError,
    MangoStatsKeyNotFound,
    MangoTransportError,
    error_for,
)


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        (1000, "action completed"),
        (1110, "call ended by the caller"),
        (1182, "call intercepted by another operator"),
        (2240, "insufficient funds"),
        (3102, "signature mismatch"),
        (3105, "invalid API key"),
        (4101, "call ended or does not exist"),
        (4290, "rate limit exceeded"),
        (5001, "server overload"),
    ],
)
def test_known_codes_have_their_documented_meaning(code: int, meaning: str) -> None:
    assert describe(code) == meaning


@pytest.mark.parametrize(
    ("code", "falls_back_to"),
    [
        (2219, 2210),  # the doc's own example
        (1090, 1000),  # the doc's own example
        (2299, 2200),
        (2999, 2000),
        (3199, 3100),
        (4103, 4100),
        (5105, 5100),
        (1239, 1230),
    ],
)
def test_unknown_code_reads_as_its_nearest_known_class(code: int, falls_back_to: int) -> None:
    assert code not in CODES
    assert resolve(code) == falls_back_to
    assert describe(code) == CODES[falls_back_to]


def test_every_known_code_resolves_to_itself() -> None:
    assert all(resolve(code) == code for code in CODES)
    assert all(meaning and meaning == meaning.strip() for meaning in CODES.values())


def test_code_outside_every_class_is_described_as_unknown() -> None:
    assert resolve(6001) is None
    assert describe(6001) == "unknown result code 6001"
    assert resolve(0) is None


def test_codes_given_as_strings_are_accepted() -> None:
    assert describe("3102") == "signature mismatch"
    assert is_success("1000")


@pytest.mark.parametrize(
    ("code", "ok"), [(1000, True), (1001, True), (1090, True), (1100, False), (3102, False)]
)
def test_only_10xx_is_success(code: int, ok: bool) -> None:
    assert is_success(code) is ok


def test_call_ended_codes_and_classes() -> None:
    assert is_call_ended(1110) and is_call_ended(1314)
    assert not is_call_ended(1000) and not is_call_ended(2100)
    assert code_class(2219) == 2000
    assert code_class(4290) == 4000


def test_codes_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        CODES[9999] = "nope"  # type: ignore[index]


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (1110, MangoCallEnded),
        (1310, MangoCallEnded),
        (2100, MangoBillingError),
        (2219, MangoBillingError),
        (2240, MangoBillingError),
        (3000, MangoBadRequest),
        (3100, MangoBadRequest),
        (3102, MangoBadSign),
        (3105, MangoBadKey),
        (3310, MangoBadRequest),
        (4000, MangoCannotDo),
        (4001, MangoCannotDo),
        (4101, MangoCallNotFound),
        (4102, MangoCannotDo),
        (4290, MangoRateLimited),
        (5000, MangoServerError),
        (5008, MangoServerError),
        (6001, MangoError),
    ],
)
def test_error_for_picks_the_specific_class(code: int, cls: type[MangoError]) -> None:
    error = error_for(code, path="commands/callback")
    assert type(error) is cls
    assert error.code == code
    assert error.path == "commands/callback"
    assert str(code) in str(error)


def test_error_class_hierarchy() -> None:
    assert issubclass(MangoBadSign, MangoBadRequest)
    assert issubclass(MangoBadKey, MangoBadRequest)
    assert issubclass(MangoAccessBlocked, MangoBadRequest)
    assert issubclass(MangoCallNotFound, MangoCannotDo)
    assert issubclass(MangoRateLimited, MangoCannotDo)
    assert issubclass(MangoStatsKeyNotFound, MangoCannotDo)
    for cls in (MangoCallEnded, MangoBillingError, MangoBadRequest, MangoCannotDo, MangoServerError):
        assert issubclass(cls, MangoError)
    assert issubclass(MangoTransportError, MangoError)


def test_messages_say_what_to_do() -> None:
    assert str(error_for(3102)) == (
        "Mango rejected the signature (3102): check the API salt (vpbx_api_salt, "
        "'Ключ для создания подписи' on the cabinet's 'API коннектор' page)"
    )
    assert "check the API key" in str(error_for(3105))
    assert "insufficient funds" in str(error_for(2240)) and "cabinet" in str(error_for(2240))
    assert "already ended" in str(error_for(4101))
    assert "retry after 3 s" in str(error_for(4290, retry_after=3))
    assert "on commands/route" in str(error_for(3100, path="commands/route"))


def test_retryable_flags_tell_a_dispatcher_what_can_succeed_later() -> None:
    assert error_for(4290).retryable
    assert error_for(5001).retryable
    assert MangoTransportError("x").retryable
    assert not error_for(3102).retryable
    assert not error_for(2240).retryable
    assert not error_for(4101).retryable


def test_rate_limited_carries_retry_after() -> None:
    error = error_for(4290, retry_after=2.5)
    assert isinstance(error, MangoRateLimited)
    assert error.retry_after == 2.5
    assert error.local is False
