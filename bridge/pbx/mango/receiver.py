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
from collections.abc import Callable, Sequence

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


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowList:
    """The source-address allow-list, read through a callable so a list saved in the panel applies
    without a restart. The parsed networks are kept per list, so a request costs one call of the (cached)
    source and a membership test. An empty list lets every address in.
    """

    def __init__(self, source: Callable[[], Sequence[str]] | Sequence[str]) -> None:
        self._source: Callable[[], Sequence[str]] = source if callable(source) else (lambda: source)
        # (the list object last seen, its entries, its networks): replaced in one assignment, so other
        # threads see either the old triple or the new one.
        self._compiled: tuple[object, tuple[str, ...], tuple[Network, ...]] = (None, (), ())

    def networks(self) -> tuple[Network, ...] | None:
        """The current networks, or None when the list is empty (open). Invalid entries are ignored."""
        current = self._source()
        seen, entries, networks = self._compiled
        if current is not seen:
            items = tuple(current)
            if items != entries:
                networks = _parse(items)
            self._compiled = (current, items, networks)
            entries = items
        return networks if entries else None

    def allows(self, address: str | None) -> bool:
        networks = self.networks()
        if networks is None:
            return True
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in networks if network.version == ip.version)


def _parse(items: Sequence[str]) -> tuple[Network, ...]:
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            log.warning("mango.allowed_ips: %r is not an address or network; ignored", item[:64])
    return tuple(networks)


def make_receiver(
    credentials: MangoCredentials,
    writer: GroupCommitWriter,
    *,
    allowed_ips: Callable[[], Sequence[str]] | Sequence[str],
    max_body_bytes: int,
    commit_timeout: float = 10.0,
) -> Blueprint:
    """The `/mango` blueprint. `allowed_ips` is the list, or a callable giving the current one."""
    bp = Blueprint("mango", __name__, url_prefix="/mango")
    allow_list = AllowList(allowed_ips)

    @bp.before_request
    def _guard() -> None:
        if not allow_list.allows(request.remote_addr):
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
