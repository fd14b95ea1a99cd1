"""The members' photos on the command center's screens (Chromium): a case whose report names two
uploaded photos shows their two thumbnails on its page to a dispatcher of its street, each linking
to the full photo; the photo's URL answers that dispatcher (a JPEG, nosniff, private) and is 404 for
a dispatcher of another street, as for a photo that does not exist; an older terminal's path is
still shown as text. Screenshots of the page at 1366×768 and 1920×1080."""
from __future__ import annotations

import io
import urllib.error
import urllib.request

import orjson
import pytest
from PIL import Image

from handheld.photos import Photos, ref_of

from .screens import SCREENSHOTS, ensure_logins, session_cookie, sign_in
from .test_cases_engine import seeded
from .test_photos import _caller, _case_naming, _jpeg

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cases_settings(stack, city):
    settings = seeded(stack)
    ensure_logins(stack.settings().pg_dsn, {"t-street0-dispatcher": ("dispatcher", city.streets[0].code),
                                            "t-street1-dispatcher": ("dispatcher", city.streets[1].code)})
    return settings


def _get(url: str, cookie: str):
    """(status, headers, body) of a GET with the session's cookie."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Cookie": cookie}), timeout=15) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers, refused.read()


def _photo_case(stack, city, cases_settings, n: int) -> tuple[str, list[str], str]:
    """A case of the first street whose report names two uploaded photos and an old terminal's path."""
    street = city.streets[0].code
    grid = [g for g in city.grids if g.code.startswith(street)][n]
    reporter = next(m for m in city.members if m.grid_code == grid.code)
    photos = Photos(stack.app_settings("ingest").pg_dsn)
    try:
        refs = [orjson.loads(photos.upload(_caller(reporter, "hh-browser"), "image/jpeg",
                                           _jpeg(100 + 10 * n + k, size=(1200, 900))).body)["ref"]
                for k in range(2)]
    finally:
        photos.close()
    old_path = "photos/T0001/20240501-0001.jpg"
    case_id = _case_naming(stack, cases_settings, city, grid.code, reporter, [*refs, old_path])
    return case_id, refs, old_path


def test_a_cases_report_photos_show_as_thumbnails_for_its_street_and_404_for_another(stack, city, dashboard,
                                                                                      cases_settings, page):
    case_id, refs, old_path = _photo_case(stack, city, cases_settings, 1)
    sign_in(page, dashboard.url, "t-street0-dispatcher")
    page.goto(f"{dashboard.url}/case/{case_id}")
    thumbs = page.locator("#case-photos img.photo-thumb")
    thumbs.nth(1).wait_for()
    assert thumbs.count() == 2
    page.wait_for_function("() => [...document.querySelectorAll('#case-photos img.photo-thumb')]"
                           ".every(i => i.complete && i.naturalWidth === 320)", timeout=15000)   # loaded, thumbnails
    links = [page.locator("#case-photos a.photo-link").nth(k).get_attribute("href") for k in range(2)]
    assert links == [f"/photos/{ref.removeprefix('sha256:')}" for ref in refs]
    assert "Before" in page.inner_text("#case-photos") and old_path in page.inner_text("#case-sources")
    for width, height, name in ((1366, 768, "case-photos-laptop"), (1920, 1080, "case-photos")):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_function(f"() => window.innerWidth === {width}")
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    assert page.errors == []

    mine = session_cookie(dashboard.url, "t-street0-dispatcher")
    status, headers, body = _get(dashboard.url + links[0], mine)
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"].startswith("private")
    assert Image.open(io.BytesIO(body)).size == (1200, 900)
    status, _, thumb = _get(dashboard.url + links[1] + "?thumb=1", mine)
    assert status == 200 and Image.open(io.BytesIO(thumb)).size == (320, 240)
    assert _get(f"{dashboard.url}/photos/{ref_of(b'none').removeprefix('sha256:')}", mine)[0] == 404

    theirs = session_cookie(dashboard.url, "t-street1-dispatcher")
    for link in links:
        assert _get(dashboard.url + link, theirs)[0] == 404
        assert _get(dashboard.url + link + "?thumb=1", theirs)[0] == 404
    assert _get(dashboard.url + links[0], "")[0] in (401, 302)        # nobody signed in: never the photo


def test_the_dispatcher_console_shows_the_chosen_cases_photos(stack, city, dashboard, cases_settings, page):
    case_id, refs, _ = _photo_case(stack, city, cases_settings, 2)
    sign_in(page, dashboard.url, "t-street0-dispatcher")
    page.goto(f"{dashboard.url}/dispatch")
    chosen = page.locator(f"[id*='{case_id}']").first
    chosen.wait_for(timeout=20000)
    chosen.click()
    thumbs = page.locator("#dispatch-cand-photos img.photo-thumb")
    thumbs.nth(1).wait_for(timeout=15000)
    assert thumbs.count() == 2
    assert page.locator("#dispatch-cand-photos a.photo-link").first.get_attribute("href") == \
        f"/photos/{refs[0].removeprefix('sha256:')}"
    page.wait_for_function("() => [...document.querySelectorAll('#dispatch-cand-photos img.photo-thumb')]"
                           ".every(i => i.complete && i.naturalWidth === 320)", timeout=15000)
    page.screenshot(path=str(SCREENSHOTS / "dispatch-photos.png"))
    assert page.errors == []
