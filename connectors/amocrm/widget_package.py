"""The widget's zip, packaged for one callbridge address.

The sources are in ``connectors/amocrm/widget/`` (manifest.json, script.js, i18n/ru.json, i18n/en.json).
Packaging writes callbridge's address into script.js (the widget's settings may still override it) and
adds the logos amoCRM asks for, drawn here in callbridge's colour at the sizes its documentation gives.
The zip holds no secret: amoCRM issues the integration's keys after it is uploaded.

``callbridge connectors amocrm-widget --out FILE.zip`` writes it (`package_command`); the daemon serves the
same zip for its own settings at ``<http.public_url>/connectors/amocrm/widget/package.zip``.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

SOURCES = ("manifest.json", "script.js", "i18n/ru.json", "i18n/en.json")
URL_MARK = "'__CALLBRIDGE_URL__'"
# name -> (width, height), as amoCRM's widget structure page lists them
LOGOS = {
    "images/logo_main.png": (400, 272),
    "images/logo_medium.png": (240, 84),
    "images/logo_min.png": (84, 84),
    "images/logo_small.png": (108, 108),
    "images/logo.png": (130, 100),
    "images/logo_dp.png": (174, 109),
}
COLOUR = (0x2D, 0x6C, 0xDF)
_FIXED_TIME = (2026, 1, 1, 0, 0, 0)  # the same inputs give the same bytes


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height, 9))
        + chunk(b"IEND", b"")
    )


def checked_url(address: str) -> str:
    """callbridge's public address, as the widget will call it (http(s), no path, query or quotes)."""
    text = address.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"callbridge's address should look like https://calls.example.com, not {address!r}")
    return text


def source(name: str) -> str:
    return files("connectors.amocrm").joinpath("widget", name).read_text(encoding="utf-8")


def build_package(public_url: str) -> bytes:
    """The widget's zip, calling callbridge at `public_url` (the account is whichever uploads it)."""
    url = checked_url(public_url)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in SOURCES:
            text = source(name)
            if name == "script.js":
                if URL_MARK not in text:
                    raise RuntimeError("script.js lost its packaged-address mark")
                text = text.replace(URL_MARK, json.dumps(url))
            else:
                json.loads(text)  # a broken source file fails here, not in amoCRM's upload
            archive.writestr(zipfile.ZipInfo(name, _FIXED_TIME), text.encode("utf-8"), zipfile.ZIP_DEFLATED)
        for name, (width, height) in LOGOS.items():
            archive.writestr(zipfile.ZipInfo(name, _FIXED_TIME), _png(width, height, COLOUR))
    return out.getvalue()


@click.command("amocrm-widget")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The zip to write.")
@click.option("--public-url", default=None, help="callbridge's address (default: http.public_url).")
@click.pass_obj
def package_command(obj: Any, out: str, public_url: str | None) -> None:
    """Package the amoCRM widget (click-to-call, the live call panel) as a zip to upload to amoCRM."""
    address = public_url or obj.config.http.public_url
    if not address:
        raise click.ClickException(
            "set http.public_url (where amoCRM's pages reach callbridge) or --public-url"
        )
    try:
        data = build_package(address)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    Path(out).write_bytes(data)
    click.echo(f"wrote {out} ({len(data)} bytes): upload it in amoCRM -> Settings -> Integrations")
