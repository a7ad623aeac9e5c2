"""The widget's zip, packaged for one callbridge address.

The sources are in ``connectors/amocrm/widget/`` (manifest.json, script.js, i18n/ru.json, i18n/en.json).
Packaging writes callbridge's address into script.js (the widget's settings may still override it) and
adds the logos amoCRM asks for, drawn here in callbridge's colour at the sizes its documentation gives.
The zip holds no secret: amoCRM issues the integration's keys after it is uploaded.

Also runnable: ``python -m connectors.amocrm.widget_package --public-url URL --out FILE.zip``; the daemon
serves the same zip for its own settings at ``<http.public_url>/connectors/amocrm/widget/package.zip``.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import zipfile
import zlib
from importlib.resources import files
from urllib.parse import urlsplit

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Package callbridge's amoCRM widget as a zip to upload.")
    parser.add_argument("--public-url", required=True, help="callbridge's address (http.public_url)")
    parser.add_argument("--out", required=True, help="the zip to write")
    args = parser.parse_args(argv)
    try:
        data = build_package(args.public_url)
    except ValueError as exc:
        parser.error(str(exc))
    with open(args.out, "wb") as handle:
        handle.write(data)
    print(f"wrote {args.out} ({len(data)} bytes): upload it in amoCRM -> Settings -> Integrations")


if __name__ == "__main__":
    main()
