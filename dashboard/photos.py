"""The members' photos on the screens: `GET /photos/<hex>` (`?thumb=1`: the ≤ 320 px thumbnail) and
the strip of thumbnails the case page and the dispatcher console draw (before: the report's photos;
after: the handler's feedback and the checker's verification).

A photo is served only to a viewer whose scope covers a report or a case that names it (the
report's grid, the case's org unit: cases.reads.CaseReads.photo), so a street's dispatcher sees the
photos of the street's cases and nothing else. Anything else is `404`, the same as for a photo
that does not exist: a ref is a content hash, and a 403 would confirm that somebody holds that
image. Who may ask at all (the roles) is declared with the case page, whose photos these are
(dashboard/pages/case.py). The answer is the stored JPEG (re-encoded from the pixels when it was
uploaded: handheld/photos.py), `image/jpeg`, `nosniff`, cached by the browser only (`private`).

A ref that is not `sha256:<hex>` (an older terminal's path) names nothing the server holds; it is
shown as text, as before.
"""
from __future__ import annotations

from dash import html
from flask import Response, abort, request

from cases.reads import PHOTO_STAGES
from core.catalogue import Label
from dashboard.authz import Scope, current_identity
from dashboard.state import app_state
from telemetry.kinds.incident_report import photo_hex

PATH = "/photos/<hex_digest>"
HEADERS = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff",
           "Content-Security-Policy": "default-src 'none'; sandbox", "Content-Disposition": "inline"}
STAGE_LABELS = {"report": Label("Reported", "上报"), "check": Label("Checked on site", "紧急核实"),
                "feedback": Label("Handled", "处置反馈"),
                "verify": Label("Verified", "核查")}
assert set(STAGE_LABELS) == set(PHOTO_STAGES)


def url(ref: str, thumb: bool = False) -> str | None:
    """Where the screens get a photo (None: a ref the server holds no photo for)."""
    hex_digest = photo_hex(ref)
    if hex_digest is None:
        return None
    return f"/photos/{hex_digest}" + ("?thumb=1" if thumb else "")


def serve(hex_digest: str):
    """The view of PATH (declared and registered by the case page's `export`)."""
    identity = current_identity()
    if identity is None or photo_hex(f"sha256:{hex_digest}") is None:
        abort(404)
    found = app_state().queries.photo(Scope(identity.scope_code, ""), f"sha256:{hex_digest}",
                                      thumb=request.args.get("thumb") == "1")
    if found is None:
        abort(404)
    return Response(found, mimetype="image/jpeg", headers=HEADERS)


def photo_strip(photos: list[dict], prefix: str):
    """Thumbnails linking to the full photos, before (the report's) and after (feedback,
    verification), for the photos the server holds (`{"ref", "stage", …}`, cases.reads.case_photos);
    None when there are none. Component ids start with `prefix`."""
    held = [p for p in photos if photo_hex(p["ref"])]
    if not held:
        return None
    rows = []
    for title, stages in ((Label("Before", "处置前"), ("report", "check")),
                          (Label("After", "处置后"), ("feedback", "verify"))):
        shown = [p for p in held if p["stage"] in stages]
        if not shown:
            continue
        rows.append(html.Div(className="photo-row", children=[
            html.Div(str(title), className="photo-row-title"),
            html.Div(className="photo-thumbs", children=[
                html.A(href=url(p["ref"]), target="_blank", rel="noopener noreferrer", className="photo-link",
                       title=f"{STAGE_LABELS[p['stage']]} · {p['ref'][:19]}…",
                       children=html.Img(src=url(p["ref"], thumb=True), className="photo-thumb",
                                         alt=str(STAGE_LABELS[p["stage"]]), referrerPolicy="no-referrer"))
                for p in shown]),
        ]))
    return html.Div(rows, className="photo-strip", id=f"{prefix}-photos")
