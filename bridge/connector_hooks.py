"""A connector's inbound hooks (OAuth install, click-to-call events) that follow its current build.

The web app registers one blueprint per installed connector under ``/connectors/<name>`` when it starts, but
a connector may be enabled, or rebuilt with new settings, later (`bridge.connectors_runtime.LiveConnector`).
So the registered blueprint only forwards each request to a small app holding the current build's own
blueprint (made again when the build changes), and answers 404 while the connector has no build or its build
has no hooks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, request

from bridge.connector_api import Connector
from bridge.http_errors import install_error_handlers

# OPTIONS too: a browser's CORS preflight reaches the connector, which answers it for its own origins.
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def hooks_app(name: str, connector: Connector, config: Mapping[str, Any]) -> Flask | None:
    """An app serving `connector`'s own blueprint under ``/connectors/<name>``; None when it has none."""
    blueprint = connector.blueprint()
    if blueprint is None:
        return None
    app = Flask(f"callbridge.connectors.{name}")
    for key in ("MAX_CONTENT_LENGTH", "MAX_FORM_MEMORY_SIZE"):
        app.config[key] = config.get(key)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    install_error_handlers(app)
    app.register_blueprint(blueprint, url_prefix=f"/connectors/{name}")
    return app


class _Hooks:
    """The hooks app of the build `build()` gives now, made once per build."""

    def __init__(self, name: str, build: Callable[[], Connector | None]) -> None:
        self._name = name
        self._build = build
        self._lock = threading.Lock()
        self._made_for: Connector | None = None
        self._app: Flask | None = None

    def app(self) -> Flask | None:
        connector = self._build()
        if connector is None:
            return None
        with self._lock:
            if connector is not self._made_for:
                self._app = hooks_app(self._name, connector, current_app.config)
                self._made_for = connector
            return self._app


def live_hooks(name: str, build: Callable[[], Connector | None]) -> Blueprint:
    """A blueprint (to register under ``/connectors/<name>``) passing every request to the current build's
    hooks; 404 while `build()` gives None or a build without hooks."""
    hooks = _Hooks(name, build)
    blueprint = Blueprint(f"connector_{name}", __name__)

    @blueprint.route("/", defaults={"rest": ""}, methods=METHODS)
    @blueprint.route("/<path:rest>", methods=METHODS)
    def forward(rest: str) -> Response:
        app = hooks.app()
        if app is None:
            abort(404)
        return Response.from_app(app, request.environ)

    return blueprint
