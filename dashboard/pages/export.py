"""CSV exports (the audit trail, the case list): UTF-8 with a byte-order mark, which Excel and WPS
need to read Chinese; streamed; no cell a spreadsheet would run as a formula."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable

import orjson
from flask import Response, stream_with_context

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")     # a spreadsheet would run these as formulas


def cell(value) -> str:
    text = "" if value is None else value if isinstance(value, str) else orjson.dumps(value).decode()
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_response(filename: str, header: list[str], rows: Iterable[list]) -> Response:
    def lines():
        out = io.StringIO()
        writer = csv.writer(out)
        out.write("\ufeff")
        writer.writerow(header)
        for n, row in enumerate(rows, 1):
            writer.writerow([cell(v) for v in row])
            if n % 500 == 0:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        yield out.getvalue()

    return Response(stream_with_context(lines()), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename={filename}", "Cache-Control": "no-store"})
