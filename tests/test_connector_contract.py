"""The shared connector contract (`bridge.connector_api.testing.ConnectorContract`) for every connector:
bitrix24, amocrm, retailcrm, yclients, dynamics, shop, webhook and demo against their fakes, and `notebook`, a
connector written in the test tree against the kit alone and installed without an entry point."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import sqlalchemy as sa

from bridge.connector_api import CallEvent, Capability
from bridge.connector_api.testing import ConnectorContract, ContractHarness, MemoryRefs, context
from bridge.registry import available_connectors, build_connectors, installed
from connectors.amocrm import AmoCrmConnector
from connectors.bitrix24 import Bitrix24Connector
from connectors.shop import ShopConnector
from connectors.shop.query import read_only_engine
from connectors.webhook import WebhookConnector
from tests import test_amocrm_contract as amo
from tests import test_bitrix24_contract as b24
from tests import test_dynamics_contract as dyn
from tests import test_retailcrm_contract as rcrm
from tests import test_yclients_contract as ycl
from tests.fakes import shop_schema
from tests.fakes.amocrm import FakeAmoCrm
from tests.fakes.bitrix24 import FakeBitrix24
from tests.fakes.retailcrm import FakeRetailCrm
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.fakes.yclients import FakeYClients
from tests.kit_connector import FakeNotebook, NotebookConfig, NotebookConnector

Kind = Literal["retryable", "permanent"]


class Bitrix24Harness(ContractHarness):
    def __init__(self, fake: FakeBitrix24) -> None:
        wired = b24.Harness(fake)  # the local application, installed through its hook
        self.fake, self.refs, self.connector = fake, wired.refs, wired.connector
        assert isinstance(self.connector, Bitrix24Connector)
        self.secrets = (fake.client_secret, fake.application_token)

    def call(self, entry_id: str) -> list[CallEvent]:
        return [b24.ringing("101", entry_id), b24.ended("101", entry_id)]

    def effects(self, entry_id: str) -> list[str]:
        out: list[str] = []
        for call in self.fake.registered(entry_id):
            out += ["register"] + ["show"] * len(call.shown) + ["finish"] * len(call.finishes)
        return out

    def expected(self, entry_id: str) -> list[str]:
        return ["register", "show", "finish"]

    def fail_next(self, kind: Kind) -> None:
        if kind == "retryable":
            self.fake.fail_next(b24.REGISTER, 503, "INTERNAL_SERVER_ERROR", "try later")
        else:
            self.fake.fail_next(b24.REGISTER, 400, "ERROR_ARGUMENT", "a wrong argument")


class AmoCrmHarness(ContractHarness):
    def __init__(self, fake: FakeAmoCrm) -> None:
        self.fake, self.refs = fake, MemoryRefs()
        settings = {"account_url": fake.url, "long_lived_token": amo.LLT, "users": amo.USERS}
        self.connector = AmoCrmConnector(settings, clock=lambda: amo.NOW)
        self.callers: set[str] = set()
        self.connector.bind(context(public_url=amo.PUBLIC))

    def phone(self, entry_id: str) -> str:
        """A caller of its own per call (tasks name the caller, not the call), known to amoCRM."""
        number = f"7916{zlib.crc32(entry_id.encode()) % 10**7:07d}"
        if number not in self.callers:
            self.callers.add(number)
            self.fake.add_contact(f"Caller {entry_id}", [f"+{number}"], responsible_user_id=1001)
        return number

    def call(self, entry_id: str) -> list[CallEvent]:
        phone = self.phone(entry_id)
        ringing = amo.ev("call.ringing", entry_id, extension="101", call_id="leg1", customer_number=phone)
        ended = amo.ended(entry_id, answered=False, customer_number=phone)
        return [ringing, ended, amo.missed(entry_id, customer_number=phone)]

    def effects(self, entry_id: str) -> list[str]:
        phone = self.phone(entry_id)
        with self.fake.lock:
            made = [("call", c["_created"]["id"]) for c in self.fake.calls if c.get("uniq") == entry_id]
            made += [("task", t["id"]) for t in self.fake.tasks if phone in t.get("text", "")]
        return [kind for kind, _ in sorted(made, key=lambda item: item[1])]  # ids grow: creation order

    def expected(self, entry_id: str) -> list[str]:
        return ["call", "task"]

    def fail_next(self, kind: Kind) -> None:
        self.fake.fail_next(503 if kind == "retryable" else 400)


class WebhookHarness(ContractHarness):
    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver, self.refs = receiver, MemoryRefs()
        config = {"url": receiver.url, "secret": receiver.secret, "rate_per_second": 50}
        built = build_connectors({"webhook": config})["webhook"]
        assert isinstance(built, WebhookConnector)
        self.connector = built

    def call(self, entry_id: str) -> list[CallEvent]:
        return [b24.ringing("101", entry_id), b24.answered("101", entry_id), b24.ended("101", entry_id)]

    def effects(self, entry_id: str) -> list[str]:
        with self.receiver.lock:
            return [body["type"] for body in self.receiver.accepted.values() if body["entry_id"] == entry_id]

    def expected(self, entry_id: str) -> list[str]:
        return ["call.ringing", "call.answered", "call.ended"]

    def fail_next(self, kind: Kind) -> None:
        with self.receiver.lock:
            self.receiver.plan.append((503, {}) if kind == "retryable" else (400, {}))


class LookupOnlyHarness(ContractHarness):
    """Shop and demo deliver no events: the contract checks they want none and look numbers up quietly."""

    def __init__(self, connector: Any) -> None:
        self.connector, self.refs = connector, MemoryRefs()

    def call(self, entry_id: str) -> list[CallEvent]:
        return []

    def exercise(self) -> None:
        assert self.connector.lookup(shop_schema.IVAN) is not None


class NotebookHarness(ContractHarness):
    def __init__(self, fake: FakeNotebook) -> None:
        self.fake, self.refs = fake, MemoryRefs()
        with installed(NotebookConnector):  # no entry point: the registry hook for tests
            built = build_connectors({"notebook": {"url": fake.url, "token": fake.token}})["notebook"]
        assert isinstance(built, NotebookConnector)
        self.connector = built
        fake.contacts[shop_schema.IVAN] = "Иван Петров"

    def call(self, entry_id: str) -> list[CallEvent]:
        return [b24.ringing("101", entry_id), b24.ended("101", entry_id)]

    def effects(self, entry_id: str) -> list[str]:
        return self.fake.kinds(entry_id)

    def expected(self, entry_id: str) -> list[str]:
        return ["call.ringing", "call.ended"]

    def fail_next(self, kind: Kind) -> None:
        self.fake.fail_next(503 if kind == "retryable" else 422)

    def exercise(self) -> None:
        card = self.connector.lookup(shop_schema.IVAN)
        assert card is not None and card.name == "Иван Петров"


CONNECTORS = [
    "bitrix24",
    "amocrm",
    "retailcrm",
    "yclients",
    "dynamics",
    "webhook",
    "shop",
    "demo",
    "notebook",
]


@pytest.fixture(params=CONNECTORS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ContractHarness]:
    name = request.param
    if name == "bitrix24":
        with FakeBitrix24() as fake:
            yield Bitrix24Harness(fake)
    elif name == "amocrm":
        with FakeAmoCrm(long_lived_token=amo.LLT) as fake:
            fake.add_contact("Иван Петров", ["8 (916) 123-45-67"], responsible_user_id=1002, leads=2)
            yield AmoCrmHarness(fake)
    elif name == "retailcrm":
        with FakeRetailCrm(api_key=rcrm.KEY) as fake:
            yield rcrm.RetailCrmHarness(fake)
    elif name == "yclients":
        with FakeYClients(partner_token=ycl.PARTNER, crm_token=ycl.CRM, user_token=ycl.USER) as fake:
            yield ycl.YClientsHarness(fake)
    elif name == "dynamics":
        with dyn.dataverse(tmp_path) as fake:
            yield dyn.DynamicsHarness(fake)
    elif name == "webhook":
        receiver = WebhookReceiver(secret="whsec-contract-0123456789").start()
        try:
            yield WebhookHarness(receiver)
        finally:
            receiver.stop()
    elif name == "shop":
        path = f"sqlite:///{tmp_path / 'shop.db'}"
        writer = sa.create_engine(path)
        shop_schema.create_generic(writer)
        writer.dispose()
        # Settings that name a password-protected server; the reads go to the seeded file.
        url = "postgresql+psycopg://shop:Pa55-contract-secret@db.internal:5432/shop"
        engine = read_only_engine(path)
        connector = ShopConnector({"database_url": url, "mapping": "generic"}, engine=engine)
        try:
            yield LookupOnlyHarness(connector)
        finally:
            connector.close()
    elif name == "demo":
        built = build_connectors({"demo": {"contacts": {shop_schema.IVAN: {"name": "Иван Петров"}}}})
        yield LookupOnlyHarness(built["demo"])
    else:
        with FakeNotebook(token="nb-token-0123456789abcdef") as fake:
            yield NotebookHarness(fake)


class TestConnectorContract(ConnectorContract):
    """Every connector, one contract."""


def test_every_installed_connector_is_in_the_contract_suite() -> None:
    assert set(available_connectors()) <= set(CONNECTORS)


def test_the_kit_connector_is_installed_only_inside_the_hook() -> None:
    assert "notebook" not in available_connectors()
    with installed(NotebookConnector):
        assert available_connectors()["notebook"] is NotebookConnector
        assert NotebookConnector.can(Capability.LOOKUP)
        assert isinstance(NotebookConfig.model_validate({"url": "http://x", "token": "t"}), NotebookConfig)
    assert "notebook" not in available_connectors()
