"""Inbound hooks of the amoCRM connector, under ``/connectors/amocrm/`` of the daemon's web app.

* ``GET /oauth/start``: sends the admin to amoCRM's consent page for this integration (OAuth mode).
* ``GET /oauth/callback``: the integration's *Redirect URI*. amoCRM calls it with ``code`` (valid 20
  minutes), ``referer`` (the account's host) and our ``state``; the code is exchanged once and the tokens are
  stored in the connector's state (see oauth.py), where the dispatcher's process picks them up.

The widget's endpoints (``/widget/...``: click-to-call, the package) are in widget_hooks.py, the live
panel it frames in panel.py.

Nothing here ever echoes the code or a token.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Response, jsonify, redirect, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from bridge.connector_api import DeliveryError
from bridge.connector_api.ratelimit import TokenBucket
from connectors.amocrm.panel import register_panel
from connectors.amocrm.widget_hooks import register_widget

if TYPE_CHECKING:
    from connectors.amocrm.connector import AmoCrmConnector

log = logging.getLogger("callbridge.connectors.amocrm")

STATE_MAX_AGE = 3600
MAX_PARAM = 2048


def consent_host(account_host: str) -> str:
    """Where amoCRM's consent page lives for an account (www.kommo.com or www.amocrm.ru)."""
    return "https://www.kommo.com" if account_host.endswith("kommo.com") else "https://www.amocrm.ru"


def make_blueprint(connector: AmoCrmConnector) -> Blueprint:
    blueprint = Blueprint(
        "amocrm_hooks",
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
    register_widget(blueprint, connector)
    register_panel(blueprint, connector)
    if connector.settings.oauth:
        _register_oauth(blueprint, connector)
    return blueprint


def _register_oauth(blueprint: Blueprint, connector: AmoCrmConnector) -> None:
    config = connector.settings
    assert config.client_id and config.client_secret
    signer = URLSafeTimedSerializer(config.client_secret.get_secret_value(), salt="callbridge-amocrm-oauth")
    limiter = TokenBucket(0.5, 5)  # code exchanges: a few at once, then one per 2 s

    def problem(status: int, message: str) -> tuple[Response, int]:
        return jsonify({"error": message}), status

    @blueprint.get("/oauth/start")
    def start() -> Any:
        state = signer.dumps(secrets.token_urlsafe(8))
        query = urlencode({"client_id": config.client_id, "state": state, "mode": "post_message"})
        return redirect(f"{consent_host(config.host)}/oauth?{query}", code=302)

    @blueprint.get("/oauth/callback")
    def callback() -> Any:
        args = request.args
        if any(len(value) > MAX_PARAM for value in args.values()):
            return problem(400, "a parameter is too long")
        if args.get("error"):
            return problem(400, "amoCRM reported that access was not granted; start again from /oauth/start")
        code = args.get("code", "").strip()
        if not code:
            return problem(400, "the callback needs the 'code' amoCRM sends")
        if args.get("client_id") and args.get("client_id") != config.client_id:
            return problem(400, "this code was issued to another integration (client_id differs)")
        referer = args.get("referer", "").strip()
        if referer:
            host = urlsplit(referer if "://" in referer else f"https://{referer}").hostname or ""
            if host != config.host:
                return problem(
                    400, f"this code is for another account ({host}); callbridge is set up for {config.host}"
                )
        state = args.get("state")
        if state:
            try:
                signer.loads(state, max_age=STATE_MAX_AGE)
            except BadSignature:
                return problem(400, "the 'state' is not ours or has expired; start again from /oauth/start")
        if limiter.try_acquire() > 0:
            return problem(429, "too many authorisation attempts; wait a few seconds")
        try:
            record = connector.exchange_code(code)
        except DeliveryError as exc:
            log.warning("amoCRM OAuth callback: the code exchange failed: %s", exc)
            return problem(502, f"amoCRM did not accept the code: {exc}")
        log.info("amoCRM OAuth callback: authorised generation=%d", record.generation)
        return jsonify(
            {
                "status": "connected",
                "account": config.host,
                "message": "amoCRM is connected to callbridge. You can close this page.",
            }
        )
