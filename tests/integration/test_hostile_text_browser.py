"""Hostile text in every free-text field the system stores, on every page, as every role: no script
runs and the text is shown as text.

The strings are planted in the database directly (as data from before the door's rule, an import,
or a bug elsewhere would be): a script tag, an `<img onerror>`, a `javascript:` URL, an RTL override
and, in some fields, 10,000 characters. Each calls `gccXss()` if it ever runs as markup; the browser
counts the calls (and any dialog). Every tooltip and popup of every map is opened, since Leaflet
renders a tooltip's string as HTML only when it opens (and one bound as a string is a failure of its
own, whether or not its text could run). Each field carries its own marker, and each
marker must be seen as text on at least one page: a field that reaches no screen says so in
NOT_SHOWN, so a new screen of it is tested, not skipped.

The door's side (each field refuses the control characters and the lengths) is in
tests/unit/test_freetext.py and test_hostile_text_doors.py."""
from __future__ import annotations

import os

import pytest

from dashboard.declarations import pages as declared

from .hostile_text import COUNT_XSS, PLANTED_ELEMENTS, marked, planted_city
from .screens import SCREENSHOTS, TEST_LOGINS, sign_in

pytestmark = pytest.mark.slow

# field -> how it is planted (the fixture below); the marker "XSS[field]" is looked for on the pages
FIELDS = ("member name", "building name", "grid name", "community name", "street name", "user name",
          "wall screen name", "device label", "report text", "report address", "case title", "case place",
          "case note", "refusal reason", "announcement title", "announcement text", "diary entry",
          "audit reason", "calendar day name", "shop name", "organisation name")
# a field planted like the others that no screen shows yet, and why (a screen that starts showing it is
# checked as the others are: it is planted all the same)
NOT_SHOWN = {"shop name": "the ledger of places comes with the basic-data issue; no screen lists shops yet",
             "organisation name": "likewise: no screen lists organisations yet"}

# every role's test login (TEST_LOGINS: the whole city)
LOGIN_OF = {role: username for username, (role, scope) in TEST_LOGINS.items() if not scope}

# catches every Leaflet map as it is made, and counts calls of gccXss()
_CATCH_MAPS = "(() => {" + COUNT_XSS + """
  let real;
  Object.defineProperty(window, "L", {configurable: true, get() { return real; }, set(value) {
    real = value;
    try { value.Map.addInitHook(function () { (window.gccMaps = window.gccMaps || []).push(this); }); } catch (e) {}
  }});
})();
"""
_OPEN_PLANTED_TOOLTIPS = """
() => {
  const opened = [], html = [];
  (window.gccMaps || []).forEach(map => map.eachLayer(layer => {
    for (const [get, open] of [["getTooltip", "openTooltip"], ["getPopup", "openPopup"]]) {
      const bound = layer[get] && layer[get]();
      if (!bound) continue;
      let content = bound._content;
      if (typeof content === "function") content = content(layer);
      const text = typeof content === "string" ? content : (content && content.textContent) || "";
      if (!text.includes("XSS[")) continue;
      if (typeof content === "string") html.push(text.slice(0, 60));   // a string is HTML to Leaflet
      try { layer[open](layer.getLatLng ? layer.getLatLng() : undefined); } catch (e) {}
      opened.push(text.slice(text.indexOf("XSS["), text.indexOf("]", text.indexOf("XSS[")) + 1));
    }
  }));
  return {opened: opened, html: html};
}
"""


@pytest.fixture(scope="module")
def planted(stack, city):
    """Hostile text in every free-text field, in the first street; put back (or ended) afterwards."""
    with planted_city(stack, city) as done:
        yield {"case_id": done.case_id, "street": done.street.code}


@pytest.fixture(scope="module")
def dashboard(stack, settings, city, planted, tmp_path_factory):
    """This module's dashboard, started after the planting (it reads the city's names at start)."""
    from .ingest_helpers import fed_by_a_worker
    from .screens import Dashboard

    with fed_by_a_worker(stack, Dashboard(stack, tmp_path_factory.mktemp("dash") / "dashboard.log"), 96) as board:
        yield board


def _visits(case_id: str):
    only = os.environ.get("GCC_HOSTILE_ONLY")      # "path:role,…" while looking into one page
    for page in declared():
        path = f"{page.path}/{case_id}" if page.subpaths else page.path
        for role in sorted(r.value for r in page.roles):
            if not only or f"{page.path}:{role}" in only.split(","):
                yield path, role


def _choose_the_planted_case(page) -> None:
    """The dispatcher console draws a case's marker (and its candidates) once the case is chosen."""
    page.locator(".dispatch-case", has_text="XSS[case title]").first.click()
    page.locator("#dispatch-candidates", has_text="XSS[case place]").wait_for()   # the chosen case's candidates


# what a page shows of the planted data only after a person does something on it
INTERACTIONS = {"/dispatch": _choose_the_planted_case}


class FailedCallbacks(list):
    """The page's Dash requests answered with an error (each: the page, the status, what was asked)."""

    def __init__(self, page) -> None:
        super().__init__()
        page.on("requestfinished", self._finished)

    def _finished(self, request) -> None:
        response = request.response() if "/_dash-" in request.url else None
        if response is not None and response.status >= 400:
            self.append(f"{request.frame.url}: {response.status} from {(request.post_data or '')[:200]}")


def _drawn(page) -> None:
    """Until the page's callbacks have answered (their chain done, the network quiet: Playwright's
    networkidle; the live socket is no request)."""
    page.wait_for_load_state("networkidle")


def _look(page, where: str, dialogs: list[str], seen: dict[str, set[str]]) -> list[str]:
    """What is wrong on the page now (script ran, markup became elements, a tooltip bound as HTML);
    which planted fields it shows as text (the marker and the markup after it, as characters)."""
    problems = []
    tooltips = page.evaluate(_OPEN_PLANTED_TOOLTIPS)           # those with planted text, opened
    if tooltips["html"]:
        problems.append(f"{where}: tooltips bound as HTML strings: {tooltips['html']}")
    for marker in tooltips["opened"]:                          # each opened tooltip drawn, with its text
        page.locator(".leaflet-tooltip", has_text=marker).first.wait_for()
    runs, elements = page.evaluate("window.gccXssRuns"), page.evaluate(PLANTED_ELEMENTS)
    if runs or dialogs or elements:
        problems.append(f"{where}: {runs} script runs, {elements} planted elements, dialogs {dialogs}")
    return problems + marked(page.evaluate("document.body.textContent"), FIELDS, where, seen)


def test_hostile_text_runs_nowhere_and_reads_as_text_on_every_page_for_every_role(dashboard, planted, browser):
    seen: dict[str, set[str]] = {}
    problems: list[str] = []
    by_role: dict[str, list[str]] = {}
    for path, role in _visits(planted["case_id"]):
        by_role.setdefault(role, []).append(path)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for role, paths in sorted(by_role.items()):
        context = browser.new_context(viewport={"width": 1920, "height": 1080})
        context.add_init_script(_CATCH_MAPS)
        page = context.new_page()
        failed = FailedCallbacks(page)
        dialogs: list[str] = []
        errors: list[str] = []
        page.on("dialog", lambda d, dialogs=dialogs: (dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        sign_in(page, dashboard.url, LOGIN_OF[role])
        for path in paths:
            page.goto(f"{dashboard.url}{path}")
            _drawn(page)
            if path in INTERACTIONS:
                INTERACTIONS[path](page)
                _drawn(page)
            problems += _look(page, f"{path} as {role}", dialogs, seen)
            if role == "admin":                          # to look at: the planted text as a person sees it
                page.screenshot(path=str(SCREENSHOTS / f"hostile{path.split('/C')[0].replace('/', '-')}.png"))
        if errors or failed:
            problems.append(f"as {role}: page errors {errors}, failed callbacks {failed}")
        context.close()
    assert problems == []
    unseen = sorted(set(FIELDS) - set(seen) - set(NOT_SHOWN))
    assert unseen == [], f"planted but shown on no page (add where, or say why in NOT_SHOWN): {unseen}"
