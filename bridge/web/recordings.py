"""`/recordings/<id>?t=...`: a recording for whoever holds a signed link (CRMs attach these to calls).

No login: the signed, expiring token in the query is the permission (`bridge.recordings.links`). The
file comes from the same cache and with the same byte ranges as the panel's player. Linking can be
switched off in the panel; then every link answers 403.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, request

from bridge.http_errors import ApiError
from bridge.pbx.port import PbxClientFactory
from bridge.recordings.cache import RecordingCache
from bridge.recordings.links import LinkError, RecordingLinks
from bridge.recordings.service import RecordingUnavailable, serve

MAX_ID_LENGTH = 256  # Mango's recording ids are short base64 strings


def make_recordings_blueprint(
    links: RecordingLinks,
    cache: RecordingCache,
    client: PbxClientFactory,
    *,
    enabled: Callable[[], bool],
) -> Blueprint:
    """The `/recordings` blueprint; `enabled` is the panel's "recordings may be linked" option."""
    bp = Blueprint("recordings", __name__, url_prefix="/recordings")

    @bp.get("/<path:recording_id>")
    def recording(recording_id: str) -> Response:
        if len(recording_id) > MAX_ID_LENGTH:
            raise ApiError(404, "no such recording")
        if not enabled():
            raise ApiError(403, "recordings are not shared: linking recordings is switched off in callbridge")
        try:
            links.verify(recording_id, request.args.get("t"))
        except LinkError as exc:
            raise ApiError(403, str(exc)) from None
        try:
            return serve(cache, client, recording_id)
        except RecordingUnavailable as exc:
            raise ApiError(502, str(exc)) from None

    return bp
