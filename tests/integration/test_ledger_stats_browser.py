"""The ledger's statistics page (/ledger/stats) in Chromium, as leaders:

- a street's leader (1920×1080) sees the street's communities as bars; a click on the planted
  community's bar scopes the page to it (the URL and the org selector follow) and its grids
  become the bars; the path above leads back to the street;
- the community's leader granted RESTRICTED_TAGS sees the restricted tag counted, the one without
  the grant (1366×768) sees no restricted tag at all, only the care tags;
- the community's leader is refused another community's statistics, and a drill-down forged to
  another community changes nothing.

Screenshots: /tmp/ledger-stats-*.png."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core.ledger import TAG_LABELS, Tag

from .screens import ensure_logins, post_callback, session_cookie, sign_in
from .test_ledger_stats import GRANTED, VIEWER, grant_as_admin, plant_stats, remove_stats

pytestmark = pytest.mark.slow
WAIT_MS = 20_000
STREET_LEADER = "t-ledger-stats-street"


@pytest.fixture(scope="module")
def planted(stack, city):
    dsn = stack.settings().pg_dsn
    found = plant_stats(dsn, city)
    ensure_logins(dsn, {VIEWER: ("leader", found.community), GRANTED: ("leader", found.community),
                        STREET_LEADER: ("leader", found.community[:9])})
    from core.ledger import Permission
    grant_as_admin(dsn, GRANTED, Permission.RESTRICTED_TAGS, found.community)
    yield found
    remove_stats(dsn, found, (VIEWER, GRANTED, STREET_LEADER))


def _open(browser, base_url: str, username: str, scope: str, size: tuple[int, int]):
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    sign_in(page, base_url, username)
    page.goto(f"{base_url}/ledger/stats?scope={scope}")
    page.locator("#ledger-stats-registration .trace.bars").first.wait_for(timeout=WAIT_MS)
    return context, page


def _bar_centre(page, chart: str, n: int) -> tuple[float, float]:
    """The centre of the n-th bar of a chart's first trace (Plotly's drag layer takes the click)."""
    box = page.locator(f"#ledger-stats-{chart} .trace.bars").first.locator(".point path").nth(n).bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_a_street_leader_drills_from_the_street_into_a_community(dashboard, browser, planted, city):
    street = planted.community[:9]
    communities = sorted(c.code for c in city.communities if c.code.startswith(street))
    context, page = _open(browser, dashboard.url, STREET_LEADER, street, (1920, 1080))
    try:
        ticks = page.locator("#ledger-stats-registration .xtick text").all_text_contents()
        assert ticks == [city.org_name(c) for c in communities]
        assert int(page.inner_text("#ledger-stats-residents .wall-tile-value").replace(",", "")) >= 13
        page.screenshot(path="/tmp/ledger-stats-street-1920.png", full_page=True)
        page.mouse.click(*_bar_centre(page, "registration", communities.index(planted.community)))
        expect(page.locator("#ledger-stats-scope")).to_have_text(city.org_name(planted.community), timeout=WAIT_MS)
        assert f"scope={planted.community}" in page.url
        expect(page.locator("#shell-org")).to_contain_text(city.org_name(planted.community))
        grids = sorted(g.code for g in city.grids if g.community_code == planted.community)
        expect(page.locator("#ledger-stats-registration .xtick text")).to_have_count(len(grids), timeout=WAIT_MS)
        page.locator("#ledger-stats-path a", has_text=city.org_name(street)).wait_for(timeout=WAIT_MS)
        page.screenshot(path="/tmp/ledger-stats-community-1920.png", full_page=True)
        assert page.errors == []
    finally:
        context.close()


def test_restricted_tags_are_shown_only_to_the_granted_leader(dashboard, browser, planted):
    restricted, care = str(TAG_LABELS[Tag.COMMUNITY_CORRECTION]), str(TAG_LABELS[Tag.ELDERLY_ALONE])
    context, page = _open(browser, dashboard.url, GRANTED, planted.community, (1920, 1080))
    try:
        text = page.locator("#ledger-stats-tags").text_content()
        assert restricted in text and care in text
    finally:
        context.close()
    context, page = _open(browser, dashboard.url, VIEWER, planted.community, (1366, 768))
    try:
        text = page.locator("#ledger-stats-tags").text_content()
        assert care in text and restricted not in text
        assert all(str(TAG_LABELS[t]) not in page.content() for t in
                   (Tag.COMMUNITY_CORRECTION, Tag.DRUG_REHABILITATION, Tag.PETITION_KEY_PERSON))
        page.screenshot(path="/tmp/ledger-stats-community-1366.png", full_page=True)
        assert page.errors == []
    finally:
        context.close()


def test_another_communitys_statistics_are_refused(dashboard, browser, planted):
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    try:
        sign_in(page, dashboard.url, VIEWER)
        page.goto(f"{dashboard.url}/ledger/stats?scope={planted.other_community}")
        assert "403" in page.locator("#shell-refusal").inner_text(timeout=WAIT_MS)
        assert page.locator("#ledger-stats").count() == 0
    finally:
        context.close()
    assert planted.grid in _post_drill(dashboard, planted.community, planted.grid)          # the way works
    assert planted.other_grid not in _post_drill(dashboard, planted.community, planted.other_grid)   # forged


def _post_drill(dashboard, scope: str, child: str) -> str:
    """The drill-down callback as the browser posts it for a click on `child`'s bar, as VIEWER (its
    output key read from the app's callback graph); no update (204) answers ''."""
    import json
    import urllib.request
    cookie = session_cookie(dashboard.url, VIEWER)
    request = urllib.request.Request(f"{dashboard.url}/_dash-dependencies", headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=20) as response:
        graph = json.loads(response.read())
    key = next(d["output"] for d in graph if any(i["id"] == "ledger-stats-registration" for i in d["inputs"]))
    prop = "search@" + key.split("@", 1)[1].rstrip(".") if "@" in key else "search"
    body = {"output": key, "outputs": {"id": "shell-url", "property": prop},
            "inputs": [{"id": "ledger-stats-registration", "property": "clickData",
                        "value": {"points": [{"customdata": child}]}},
                       {"id": "ledger-stats-houses", "property": "clickData", "value": None}],
            "state": [{"id": "shell-url", "property": "search", "value": f"?scope={scope}"}],
            "changedPropIds": ["ledger-stats-registration.clickData"]}
    return post_callback(dashboard.url, cookie, body)



def test_the_citys_admin_sees_the_districts_as_bars(dashboard, browser, planted, city):
    context, page = _open(browser, dashboard.url, "t-admin", "", (1920, 1080))
    try:
        ticks = page.locator("#ledger-stats-registration .xtick text").all_text_contents()
        assert ticks == [d.name for d in sorted(city.districts, key=lambda d: d.code)]
        assert page.locator("#ledger-stats-path a").count() == 0            # nothing above the city
        assert page.errors == []
    finally:
        context.close()
