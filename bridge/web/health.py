"""`/healthz` (liveness and store reachability) and `/metrics` (Prometheus, read from the store).

Metrics come from the store rather than per-process counters, so every worker process answers with
the same figures. With `http.metrics_token` set, `/metrics` wants it as a bearer token.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator

from flask import Blueprint, Response, jsonify, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select, text

from bridge.store.engine import reader
from bridge.store.raw_events import UNPROCESSED, count_quarantined
from bridge.store.schema import call_routes, calls, outbox, raw_events


class StoreCollector(Collector):
    """Gauges computed from the store at scrape time."""

    def __init__(self, engine: Engine) -> None:
        self._engine = reader(engine)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._engine.connect() as conn:
            pending_raw = conn.execute(
                select(func.count()).select_from(raw_events).where(UNPROCESSED)
            ).scalar_one()
            quarantined = count_quarantined(conn)
            total_raw = conn.execute(select(func.max(raw_events.c.id))).scalar() or 0
            by_status = conn.execute(select(calls.c.status, func.count()).group_by(calls.c.status)).all()
            deliveries = conn.execute(
                select(outbox.c.connector, outbox.c.status, func.count()).group_by(
                    outbox.c.connector, outbox.c.status
                )
            ).all()
            routes = conn.execute(
                select(call_routes.c.outcome, func.count()).group_by(call_routes.c.outcome)
            ).all()
        raw = GaugeMetricFamily(
            "callbridge_raw_events",
            "Raw PBX events stored; unprocessed waits to be folded, quarantined could not be",
            labels=["state"],
        )
        raw.add_metric(["stored"], float(total_raw))
        raw.add_metric(["unprocessed"], float(pending_raw))
        raw.add_metric(["quarantined"], float(quarantined))
        yield raw
        call_gauge = GaugeMetricFamily("callbridge_calls", "Calls in the store", labels=["status"])
        for status, count in by_status:
            call_gauge.add_metric([status], float(count))
        yield call_gauge
        delivery = GaugeMetricFamily("callbridge_deliveries", "Outbox rows", labels=["connector", "status"])
        for connector, status, count in deliveries:
            delivery.add_metric([connector, status], float(count))
        yield delivery
        routed = GaugeMetricFamily(
            "callbridge_routes",
            "Calls considered for routing from the IVR, by outcome (sent, dropped, failed, undecided...)",
            labels=["outcome"],
        )
        for outcome, count in routes:
            routed.add_metric([outcome], float(count))
        yield routed


def bearer_matches(header: str, token: str) -> bool:
    """True when `header` is `Bearer <token>` (scheme in any case), compared in constant time."""
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def make_health(engine: Engine, metrics_token: str = "") -> Blueprint:
    """`/healthz` and `/metrics`; a non-empty `metrics_token` must come as `Authorization: Bearer`."""
    bp = Blueprint("health", __name__)
    engine = reader(engine)
    registry = CollectorRegistry()
    registry.register(StoreCollector(engine))
    started = time.time()

    @bp.get("/healthz")
    def healthz() -> tuple[Response, int]:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            return jsonify({"status": "error", "store": type(exc).__name__}), 503
        return jsonify({"status": "ok", "uptime_seconds": round(time.time() - started, 1)}), 200

    @bp.get("/metrics")
    def metrics() -> Response:
        if metrics_token and not bearer_matches(request.headers.get("Authorization", ""), metrics_token):
            return Response(
                "metrics need Authorization: Bearer <http.metrics_token>\n",
                status=401,
                mimetype="text/plain",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")

    return bp
