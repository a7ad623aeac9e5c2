"""Recordings played in the panel: who may hear which call, and the answer through the shared cache.

The browser asks `/admin/recordings/<id>`; after the access check, callbridge answers from its recordings
cache (`bridge.recordings`), which asks Mango for the single-use link (`queries/recording/post`, 302) only
the first time. Mango's link is never shown; `Range` requests let the player seek.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response
from sqlalchemy import Engine, select

from admin_module import scope
from admin_module.roles import can
from admin_module.users import PanelUser
from bridge.config import Settings
from bridge.pbx.port import PbxClientFactory
from bridge.recordings import service
from bridge.recordings.service import RecordingUnavailable
from bridge.store.engine import reader
from bridge.store.schema import calls, recordings

__all__ = ["RecordingUnavailable", "may_see_call", "recording_call", "serve"]


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
    """Everyone's calls for roles with `all_calls`; a team leader's teams' calls; otherwise the calls of
    the user's own extension (`scope.py`)."""
    if can(user.role, "all_calls"):
        return True
    return scope.may_see_call(scope.for_request(user), call)


def serve(settings: Settings, engine: Engine, client: PbxClientFactory, recording_id: str) -> Response:
    """The recording for the current request (byte ranges for seeking), from the shared cache.

    Call it only after the access check: the cache keeps files, never who may hear them.
    """
    return service.serve(service.cache_for(settings, engine), client, recording_id)
