"""The Mango webhook receiver: `/mango/<path>` for every notification Mango sends.

Checks, in order: source IP (optional allow-list), body size (a Content-Length, or a chunked body read up
to the same cap), content type, the three form fields, `vpbx_api_key`, the signature over the raw `json`
field (constant time), the JSON and its bounds (`parse.check_bounds`: 64-bit integers, no NUL or lone
surrogate, limited nesting), the payload. Only then is the event committed, and only after the commit is
it answered 200. A value the database still refuses is answered 422 (the writer stores its neighbours).

Notifications are answered by a plain WSGI callable in front of the Flask app (`MangoReceiver.wsgi`);
the rest of `/mango` (the GET status page) is a Flask blueprint running the same checks.
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request
from werkzeug.wsgi import get_path_info

from bridge.ingest.writer import EventRefused, GroupCommitWriter, RawRecord
from bridge.pbx.events import PbxEvent
from bridge.pbx.mango import parse as mango_parse
from bridge.pbx.mango.signing import verify
from bridge.web.errors import INTERNAL_ERROR, ApiError, error_payload, http_error

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
PREFIX = "/mango/"


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


class _FormRequest(Request):
    """The request of the plain WSGI path: Flask's form limits, set per receiver, without an app context."""

    max_form_parts = 1000  # Flask's MAX_FORM_PARTS default


def _json_body(data: dict[str, object]) -> bytes:
    """The body Flask's `jsonify` gives for `data` in this app (compact, ASCII, keys in order, newline)."""
    return (json.dumps(data, separators=(",", ":")) + "\n").encode()


_OK_BODY = _json_body({"success": True})


def raw_record(
    path: str, event: PbxEvent | None, json_text: str, received_at: float | None = None
) -> RawRecord:
    """The stored form of a checked notification: its dedup key and call, and the JSON as received."""
    return RawRecord(
        path=path,
        dedup_key=mango_parse.dedup_key(path, event, json_text),
        entry_id=mango_parse.entry_id_of(event),
        payload=json_text,
        received_at=time.time() if received_at is None else received_at,
    )


class MangoReceiver:
    """The `/mango` receiver. `allowed_ips` is the list, or a callable giving the current one.

    Notifications (`POST /mango/<path>`) take a plain WSGI path in front of the Flask app (`wsgi`), so
    they skip Flask's contexts, URL map, session and hooks; everything else under `/mango` (the GET
    status page, other methods, odd paths) goes through the Flask blueprint (`blueprint`). Both run the
    same checks in the same order and give the same answers.
    """

    def __init__(
        self,
        credentials: MangoCredentials,
        writer: GroupCommitWriter,
        *,
        allowed_ips: Callable[[], Sequence[str]] | Sequence[str],
        max_body_bytes: int,
        commit_timeout: float = 10.0,
    ) -> None:
        self._credentials = credentials
        self._writer = writer
        self._allow_list = AllowList(allowed_ips)
        self._max_body_bytes = max_body_bytes
        self._commit_timeout = commit_timeout
        self._request_class = type(
            "MangoFormRequest",
            (_FormRequest,),
            {"max_content_length": max_body_bytes, "max_form_memory_size": max_body_bytes},
        )

    def guard(self, request: Request) -> None:
        """Source address, then a length for a POST (or a body the server delimits), then its size."""
        if not self._allow_list.allows(request.remote_addr):
            raise ApiError(403, "source address not allowed")
        length = request.content_length
        if length is None and request.method == "POST" and not _delimited(request.environ):
            raise ApiError(411, "a Content-Length header or a chunked body is required")
        if length is not None and length > self._max_body_bytes:
            raise self._too_large()

    def _too_large(self) -> ApiError:
        return ApiError(413, f"request body too large (limit {self._max_body_bytes} bytes)")

    def _read_streamed(self, request: Request) -> None:
        """Read a body without a Content-Length (chunked) up to the cap, so the form parses from memory
        and a body over the cap is refused like one whose length says so."""
        if request.content_length is not None:
            return
        stream = request.environ["wsgi.input"]
        data = stream.read(self._max_body_bytes + 1)
        if len(data) > self._max_body_bytes:
            raise self._too_large()
        request.environ["wsgi.input"] = io.BytesIO(data)
        request.get_data(cache=True)  # kept on the request: the form parser reads it from there

    def accept(self, path: str, request: Request) -> None:
        """Check, parse and commit one notification (a ping is checked, not stored); raises ApiError."""
        path = path.strip("/")
        if not mango_parse.is_known_path(path):
            raise ApiError(404, f"unknown Mango notification path '/{path[:64]}'")
        if request.mimetype not in FORM_TYPES:
            raise ApiError(
                415, "expected a form (application/x-www-form-urlencoded) with vpbx_api_key, sign and json"
            )
        self._read_streamed(request)
        form = request.form
        missing = [name for name in ("vpbx_api_key", "sign", "json") if not form.get(name)]
        if missing:
            raise ApiError(400, "missing form field(s): " + ", ".join(missing))
        api_key, api_salt = self._credentials.get()
        if not api_key or not api_salt:
            raise ApiError(503, "callbridge has no Mango API key and salt configured yet")
        if form["vpbx_api_key"] != api_key:
            raise ApiError(403, "unknown vpbx_api_key")
        json_text = form["json"]
        if not verify(api_key, json_text, api_salt, form["sign"]):
            raise ApiError(403, "signature does not match (check the API salt)")
        try:
            payload = mango_parse.load_json(json_text)
        except mango_parse.ParseError as exc:
            raise ApiError(400, str(exc)) from None
        try:
            event = mango_parse.parse(path, payload)
        except mango_parse.ParseError as exc:
            raise ApiError(400, f"invalid /{path} notification: {exc}") from None
        if path != "ping":
            self._store(path, event, json_text)

    def _store(self, path: str, event: PbxEvent | None, json_text: str) -> None:
        record = raw_record(path, event, json_text)
        try:
            self._writer.write(record, timeout=self._commit_timeout)
        except EventRefused as exc:
            raise ApiError(422, f"the store refused a value of this event ({exc})") from None
        except Exception as exc:
            log.error("could not store /%s notification: %s", path, type(exc).__name__)
            log.debug("store failure", exc_info=True)
            raise ApiError(503, "the event could not be stored right now; please resend") from None

    # -- the Flask side: the status page and everything the plain path leaves to Flask ------------------

    def blueprint(self) -> Blueprint:
        bp = Blueprint("mango", __name__, url_prefix="/mango")

        @bp.before_request
        def _guard() -> None:
            self.guard(request)

        @bp.route("", methods=["GET"])
        @bp.route("/", methods=["GET"])
        @bp.route("/ping", methods=["GET"])
        def status() -> Response:
            return jsonify({"success": True, "service": "callbridge", "receiver": "mango"})

        @bp.route("/<path:path>", methods=["POST"])
        def notification(path: str) -> Response:
            self.accept(path, request)
            return jsonify({"success": True})

        return bp

    # -- the plain WSGI path ----------------------------------------------------------------------------

    def wsgi(self, app: WSGIApplication) -> WSGIApplication:
        """`app` with `POST /mango/<path>` answered here, before Flask (mount inside any proxy fix-up)."""

        def receiver_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            path = _notification_path(environ)
            if path is None:
                return app(environ, start_response)
            status, body = self._answer(environ, path)
            start_response(
                f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN').upper()}",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]

        return receiver_app

    def _answer(self, environ: WSGIEnvironment, path: str) -> tuple[int, bytes]:
        request = self._request_class(environ)
        try:
            self.guard(request)
            self.accept(path, request)
            return 200, _OK_BODY
        except ApiError as exc:
            status, message = exc.status, exc.message
        except HTTPException as exc:  # e.g. a multipart form over the limits
            status, message = http_error(exc)
        except Exception as exc:
            log.exception("unexpected error: %s", type(exc).__name__)
            status, message = 500, INTERNAL_ERROR
        finally:
            request.close()
        return status, _json_body(error_payload(status, message))


def _delimited(environ: WSGIEnvironment) -> bool:
    """Whether the server ends the input stream itself (it decoded a chunked body), so reading it to
    the end is safe without a Content-Length."""
    return bool(environ.get("wsgi.input_terminated"))


def _notification_path(environ: WSGIEnvironment) -> str | None:
    """The `<path>` of a request the blueprint's notification route would take, or None.

    Only plain `POST /mango/<path>`; anything Flask would redirect or refuse (a doubled slash, an empty
    path) is left to it.
    """
    if environ.get("REQUEST_METHOD") != "POST":
        return None
    path_info = get_path_info(environ)
    if not path_info.startswith(PREFIX) or "//" in path_info:
        return None
    return path_info[len(PREFIX) :] or None
