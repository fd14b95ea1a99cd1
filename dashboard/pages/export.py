"""CSV exports (the audit trail, the case list): UTF-8 with a byte-order mark, which Excel and WPS
need to read Chinese; streamed; no cell a spreadsheet would run as a formula."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable

import orjson
from flask import Response, abort, request, stream_with_context

from dashboard.authz import asked_scope, authorize, current_identity
from dashboard.state import app_state

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


def authorized_export(page, action: str, path: str, parse):
    """An export request: authorized for the page at the asked scope (refused: audited, 403/404),
    its selection parsed (`parse(request.args)`, ValueError: 400), the export audited. Returns
    (state, scope, selection), or a Response to send instead."""
    state, identity = app_state(), current_identity()
    decision = authorize(state.city, identity, page, asked_scope(identity, request.args))
    target = f"{path}?{request.query_string.decode()[:300]}"
    if not decision:
        state.commands.record(identity, action, "refused", decision.reason, target, request.remote_addr)
        abort(decision.status)
    try:
        wanted = parse(request.args)
    except ValueError as bad:
        return Response(f"{bad}\n", status=400, mimetype="text/plain")
    state.commands.record(identity, action, "done", None, target, request.remote_addr, decision.scope.code)
    return state, decision.scope, wanted
