"""The widget's HTTP surface (a Flask blueprint mounted at `/widget`).

    GET  /widget/callback.js        the embeddable script (classic script, no build step)
    GET  /widget/config?site=KEY    texts, look, schedule state and a form token for the widget
    POST /widget/callback           a visitor's request: {"site", "phone", "form_token", ...}
    GET  /widget/status/<token>     where the request stands (the widget polls it)

CORS: a browser gets `Access-Control-Allow-Origin` only when its `Origin` is one of the site's registered
origins; any other origin is answered 403 without CORS headers. Requests without an `Origin` (servers,
curl) are served. Every refusal is JSON `{"error", "code", "status", "message"}`, where `message` is the
site's text for the visitor's language; 429 carries `Retry-After`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, request, send_from_directory
from sqlalchemy import Engine

from bridge.connector_api import Connector
from bridge.pbx.mango.client import MangoClient
from widget.service import CallbackForm, WidgetError, WidgetService
from widget.sites import Site
from widget.texts import merged_texts, pick_language

log = logging.getLogger("callbridge.widget")

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY_BYTES = 16 * 1024
_ERROR_TEXT = {
    "invalid_phone": "error_phone",
    "rate_limited": "error_rate",
    "refused": "error_refused",
    "blocked": "error_refused",
}

__all__ = ["make_widget_blueprint", "service_from_settings"]


def service_from_settings(
    settings: Any,
    engine: Engine,
    connectors: Mapping[str, Connector],
    mango_client_factory: Callable[[], MangoClient],
    *,
    clock: Callable[[], float] = time.time,
) -> WidgetService:
    """The service over the daemon's settings (default phone region), store, connectors and Mango client."""
    region = getattr(getattr(settings, "phones", None), "default_region", None) or "RU"
    return WidgetService(engine, connectors, mango_client_factory, default_region=region, clock=clock)


def make_widget_blueprint(
    settings: Any,
    engine: Engine,
    connectors: Mapping[str, Connector],
    mango_client_factory: Callable[[], MangoClient],
    *,
    service: WidgetService | None = None,
) -> Blueprint:
    """The `/widget` blueprint. Register it as is: `app.register_blueprint(make_widget_blueprint(...))`."""
    svc = service or service_from_settings(settings, engine, connectors, mango_client_factory)
    bp = Blueprint("widget", __name__, url_prefix="/widget")

    def origin() -> str | None:
        return request.headers.get("Origin")

    def with_cors(response: Response, origins: list[str], *, preflight: bool = False) -> Response:
        response.headers.add("Vary", "Origin")
        sent = origin()
        if sent and sent in origins:
            response.headers["Access-Control-Allow-Origin"] = sent
            response.headers["Access-Control-Expose-Headers"] = "Retry-After"
            if preflight:
                response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
                response.headers["Access-Control-Allow-Headers"] = "Content-Type"
                response.headers["Access-Control-Max-Age"] = "600"
        response.headers["Cache-Control"] = "no-store"
        return response

    def error(
        status: int, code: str, message: str, site: Site | None, *, retry_after: int | None = None
    ) -> Response:
        lang = pick_language(
            request.args.get("lang") or _json_field("lang") or request.accept_languages.best,
            site.config.language if site and site.config.language != "auto" else "ru",
        )
        texts = merged_texts(site.config.texts if site else {})[lang]
        response = jsonify(
            {
                "error": message,
                "code": code,
                "status": status,
                "message": texts[_ERROR_TEXT.get(code, "error_generic")],
                **({"retry_after": retry_after} if retry_after is not None else {}),
            }
        )
        response.status_code = status
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return with_cors(response, site.config.origins if site else [])

    def origin_refused(site: Site | None) -> Response | None:
        """403 (no CORS headers) when a browser on a page not registered for the site calls."""
        sent = origin()
        if sent is None or (site is not None and sent in site.config.origins):
            return None
        log.info("widget refused origin site=%s origin=%.100s", site.key if site else "-", sent)
        response = jsonify(
            {"error": "this page's origin is not registered for the site", "code": "origin", "status": 403}
        )
        response.status_code = 403
        response.headers["Vary"] = "Origin"
        return response

    def find_site(key: Any) -> Site | None:
        if not isinstance(key, str) or not key or len(key) > 64:
            return None
        site = svc.sites.get(key)
        return site if site is not None and site.enabled else None

    @bp.get("/callback.js")
    def script() -> Response:
        response = send_from_directory(STATIC_DIR, "callback.js", max_age=300)
        response.headers["Content-Type"] = "text/javascript; charset=utf-8"
        return response

    @bp.get("/config")
    def config() -> Response:
        site = find_site(request.args.get("site"))
        refused = origin_refused(site)
        if refused is not None:
            return refused
        if site is None:
            return error(404, "unknown_site", "no widget is registered under this site key", None)
        return with_cors(jsonify(svc.public_config(site)), site.config.origins)

    @bp.route("/callback", methods=["OPTIONS"])
    def callback_preflight() -> Response:
        site = find_site(request.args.get("site"))
        sent = origin()
        # The widget puts `site` in the query string, so the preflight knows whose origins to check.
        if site is None or (sent is not None and sent not in site.config.origins):
            return Response(status=403, headers={"Vary": "Origin"})
        return with_cors(Response(status=204), site.config.origins, preflight=True)

    @bp.post("/callback")
    def callback() -> Response:
        key = request.args.get("site") or _json_field("site")
        site = find_site(key)
        refused = origin_refused(site)
        if refused is not None:
            return refused
        if site is None:
            return error(404, "unknown_site", "no widget is registered under this site key", None)
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return error(413, "too_large", "the request body is too large", site)
        data = request.get_json(silent=True, force=True) if request.get_data(cache=True) else None
        if not isinstance(data, dict):
            return error(400, "bad_request", "send the request as a JSON object", site)
        try:
            form = CallbackForm.from_json(data)
            state = svc.submit(site, form, request.remote_addr)
        except WidgetError as exc:
            return error(exc.status, exc.code, exc.message, site, retry_after=exc.retry_after)
        response = jsonify(state)
        response.status_code = 202
        return with_cors(response, site.config.origins)

    @bp.route("/status/<token>", methods=["GET", "OPTIONS"])
    def status(token: str) -> Response:
        if len(token) > 64:
            return error(404, "unknown_request", "no such request", None)
        origins = svc.origins_for_token(token)
        sent = origin()
        if sent is not None and sent not in origins:
            return Response(status=403, headers={"Vary": "Origin"})
        if request.method == "OPTIONS":
            return with_cors(Response(status=204), origins, preflight=True)
        state = svc.status(token)
        if state is None:
            return error(404, "unknown_request", "no such request", None)
        return with_cors(jsonify(state), origins)

    return bp


def _json_field(name: str) -> Any:
    data = request.get_json(silent=True, force=True) if request.method == "POST" else None
    return data.get(name) if isinstance(data, dict) else None
