"""The widget's HTTP surface (a Flask blueprint mounted at `/widget`).

    GET  /widget/callback.js        the embeddable script (classic script, no build step)
    GET  /widget/config?site=KEY    texts, look, schedule state and a form token for the widget
    POST /widget/callback           a visitor's request: {"site", "phone", "form_token", ...}
    GET  /widget/status/<token>     where the request stands (the widget polls it)

CORS: a browser gets `Access-Control-Allow-Origin` only when its `Origin` is one of the site's registered
origins; any other origin is answered 403 without CORS headers. Requests without an `Origin` (servers,
curl) are served. Every refusal is JSON `{"error", "code", "status", "message"}`, where `message` is the
site's text for the visitor's language; 429 carries `Retry-After`. Bad input (a body over 16 KiB, deep or
malformed JSON, NUL characters or lone surrogates anywhere, wrong types) is refused with 4xx and a reason
before it reaches the store (`widget.input`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, g, jsonify, request, send_from_directory
from sqlalchemy import Engine

from bridge.connector_api import Connector
from bridge.pbx.port import PbxClientFactory
from widget.errors import WidgetError
from widget.input import MAX_BODY_BYTES, check_text, parse_body
from widget.service import CallbackForm, WidgetService
from widget.sites import Site
from widget.texts import merged_texts, pick_language

log = logging.getLogger("callbridge.widget")

STATIC_DIR = Path(__file__).parent / "static"
_ERROR_TEXT = {
    "invalid_phone": "error_phone",
    "number_not_allowed": "error_number",
    "rate_limited": "error_rate",
    "daily_cap": "error_daily_cap",
    "refused": "error_refused",
    "expired": "error_token_used",
    "token_used": "error_token_used",
    "blocked": "error_refused",
}
_TOKEN = re.compile(r"[A-Za-z0-9_-]{8,64}")

__all__ = ["make_widget_blueprint", "service_from_settings"]


def service_from_settings(
    settings: Any,
    engine: Engine,
    connectors: Mapping[str, Connector],
    mango_client_factory: PbxClientFactory,
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
    mango_client_factory: PbxClientFactory,
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
            request.args.get("lang") or _body_field("lang") or request.accept_languages.best,
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

    @bp.errorhandler(WidgetError)
    def bad_input(exc: WidgetError) -> Response:
        """Bad input found before the site is known (query string, path, body)."""
        return error(exc.status, exc.code, exc.message, getattr(g, "widget_site", None))

    def site_arg() -> str | None:
        return _text_arg("site", "the site key")

    @bp.get("/callback.js")
    def script() -> Response:
        response = send_from_directory(STATIC_DIR, "callback.js", max_age=300)
        response.headers["Content-Type"] = "text/javascript; charset=utf-8"
        return response

    @bp.get("/config")
    def config() -> Response:
        site = find_site(site_arg())
        refused = origin_refused(site)
        if refused is not None:
            return refused
        if site is None:
            return error(404, "unknown_site", "no widget is registered under this site key", None)
        return with_cors(jsonify(svc.public_config(site)), site.config.origins)

    @bp.route("/callback", methods=["OPTIONS"])
    def callback_preflight() -> Response:
        site = find_site(site_arg())
        sent = origin()
        # The widget puts `site` in the query string, so the preflight knows whose origins to check.
        if site is None or (sent is not None and sent not in site.config.origins):
            return Response(status=403, headers={"Vary": "Origin"})
        return with_cors(Response(status=204), site.config.origins, preflight=True)

    @bp.post("/callback")
    def callback() -> Response:
        key = site_arg()
        if key is None:
            body_key = _read_body().get("site")
            if body_key is not None and not isinstance(body_key, str):
                raise WidgetError(400, "bad_request", "'site' must be a string")
            key = body_key
        site = find_site(key)
        refused = origin_refused(site)
        if refused is not None:
            return refused
        if site is None:
            return error(404, "unknown_site", "no widget is registered under this site key", None)
        g.widget_site = site
        try:
            form = CallbackForm.from_json(_read_body())
            state = svc.submit(site, form, request.remote_addr)
        except WidgetError as exc:
            return error(exc.status, exc.code, exc.message, site, retry_after=exc.retry_after)
        response = jsonify(state)
        response.status_code = 202
        return with_cors(response, site.config.origins)

    @bp.route("/status/<token>", methods=["GET", "OPTIONS"])
    def status(token: str) -> Response:
        check_text(token, "the status token")
        if not _TOKEN.fullmatch(token):
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


def _text_arg(name: str, what: str | None = None) -> str | None:
    """A query-string value, refused with 400 when it holds a NUL character."""
    value = request.args.get(name)
    return None if value is None else check_text(value, what or f"'{name}'")


def _read_body() -> dict[str, Any]:
    """The POSTed JSON object, read at most once per request (`widget.input.parse_body`)."""
    cached = g.get("widget_body")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise WidgetError(413, "too_large", f"the request body is too large: at most {MAX_BODY_BYTES} bytes")
    data = parse_body(request.stream.read(MAX_BODY_BYTES + 1))
    g.widget_body = data
    return data


def _body_field(name: str) -> str | None:
    """A string field of the body once it was read (for the error's language), else None."""
    data = g.get("widget_body")
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None
