"""Serve a recording: from the cache, or fetched once from Mango into it, answered with byte ranges.

Both the panel's player (`/admin/recordings/<id>`) and the signed CRM links (`/recordings/<id>`) answer
through `serve`; each decides first who may hear the recording.
"""

from __future__ import annotations

import threading
from pathlib import Path

import requests
from flask import Response, request
from sqlalchemy import Engine

from bridge.config import Settings
from bridge.pbx.port import PbxClientFactory
from bridge.recordings.cache import CachedFile, CacheLimitExceeded, RecordingCache, Sink
from bridge.recordings.ranges import CHUNK, file_response

MIMETYPE = "audio/mpeg"  # Mango keeps recordings as mp3 (mango.md §3.3)
HEADERS = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}

_caches: dict[tuple[str, int], RecordingCache] = {}
_caches_lock = threading.Lock()


class RecordingUnavailable(Exception):
    """Mango could not give the file; the message is safe to show (no links, no secrets)."""


def cache_directory(settings: Settings, engine: Engine | None = None) -> Path:
    """`recordings.cache_dir`; else `recordings-cache` next to the SQLite file or `var/recordings-cache`."""
    if settings.recordings.cache_dir:
        return Path(settings.recordings.cache_dir)
    url = engine.url if engine is not None else None
    if url is not None and url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(url.database).parent / "recordings-cache"
    return Path("var") / "recordings-cache"


def cache_for(settings: Settings, engine: Engine | None = None) -> RecordingCache:
    """The process's cache for these settings (one per directory, shared by every request thread)."""
    directory = cache_directory(settings, engine).absolute()
    key = (str(directory), settings.recordings.cache_max_mb * 1024 * 1024)
    with _caches_lock:
        cache = _caches.get(key)
        if cache is None:
            cache = _caches[key] = RecordingCache(directory, key[1])
        return cache


def fetch_from_mango(
    client: PbxClientFactory,
    recording_id: str,
    out: Sink,
    *,
    timeout: tuple[float, float] = (5, 60),
) -> None:
    """Build the client, ask Mango for the single-use link and copy the file into `out`."""
    try:
        mango = client()
        url = mango.recording_link(recording_id, "play")
        with requests.get(url, stream=True, timeout=timeout, verify=mango.verify_tls) as upstream:
            if upstream.status_code != 200:
                status = upstream.status_code
                raise RecordingUnavailable(f"Mango answered HTTP {status} for the recording file")
            received = 0
            for chunk in upstream.iter_content(CHUNK):
                received += out.write(chunk)
            if not received:
                raise RecordingUnavailable("Mango gave an empty recording file")
    except (RecordingUnavailable, CacheLimitExceeded):
        raise
    except requests.RequestException as exc:
        reason = type(exc).__name__
        raise RecordingUnavailable(f"could not fetch the recording from Mango: {reason}") from None
    except Exception as exc:  # PbxError, a client without credentials: their messages carry no secrets
        raise RecordingUnavailable(f"Mango refused the recording: {exc}") from None


def cached_file(cache: RecordingCache, client: PbxClientFactory, recording_id: str) -> CachedFile:
    """The recording on disk; Mango is asked only when it is not cached yet."""
    try:
        return cache.get_or_fetch(recording_id, lambda out: fetch_from_mango(client, recording_id, out))
    except CacheLimitExceeded as exc:
        raise RecordingUnavailable(str(exc)) from None
    except OSError as exc:
        raise RecordingUnavailable(
            f"the recordings cache at {cache.directory} is not writable ({exc.strerror})"
        ) from None


def serve(cache: RecordingCache, client: PbxClientFactory, recording_id: str) -> Response:
    """The recording for the current request, honouring `Range` and `If-Range`.

    `client` is called only on a cache miss. Raises `RecordingUnavailable` when Mango cannot give it.
    """
    found = cached_file(cache, client, recording_id)
    return file_response(
        found.path,
        found.size,
        mimetype=MIMETYPE,
        etag=found.etag,
        range_header=request.headers.get("Range"),
        if_range=request.headers.get("If-Range"),
        headers=HEADERS,
        head=request.method == "HEAD",
    )
