"""The phone app's files as the device-facing server serves them (handheld/static.py): only files of
handheld/app, no way out of it, the right types, the security and cache headers, the service
worker's scope and version."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import orjson
import pytest

from handheld import static


@dataclass
class Headers:
    values: dict[str, str] = field(default_factory=dict)

    def get(self, name, default=None):
        return self.values.get(name, default)

    def get_all(self, name, default=None):
        return [self.values[name]] if name in self.values else default


@dataclass
class Request:
    path: str
    headers: Headers = field(default_factory=Headers)
    method: str = "GET"
    source: str = "192.0.2.7"

    def body(self) -> bytes:
        return b""

    def arrived(self) -> None:
        pass


def get(path: str, **headers: str):
    """What the route the server would pick answers (the longest matching path, as for the API)."""
    matching = [r for r in static.routes()
                if path.split("?")[0] == r.path or (r.path.endswith("/") and path.startswith(r.path))]
    assert matching, f"no route for {path}"
    route = max(matching, key=lambda r: len(r.path))
    return route.respond(Request(path, Headers(headers)))


def header(reply, name: str) -> str | None:
    return next((v for k, v in reply.headers if k.lower() == name.lower()), None)


def test_the_app_page_is_served_at_the_prefix_with_its_policy_and_no_cache():
    reply = get("/handheld/")
    assert reply.status == 200
    assert reply.content_type == "text/html; charset=utf-8"
    assert b'<script type="module" src="js/main.js">' in reply.body
    csp = header(reply, "Content-Security-Policy")
    for directive in ("default-src 'self'", "img-src 'self' blob: data:", "connect-src 'self'", "style-src 'self'",
                      "script-src 'self'", "object-src 'none'", "frame-ancestors 'none'"):
        assert directive in csp
    assert header(reply, "Cache-Control") == "no-cache"
    assert header(reply, "X-Content-Type-Options") == "nosniff"
    assert get("/handheld/index.html?x=1").body == reply.body


def test_the_bare_prefix_is_sent_on_to_the_app():
    reply = get("/handheld")
    assert reply.status == 308
    assert header(reply, "Location") == "/handheld/"


@pytest.mark.parametrize(("path", "content_type"), [
    ("/handheld/app.css", "text/css; charset=utf-8"),
    ("/handheld/js/main.js", "text/javascript; charset=utf-8"),
    ("/handheld/js/screens/report.js", "text/javascript; charset=utf-8"),
    ("/handheld/manifest.webmanifest", "application/manifest+json"),
    ("/handheld/icons/icon-192.png", "image/png"),
    ("/handheld/icons/lucide.svg", "image/svg+xml"),
])
def test_each_file_has_its_type(path, content_type):
    reply = get(path)
    assert reply.status == 200, path
    assert reply.content_type == content_type
    assert header(reply, "Content-Security-Policy")


def test_the_icons_are_the_sizes_the_manifest_says():
    manifest = orjson.loads(get("/handheld/manifest.webmanifest").body)
    assert manifest["start_url"] == manifest["scope"] == "/handheld/"
    assert manifest["display"] == "standalone"
    assert manifest["short_name"] == "网格通"
    for icon in manifest["icons"]:
        body = get("/handheld/" + icon["src"]).body
        if icon["type"] == "image/png":
            assert body[:8] == b"\x89PNG\r\n\x1a\n"
            width, height = int.from_bytes(body[16:20], "big"), int.from_bytes(body[20:24], "big")
            assert f"{width}x{height}" == icon["sizes"]


def test_the_service_worker_may_control_the_app_and_carries_the_apps_version():
    reply = get("/handheld/sw.js")
    assert reply.status == 200
    assert reply.content_type == "text/javascript; charset=utf-8"
    assert header(reply, "Service-Worker-Allowed") == "/handheld/"
    assert header(reply, "Cache-Control") == "no-cache"
    assert static.VERSION_PLACEHOLDER not in reply.body
    assert f'const VERSION = "{static.app_version()}"'.encode() in reply.body


def test_every_file_the_service_worker_precaches_is_served():
    source = (static.APP_DIR / "sw.js").read_text()
    shell = re.search(r"const SHELL = \[(.*?)\];", source, re.S).group(1)
    for name in re.findall(r'"([^"]+)"', shell):
        assert get("/handheld/" + (name if name != "./" else "")).status == 200, name


def test_every_module_the_app_imports_is_precached_for_offline_use():
    source = (static.APP_DIR / "sw.js").read_text()
    for module in static.APP_DIR.joinpath("js").rglob("*.js"):
        assert f'"{module.relative_to(static.APP_DIR).as_posix()}"' in source, module


def test_a_changed_file_changes_the_version(tmp_path, monkeypatch):
    app = tmp_path / "app"
    app.mkdir()
    (app / "index.html").write_text("one")
    (app / "sw.js").write_text('const VERSION = "__APP_VERSION__";')
    monkeypatch.setattr(static, "APP_DIR", app)
    before = static.app_version()
    (app / "index.html").write_text("two")
    assert static.app_version() != before


@pytest.mark.parametrize("path", [
    "/handheld/../handheld/static.py",
    "/handheld/../../etc/passwd",
    "/handheld/js/../../static.py",
    "/handheld/%2e%2e/static.py",
    "/handheld/..%2fstatic.py",
    "/handheld/js/..\\..\\static.py",
    "/handheld//etc/passwd",
    "/handheld/tools/make_icons.py",          # under app/, but not a type the app serves
    "/handheld/.hidden.js",
    "/handheld/js/nothing-here.js",
    "/handheld/js",                           # a folder
    "/handheld/index.html\x00.png",
    "/handheld/api/v1/me",                    # the API's, never a file
])
def test_nothing_outside_the_app_or_unknown_is_served(path):
    reply = get(path)
    assert reply.status == 404, path
    assert orjson.loads(reply.body) == {"error": "not_found"}
    assert reply.refused == "not_found"


def test_a_symlink_out_of_the_app_is_refused(tmp_path, monkeypatch):
    app = tmp_path / "app"
    app.mkdir()
    secret = tmp_path / "secret.js"
    secret.write_text("the server's secret")
    (app / "leak.js").symlink_to(secret)
    monkeypatch.setattr(static, "APP_DIR", app)
    assert get("/handheld/leak.js").status == 404


def test_a_phone_with_the_current_file_gets_not_modified():
    first = get("/handheld/app.css")
    etag = header(first, "ETag")
    again = get("/handheld/app.css", **{"If-None-Match": etag})
    assert again.status == 304
    assert again.body == b""
    assert get("/handheld/app.css", **{"If-None-Match": '"other"'}).status == 200
