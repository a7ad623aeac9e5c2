"""Click-to-call from retailCRM, served at ``/connectors/retailcrm/make-call`` by the daemon's web app.

retailCRM calls the module's ``makeCallUrl`` with ``clientId``, ``code`` (the manager's extension),
``phone``, ``userId`` and ``externalPhone`` (retailcrm.md §3.6). GET is what the documentation implies;
POST (a form or JSON) is accepted as well. A request without the stored ``clientId`` (compared in constant
time) is refused with 403 and dials nothing; otherwise Mango's ``commands/callback`` rings the manager's
extension and then dials the number. Answers are JSON in retailCRM's own shape (``success``, ``errorMsg``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request

from bridge.connector_api.http import redact
from bridge.connector_api.phones import InvalidPhoneNumber, to_e164
from bridge.connector_api.ratelimit import TokenBucket
from connectors.retailcrm.registration import client_id_matches

if TYPE_CHECKING:
    from connectors.retailcrm.connector import RetailCrmConnector

log = logging.getLogger("callbridge.connectors.retailcrm")

MAX_PARAM = 256


def _params() -> dict[str, str]:
    values: dict[str, Any] = dict(request.args.items())
    if request.method == "POST":
        if request.is_json:
            data = request.get_json(silent=True)
            values.update(data if isinstance(data, dict) else {})
        else:
            values.update(request.form.items())
    return {k: str(v).strip() for k, v in values.items() if v is not None}


def _fail(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"success": False, "errorMsg": message}), status


def make_blueprint(connector: RetailCrmConnector) -> Blueprint:
    blueprint = Blueprint("retailcrm_hooks", __name__)
    gate = TokenBucket(20.0, 40)  # a click is a person's act: more than this is not one

    @blueprint.route("/make-call", methods=["GET", "POST"])
    def make_call() -> Any:
        params = _params()
        if any(len(v) > MAX_PARAM for v in params.values()):
            return _fail(400, "a parameter is too long")
        state = connector.context.state if connector.context is not None else None
        if state is None or not client_id_matches(state, params.get("clientId", "")):
            log.warning("retailcrm: click-to-call refused: wrong or missing clientId")
            return _fail(403, "wrong clientId")
        if gate.try_acquire() > 0:
            return _fail(429, "too many click-to-call requests")
        if connector.context is None or connector.context.originate is None:
            return _fail(503, "click-to-call is not available in this process")
        try:
            number = to_e164(params.get("phone", ""), connector.settings.default_region)
        except InvalidPhoneNumber as exc:
            return _fail(400, f"phone: {exc}")
        user_id = params.get("userId", "")
        extension = connector.employees.extension_for(user_id) if user_id else None
        extension = extension or params.get("code") or None
        if not extension:
            return _fail(409, f"retailCRM user {user_id or '?'} has no Mango extension (users map or code)")
        try:
            command_id = connector.context.originate(extension, number)
        except Exception as exc:  # Mango refused (unknown extension, limits...): say why
            reason = redact(f"{type(exc).__name__}: {exc}", 200)
            log.warning("retailcrm: click-to-call from %s failed: %s", extension, reason)
            return _fail(502, f"Mango did not place the call: {reason}")
        log.info(
            "retailcrm: click-to-call extension=%s user=%s command_id=%s", extension, user_id, command_id
        )
        return jsonify({"success": True, "commandId": command_id, "code": extension})

    return blueprint
