"""Tokens for the hub and the operator page: signed, expiring, bound to an extension or the supervisor."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bridge.config import load_config
from bridge.realtime.auth import EMPLOYEE, Identity, TokenError, TokenSigner, resolve_secret
from tests.daemon import Daemon
from tests.fakes.realtime_client import Client, refused_status

SECRET = "test-realtime-secret-0123456789abcdef"


def test_a_token_names_its_extension_and_expires() -> None:
    now = [1_000_000.0]
    signer = TokenSigner(SECRET, clock=lambda: now[0])
    token = signer.issue_employee("101", ttl=60)
    identity = signer.verify(token)
    assert identity == Identity(EMPLOYEE, "101", 1_000_060.0)
    assert identity.may_see({"101", "102"}) and not identity.may_see({"102"})
    assert signer.verify(signer.issue_supervisor(60)).may_see(set())
    now[0] += 61
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # forged signature
        lambda t: TokenSigner("another-secret-0123456789").issue_supervisor(60),  # someone else's key
        lambda t: "",
        lambda t: "not-a-token",
        lambda t: t.replace(
            t.split(".")[0], "eyJyIjoic3VwZXJ2aXNvciIsImV4cCI6OTk5OTk5OTk5OX0"
        ),  # swapped body
    ],
)
def test_forged_and_malformed_tokens_are_refused(mangle) -> None:  # type: ignore[no-untyped-def]
    signer = TokenSigner(SECRET)
    with pytest.raises(TokenError):
        signer.verify(mangle(signer.issue_employee("101", 60)))


def test_employee_tokens_need_a_plain_extension() -> None:
    signer = TokenSigner(SECRET)
    for bad in ("", "10 1", "101;drop", "x" * 40):
        with pytest.raises(ValueError):
            signer.issue_employee(bad, 60)


def test_the_generated_secret_is_shared_by_every_process(engine: Engine) -> None:
    settings = load_config(environ={})
    seen: list[str] = []
    threads = [
        threading.Thread(target=lambda: seen.append(resolve_secret(settings, engine))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 1 and len(seen[0]) >= 40
    configured = load_config(environ={"CALLBRIDGE_SECURITY_SECRET_KEY": SECRET})
    assert resolve_secret(configured, engine) == SECRET


def test_the_hub_refuses_expired_and_forged_tokens_and_closes_on_expiry(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = Daemon(database_url, tmp_path, env={"CALLBRIDGE_SECURITY_SECRET_KEY": SECRET}).start()
    try:
        port = int(daemon.env["CALLBRIDGE_WS_PORT"])
        signer = TokenSigner(SECRET)
        expired = TokenSigner(SECRET, clock=lambda: time.time() - 3600).issue_employee("101", 60)
        forged = signer.issue_employee("101", 600)[:-3] + "abc"
        foreign = TokenSigner("some-other-secret-0123456789").issue_supervisor(600)
        for token in (expired, forged, foreign, ""):
            assert refused_status(port, token) == 401
        # A good token connects, and the hub closes the connection when the token runs out.
        short = signer.issue_employee("101", 2)
        client = Client(port, short)
        assert client.wait_for("hello")["identity"] == {
            "role": "employee",
            "extension": "101",
            "expires_at": pytest.approx(time.time() + 2, abs=2),
        }
        code, reason = client.wait_closed(timeout=10)
        assert code == 4001 and reason == "token expired"
        log = daemon.log_path.read_text()
        for token in (expired, forged, foreign, short):
            assert token not in log, "tokens never reach the log"
        assert SECRET not in log
    finally:
        daemon.stop()
