"""The kit for testing a connector: in-memory core services, a loopback fake-server base, and the shared
contract suite every connector passes.

Use it from a test module (it imports nothing from pytest)::

    class TestMyCrm(ConnectorContract):
        @pytest.fixture
        def harness(self): ...  # yields a ContractHarness for the connector

The contract: delivery is idempotent under redelivery, effects come in event order per call, limits are
declared and sane, secrets never reach the logs or error messages, and vendor failures are classified as
retryable or permanent. See docs/connectors/writing.md.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, SecretStr

from bridge.connector_api.base import (
    Connector,
    ConnectorContext,
    DeliveryError,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from bridge.connector_api.events import CALL_EVENT_TYPES, CallEvent
from bridge.connector_api.manifest import Capability, Manifest
from bridge.connector_api.protocols import EmployeeImporter

__all__ = [
    "ConnectorContract",
    "ContractHarness",
    "FakeServer",
    "MemoryRefs",
    "MemoryState",
    "Reply",
    "Request",
    "capture_logs",
    "config_secrets",
    "context",
]

REPOSITORY = Path(__file__).resolve().parents[2]
CHECKLIST_HEADING = "## Quality checklist"


# ------------------------------------------------------------------------------------------ core services


class MemoryState:
    """A `StateStore` in memory, with the same compare-and-set contract as the daemon's."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[str, int]] = {}
        self.lock = threading.Lock()

    def get(self, key: str) -> tuple[str, int] | None:
        with self.lock:
            return self.data.get(key)

    def compare_and_set(self, key: str, value: str, expected_version: int | None) -> int | None:
        with self.lock:
            current = self.data.get(key)
            if (current[1] if current else None) != expected_version:
                return None
            version = (current[1] if current else 0) + 1
            self.data[key] = (value, version)
            return version


class MemoryRefs:
    """A `RefStore` in memory."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], str] = {}
        self.lock = threading.Lock()

    def get(self, entry_id: str, key: str) -> str | None:
        with self.lock:
            return self.data.get((entry_id, key))

    def put(self, entry_id: str, key: str, value: str) -> None:
        with self.lock:
            self.data[(entry_id, key)] = value


def context(state: MemoryState | None = None, **kwargs: Any) -> ConnectorContext:
    """A `ConnectorContext` over in-memory state (pass `originate`, `public_url`, ... as needed)."""
    return ConnectorContext(state=state if state is not None else MemoryState(), **kwargs)


# ------------------------------------------------------------------------------------------ fake server


@dataclass
class Request:
    """One request a `FakeServer` received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    """An answer: status, a JSON-ready body (or bytes), headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeServer(ABC):
    """A vendor's API on a loopback port, in a thread: subclasses implement `answer`.

    Every request is recorded (`requests`); `fail_next(status)` makes the next answers failures whatever
    was asked, for testing error classification. Use as a context manager or call `start`/`stop`.
    """

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.lock = threading.RLock()
        self._failures: deque[Reply] = deque()
        self._server: ThreadingHTTPServer | None = None

    @abstractmethod
    def answer(self, request: Request) -> Reply:
        """The vendor's answer to one request (called under `lock`)."""

    def fail_next(self, status: int, times: int = 1, headers: dict[str, str] | None = None) -> None:
        with self.lock:
            self._failures.extend([Reply(status, {"error": f"scripted {status}"}, headers or {})] * times)

    def start(self) -> FakeServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                return

            def _serve(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = Request(self.command, self.path, dict(self.headers), raw, time.monotonic())
                reply = fake._handle(request)
                data = reply.body if isinstance(reply.body, bytes) else b""
                if reply.body is not None and not isinstance(reply.body, bytes):
                    data = json.dumps(reply.body, ensure_ascii=False).encode()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if data and "Content-Type" not in reply.headers:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def _handle(self, request: Request) -> Reply:
        with self.lock:
            self.requests.append(request)
            if self._failures:
                return self._failures.popleft()
            return self.answer(request)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake server is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()


# ------------------------------------------------------------------------------------------ contract


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.texts.append(f"{record.name}: {text}")


@contextmanager
def capture_logs() -> Iterator[list[str]]:
    """Every log line (with tracebacks) written anywhere while inside, at DEBUG and up."""
    handler, root = _Collect(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler.texts
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def config_secrets(config: BaseModel) -> list[str]:
    """Every `SecretStr` value in a settings model (nested models, lists and dicts included)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(config)
    return [secret for secret in found if secret]


class ContractHarness(ABC):
    """One connector wired to its fake vendor, as the contract suite needs it.

    `effects()` lists what the vendor holds after deliveries, in the order it happened: one string per
    thing created or changed (e.g. ``"register C1"``). `expected(entry_id)` is what one delivery of
    `call(entry_id)` must produce. A connector that delivers no events (lookup only) returns ``[]`` from
    `call` and needs neither.
    """

    connector: Connector
    refs: MemoryRefs
    secrets: Sequence[str] = ()  # values that must never appear in logs, errors or repr

    @abstractmethod
    def call(self, entry_id: str) -> list[CallEvent]:
        """The events of one call, in order, each one the connector wants."""

    def effects(self, entry_id: str) -> list[str]:
        """What the vendor holds for this call, in order."""
        return []

    def expected(self, entry_id: str) -> list[str]:
        """`effects(entry_id)` after one delivery of `call(entry_id)`."""
        return []

    def fail_next(self, kind: Literal["retryable", "permanent"]) -> None:
        """Make the vendor fail the next delivery in a way the connector must classify as `kind`.

        Called only for connectors that handle events (`call()` returns some); the harness of such a
        connector must override it, so the contract cannot pass without checking error classification.
        """
        name = type(self).__name__
        raise NotImplementedError(f"{name} must override fail_next: its connector handles events")

    def deliver(self, events: Sequence[CallEvent]) -> None:
        for event in events:
            self.connector.handle(event, self.refs)

    def exercise(self) -> None:
        """Everything besides delivery that might log (a lookup, a check); the default looks a number up."""
        self.connector.lookup("+79161234567")


class ConnectorContract:
    """The shared contract: subclass it in a test module and give it a `harness` fixture."""

    def test_manifest_is_complete(self, harness: ContractHarness) -> None:
        cls = type(harness.connector)
        manifest = cls.__dict__.get("manifest")
        assert isinstance(manifest, Manifest), f"{cls.__name__} declares no Manifest"
        assert manifest.name == cls.name and manifest.title.en and manifest.title.ru
        assert all(isinstance(c, Capability) for c in manifest.capabilities)
        assert cls.capabilities == manifest.capabilities
        declared = Capability.EMPLOYEE_IMPORT in manifest.capabilities
        assert declared == isinstance(harness.connector, EmployeeImporter), "EMPLOYEE_IMPORT vs protocol"
        keys = {info.alias or name for name, info in cls.config_model.model_fields.items()}
        assert set(manifest.settings) == keys, (
            f"settings titles differ from the model: {keys ^ set(manifest.settings)}"
        )
        assert all(title.en and title.ru for title in manifest.settings.values()), "a title is empty"
        if not manifest.docs.startswith("https://"):
            page = REPOSITORY / manifest.docs
            assert page.is_file(), f"the docs page {manifest.docs} is missing"
            assert CHECKLIST_HEADING in page.read_text(encoding="utf-8"), f"{manifest.docs} has no checklist"

    def test_limits_are_declared_and_sane(self, harness: ContractHarness) -> None:
        connector = harness.connector
        types = connector.event_types
        assert types is None or types <= set(CALL_EVENT_TYPES), f"unknown event types {types}"
        for event_type in sorted(CALL_EVENT_TYPES):
            sample = CallEvent(type=event_type, entry_id="L1", key=event_type, occurred_at=0.0)
            if types is not None and event_type not in types:  # never queued for an undeclared type
                assert not connector.wants(sample), f"wants {event_type} but does not declare it"
        if types is None or types:  # it delivers events: the dispatcher must know how fast it may go
            limit = connector.rate_limit
            assert limit is not None, "a connector that delivers events declares a rate limit"
            assert limit.rate > 0 and limit.burst >= 1
        for event in harness.call("L2"):
            assert connector.wants(event), f"the harness's {event.type} is not wanted"

    def test_delivery_is_idempotent_under_redelivery(self, harness: ContractHarness) -> None:
        events = harness.call("R1")
        harness.deliver(events)
        once = harness.effects("R1")
        harness.deliver(events)  # the outbox redelivers everything after a crash
        assert harness.effects("R1") == once, f"redelivery changed {once} into {harness.effects('R1')}"
        for event in harness.call("R2"):  # each event twice in a row (the ack got lost)
            harness.deliver([event, event])
        assert harness.effects("R2") == harness.expected("R2"), (
            f"{harness.effects('R2')} after doubled events"
        )

    def test_effects_follow_event_order_per_call(self, harness: ContractHarness) -> None:
        harness.deliver(harness.call("O1"))
        harness.deliver(harness.call("O2"))
        for entry in ("O1", "O2"):
            assert harness.effects(entry) == harness.expected(entry), f"{entry}: {harness.effects(entry)}"

    def test_errors_are_classified(self, harness: ContractHarness) -> None:
        events = harness.call("X1")
        if not events:
            assert harness.connector.event_types == frozenset(), "no events yet event types declared"
            return
        for kind, error in (("retryable", RetryableDeliveryError), ("permanent", PermanentDeliveryError)):
            entry = f"X-{kind}"
            harness.fail_next(kind)  # type: ignore[arg-type]
            try:
                harness.deliver(harness.call(entry)[:1])
            except DeliveryError as exc:
                assert isinstance(exc, error), f"{kind} failure raised {type(exc).__name__}: {exc}"
            else:
                raise AssertionError(f"a {kind} vendor failure was not raised")

    def test_secrets_never_logged(self, harness: ContractHarness) -> None:
        secrets = [*harness.secrets, *config_secrets(harness.connector.config)]
        shown: list[str] = [repr(harness.connector), str(harness.connector.config)]
        with capture_logs() as lines:
            harness.deliver(harness.call("S1"))
            harness.exercise()
            if harness.call("S2"):
                for kind in ("retryable", "permanent"):
                    harness.fail_next(kind)  # type: ignore[arg-type]
                    try:
                        harness.deliver(harness.call(f"S-{kind}")[:1])
                    except DeliveryError as exc:
                        shown.append(str(exc))
        for text in [*lines, *shown]:
            for secret in secrets:
                assert secret not in text, f"a secret leaked: {text[:200]}"
