"""Answer a GET for a file on disk with byte ranges (RFC 9110 §14), as `<audio>` players expect.

One satisfiable range gets 206 with `Content-Range`; a range past the end gets 416 with
`Content-Range: bytes */<size>`; no range, an unparsable header, several ranges or an `If-Range` that no
longer matches get the whole file (200). Every answer says `Accept-Ranges: bytes`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from flask import Response
from werkzeug.http import parse_range_header

CHUNK = 64 * 1024


def _read(path: Path, start: int, length: int) -> Iterator[bytes]:
    # The file is opened before the first byte is sent; a later eviction cannot cut an answer short.
    handle = path.open("rb")

    def body() -> Iterator[bytes]:
        with handle:
            handle.seek(start)
            left = length
            while left > 0:
                data = handle.read(min(CHUNK, left))
                if not data:
                    return
                left -= len(data)
                yield data

    return body()


def file_response(
    path: Path,
    size: int,
    *,
    mimetype: str,
    etag: str,
    range_header: str | None,
    if_range: str | None,
    headers: Mapping[str, str],
    head: bool = False,
) -> Response:
    """The whole file, one range of it, or 416, with the given extra headers."""
    common = {**headers, "Accept-Ranges": "bytes", "ETag": etag}
    wanted = parse_range_header(range_header) if range_header else None
    still_valid = not if_range or if_range.strip() == etag
    if wanted is not None and wanted.units == "bytes" and len(wanted.ranges) == 1 and still_valid:
        span = wanted.range_for_length(size)
        if span is None:
            return Response(
                f"the requested range is outside the recording ({size} bytes)",
                status=416,
                mimetype="text/plain",
                headers={**common, "Content-Range": f"bytes */{size}"},
            )
        start, stop = span
        content_range = f"bytes {start}-{stop - 1}/{size}"
        return _answer(
            path, start, stop - start, 206, mimetype, head, {**common, "Content-Range": content_range}
        )
    return _answer(path, 0, size, 200, mimetype, head, common)


def _answer(
    path: Path, start: int, length: int, status: int, mimetype: str, head: bool, headers: dict[str, str]
) -> Response:
    body: Iterator[bytes] | bytes = b"" if head else _read(path, start, length)
    response = Response(body, status=status, mimetype=mimetype, headers=headers, direct_passthrough=True)
    response.headers["Content-Length"] = str(length)
    return response
