"""The panel's audio player: byte ranges (206/416) through the real panel over HTTP, the recordings cache
(Mango is asked once, even by concurrent seeks), and the access check on every request."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import Engine

from bridge.config import Settings
from bridge.pbx.mango.simulator.audio import silent_mp3
from bridge.recordings.cache import CacheLimitExceeded, RecordingCache, Sink
from bridge.settings_store import SettingsStore
from tests.test_admin_support import (
    API_KEY,
    API_SALT,
    LivePanel,
    add_call,
    add_recording,
    live_panel,
    panel_session,
    seed_users,
)

AUDIO = silent_mp3()
SIZE = len(AUDIO)
# What Chromium's <audio> sends: the first request asks for everything from 0, a seek from an offset.
FIRST = {"Range": "bytes=0-"}


@pytest.fixture
def panel(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LivePanel]:
    # The cache lives next to the SQLite file, or under ./var with PostgreSQL: keep that in tmp_path.
    monkeypatch.chdir(tmp_path)
    seed_users(engine)
    SettingsStore(engine, Settings()).save({"mango.api_key": API_KEY, "mango.api_salt": API_SALT})
    yield from live_panel(engine)


@pytest.fixture
def recording(engine: Engine) -> str:
    """A recording of a call answered by 101 (the admin's extension), with an id no other test uses."""
    entry_id, recording_id = f"E-{uuid.uuid4().hex}", f"MToxMDA6{uuid.uuid4().hex}=="
    add_call(engine, entry_id, answered_by="101", extensions=["101"])
    add_recording(engine, entry_id, recording_id)
    return recording_id


def mango_links_asked(panel: LivePanel) -> int:
    return sum(1 for r in panel.simulator.received if r.path == "queries/recording/post")


def play(client: requests.Session, panel: LivePanel, recording_id: str, **headers: str) -> requests.Response:
    return client.get(f"{panel.url}/admin/recordings/{recording_id}", headers=headers, timeout=10)


def test_the_player_gets_ranges_and_mango_is_asked_once(
    engine: Engine, tmp_path: Path, panel: LivePanel, recording: str
) -> None:
    admin = panel_session(panel.url, "admin")

    first = play(admin, panel, recording, **FIRST)
    assert first.status_code == 206
    assert first.headers["Content-Range"] == f"bytes 0-{SIZE - 1}/{SIZE}"
    assert first.headers["Accept-Ranges"] == "bytes"
    assert first.headers["Content-Length"] == str(SIZE)
    assert first.headers["Content-Type"] == "audio/mpeg"
    assert first.headers["Cache-Control"] == "private, no-store"
    assert first.content == AUDIO

    seek = play(admin, panel, recording, Range="bytes=1000-1999")
    assert seek.status_code == 206
    assert seek.headers["Content-Range"] == f"bytes 1000-1999/{SIZE}"
    assert seek.headers["Content-Length"] == "1000"
    assert seek.content == AUDIO[1000:2000]

    tail = play(admin, panel, recording, Range="bytes=-100")  # the last 100 bytes (a suffix range)
    assert tail.status_code == 206
    assert tail.headers["Content-Range"] == f"bytes {SIZE - 100}-{SIZE - 1}/{SIZE}"
    assert tail.content == AUDIO[-100:]

    past_end = play(admin, panel, recording, Range=f"bytes=3000-{SIZE + 5000}")  # clipped to the end
    assert past_end.status_code == 206
    assert past_end.headers["Content-Range"] == f"bytes 3000-{SIZE - 1}/{SIZE}"
    assert past_end.content == AUDIO[3000:]

    whole = play(admin, panel, recording)
    assert whole.status_code == 200
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Content-Length"] == str(SIZE)
    assert whole.content == AUDIO

    head = admin.head(f"{panel.url}/admin/recordings/{recording}", timeout=5)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(SIZE) and head.content == b""

    # One single-use link from Mango served all of these, from the cache in the data directory.
    assert mango_links_asked(panel) == 1
    if engine.url.get_backend_name() == "sqlite":
        directory = Path(str(engine.url.database)).parent / "recordings-cache"
    else:
        directory = tmp_path / "var" / "recordings-cache"
    assert [p.read_bytes() for p in directory.glob("*.audio")] == [AUDIO]


def test_unsatisfiable_and_unusable_ranges(panel: LivePanel, recording: str) -> None:
    admin = panel_session(panel.url, "admin")

    beyond = play(admin, panel, recording, Range=f"bytes={SIZE}-")
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{SIZE}"
    assert "outside the recording" in beyond.text

    # A header that is not a byte range, several ranges, or an If-Range for another version: the whole file.
    for headers in (
        {"Range": "bytes=abc"},
        {"Range": "lines=1-2"},
        {"Range": "bytes=0-9,20-29"},
        {"Range": "bytes=0-9", "If-Range": '"another-version"'},
    ):
        got = play(admin, panel, recording, **headers)
        assert got.status_code == 200, headers
        assert got.content == AUDIO, headers

    # An If-Range that still matches gives the range.
    etag = play(admin, panel, recording).headers["ETag"]
    matching = play(admin, panel, recording, Range="bytes=0-9", **{"If-Range": etag})
    assert matching.status_code == 206 and matching.content == AUDIO[:10]
    assert mango_links_asked(panel) == 1


def test_concurrent_seeks_on_a_cold_cache_ask_mango_once(panel: LivePanel, recording: str) -> None:
    admin = panel_session(panel.url, "admin")
    cookies = admin.cookies.get_dict()
    results: dict[int, requests.Response] = {}

    def seek(start: int) -> None:
        headers = {"Range": f"bytes={start}-{start + 99}"}
        results[start] = requests.get(
            f"{panel.url}/admin/recordings/{recording}", headers=headers, cookies=cookies, timeout=10
        )

    threads = [threading.Thread(target=seek, args=(start,)) for start in range(0, 1000, 100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(0, 1000, 100))
    for start, got in results.items():
        assert got.status_code == 206 and got.content == AUDIO[start : start + 100]
    assert mango_links_asked(panel) == 1


def test_access_is_checked_on_every_request_even_for_a_cached_file(
    engine: Engine, panel: LivePanel, recording: str
) -> None:
    admin = panel_session(panel.url, "admin")
    assert play(admin, panel, recording, **FIRST).status_code == 206  # now cached

    # A manager (extension 102) and an accountant may not hear a call of 101, cached or not.
    for username in ("manager", "accountant"):
        refused = play(panel_session(panel.url, username), panel, recording, **FIRST)
        assert refused.status_code == 403, username
        assert refused.headers["Content-Type"].startswith("text/html"), username
    # Nobody logged in: sent to the login page, no audio.
    anonymous = requests.get(
        f"{panel.url}/admin/recordings/{recording}", headers=FIRST, allow_redirects=False, timeout=5
    )
    assert anonymous.status_code == 302 and "/admin/login" in anonymous.headers["Location"]
    # Linking recordings switched off in the panel: the cached file is not played either.
    SettingsStore(engine, Settings()).save({"admin.recordings": False})
    assert play(admin, panel, recording, **FIRST).status_code == 403
    SettingsStore(engine, Settings()).save({"admin.recordings": True})
    assert play(admin, panel, recording, **FIRST).status_code == 206
    assert mango_links_asked(panel) == 1


def test_a_mango_failure_is_a_clear_502_and_is_not_cached(panel: LivePanel, recording: str) -> None:
    admin = panel_session(panel.url, "admin")
    panel.simulator.inject("queries/recording/post", result=3320)  # "recording not found"
    failed = play(admin, panel, recording, **FIRST)
    assert failed.status_code == 502
    assert "The recording is not available: Mango refused the recording" in failed.text
    assert "files/" not in failed.text  # Mango's link is never shown
    retried = play(admin, panel, recording, **FIRST)
    assert retried.status_code == 206 and retried.content == AUDIO
    assert mango_links_asked(panel) == 2


def _writer(data: bytes) -> Callable[[Sink], None]:
    def fetch(out: Sink) -> None:
        out.write(data)

    return fetch


def test_the_cache_keeps_to_its_size_and_drops_the_least_recently_played(tmp_path: Path) -> None:
    cache = RecordingCache(tmp_path / "cache", max_bytes=2500)
    cache.get_or_fetch("a", _writer(b"a" * 1000))
    cache.get_or_fetch("b", _writer(b"b" * 1000))
    assert cache.get("a") is not None  # played again: now b is the least recently used
    cache.get_or_fetch("c", _writer(b"c" * 1000))
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None
    stored = sorted(p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith("."))
    assert len(stored) == 2 and all(name.endswith(".audio") for name in stored)
    assert "a" not in stored and "c" not in stored  # named by a hash, not by the recording id

    with pytest.raises(CacheLimitExceeded, match="larger than the recordings cache"):
        cache.get_or_fetch("huge", _writer(b"h" * 3000))
    assert cache.get("huge") is None
    assert not list((tmp_path / "cache").glob(".*.part"))  # no half-written file left behind
    assert not list((tmp_path / "cache").glob(".*.lock"))  # nor a lock file
    found = cache.get("a")
    assert found is not None and found.path.read_bytes() == b"a" * 1000 and found.size == 1000


def test_half_written_files_of_a_dead_process_are_cleaned_up(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    cache = RecordingCache(directory, max_bytes=10_000)
    cache.get_or_fetch("a", _writer(b"a" * 10))
    stale, fresh = directory / ".0123456789abcdef-old.part", directory / ".0123456789abcdef-new.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")  # maybe another process is still writing it
    os.utime(stale, (time.time() - 2 * 3600, time.time() - 2 * 3600))
    cache.evict()
    assert not stale.exists() and fresh.exists()
    assert cache.get("a") is not None
