"""The widget's endpoints, under ``/connectors/amocrm/widget/`` of the daemon's web app.

* ``GET /widget/package.zip``: the widget for this account and this callbridge (widget_package.py), to
  upload as the private integration's widget. It holds no secret.
* ``POST /widget/call`` ``{"phone": ...}`` with amoCRM's one-time token in ``X-Auth-Token``: the token is
  verified (widget_token.py), the amoCRM user is mapped to an extension through the employee map, and
  Mango's ``commands/callback`` rings that extension, then dials the number. A forged, expired, replayed
  or foreign-account token gets 401; a user without an extension gets 409 with ``error: "unmapped"``;
  nothing is sent to Mango in either case.
* ``GET /widget/session`` with the same one-time token: a one-hour hub token for the user's extension
  (``{"token", "extension", "expires_in"}``) that the widget hands the live panel it frames, so the
  employee needs no access code; refusals as for the call (401, 409 ``unmapped``). The panel trades it
  at ``/operator/api/session`` for the hub's address and its connection token, as the operator page does.

CORS: only the account's own origin (``account_url``) is answered with ``Access-Control-Allow-Origin``;
a preflight from any other origin is refused with 403.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request

from bridge.connector_api.http import redact
from bridge.connector_api.phones import InvalidPhoneNumber, to_e164
from bridge.connector_api.ratelimit import TokenBucket
from connectors.amocrm.widget_package import build_package
from connectors.amocrm.widget_token import WidgetTokenError, WidgetTokens

if TYPE_CHECKING:
    from connectors.amocrm.connector import AmoCrmConnector

log = logging.getLogger("callbridge.connectors.amocrm")

MAX_PHONE = 64
ALLOWED_HEADERS = "X-Auth-Token, Content-Type"
PREFLIGHT_MAX_AGE = "600"
# The live panel's hub token: an hour, then the panel asks the widget for a fresh one (the core caps
# any connector's hub token at 12 h).
SESSION_SECONDS = 3600.0
USED_TOKENS_KEPT = 2000  # one-time tokens remembered (shared by every worker) until they expire


def _answer(origin: str, body: Any, status: int = 200) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers["Vary"] = "Origin"
    if request.headers.get("Origin") == origin:
        response.headers["Access-Control-Allow-Origin"] = origin
    return response


def _preflight(origin: str, methods: str) -> Response:
    if request.headers.get("Origin") != origin:
        return _answer(origin, {"error": "forbidden", "message": "this origin may not call callbridge"}, 403)
    response = _answer(origin, {}, 204)
    response.headers["Access-Control-Allow-Methods"] = methods
    response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
    response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    return response


def register_widget(blueprint: Blueprint, connector: AmoCrmConnector) -> None:
    """Add the widget's routes to the connector's blueprint (the call only when a secret key is set)."""
    config = connector.settings
    origin = config.origin

    @blueprint.get("/widget/package.zip")
    def package() -> Any:
        public = connector.context.public_url if connector.context is not None else None
        if not public:
            return _answer(origin, {"error": "no_public_url", "message": "set http.public_url first"}, 409)
        response = Response(build_package(public), mimetype="application/zip")
        response.headers["Content-Disposition"] = 'attachment; filename="callbridge-amocrm-widget.zip"'
        return response

    if not config.widget:
        return
    assert config.client_secret is not None
    tokens = WidgetTokens(
        config.client_secret.get_secret_value(),
        config.account_url,
        memory=USED_TOKENS_KEPT,
        state=lambda: connector.context.state if connector.context is not None else None,
    )
    gate = TokenBucket(20.0, 40)  # a click is a person's act: more than this is not one

    def fail(status: int, error: str, message: str) -> Response:
        return _answer(origin, {"error": error, "message": message}, status)

    def user_extension() -> tuple[str, str] | Response:
        """The verified token's amoCRM user and their extension, or the refusal to answer with."""
        try:
            user = tokens.verify(request.headers.get("X-Auth-Token"))
        except WidgetTokenError as exc:
            log.warning("amocrm widget: %s refused: %s", request.path.rsplit("/", 1)[-1], exc)
            return fail(401, "unauthorized", str(exc))
        extension = connector.employees.extension_for(user.user_id)
        if not extension:
            log.info("amocrm widget: user %s has no extension", user.user_id)
            return fail(
                409,
                "unmapped",
                f"amoCRM user {user.user_id} has no Mango extension in callbridge; ask the administrator "
                "to map it ([connectors.amocrm.users] or the employee import)",
            )
        return user.user_id, extension

    @blueprint.route("/widget/session", methods=["OPTIONS", "GET"])
    def session() -> Any:
        if request.method == "OPTIONS":
            return _preflight(origin, "GET, OPTIONS")
        found = user_extension()
        if isinstance(found, Response):
            return found
        user_id, extension = found
        if connector.context is None or connector.context.hub_token is None:
            return fail(503, "unavailable", "live calls are not available in this process")
        if gate.try_acquire() > 0:
            return fail(429, "busy", "too many requests; try again in a moment")
        try:
            token = connector.context.hub_token(extension, SESSION_SECONDS)
        except ValueError as exc:  # an extension the hub cannot name
            return fail(409, "unmapped", f"extension {extension!r} cannot sign in to live calls: {exc}")
        log.info("amocrm widget: live panel session for user=%s extension=%s", user_id, extension)
        return _answer(origin, {"token": token, "extension": extension, "expires_in": SESSION_SECONDS})

    @blueprint.route("/widget/call", methods=["OPTIONS", "POST"])
    def call() -> Any:
        if request.method == "OPTIONS":
            return _preflight(origin, "POST, OPTIONS")
        found = user_extension()
        if isinstance(found, Response):
            return found
        user_id, extension = found
        if gate.try_acquire() > 0:
            return fail(429, "busy", "too many click-to-call requests; try again in a moment")
        body = request.get_json(silent=True)
        phone = str(body.get("phone", "")).strip() if isinstance(body, dict) else ""
        if not phone or len(phone) > MAX_PHONE:
            return fail(400, "bad_phone", 'send {"phone": "+7..."}')
        try:
            number = to_e164(phone, config.default_region)
        except InvalidPhoneNumber as exc:
            return fail(400, "bad_phone", f"phone: {exc}")
        if connector.context is None or connector.context.originate is None:
            return fail(503, "unavailable", "click-to-call is not available in this process")
        try:
            command_id = connector.context.originate(extension, number)
        except Exception as exc:  # Mango refused (unknown extension, limits...): say why
            reason = redact(f"{type(exc).__name__}: {exc}", 200)
            log.warning("amocrm widget: click-to-call from %s failed: %s", extension, reason)
            return fail(502, "pbx_failed", f"Mango did not place the call: {reason}")
        log.info(
            "amocrm widget: click-to-call user=%s extension=%s command_id=%s",
            user_id,
            extension,
            command_id,
        )
        return _answer(origin, {"status": "calling", "extension": extension, "command_id": command_id})
