"""`callbridge run`: the HTTP server plus the background workers (processor and dispatcher).

Process layout (see docs/architecture.md): the parent process applies migrations, runs the event
processor and the dispatcher as threads, and supervises the HTTP server's worker processes (granian,
its asynchronous interface in front of the WSGI app: bridge/web/front.py). Each HTTP worker commits
accepted events through its own group-commit writer. A port that something already listens on stops
the start before anything else happens.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from bridge.addons import AddOn, WorkerContext, load_addons
from bridge.config import Settings
from bridge.connector_api import CallEvent, Connector
from bridge.connectors_runtime import active, load_connectors, mango_client
from bridge.followup import FollowUpSweeper
from bridge.history.runner import make_history_runner
from bridge.outbox.dispatcher import Dispatcher
from bridge.outbox.retry import RetryPolicy
from bridge.pbx.select import event_decoder
from bridge.processing.processor import EventProcessor
from bridge.processing.stale_calls import StaleCallSweeper
from bridge.routing import RoutingService
from bridge.settings_store import SettingsStore
from bridge.store.opening import open_store
from bridge.wakeup import EVENTS, WAKE, WakeupListener

if TYPE_CHECKING:
    from bridge.realtime.hub import RealtimeHub

log = logging.getLogger(__name__)

SETTINGS_TTL = 2.0  # how stale the settings routing reads may be


class BackgroundWorkers:
    """The event processor, the outbox dispatcher and the add-ons' workers, each in its own thread."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        connectors: Mapping[str, Connector],
        on_call_events: Callable[[Sequence[CallEvent]], None] | None = None,
        addons: Sequence[AddOn] | None = None,
    ) -> None:
        """`addons` (default: the installed ones) add their own workers after the dispatcher."""
        self.stop_event = threading.Event()
        self._listener = on_call_events
        self.dispatcher = Dispatcher(
            engine,
            connectors,
            policy=RetryPolicy(
                max_attempts=settings.dispatcher.max_attempts,
                base=settings.dispatcher.base_delay_seconds,
                cap=settings.dispatcher.max_delay_seconds,
                min_delay=min(1.0, settings.dispatcher.base_delay_seconds),
            ),
            claim_seconds=settings.dispatcher.claim_seconds,
        )
        self.routing = routing_service(settings, engine, connectors)
        self.processor = EventProcessor(
            engine,
            connectors,
            close_after=settings.tracker.close_after_seconds,
            on_call_events=self._on_call_events,
            command_timeout=settings.mango.command_timeout_seconds,
            decode=event_decoder(),
            on_new_events=self.routing.on_events,
        )
        self._threads = [
            threading.Thread(target=self.processor.run_forever, args=(self.stop_event,), name="processor"),
            threading.Thread(target=self.routing.run_forever, args=(self.stop_event,), name="routing"),
        ]
        if settings.dispatcher.enabled:
            self._threads.append(
                threading.Thread(
                    target=self.dispatcher.run_forever, args=(self.stop_event,), name="dispatcher"
                )
            )
        context = WorkerContext(settings, engine, connectors, mango_client)
        for addon in load_addons() if addons is None else addons:
            if addon.background_workers is not None:
                for worker in addon.background_workers(context):  # the widget's scheduler
                    self._threads.append(
                        threading.Thread(target=worker.run_forever, args=(self.stop_event,), name=worker.name)
                    )
        self.history_runner = make_history_runner(settings, engine)
        self._threads.append(
            threading.Thread(target=self.history_runner.run_forever, args=(self.stop_event,), name="history")
        )
        self.follow_ups = FollowUpSweeper(
            engine, connectors, region=settings.phones.default_region, on_written=self.dispatcher.wake
        )
        self._threads.append(
            threading.Thread(target=self.follow_ups.run_forever, args=(self.stop_event,), name="follow-ups")
        )
        self.stale_calls = StaleCallSweeper(
            engine, max_call_seconds=settings.tracker.max_call_seconds, on_written=self.processor.wake
        )
        self._threads.append(
            threading.Thread(target=self.stale_calls.run_forever, args=(self.stop_event,), name="stale-calls")
        )
        for thread in self._threads:
            thread.daemon = True

    def _on_call_events(self, events: Sequence[CallEvent]) -> None:
        self.dispatcher.wake()
        if self._listener is not None:
            self._listener(self.routing.annotate(events))  # a routed call's popup says why

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.processor.wake()
        for thread in self._threads:
            thread.join(timeout)


def routing_service(
    settings: Settings, engine: Engine, connectors: Mapping[str, Connector]
) -> RoutingService:
    """Routing of calls waiting in the IVR, reading `[routing]` as saved in the panel (re-read every 2 s)."""
    saved = SettingsStore(engine, settings)
    current: list[tuple[float, Settings]] = []

    def effective() -> Settings:
        now = time.monotonic()
        if not current or now - current[0][0] > SETTINGS_TTL:
            try:
                current[:] = [(now, saved.effective())]
            except Exception as exc:  # noqa: BLE001 - an unreadable panel table: the configured settings
                log.debug("saved settings unreadable: %s", type(exc).__name__)
                current[:] = [(now, settings)]
        return current[0][1]

    return RoutingService(engine, effective, lambda: connectors, lambda: mango_client(effective()))


def start_hub(settings: Settings, engine: Engine, connectors: Mapping[str, Connector]) -> RealtimeHub | None:
    """The WebSocket hub with its caller-card lookup, listening; None when `ws.enabled` is false."""
    if not settings.ws.enabled:
        return None
    from bridge.lookup import LookupService
    from bridge.realtime import set_local_hub
    from bridge.realtime.auth import signer_for
    from bridge.realtime.hub import RealtimeHub

    hub = RealtimeHub(
        signer_for(settings, engine),
        lookup=LookupService.from_settings(settings, connectors),
        host=settings.ws.host or settings.http.host,
        port=settings.ws.port,
        heartbeat=settings.ws.heartbeat_seconds,
        resume_seconds=settings.ws.resume_seconds,
        max_clients=settings.ws.max_clients,
        region=settings.phones.default_region,
        redis_url=settings.redis.url,
        redis_channel=settings.redis.channel,
    )
    try:
        hub.start()
    except RuntimeError as exc:  # e.g. the port is taken: say so plainly and stop
        raise SystemExit(
            f"callbridge: {exc} (set CALLBRIDGE_WS_PORT, or CALLBRIDGE_WS_ENABLED=false)"
        ) from None
    set_local_hub(hub)
    return hub


def ensure_free(host: str, port: int, hint: str) -> None:
    """Exit naming the address when something already listens on it.

    granian's workers bind with SO_REUSEPORT, so without this check a second daemon on the same port
    would start silently and take half of the traffic. The probe binds without SO_REUSEPORT, which the
    kernel refuses while any socket listens there (SO_REUSEADDR only tolerates TIME_WAIT leftovers).
    """
    if port == 0:  # an ephemeral port is never taken
        return
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        reason = (
            "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be used: {exc.strerror or exc}"
        )
        raise SystemExit(f"callbridge: address {shown} {reason} ({hint})") from None


def ensure_ports_free(settings: Settings) -> None:
    """The HTTP port and, when the hub is on, the WebSocket port: free, and not the same one."""
    ensure_free(
        settings.http.host, settings.http.port, "is another callbridge running? set CALLBRIDGE_HTTP_PORT"
    )
    if not settings.ws.enabled:
        return
    ws_host = settings.ws.host or settings.http.host
    if settings.ws.port == settings.http.port and settings.ws.port and ws_host == settings.http.host:
        raise SystemExit(f"callbridge: http.port and ws.port are both {settings.ws.port}; give each its own")
    ensure_free(ws_host, settings.ws.port, "set CALLBRIDGE_WS_PORT, or CALLBRIDGE_WS_ENABLED=false")


def serve(settings: Settings) -> None:
    """Run the daemon in the foreground until SIGINT/SIGTERM."""
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings

    ensure_ports_free(settings)
    engine = open_store(settings.database.url)
    connectors = load_connectors(settings, engine)
    log.info(
        "starting http=%s:%s workers=%s connectors=%s store=%s",
        settings.http.host,
        settings.http.port,
        settings.http.workers,
        ",".join(active(connectors)) or "none",
        engine.dialect.name,
    )
    hub = start_hub(settings, engine, connectors)
    workers = BackgroundWorkers(settings, engine, connectors, hub.publish if hub is not None else None)
    workers.start()
    # HTTP workers wake the processor after each commit, and relay realtime events, over loopback UDP.
    wakeup = WakeupListener()
    wakeup.on(WAKE, lambda _body: workers.processor.wake())
    if hub is not None:
        from bridge.realtime import events_from_datagram

        wakeup.on(EVENTS, lambda body: hub.publish(events_from_datagram(body)))
    wakeup.start()
    if os.environ.get("_CALLBRIDGE_NO_WAKEUP") != "1":  # the popup benchmark measures with and without
        wakeup.export()
    # Workers import the app afresh (no fork with live threads and pooled connections).
    multiprocessing.set_start_method("spawn", force=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    server = Granian(
        "bridge.web.wsgi:front",  # the WSGI app behind a front that reads bodies with a deadline
        address=settings.http.host,
        port=settings.http.port,
        interface=Interfaces.RSGI,
        workers=settings.http.workers,
        http1_settings=HTTP1Settings(header_read_timeout=round(settings.http.header_timeout_seconds * 1000)),
        backlog=2048,
        log_access=False,
        respawn_failed_workers=True,
    )
    try:
        server.serve()
    finally:
        workers.stop()
        wakeup.stop()
        if hub is not None:
            hub.stop()
        engine.dispose()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
