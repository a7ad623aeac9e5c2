"""The caller-card lookup: parallel, under a deadline, merged, cached (hits and misses), matched as
design.md says."""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from bridge.connector_api import CallerCard, CallEvent, Connector, Employee, RefStore
from bridge.lookup import LookupService, merge, number_key
from connectors.demo import DemoConnector


class _Config(BaseModel):
    pass


class FakeCrm(Connector):
    """A lookup-capable connector answering from a dict after `delay` seconds (or raising)."""

    name: ClassVar[str] = "fake"
    capabilities: ClassVar[frozenset[str]] = frozenset({"lookup"})
    config_model: ClassVar[type[BaseModel]] = _Config

    def __init__(self, cards: dict[str, CallerCard], delay: float = 0.0, fail: bool = False) -> None:
        super().__init__(_Config())
        self.cards = cards
        self.delay = delay
        self.fail = fail
        self.asked: list[str] = []
        self.release = threading.Event()
        self.release.set()

    def handle(self, event: CallEvent, refs: RefStore) -> None:
        return None

    def lookup(self, phone: str) -> CallerCard | None:
        self.asked.append(phone)
        time.sleep(self.delay)
        self.release.wait(30)
        if self.fail:
            raise ConnectionError("crm.example.com unreachable, token=abcdef0123456789abcdef0123456789")
        return self.cards.get(phone)


class NoLookup(FakeCrm):
    capabilities: ClassVar[frozenset[str]] = frozenset({"log_call"})


NUMBER = "+79161234567"


def card(source: str, **kw: Any) -> CallerCard:
    return CallerCard(source=source, **kw)


def test_connectors_are_asked_in_parallel_and_merged_in_priority_order() -> None:
    crm = FakeCrm(
        {
            NUMBER: card(
                "crm",
                name="Ivan Petrov",
                links=(("Contact", "https://crm.example.com/c/1"), ("Evil", "javascript:alert(1)")),
                responsible=Employee(extension="101", name="Olga"),
                details={"deals": [{"title": "Kitchen", "amount": 1200, "url": "javascript:x"}]},
            )
        },
        delay=0.3,
    )
    shop = FakeCrm(
        {
            NUMBER: card(
                "shop",
                name="I. Petrov (shop)",
                company="Petrov LLC",
                details={"orders": [{"number": "A-1", "total": 99.5}], "customer_id": 7},
            )
        },
        delay=0.3,
    )
    service = LookupService({"crm": crm, "shop": shop, "log": NoLookup({})}, deadline=2.0)
    started = time.monotonic()
    result = service.lookup("8 (916) 123-45-67")
    elapsed = time.monotonic() - started
    assert result is not None and result.complete
    assert elapsed < 0.55, f"asked one after the other ({elapsed:.2f}s)"
    assert result.name == "Ivan Petrov", "the first connector in the configured order wins"
    assert result.company == "Petrov LLC", "a field only the second knows is still filled"
    assert result.responsible == {"name": "Olga", "extension": "101", "source": "crm"}
    assert result.links == ({"title": "Contact", "url": "https://crm.example.com/c/1", "source": "crm"},)
    assert result.deals == ({"title": "Kitchen", "amount": 1200, "source": "crm"},)
    assert result.orders == ({"number": "A-1", "total": 99.5, "source": "shop"},)
    assert result.sources == ("crm", "shop") and result.extra == {"shop": {"customer_id": 7}}
    assert service.sources == ["crm", "shop"], "connectors without the capability are not asked"


def test_the_deadline_returns_what_is_known_and_the_rest_completes_later() -> None:
    fast = FakeCrm({NUMBER: card("fast", name="Fast Name")})
    slow = FakeCrm({NUMBER: card("slow", company="Slow Co")})
    slow.release.clear()
    service = LookupService({"fast": fast, "slow": slow}, deadline=0.2)
    finals: list[Any] = []
    started = time.monotonic()
    partial = service.lookup(NUMBER)
    assert time.monotonic() - started < 0.5
    assert partial is not None and not partial.complete
    assert partial.name == "Fast Name" and partial.pending == ("slow",)
    running = service.start(NUMBER)
    assert running is not None
    running.add_done_callback(finals.append)
    slow.release.set()
    assert running.wait(5)
    assert finals and finals[0].complete and finals[0].company == "Slow Co"
    assert service.cached(NUMBER) == finals[0]


def test_a_connector_that_never_answers_times_out_and_failures_are_not_cached(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hanging = FakeCrm({})
    hanging.release.clear()
    broken = FakeCrm({}, fail=True)
    service = LookupService({"hanging": hanging, "broken": broken}, deadline=0.1, timeout=0.3)
    running = service.start(NUMBER)
    assert running is not None and running.wait(3)
    final = running.snapshot()
    assert final.complete and not final.found and set(final.failed) == {"hanging", "broken"}
    assert service.cached(NUMBER) is None, "a failure is not an answer"
    assert "abcdef0123456789abcdef0123456789" not in caplog.text, "secrets are redacted from logs"
    hanging.release.set()


def test_hits_and_misses_are_cached_under_every_number_format() -> None:
    now = [0.0]
    crm = FakeCrm({NUMBER: card("crm", name="Ivan")})
    service = LookupService({"crm": crm}, cache_seconds=300, miss_cache_seconds=60, clock=lambda: now[0])
    for raw in ("79161234567", "+7 916 123-45-67", "8 (916) 123 45 67", "sip:79161234567@mango"):
        assert service.lookup(raw).name == "Ivan"  # type: ignore[union-attr]
    assert crm.asked == [NUMBER]
    assert service.lookup("+7 903 111-22-33").found is False  # type: ignore[union-attr]
    assert service.lookup("89031112233").found is False  # type: ignore[union-attr]
    assert crm.asked == [NUMBER, "+79031112233"], "a miss is remembered too"
    now[0] = 61.0
    service.lookup("89031112233")
    assert crm.asked.count("+79031112233") == 2, "misses are kept for miss_cache_seconds"
    now[0] = 299.0
    service.lookup(NUMBER)
    assert crm.asked.count(NUMBER) == 1
    now[0] = 301.0
    service.lookup(NUMBER)
    assert crm.asked.count(NUMBER) == 2, "hits are kept for cache_seconds"


def test_concurrent_lookups_of_one_number_share_one_request() -> None:
    crm = FakeCrm({NUMBER: card("crm", name="Ivan")}, delay=0.2)
    service = LookupService({"crm": crm})
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(service.lookup("79161234567"))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(crm.asked) == 1 and {r.name for r in results} == {"Ivan"}


def test_numbers_are_keyed_e164_then_national_then_last_ten_digits() -> None:
    assert number_key("79161234567") == (NUMBER, NUMBER)
    assert number_key("8 916 123-45-67") == (NUMBER, NUMBER)
    assert number_key("+1 650 253 0000") == ("+16502530000", "+16502530000")
    assert number_key("0001234567890")[0] == "l:1234567890"  # type: ignore[index]
    assert number_key("101") is None and number_key(None) is None and number_key("sip:user@x") is None


def test_the_demo_connector_matches_numbers_stored_in_any_format() -> None:
    demo = DemoConnector(
        {
            "contacts": {
                "8 (916) 123-45-67": {"name": "Ivan", "deals": [{"title": "Sofa"}]},
                "+7 903 111 22 33": "Anna",
            }
        }
    )
    assert demo.lookup("+79161234567").name == "Ivan"  # type: ignore[union-attr]
    assert demo.lookup("79031112233").name == "Anna"  # type: ignore[union-attr]
    assert demo.lookup("+79990000000") is None
    short = DemoConnector({"contacts": "79161234567=Ivan Petrov;79031112233=Anna"})
    assert short.lookup("+79161234567").name == "Ivan Petrov"  # type: ignore[union-attr]
    merged = merge(NUMBER, {"demo": demo.lookup(NUMBER)}, order=["demo"])
    assert merged.deals == ({"title": "Sofa", "source": "demo"},)


def test_no_lookup_connector_means_no_card() -> None:
    service = LookupService({"log": NoLookup({})})
    assert not service.enabled and service.lookup(NUMBER) is None
