"""The PBX port: Mango's client satisfies it, and each Mango error is caught as its port kind."""

from __future__ import annotations

import pytest

from bridge.pbx.events import PingEvent
from bridge.pbx.mango.client import CommandAccepted as MangoCommandAccepted
from bridge.pbx.mango.client import MangoClient, MangoGroup, MangoUser, MangoUserNumber
from bridge.pbx.mango.errors import (
    MangoAccessBlocked,
    MangoBadKey,
    MangoBadRequest,
    MangoBadSign,
    MangoBillingError,
    MangoCallNotFound,
    MangoError,
    MangoRateLimited,
    MangoServerError,
    MangoTransportError,
    error_for,
)
from bridge.pbx.mango.parse import ParseError
from bridge.pbx.port import (
    CommandAccepted,
    PbxBadKey,
    PbxBadRequest,
    PbxBadSignature,
    PbxBillingError,
    PbxClientFactory,
    PbxCommands,
    PbxError,
    PbxGroup,
    PbxParseError,
    PbxRateLimited,
    PbxTransportError,
    PbxUser,
    PbxUserNumber,
)
from bridge.pbx.select import event_decoder


def test_mango_client_satisfies_the_port() -> None:
    client = MangoClient("key", "salt", "https://pbx.example/")
    try:
        assert isinstance(client, PbxCommands)
        typed: PbxCommands = client
        factory: PbxClientFactory = lambda: client  # noqa: E731
        assert factory() is typed
    finally:
        client.close()


def test_an_object_without_the_commands_is_not_a_pbx_client() -> None:
    assert not isinstance(object(), PbxCommands)


def test_mango_results_are_the_ports() -> None:
    assert MangoCommandAccepted is CommandAccepted
    user = MangoUser(
        extension="101", name="Ivan", user_id="7", numbers=(MangoUserNumber("74950000000", "tel"),)
    )
    assert isinstance(user, PbxUser)
    assert isinstance(user.numbers[0], PbxUserNumber)
    assert (user.extension, user.name, user.user_id) == ("101", "Ivan", "7")
    assert [n.number for n in user.numbers] == ["74950000000"]
    group = MangoGroup(group_id="1", extension="500", operators=("101", "102"))
    assert isinstance(group, PbxGroup)
    assert (group.extension, group.operators) == ("500", ("101", "102"))


def _caught(exc: MangoError, kind: type[PbxError]) -> PbxError:
    try:
        raise exc
    except kind as caught:
        return caught
    pytest.fail(f"{type(exc).__name__} was not caught as {kind.__name__}")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (error_for(2100, path="commands/callback"), PbxBillingError),
        (error_for(3100, path="commands/callback"), PbxBadRequest),
        (error_for(3102, path="commands/callback"), PbxBadSignature),
        (error_for(3105, path="commands/callback"), PbxBadKey),
        (error_for(3102), PbxBadRequest),
        (error_for(3105), PbxBadRequest),
        (MangoAccessBlocked("blocked", path="commands/callback"), PbxBadRequest),
        (error_for(4101, path="commands/callback"), PbxError),
        (error_for(5000, path="commands/callback"), PbxError),
        (error_for(1100), PbxError),
    ],
)
def test_each_mango_error_is_caught_as_its_port_kind(exc: MangoError, kind: type[PbxError]) -> None:
    caught = _caught(exc, kind)
    assert caught is exc
    assert (caught.code, caught.message, caught.path, caught.http_status, caught.retryable) == (
        exc.code,
        exc.message,
        exc.path,
        exc.http_status,
        type(exc).retryable,
    )
    assert repr(caught).startswith(type(exc).__name__ + "(")


def test_kinds_of_mango_errors_map_one_to_one() -> None:
    assert issubclass(MangoBadRequest, PbxBadRequest)
    assert issubclass(MangoBadSign, PbxBadSignature) and issubclass(MangoBadKey, PbxBadKey)
    assert issubclass(MangoBillingError, PbxBillingError)
    assert issubclass(MangoRateLimited, PbxRateLimited)
    assert issubclass(MangoTransportError, PbxTransportError)
    assert not issubclass(MangoBadSign, PbxBadKey) and not issubclass(MangoBadKey, PbxBadSignature)
    assert not issubclass(MangoCallNotFound, PbxBadRequest | PbxRateLimited | PbxTransportError)
    assert not issubclass(MangoServerError, PbxBadRequest | PbxBillingError | PbxTransportError)


def test_rate_limited_keeps_its_wait() -> None:
    exc = error_for(4290, path="commands/callback", retry_after=3.5)
    caught = _caught(exc, PbxRateLimited)
    assert isinstance(caught, PbxRateLimited)
    assert (caught.code, caught.retry_after, caught.retryable) == (4290, 3.5, True)
    local = MangoRateLimited("slow down", retry_after=0.25, local=True, path="users", http_status=429)
    caught = _caught(local, PbxRateLimited)
    assert isinstance(caught, PbxRateLimited)
    assert (caught.retry_after, caught.http_status, caught.path, local.local) == (0.25, 429, "users", True)
    assert _caught(MangoRateLimited("no wait given"), PbxRateLimited).retry_after is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("maybe_delivered", [True, False])
def test_transport_error_keeps_maybe_delivered(maybe_delivered: bool) -> None:
    exc = MangoTransportError("timed out", path="commands/callback", maybe_delivered=maybe_delivered)
    caught = _caught(exc, PbxTransportError)
    assert isinstance(caught, PbxTransportError)
    assert (caught.code, caught.maybe_delivered, caught.retryable, caught.message) == (
        None,
        maybe_delivered,
        True,
        "timed out",
    )


def test_access_blocked_is_a_retryable_bad_request_with_its_wait() -> None:
    caught = _caught(MangoAccessBlocked("blocked", retry_after=60.0), PbxBadRequest)
    assert caught.retryable is True and caught.http_status == 401
    assert caught.retry_after == 60.0  # type: ignore[attr-defined]


def test_the_selected_decoder_is_mangos_and_its_parse_errors_are_the_ports() -> None:
    decode = event_decoder()
    assert decode("ping", '{"timestamp": 1700000000}') == PingEvent(raw={"timestamp": 1700000000})
    for path, text in [("events/call", "not json"), ("events/call", "[]"), ("events/unknown", "{}")]:
        with pytest.raises(PbxParseError) as caught:
            decode(path, text)
        assert isinstance(caught.value, ParseError)
        assert str(caught.value)
