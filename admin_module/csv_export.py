"""CSV downloads that spreadsheets open as they are: UTF-8 with a byte-order mark (so Excel reads Cyrillic
right), `,` by default or `;` with `?sep=semicolon` (Excel with Russian regional settings splits on `;`), and
no cell that could start a formula."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Response, request

BOM = "\ufeff"
SEPARATORS = {"comma": ",", "semicolon": ";"}


def safe_cell(value: Any) -> Any:
    """Spreadsheet formula injection: a text cell starting with = + - @ is prefixed with a quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def requested_separator() -> str:
    """The separator the request asks for (`sep=comma|semicolon`), `,` when it asks for none or another."""
    return SEPARATORS.get(request.args.get("sep", ""), ",")


def csv_lines(header: Iterable[str], rows: Iterable[Iterable[Any]], separator: str = ",") -> Iterator[str]:
    """The BOM and the header, then one line per row, each cell made safe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=separator)
    writer.writerow(header)
    yield BOM + buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([safe_cell(value) for value in row])
        yield buffer.getvalue()


def csv_response(lines: Iterable[str], filename: str) -> Response:
    """A download of `lines` as `filename`."""
    return Response(
        lines,
        mimetype="text/csv",
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
