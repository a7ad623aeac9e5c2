"""The OAuth pair is shared by processes through the daemon's real state store: one refresh per rotation.

Several processes (spawned, each with its own engine and `OAuthTokens`) find the same access token
expired at the same moment; the contract fake's refresh tokens are single-use, so a second refresh or a
lost rotation would show as `refresh_failures` or a dead token.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from sqlalchemy import Engine

from bridge.connector_api.http import make_session
from bridge.store.connector_state import SqlStateStore
from bridge.store.engine import make_engine
from connectors.bitrix24.oauth import OAuthTokens, TokenRecord
from tests.fakes.bitrix24 import FakeBitrix24

PROCESSES = 4


def _refresh_in_a_process(
    database_url: str, token_url: str, client_id: str, secret: str, stale: str, at: float, out: str
) -> None:
    engine = make_engine(database_url)
    store = SqlStateStore(engine, "bitrix24")
    tokens = OAuthTokens(
        lambda: store, client_id=client_id, client_secret=secret, token_url=token_url, session=make_session()
    )
    time.sleep(max(0.0, at - time.time()))  # all processes start refreshing at the same instant
    Path(out).write_text(tokens.refresh(stale))
    engine.dispose()


def test_processes_that_see_the_same_expired_token_refresh_it_exactly_once(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    with FakeBitrix24() as fake:
        access, refresh = fake.issue_tokens()
        store = SqlStateStore(engine, "bitrix24")
        tokens = OAuthTokens(
            lambda: store,
            client_id=fake.client_id,
            client_secret=fake.client_secret,
            token_url=fake.oauth_url,
            session=make_session(),
        )
        tokens.install(TokenRecord(access, refresh, time.time() + 3600))
        fake.expire_tokens()
        context = multiprocessing.get_context("spawn")
        at = time.time() + 3.0
        outs = [tmp_path / f"token-{i}" for i in range(PROCESSES)]
        procs = [
            context.Process(
                target=_refresh_in_a_process,
                args=(database_url, fake.oauth_url, fake.client_id, fake.client_secret, access, at, str(out)),
            )
            for out in outs
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(30)
            assert proc.exitcode == 0
        got = {out.read_text() for out in outs}
        assert fake.refreshes == 1
        assert fake.refresh_failures == 0
        (new,) = got
        stored = tokens.load()
        assert stored is not None and stored[0].access_token == new
        # The stored refresh token is the live one: the next rotation works.
        fake.expire_tokens()
        assert tokens.refresh(new) != new
        assert fake.refreshes == 2 and fake.refresh_failures == 0
