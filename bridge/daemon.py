"""`callbridge run`: the HTTP server plus the background workers (processor and dispatcher).

Process layout (see docs/architecture.md): the parent process applies migrations, runs the event
processor and the dispatcher as threads, and supervises the HTTP server's worker processes (granian,
WSGI). Each HTTP worker commits accepted events through its own group-commit writer.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Mapping

from sqlalchemy import Engine

from bridge.config import Settings
from bridge.connector_api import Connector
from bridge.outbox.dispatcher import Dispatcher
from bridge.outbox.retry import RetryPolicy
from bridge.processing.processor import EventProcessor
from bridge.connectors_runtime import load_connectors
from bridge.store.engine import make_engine
from bridge.store.migrate import upgrade

log = logging.getLogger(__name__)


class BackgroundWorkers:
    """The event processor and the outbox dispatcher, each in its own thread."""

    def __init__(self, settings: Settings, engine: Engine, connectors: Mapping[str, Connector]) -> None:
        self.stop_event = threading.Event()
        self.dispatcher = Dispatcher(
            engine,
            connectors,
            policy=RetryPolicy(
                max_attempts=settings.dispatcher.max_attempts,
                base=settings.dispatcher.base_delay_seconds,
                cap=settings.dispatcher.max_delay_seconds,
                min_delay=min(1.0, settings.dispatcher.base_delay_seconds),
            ),
        )
        self.processor = EventProcessor(
            engine,
            connectors,
            close_after=settings.tracker.close_after_seconds,
            on_call_events=lambda _events: self.dispatcher.wake(),
        )
        self._threads = [
            threading.Thread(target=self.processor.run_forever, args=(self.stop_event,), name="processor"),
        ]
        if settings.dispatcher.enabled:
            self._threads.append(
                threading.Thread(
                    target=self.dispatcher.run_forever, args=(self.stop_event,), name="dispatcher"
                )
            )
        for thread in self._threads:
            thread.daemon = True

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.processor.wake()
        for thread in self._threads:
            thread.join(timeout)


def serve(settings: Settings) -> None:
    """Run the daemon in the foreground until SIGINT/SIGTERM."""
    from granian import Granian
    from granian.constants import Interfaces

    engine = make_engine(settings.database.url)
    upgrade(engine)
    connectors = load_connectors(settings, engine)
    log.info(
        "starting http=%s:%s workers=%s connectors=%s store=%s",
        settings.http.host,
        settings.http.port,
        settings.http.workers,
        ",".join(connectors) or "none",
        engine.dialect.name,
    )
    workers = BackgroundWorkers(settings, engine, connectors)
    workers.start()
    # Workers import the app afresh (no fork with live threads and pooled connections).
    multiprocessing.set_start_method("spawn", force=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    server = Granian(
        "bridge.web.wsgi:app",
        address=settings.http.host,
        port=settings.http.port,
        interface=Interfaces.WSGI,
        workers=settings.http.workers,
        blocking_threads=settings.http.threads,
        backlog=2048,
        log_access=False,
        respawn_failed_workers=True,
    )
    try:
        server.serve()
    finally:
        workers.stop()
        engine.dispose()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
