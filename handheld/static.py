"""The members' phone app (网格通) as files: `handheld/app/` served at `/handheld/` by the ingest's
device-facing server, on the same origin as the handheld's API, so the app's service worker controls
both (docs/HANDHELD_API.md).

Only files under `handheld/app/` whose type is known are served; a path that tries to leave the
folder (`..`, an encoded or a back slash, a hidden file) is `404 not_found`, as is anything else that
is not there. Every answer carries the app's Content-Security-Policy (nothing but our own scripts,
styles and connections; photos previewed from `blob:`), and an ETag so a phone revalidates cheaply:
the app has no build step and no hashed file names, so every file is `no-cache` (revalidated, a `304`
when unchanged), and the service worker's versioned cache keeps it for offline use.

The service worker's cache version is the digest of the app's files: `sw.js` holds the placeholder
`__APP_VERSION__`, replaced when it is served, so any change to any file installs a new cache."""
from __future__ import annotations

import hashlib
from pathlib import Path

from core.http import Reply, Request, Route, refusal

APP_DIR = Path(__file__).resolve().parent / "app"
PREFIX = "/handheld/"
API_PREFIX = "/handheld/api/"
VERSION_PLACEHOLDER = b"__APP_VERSION__"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".webmanifest": "application/manifest+json",
    ".json": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}

CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; style-src 'self'; "
                           "script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; "
                           "form-action 'self'")
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
)


def routes() -> list[Route]:
    """The app's routes: `/handheld` (sent on to `/handheld/`) and every file under `/handheld/`.
    The API's routes (`/handheld/api/…`) are more specific and must be matched first; a request
    for an API path that reaches this route is a `404 not_found`, never a file."""
    return [Route("GET", PREFIX, serve), Route("GET", PREFIX.rstrip("/"), _to_app)]


def serve(request: Request) -> Reply:
    """One file of the app, or `404 not_found` (the reason is the same for a missing file and a path
    that is refused, so a probe learns nothing about the disk)."""
    path = request.path.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith(PREFIX) or path.startswith(API_PREFIX):
        return refusal(404, "not_found")
    file = app_file(path[len(PREFIX):] or "index.html")
    if file is None:
        return refusal(404, "not_found")
    body = file.read_bytes()
    if file.name == "sw.js":
        body = body.replace(VERSION_PLACEHOLDER, app_version().encode())
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = [*SECURITY_HEADERS, ("ETag", etag)]
    if file.name == "sw.js":
        headers.append(("Service-Worker-Allowed", PREFIX))
    if etag in (request.headers.get("If-None-Match") or ""):
        return Reply(304, b"", content_type=CONTENT_TYPES[file.suffix], headers=tuple(headers))
    return Reply(200, body, content_type=CONTENT_TYPES[file.suffix], headers=tuple(headers))


def app_file(relative: str) -> Path | None:
    """The file under APP_DIR that `relative` names, or None: only plain names of known types, no
    `..`, no hidden files, no percent-encoding or back slashes, nothing that resolves outside APP_DIR
    (a symlink included)."""
    if (not relative or "%" in relative or "\\" in relative or "\x00" in relative or relative.startswith("/")
            or "//" in relative):
        return None
    parts = relative.split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return None
    candidate = APP_DIR.joinpath(*parts)
    if candidate.suffix not in CONTENT_TYPES:
        return None
    try:
        resolved = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not resolved.is_file() or not resolved.is_relative_to(APP_DIR):
        return None
    return resolved


def app_version() -> str:
    """The digest of every servable file of the app (sw.js as written, with its placeholder): the
    service worker's cache name, so a change to any file makes the phones fetch the shell again."""
    digest = hashlib.sha256()
    for file in sorted(APP_DIR.rglob("*")):
        relative = file.relative_to(APP_DIR)
        if file.is_file() and file.suffix in CONTENT_TYPES and not any(p.startswith(".") for p in relative.parts):
            digest.update(relative.as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _to_app(request: Request) -> Reply:
    return Reply(308, b"", content_type="text/plain", headers=(("Location", PREFIX), *SECURITY_HEADERS))
