"""The Flask app factory: the PBX's notification receiver, the read API, click-to-call, the operator page,
health and metrics."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from sqlalchemy import Engine
from werkzeug.middleware.proxy_fix import ProxyFix

from bridge.addons import WebContext, load_addons, password_login
from bridge.api.calls import make_calls_api
from bridge.api.openapi import make_openapi
from bridge.api.originate import make_originate_api
from bridge.config import Settings
from bridge.connectors_runtime import load_connectors, mango_client, originate_service
from bridge.http_errors import install_error_handlers
from bridge.ingest.writer import GroupCommitWriter
from bridge.memo import cached, once
from bridge.operator import make_operator
from bridge.pbx.select import install_receiver
from bridge.realtime.auth import signer_for
from bridge.recordings.links import links_for
from bridge.recordings.service import cache_for
from bridge.settings_store import SettingsStore
from bridge.web.health import make_health
from bridge.web.recordings import make_recordings_blueprint

log = logging.getLogger(__name__)


def create_app(settings: Settings, engine: Engine, writer: GroupCommitWriter) -> Flask:
    """Build the WSGI app. The caller owns the engine and the writer (and stops the writer).

    The installed add-ons (`bridge.addons`) register their blueprints after the core's own.
    """
    addons = load_addons()
    app = Flask("callbridge")
    app.config["MAX_CONTENT_LENGTH"] = settings.mango.max_body_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = settings.mango.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    install_error_handlers(app)

    admin_settings = SettingsStore(engine, settings)
    # Settings saved in the admin panel apply without a restart: re-read at most every `refresh` seconds.
    refresh = settings.database.saved_settings_refresh_seconds
    effective = cached(admin_settings.effective, seconds=refresh)
    # Notifications skip Flask (a plain WSGI path), behind the proxy fix-up so the source address is real.
    install_receiver(app, settings, effective, writer)
    if settings.http.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.http.trusted_proxies)  # type: ignore[method-assign]
    # Registered before the read API so that /api/calls/originate/<id> is not taken for a call id.
    signer = once(lambda: signer_for(settings, engine))  # the generated secret may need a database read
    app.register_blueprint(
        make_originate_api(
            engine,
            originate_service(settings, engine),
            api_token=lambda: settings.api.token.get_secret_value(),
            signer=signer,
            enabled=lambda: bool(settings.mango.api_key and settings.mango.api_salt.get_secret_value()),
            region=settings.phones.default_region,
        )
    )
    app.register_blueprint(make_calls_api(engine, lambda: settings.api.token.get_secret_value()))
    app.register_blueprint(make_openapi())
    passwords = password_login(addons, engine, settings)  # an add-on's users (the panel's), if any
    app.register_blueprint(
        make_operator(
            settings,
            engine,
            signer,
            password_login=passwords,
            company_zone=lambda: admin_settings.panel().timezone,
        )
    )
    app.register_blueprint(make_health(engine, settings.http.metrics_token.get_secret_value()))
    # Signed recording links for CRMs; the panel's "recordings may be linked" option applies within `refresh`.
    recordings_enabled = cached(lambda: admin_settings.panel().recordings, seconds=refresh)
    app.register_blueprint(
        make_recordings_blueprint(
            links_for(settings, engine, enabled=recordings_enabled),
            cache_for(settings, engine),
            lambda: mango_client(effective()),
            enabled=recordings_enabled,
        )
    )
    connectors = load_connectors(settings, engine)
    context = WebContext(settings, engine, admin_settings, connectors, mango_client)
    for addon in addons:  # the admin panel at /admin, then the widget at /widget
        if addon.register_web is not None:
            addon.register_web(app, context)
    for name, connector in connectors.items():
        blueprint = connector.blueprint()
        if blueprint is not None:
            # Inbound hooks of a connector (OAuth install, click-to-call events) live under its name; every
            # installed connector has them, answering 404 until it is enabled (bridge.connector_hooks).
            app.register_blueprint(blueprint, url_prefix=f"/connectors/{name}")

    index_links = {
        "service": "callbridge",
        "mango_webhook": "/mango",
        "health": "/healthz",
        "operator": "/operator",
        "api": "/api/openapi.json",
    }
    for addon in addons:  # e.g. the admin panel's /admin
        index_links.update(addon.pages)

    @app.get("/")
    def index() -> Response:
        return jsonify(index_links)

    return app
