"""The kit's token vault on the daemon's real state store: one claim wins, newer pairs are never lost."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import pytest
from sqlalchemy import Engine

from bridge.connector_api.oauth import TokenPair, TokenVault
from bridge.store.connector_state import SqlStateStore

KEY = "oauth"


@dataclass(frozen=True)
class PortalPair(TokenPair):
    """A connector's record: an extra field and another default, as Bitrix24's has."""

    generation: int = 1
    portal: str | None = None


class Unbound(Exception):
    pass


def vault(store: SqlStateStore | None, now: float = 1000.0) -> TokenVault[PortalPair]:
    return TokenVault(lambda: store, KEY, PortalPair, unbound=Unbound, lease_seconds=30, clock=lambda: now)


@pytest.fixture
def store(engine: Engine) -> SqlStateStore:
    return SqlStateStore(engine, "crm")


def test_an_unbound_vault_says_so(engine: Engine) -> None:
    with pytest.raises(Unbound):
        vault(None).load()


def test_of_many_threads_exactly_one_claims_the_pair(store: SqlStateStore) -> None:
    first = vault(store).supersede(lambda _: PortalPair("a1", "r1", 2000.0, portal="p"))
    assert first is not None
    record, version = vault(store).load()
    assert record == first
    wins: list[PortalPair] = []
    barrier = threading.Barrier(8)

    def try_claim() -> None:
        barrier.wait(5)
        claimed = vault(store).claim(record, version)
        if claimed is not None:
            wins.append(claimed[0])

    threads = [threading.Thread(target=try_claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(wins) == 1
    stored, _ = vault(store).load()
    assert stored is not None and stored.leased(1000.0) and not stored.leased(1031.0)
    assert stored.lease_owner == wins[0].lease_owner and stored.portal == "p"


def test_a_refresh_whose_lease_was_taken_over_still_stores_its_pair(store: SqlStateStore) -> None:
    v = vault(store)
    v.supersede(lambda _: PortalPair("a1", "r1"))
    record, version = v.load()
    assert record is not None
    leased, leased_version = v.claim(record, version) or (None, None)
    assert leased is not None
    # Our lease ran out while the OAuth server was slow; someone else claimed the same pair meanwhile.
    other = vault(store, now=2000.0)
    assert other.claim(*other.load()) is not None  # type: ignore[arg-type]
    fresh = replace(leased, access_token="a2", refresh_token="r2", generation=2).released()
    assert v.write_over(fresh, leased_version) == fresh
    assert v.load()[0] == fresh


def test_a_newer_install_is_kept_when_the_policy_says_so(store: SqlStateStore) -> None:
    v = vault(store)
    v.supersede(lambda _: PortalPair("a1", "r1"))
    record, version = v.load()
    assert record is not None
    leased, leased_version = v.claim(record, version) or (None, None)
    assert leased is not None
    installed = v.supersede(lambda current: PortalPair("a9", "r9", generation=(current.generation + 1)))
    fresh = replace(leased, access_token="a2", refresh_token="r2").released()
    stands = v.write_over(fresh, leased_version, keep_newer=lambda s: s.refresh_token not in ("r1", "r2"))
    assert stands == installed and v.load()[0] == installed


def test_records_from_older_versions_and_unreadable_ones_load(store: SqlStateStore) -> None:
    store.compare_and_set(KEY, '{"access_token":"a","refresh_token":"r","refreshing_until":5,"x":1}', None)
    record, _ = vault(store).load()
    assert record == PortalPair("a", "r")  # unknown fields are ignored
    current = store.get(KEY)
    assert current is not None
    store.compare_and_set(KEY, "{not json", current[1])
    broken, version = vault(store).load()
    assert broken is not None and broken.error and broken.access_token is None and version == current[1] + 1


def test_a_record_round_trips_through_json_with_tuples() -> None:
    @dataclass(frozen=True)
    class Seeded(TokenPair):
        seeds_used: tuple[str, ...] = ()

    record = Seeded("a", "r", 5.0, seeds_used=("code:1", "code:2"))
    assert Seeded.from_json(record.to_json()) == record
