"""The outbox: durable fan-out of CallEvents to connectors, delivered by the dispatcher.

* `enqueue` turns events into rows inside the producer's transaction;
* `Dispatcher` delivers them in order per (connector, call), with backoff (`RetryPolicy`) and rate limits;
* `SqlRefStore` keeps the vendor ids connectors need to stay idempotent;
* `bridge.outbox.queries` and `bridge.outbox.cli` let operators look and replay.
"""

from bridge.outbox.dispatcher import Dispatcher
from bridge.outbox.enqueue import enqueue, idempotency_key
from bridge.outbox.queries import DeliveryRow, counts, list_deliveries, retry_deliveries
from bridge.outbox.refs import SqlRefStore
from bridge.outbox.retry import RetryPolicy

__all__ = [
    "DeliveryRow",
    "Dispatcher",
    "RetryPolicy",
    "SqlRefStore",
    "counts",
    "enqueue",
    "idempotency_key",
    "list_deliveries",
    "retry_deliveries",
]
