"""Recordings streamed through callbridge: Mango's link works once, so it is fetched here and never shown.

The browser asks `/admin/recordings/<id>`; after the access check, callbridge asks Mango for the single-use
link (`queries/recording/post`, 302), fetches it with `requests` and streams the audio back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import requests
from flask import Response
from sqlalchemy import Engine, select

from admin_module.roles import can
from admin_module.users import PanelUser
from bridge.pbx.mango.client import MangoClient
from bridge.store.engine import reader
from bridge.store.schema import calls, recordings

CHUNK = 64 * 1024


class RecordingUnavailable(Exception):
    """Mango could not give the file; the message is safe to show."""


def recording_call(engine: Engine, recording_id: str) -> dict[str, Any] | None:
    """The call a recording belongs to (entry_id, parties), or None for an unknown recording."""
    with reader(engine).connect() as conn:
        row = conn.execute(
            select(calls)
            .join(recordings, recordings.c.entry_id == calls.c.entry_id)
            .where(recordings.c.recording_id == recording_id)
        ).first()
    if row is None:
        return None
    data = dict(row._mapping)
    data["extensions"] = json.loads(data.get("extensions") or "[]")
    return data


def may_see_call(user: PanelUser, call: dict[str, Any]) -> bool:
    """Everyone's calls for roles with `all_calls`; otherwise the calls of the user's own extension."""
    if can(user.role, "all_calls"):
        return True
    ext = user.extension
    if not ext:
        return False
    return ext in (call.get("answered_by"), call.get("responsible")) or ext in (call.get("extensions") or [])


def stream(client: MangoClient, recording_id: str, *, timeout: tuple[float, float] = (5, 60)) -> Response:
    """Fetch the single-use link and stream the file back (no caching: the link is gone after one use)."""
    try:
        url = client.recording_link(recording_id, "play")
        upstream = requests.get(url, stream=True, timeout=timeout, verify=client.verify_tls)
    except requests.RequestException as exc:
        raise RecordingUnavailable(
            f"could not fetch the recording from Mango: {type(exc).__name__}"
        ) from None
    except Exception as exc:  # MangoError and friends: their messages carry no secrets
        raise RecordingUnavailable(f"Mango refused the recording: {exc}") from None
    if upstream.status_code != 200:
        upstream.close()
        raise RecordingUnavailable(f"Mango answered HTTP {upstream.status_code} for the recording file")

    def body() -> Iterator[bytes]:
        try:
            yield from upstream.iter_content(CHUNK)
        finally:
            upstream.close()

    headers = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}
    if upstream.headers.get("Content-Length", "").isdigit():
        headers["Content-Length"] = upstream.headers["Content-Length"]
    mimetype = upstream.headers.get("Content-Type", "audio/mpeg").split(";")[0].strip()
    if not mimetype.startswith("audio/"):
        mimetype = "audio/mpeg"
    return Response(body(), status=200, mimetype=mimetype, headers=headers, direct_passthrough=True)
