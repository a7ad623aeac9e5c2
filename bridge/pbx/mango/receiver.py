"""The Mango webhook receiver: `/mango/<path>` for every notification Mango sends.

Checks, in order: source IP (optional allow-list), body size, content type, the three form fields,
`vpbx_api_key`, the signature over the raw `json` field (constant time), the JSON, the payload.
Only then is the event committed, and only after the commit is it answered 200.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Callable

from flask import Blueprint, Response, current_app, jsonify, request

from bridge.ingest.writer import GroupCommitWriter, RawRecord
from bridge.pbx.mango import parse as mango_parse
from bridge.pbx.mango.signing import verify
from bridge.web.errors import ApiError

log = logging.getLogger(__name__)

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class MangoCredentials:
    """The key and salt, read through a callable so saved settings apply without a restart."""

    def __init__(self, source: Callable[[], tuple[str, str]]) -> None:
        self._source = source

    def get(self) -> tuple[str, str]:
        return self._source()


def _ip_allowed(address: str | None, allowed: list[str]) -> bool:
    if not allowed:
        return True
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for item in allowed:
        try:
            if ip in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue
    return False


def make_receiver(
    credentials: MangoCredentials,
    writer: GroupCommitWriter,
    *,
    allowed_ips: list[str],
    max_body_bytes: int,
    commit_timeout: float = 10.0,
) -> Blueprint:
    """The `/mango` blueprint."""
    bp = Blueprint("mango", __name__, url_prefix="/mango")

    @bp.before_request
    def _guard() -> None:
        if not _ip_allowed(request.remote_addr, allowed_ips):
            raise ApiError(403, "source address not allowed")
        length = request.content_length
        if length is None and request.method == "POST":
            raise ApiError(411, "a Content-Length header is required (chunked bodies are not accepted)")
        if length is not None and length > max_body_bytes:
            raise ApiError(413, f"request body too large (limit {max_body_bytes} bytes)")

    @bp.route("", methods=["GET"])
    @bp.route("/", methods=["GET"])
    @bp.route("/ping", methods=["GET"])
    def status() -> Response:
        return jsonify({"success": True, "service": "callbridge", "receiver": "mango"})

    @bp.route("/<path:path>", methods=["POST"])
    def notification(path: str) -> Response:
        path = path.strip("/")
        if not mango_parse.is_known_path(path):
            raise ApiError(404, f"unknown Mango notification path '/{path[:64]}'")
        if request.mimetype not in FORM_TYPES:
            raise ApiError(
                415, "expected a form (application/x-www-form-urlencoded) with vpbx_api_key, sign and json"
            )
        form = request.form
        missing = [name for name in ("vpbx_api_key", "sign", "json") if not form.get(name)]
        if missing:
            raise ApiError(400, "missing form field(s): " + ", ".join(missing))
        api_key, api_salt = credentials.get()
        if not api_key or not api_salt:
            raise ApiError(503, "callbridge has no Mango API key and salt configured yet")
        if form["vpbx_api_key"] != api_key:
            raise ApiError(403, "unknown vpbx_api_key")
        json_text = form["json"]
        if not verify(api_key, json_text, api_salt, form["sign"]):
            raise ApiError(403, "signature does not match (check the API salt)")
        try:
            payload = json.loads(json_text)
        except ValueError as exc:
            raise ApiError(400, f"the 'json' field is not valid JSON: {exc.msg} at {exc.pos}") from None
        try:
            event = mango_parse.parse(path, payload)
        except mango_parse.ParseError as exc:
            raise ApiError(400, f"invalid /{path} notification: {exc}") from None
        if path == "ping":
            return jsonify({"success": True})
        record = RawRecord(
            path=path,
            dedup_key=mango_parse.dedup_key(path, event, json_text),
            entry_id=mango_parse.entry_id_of(event),
            payload=json_text,
            received_at=time.time(),
        )
        try:
            writer.write(record, timeout=commit_timeout)
        except Exception as exc:
            log.error("could not store /%s notification: %s", path, type(exc).__name__)
            current_app.logger.debug("store failure", exc_info=True)
            raise ApiError(503, "the event could not be stored right now; please resend") from None
        return jsonify({"success": True})

    return bp
