"""Signed recording links for CRMs (`/recordings/<id>?t=...`): through the real app a valid link plays
(with byte ranges, from the shared cache), a tampered, foreign, missing or expired one gets 403 in plain
words, and the panel's "recordings may be linked" option switches links off. End to end, the real daemon
attaches such links in Bitrix24 and amoCRM, and the attached link downloads the recording."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient
from sqlalchemy import Engine
from werkzeug.test import TestResponse

from bridge.config import Settings
from bridge.ingest.writer import GroupCommitWriter
from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator import CommandServer
from bridge.pbx.mango.simulator.audio import silent_mp3
from bridge.pbx.mango.simulator.poster import Poster
from bridge.recordings.links import RecordingLinks, links_for
from bridge.settings_store import SettingsStore
from bridge.web.app import create_app
from tests.daemon import API_KEY, API_SALT, Daemon
from tests.fakes.amocrm import FakeAmoCrm
from tests.fakes.bitrix24 import FakeBitrix24
from tests.test_amocrm_e2e import LLT
from tests.test_amocrm_e2e import start as start_with_amocrm
from tests.test_bitrix24_e2e import start as start_with_bitrix24

AUDIO = silent_mp3()
SIZE = len(AUDIO)
PUBLIC = "https://calls.example.com"
SECRET = "public-links-test-secret-" + "p" * 24
RECORDING = "MToxMDAwNjA4NTo1MDA5NDExMDIyOjE+/w=="  # Mango ids are base64: + / = must survive the URL


@dataclass
class Stack:
    settings: Settings
    engine: Engine
    client: FlaskClient
    mango: CommandServer

    def links(self, clock: Callable[[], float] = time.time) -> RecordingLinks:
        return RecordingLinks(lambda: SECRET, PUBLIC, ttl_seconds=90 * 86400, clock=clock)

    def get(self, url: str, **headers: str) -> TestResponse:
        """GET a public link on the app (the link's host is the reverse proxy in front of it)."""
        parts = urllib.parse.urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == PUBLIC
        return self.client.get(parts.path + ("?" + parts.query if parts.query else ""), headers=headers)

    def mango_links_asked(self) -> int:
        return sum(1 for r in self.mango.received if r.path == "queries/recording/post")


@pytest.fixture
def stack(engine: Engine, tmp_path: Path) -> Iterator[Stack]:
    mango = CommandServer(API_KEY, API_SALT, rate_limits=False).start()
    settings = Settings.model_validate(
        {
            "mango": {"api_url": mango.url, "api_key": API_KEY, "api_salt": API_SALT},
            "http": {"public_url": PUBLIC},
            "security": {"secret_key": SECRET},
            "recordings": {"cache_dir": str(tmp_path / "recordings")},
        }
    )
    writer = GroupCommitWriter(engine)
    try:
        app = create_app(settings, engine, writer)
        yield Stack(settings, engine, app.test_client(), mango)
    finally:
        writer.stop()
        mango.stop(timeout=1)


def test_a_signed_link_plays_with_ranges_from_the_cache(stack: Stack) -> None:
    url = links_for(stack.settings, stack.engine).url(RECORDING)
    assert url is not None
    assert url.startswith(f"{PUBLIC}/recordings/{urllib.parse.quote(RECORDING, safe='')}?t=")

    whole = stack.get(url)
    assert whole.status_code == 200
    assert whole.data == AUDIO
    assert whole.headers["Content-Type"] == "audio/mpeg"
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Cache-Control"] == "private, no-store"

    seek = stack.get(url, Range="bytes=100-299")
    assert seek.status_code == 206
    assert seek.headers["Content-Range"] == f"bytes 100-299/{SIZE}"
    assert seek.data == AUDIO[100:300]

    beyond = stack.get(url, Range=f"bytes={SIZE + 10}-")
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{SIZE}"

    assert stack.mango_links_asked() == 1  # one single-use Mango link for all three
    # The cache is where the settings say, and keeps audio under a hash, never the id or the link.
    cached = [p for p in Path(stack.settings.recordings.cache_dir).iterdir() if p.suffix == ".audio"]
    assert len(cached) == 1 and cached[0].read_bytes() == AUDIO and RECORDING not in cached[0].name


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda url: url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB"), "signature does not match"),
        (lambda url: url.split("?")[0], "has no signature"),
        (lambda url: url.split("?")[0] + "?t=12345", "malformed"),
        (lambda url: url.split("?")[0] + "?t=" + "9" * 11 + "." + url.rsplit(".", 1)[1], "signature"),
        (lambda url: url.replace("%3D%3D?", "%3D?"), "signature does not match"),  # another recording
    ],
    ids=["tampered signature", "no token", "malformed token", "extended expiry", "another recording"],
)
def test_a_tampered_or_missing_token_is_403_in_plain_words(
    stack: Stack, change: Callable[[str], str], message: str
) -> None:
    url = stack.links().url(RECORDING)
    assert url is not None
    refused = stack.get(change(url))
    assert refused.status_code == 403
    assert message in refused.json["error"]
    assert stack.mango_links_asked() == 0  # refused before Mango is asked


def test_an_expired_link_is_403(stack: Stack) -> None:
    issued_long_ago = stack.links(clock=lambda: time.time() - 91 * 86400)
    url = issued_long_ago.url(RECORDING)
    assert url is not None
    refused = stack.get(url)
    assert refused.status_code == 403
    assert "expired" in refused.json["error"]
    # Signed with another secret (another installation): refused too.
    other = RecordingLinks(lambda: "another-secret-" + "x" * 30, PUBLIC, ttl_seconds=3600).url(RECORDING)
    assert other is not None and stack.get(other).status_code == 403
    assert stack.mango_links_asked() == 0


def test_switching_linking_off_in_the_panel_refuses_links_within_seconds(stack: Stack) -> None:
    links = links_for(stack.settings, stack.engine)
    url = links.url(RECORDING)
    assert url is not None and stack.get(url).status_code == 200
    SettingsStore(stack.engine, stack.settings).save({"admin.recordings": False})
    assert links.url(RECORDING) is None  # connectors get no new link
    deadline = time.monotonic() + 3.0
    while stack.get(url).status_code != 403:
        assert time.monotonic() < deadline, "the saved option did not apply within 3 s"
        time.sleep(0.1)
    refused = stack.get(url)
    assert "switched off" in refused.json["error"]
    SettingsStore(stack.engine, stack.settings).save({"admin.recordings": True})
    deadline = time.monotonic() + 3.0
    while stack.get(url).status_code != 200:
        assert time.monotonic() < deadline, "switching linking back on did not apply within 3 s"
        time.sleep(0.1)


def test_an_overlong_recording_id_is_404_without_asking_mango(stack: Stack) -> None:
    url = stack.links().url("A" * 300)
    assert url is not None
    got = stack.get(url)
    assert got.status_code == 404 and got.json["error"] == "no such recording"
    assert stack.mango_links_asked() == 0


# ------------------------------------------------------------------------------------- end to end


def downloads(url: str, daemon: Daemon) -> None:
    """The attached link, asked of the daemon as a CRM would (through the public address), plays."""
    parts = urllib.parse.urlsplit(url)
    local = f"{daemon.url}{parts.path}?{parts.query}"
    whole = requests.get(local, timeout=10)
    assert whole.status_code == 200, whole.text
    assert whole.content == AUDIO and whole.headers["Content-Type"] == "audio/mpeg"
    part = requests.get(local, headers={"Range": "bytes=0-99"}, timeout=10)
    assert part.status_code == 206 and part.content == AUDIO[:100]
    forged = requests.get(local[:-2] + ("xx" if not local.endswith("xx") else "yy"), timeout=10)
    assert forged.status_code == 403 and "signature" in forged.json()["error"]


def test_bitrix24_attaches_a_link_that_downloads(database_url: str, tmp_path: Path) -> None:
    with FakeBitrix24() as fake, CommandServer(API_KEY, API_SALT, rate_limits=False) as mango:
        daemon = start_with_bitrix24(
            database_url, tmp_path, fake, mango=mango, users={"101": "1"}, auto_import=False
        )
        try:
            scenario = scenarios.build("incoming_answered", seed=11, extensions=("101",))
            assert scenario.expected.recording_ids
            assert not Poster(daemon.mango_url, API_KEY, API_SALT).play(scenario.notifications).errors

            def attached() -> bool:
                calls = fake.registered(scenario.entry_id)
                return len(calls) == 1 and bool(calls[0].records)

            assert fake.wait_for(attached, timeout=30)
            url = fake.registered(scenario.entry_id)[0].records[0]["RECORD_URL"]
            assert url.startswith(f"{daemon.url}/recordings/") and "?t=" in url
            downloads(url, daemon)
            assert sum(1 for r in mango.received if r.path == "queries/recording/post") == 1
        finally:
            daemon.stop()


def test_amocrm_logs_the_call_with_a_link_that_downloads(database_url: str, tmp_path: Path) -> None:
    with (
        FakeAmoCrm(long_lived_token=LLT) as fake,
        CommandServer(API_KEY, API_SALT, rate_limits=False) as mango,
    ):
        fake.add_contact("Иван Петров", ["8 (916) 123-45-67"], responsible_user_id=1001)
        daemon = start_with_amocrm(database_url, tmp_path, fake, env={"CALLBRIDGE_MANGO_API_URL": mango.url})
        try:
            scenario = scenarios.build(
                "incoming_answered", seed=12, customer="79161234567", extensions=("101",)
            )
            assert not Poster(daemon.mango_url, API_KEY, API_SALT).play(scenario.notifications).errors
            assert fake.wait_for(lambda: len(fake.calls) == 1, timeout=30)
            link = fake.calls[0]["link"]
            quoted = urllib.parse.quote(scenario.expected.recording_ids[0], safe="")
            assert link.startswith(f"https://calls.example.com/recordings/{quoted}?t=")
            downloads(link, daemon)
        finally:
            daemon.stop()
