"""Inbound hooks from Bitrix24, served under ``/connectors/bitrix24/`` by the daemon's web app.

* ``POST /install``: the local application's install handler (``ONAPPINSTALL``, a form with
  ``auth[access_token]``, ``auth[refresh_token]``, ``auth[application_token]``...). The access token is
  proven against the configured portal (the ``event.bind`` of ONEXTERNALCALLSTART is that proof) before
  the pair and the application_token are stored.
* ``POST /events``: events the application subscribed to. Every one must carry the stored
  ``auth[application_token]`` (safe-event-handlers.md: "the main way" to know Bitrix24 sent it).
  ``ONEXTERNALCALLSTART`` (click-to-call) originates the call through Mango from the clicking user's
  extension; ``ONAPPUNINSTALL`` forgets the tokens.
* ``GET /``: whether the application is installed (the local application's "handler path").

Bodies are ``application/x-www-form-urlencoded`` with PHP-style nested keys; JSON is accepted as well.
Bad input gets a 4xx JSON answer that says what is wrong, never a 500.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request

from bridge.connector_api import DeliveryError
from bridge.connector_api.http import redact
from bridge.connector_api.phones import InvalidPhoneNumber, to_e164
from bridge.connector_api.ratelimit import TokenBucket
from connectors.bitrix24.clicks import Click
from connectors.bitrix24.client import Command
from connectors.bitrix24.oauth import ACCESS_TOKEN_TTL, APP_TOKEN_KEY, TokenRecord

if TYPE_CHECKING:
    from connectors.bitrix24.connector import Bitrix24Connector

log = logging.getLogger("callbridge.connectors.bitrix24")

INBOUND_RATE = 20.0
INBOUND_BURST = 40
EVENT_BIND = "event.bind"
CLICK_EVENT = "ONEXTERNALCALLSTART"
UNINSTALL_EVENT = "ONAPPUNINSTALL"


def nested_form(items: Any) -> dict[str, Any]:
    """``auth[access_token]=x`` -> ``{"auth": {"access_token": "x"}}`` (any depth; last value wins)."""
    out: dict[str, Any] = {}
    for key, value in items:
        head, _, rest = key.partition("[")
        parts = [head] + ([p.rstrip("]") for p in rest.split("[")] if rest else [])
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return out


def _payload() -> dict[str, Any]:
    if request.is_json:
        data = request.get_json(silent=True)
        return data if isinstance(data, dict) else {}
    return nested_form(request.form.items(multi=True))


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"error": message, "status": status}), status


def _section(payload: dict[str, Any], name: str) -> dict[str, Any]:
    value = payload.get(name)
    return value if isinstance(value, dict) else {}


def make_blueprint(connector: Bitrix24Connector) -> Blueprint:
    bp = Blueprint("bitrix24_hooks", __name__)
    gate = TokenBucket(INBOUND_RATE, INBOUND_BURST)

    @bp.before_request
    def _limit() -> Any:
        if gate.try_acquire() > 0:
            return _error(429, "too many requests to the Bitrix24 hooks; slow down")
        return None

    @bp.route("/", methods=["GET", "POST"])
    def index() -> Any:
        installed = connector.tokens.installed() if connector.tokens is not None else None
        return jsonify(
            {"connector": "bitrix24", "auth": connector.settings.auth_mode, "installed": installed}
        )

    @bp.post("/install")
    def install() -> Any:
        payload = _payload()
        if str(payload.get("event", "")).upper() != "ONAPPINSTALL":
            return _error(
                400, "expected event=ONAPPINSTALL (this is the local application's install handler)"
            )
        if connector.tokens is None:
            return _error(
                409, "this connector uses an incoming webhook (auth = 'webhook'); nothing to install"
            )
        auth = _section(payload, "auth")
        access, refresh = str(auth.get("access_token") or ""), str(auth.get("refresh_token") or "")
        app_token = str(auth.get("application_token") or "")
        if not access or not refresh or not app_token:
            return _error(
                400, "auth[access_token], auth[refresh_token] and auth[application_token] are required"
            )
        domain = str(auth.get("domain") or "").lower()
        if domain and domain != connector.settings.host.lower():
            log.warning("bitrix24: install event for another portal (%s) refused", domain[:100])
            return _error(403, "this install event is for another portal than the configured one")
        pinned = connector.settings.application_token
        if pinned is not None and not hmac.compare_digest(pinned.get_secret_value(), app_token):
            return _error(403, "application_token does not match the configured one")
        # Prove the token on the configured portal (never on an address taken from the request).
        try:
            bound = _bind_click_handler(connector, access)
        except DeliveryError as exc:
            log.warning("bitrix24: install refused, the access token did not work: %s", exc)
            return _error(403, "the access token was not accepted by the configured portal")
        now = time.time()
        try:
            expires_in = float(auth.get("expires_in") or ACCESS_TOKEN_TTL)
        except (TypeError, ValueError):
            expires_in = ACCESS_TOKEN_TTL
        record = connector.tokens.install(
            TokenRecord(
                access_token=access,
                refresh_token=refresh,
                expires_at=now + expires_in,
                member_id=str(auth.get("member_id") or "") or None,
                domain=domain or None,
                installed_at=now,
            )
        )
        _store_app_token(connector, app_token)
        lines = _add_lines(connector)
        log.info(
            "bitrix24: installed (token pair #%d), click-to-call %s", record.generation, bound or "not bound"
        )
        return jsonify({"installed": True, "click_to_call_handler": bound, "lines": lines})

    @bp.post("/events")
    def events() -> Any:
        payload = _payload()
        given = str(_section(payload, "auth").get("application_token") or "")
        expected = connector.application_token()
        if expected is None:
            return _error(403, "the application is not installed yet: no application_token to check against")
        if not given or not hmac.compare_digest(expected, given):
            log.warning("bitrix24: event with a wrong application_token refused")
            return _error(403, "wrong application_token")
        event = str(payload.get("event") or "").upper()
        if event == CLICK_EVENT:
            return _click(connector, _section(payload, "data"))
        if event == UNINSTALL_EVENT:
            if connector.tokens is not None:
                connector.tokens.forget()
            log.warning("bitrix24: the application was uninstalled; calls wait for a new install")
            return jsonify({"ok": True, "uninstalled": True})
        return jsonify({"ok": True, "ignored": event or None})

    return bp


def _bind_click_handler(connector: Bitrix24Connector, access_token: str) -> str | None:
    """``event.bind`` ONEXTERNALCALLSTART and ONAPPUNINSTALL -> our events URL with the new token (the
    first bind is the proof that the token works on our portal); returns the URL.

    Without http.public_url nothing can be bound, and ``telephony.externalLine.get`` proves the token.
    """
    public = connector.context.public_url if connector.context is not None else None
    if not public:
        connector.client.call_with_token("telephony.externalLine.get", {}, access_token)
        return None
    handler_url = f"{public.rstrip('/')}/connectors/{connector.name}/events"
    for event in (CLICK_EVENT, UNINSTALL_EVENT):
        try:
            connector.client.call_with_token(
                EVENT_BIND, {"event": event, "handler": handler_url}, access_token
            )
        except DeliveryError as exc:
            # A reinstall keeps nothing, but an update of the same install may: "already bound" is fine.
            if "already" in (getattr(exc, "description", "") or "").lower():
                continue
            if event == CLICK_EVENT:
                raise
            log.warning("bitrix24: could not subscribe to %s: %s", event, exc)
    return handler_url


def _store_app_token(connector: Bitrix24Connector, token: str) -> None:
    store = connector.context.state if connector.context is not None else None
    if store is None:
        return
    for _ in range(20):
        current = store.get(APP_TOKEN_KEY)
        if store.compare_and_set(APP_TOKEN_KEY, token, current[1] if current else None) is not None:
            return


def _add_lines(connector: Bitrix24Connector) -> list[str]:
    lines = connector.settings.lines
    if not lines:
        return []
    commands = {
        f"line{i}": Command("telephony.externalLine.add", {"NUMBER": number, "NAME": f"Mango {number}"})
        for i, number in enumerate(lines)
    }
    try:
        result = connector.client.batch(commands)
    except DeliveryError as exc:
        log.warning("bitrix24: could not add the external lines: %s", exc)
        return []
    for key, error in result.errors.items():
        log.info("bitrix24: externalLine.add %s: %s", key, error)
    return [lines[int(k[4:])] for k in result.results]


def _click(connector: Bitrix24Connector, data: dict[str, Any]) -> Any:
    call_id = str(data.get("CALL_ID") or "").strip()
    user_id = str(data.get("USER_ID") or "").strip()
    raw_number = str(data.get("PHONE_NUMBER_INTERNATIONAL") or data.get("PHONE_NUMBER") or "").strip()
    if not call_id or not user_id.isdigit() or not raw_number:
        return _error(400, "data[CALL_ID], data[USER_ID] and data[PHONE_NUMBER] are required")
    if connector.clicks.by_call(call_id) is not None:
        return jsonify({"ok": True, "duplicate": True})
    if connector.context is None or connector.context.originate is None:
        return _error(503, "click-to-call is not available in this process (no Mango command service)")
    try:
        number = to_e164(raw_number, connector.settings.default_region)
    except InvalidPhoneNumber as exc:
        _fail_click(connector, call_id, user_id, "404", f"invalid number: {exc}")
        return _error(400, f"data[PHONE_NUMBER]: {exc}")
    try:
        extension = connector.employees.extension_for(user_id)
    except DeliveryError as exc:
        log.warning("bitrix24: click-to-call: could not look up user %s: %s", user_id, exc)
        extension = None
    if not extension:
        _fail_click(connector, call_id, user_id, "403", "the user has no Mango extension mapped")
        return _error(409, f"Bitrix24 user {user_id} has no Mango extension (users map or UF_PHONE_INNER)")
    click = Click(
        call_id=call_id, user_id=user_id, extension=extension, number=number, created_at=time.time()
    )
    connector.clicks.add(click)  # pending first: events that overtake us wait for the command id
    try:
        command_id = connector.context.originate(extension, number)
    except Exception as exc:  # Mango refused (bad extension, limits...): close the card with a reason
        reason = redact(f"{type(exc).__name__}: {exc}", 200)
        connector.clicks.settle(call_id, failed=reason)
        _fail_click(connector, call_id, user_id, "OTHER", reason, keep=True)
        log.warning("bitrix24: click-to-call %s failed: %s", call_id, reason)
        return _error(502, f"Mango did not place the call: {reason}")
    connector.clicks.settle(call_id, command_id=command_id)
    log.info("bitrix24: click-to-call call_id=%s extension=%s command_id=%s", call_id, extension, command_id)
    return jsonify({"ok": True, "command_id": command_id, "extension": extension})


def _fail_click(
    connector: Bitrix24Connector, call_id: str, user_id: str, status: str, reason: str, *, keep: bool = False
) -> None:
    """Close the card Bitrix24 opened for a click we cannot dial."""
    if not keep:
        connector.clicks.add(Click(call_id, user_id, "", "", time.time(), failed=reason))
    params = {
        "CALL_ID": call_id,
        "USER_ID": int(user_id),
        "DURATION": 0,
        "STATUS_CODE": status,
        "FAILED_REASON": reason[:200],
        "ADD_TO_CHAT": 0,
    }
    try:
        connector.client.call("telephony.externalCall.finish", params)
    except DeliveryError as exc:
        log.warning("bitrix24: could not finish the failed click %s: %s", call_id, exc)


__all__ = ["make_blueprint", "nested_form"]
