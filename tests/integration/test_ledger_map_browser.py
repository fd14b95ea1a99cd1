"""The community map and its 3D view (/ledger/map) in Chromium, as the community's leader:

- the map draws the planted building's footprint (and no other community's) coloured by its
  houses' main use, the parts as points; the colouring follows the viewer's choice (the legend
  changes, the footprint's colour too);
- the 3D view draws the ground and one extruded mesh per building, as tall as its floors;
- a click on the footprint, and a click on the building's mesh in 3D, open its panel (floors ×
  houses, as the basic-data page draws it);
- a building of another community, forged into the panel's callback, is refused in words; the
  other community's map is refused; a street's scope lists its communities to choose from.

Screenshots: /tmp/ledger-3d-*.png."""
from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from core.ledger import HouseUse
from dashboard.vocabulary import HOUSE_USE_COLOURS
from ledger.geometry import FLOOR_HEIGHT_M

from .screens import ensure_logins, post_callback, session_cookie, sign_in
from .test_ledger_stats import VIEWER, plant_stats, remove_stats

pytestmark = pytest.mark.slow
WAIT_MS = 20_000


@pytest.fixture(scope="module")
def planted(stack, city):
    dsn = stack.settings().pg_dsn
    found = plant_stats(dsn, city)
    ensure_logins(dsn, {VIEWER: ("leader", found.community)})
    yield found
    remove_stats(dsn, found, (VIEWER,))


def _open(browser, base_url: str, scope: str, size: tuple[int, int]):
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    sign_in(page, base_url, VIEWER)
    page.goto(f"{base_url}/ledger/map?scope={scope}")
    return context, page


def _meshes(page) -> list[dict]:
    """The 3D view's traces as the browser holds them (type, name, the highest z)."""
    return page.evaluate("""() => document.querySelector('#ledger-map-3d .js-plotly-plot').data.map(
        t => ({type: t.type, name: t.name, top: Math.max(...Array.from(t.z))}))""")


def test_the_map_and_the_3d_view_draw_the_community_and_open_a_building(dashboard, browser, planted):
    context, page = _open(browser, dashboard.url, planted.community, (1920, 1080))
    try:
        footprint = page.locator("path.ledger-map-building")
        expect(footprint).to_have_count(1, timeout=WAIT_MS)                # ours; the other community's is not
        assert footprint.get_attribute("fill").lower() == HOUSE_USE_COLOURS[HouseUse.OWNER_OCCUPIED]
        page.wait_for_function("document.querySelector('#ledger-map-3d .js-plotly-plot')?.data?.length === 2",
                               timeout=WAIT_MS)
        meshes = _meshes(page)
        assert [m["type"] for m in meshes] == ["mesh3d", "mesh3d"]
        assert meshes[0]["top"] == 0 and meshes[1]["top"] == pytest.approx(6 * FLOOR_HEIGHT_M)   # six floors
        assert page.locator("path.ledger-map-part").count() == 3
        page.screenshot(path="/tmp/ledger-3d-1920.png", full_page=True)

        footprint.click()
        panel = page.locator("#ledger-map-building-panel")
        expect(panel.locator("#ledger-building-grid button.ledger-house")).to_have_count(6, timeout=WAIT_MS)
        assert "统计苑" in panel.inner_text()

        page.locator("#ledger-map-colour input[value=occupancy]").check()
        expect(page.locator("#ledger-map-legend")).to_contain_text("95", timeout=WAIT_MS)   # 5 of 6 not vacant
        expect(footprint).not_to_have_attribute("fill", HOUSE_USE_COLOURS[HouseUse.OWNER_OCCUPIED], timeout=WAIT_MS)
        assert page.errors == []
    finally:
        context.close()


def test_a_click_on_a_building_in_3d_opens_its_panel(dashboard, browser, planted):
    context, page = _open(browser, dashboard.url, planted.community, (1366, 768))
    try:
        page.wait_for_function("document.querySelector('#ledger-map-3d .js-plotly-plot')?.data?.length === 2",
                               timeout=WAIT_MS)
        # Plotly's own click event for the building's trace (WebGL picking is Plotly's to test)
        page.evaluate("""() => { const gd = document.querySelector('#ledger-map-3d .js-plotly-plot');
            gd.emit('plotly_click', {points: [{curveNumber: 1, pointNumber: 0, x: 0, y: 0, z: 0,
                                               data: gd.data[1], fullData: gd._fullData[1]}]}); }""")
        expect(page.locator("#ledger-map-building-panel #ledger-building-grid button.ledger-house")) \
            .to_have_count(6, timeout=WAIT_MS)
        page.screenshot(path="/tmp/ledger-3d-1366.png", full_page=True)
        assert page.errors == []
    finally:
        context.close()


def test_another_communitys_building_and_map_are_refused(dashboard, browser, planted):
    cookie = session_cookie(dashboard.url, VIEWER)
    forged = {"type": "ledger-map-building", "building": planted.buildings[1]}       # the other community's
    body = {"output": "ledger-map-panel.children", "outputs": {"id": "ledger-map-panel", "property": "children"},
            "inputs": [[{"id": forged, "property": "n_clicks", "value": 1}],
                       {"id": "ledger-map-3d", "property": "clickData", "value": None}],
            "state": [{"id": "ledger-map-3d-ids", "property": "data", "value": []},
                      {"id": "shell-url", "property": "search", "value": f"?scope={planted.community}"}],
            "changedPropIds": [_changed(planted.buildings[1])]}
    answer = post_callback(dashboard.url, cookie, body)
    assert "no such building in this scope" in answer and "ledger-building-grid" not in answer
    own = dict(body, inputs=[[{"id": {**forged, "building": planted.buildings[0]}, "property": "n_clicks",
                               "value": 1}], body["inputs"][1]],
               changedPropIds=[_changed(planted.buildings[0])])
    assert "ledger-building-grid" in post_callback(dashboard.url, cookie, own)     # the way works for its own

    context, page = _open(browser, dashboard.url, planted.other_community, (1366, 768))
    try:
        assert "403" in page.locator("#shell-refusal").inner_text(timeout=WAIT_MS)
    finally:
        context.close()


def _changed(building_id: str) -> str:
    """Dash's name for a footprint's clicks changing (its id's JSON, keys sorted, then the property)."""
    return json.dumps({"building": building_id, "type": "ledger-map-building"}, separators=(",", ":")) + ".n_clicks"


def test_a_wider_scope_lists_its_communities(dashboard, browser, planted, city):
    street = planted.community[:9]
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    try:
        sign_in(page, dashboard.url, "t-admin")
        page.goto(f"{dashboard.url}/ledger/map?scope={street}")
        links = page.locator("#ledger-map-communities a")
        expect(links).to_have_count(sum(1 for c in city.communities if c.code.startswith(street)), timeout=WAIT_MS)
        links.filter(has_text=city.org_name(planted.community)).click()
        expect(page.locator("path.ledger-map-building")).to_have_count(1, timeout=WAIT_MS)
    finally:
        context.close()
