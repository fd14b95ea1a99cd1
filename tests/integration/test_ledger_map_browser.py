"""The community map and its 3D view (/ledger/map) in Chromium, as the community's leader:

- the map draws the planted building's footprint (and no other community's) coloured by its
  houses' main use, the parts as points; the colouring follows the viewer's choice (the legend
  changes, the footprint's colour too);
- the 3D view draws the ground and one extruded mesh per building, as tall as its floors;
- a click on the footprint, and a click on the building's mesh in 3D, open its panel (floors ×
  houses, as the basic-data page draws it);
- a building of another community, forged into the panel's callback, is refused in words; the
  other community's map is refused; a street's scope lists its communities to choose from;
- a community of the demo ledger (generated footprints, floors, houses, parts; loaded for the
  test and removed after) draws every building with a footprint on the map and in 3D, each as
  tall as its floors, and its statistics page counts its residents.

Screenshots: /tmp/ledger-3d-*.png."""
from __future__ import annotations

import json
from contextlib import closing
from datetime import date

import psycopg2
import pytest
from playwright.sync_api import expect

from core.city import City
from core.ledger import HouseUse, RecordKind
from dashboard.vocabulary import HOUSE_USE_COLOURS
from ledger.geometry import FLOOR_HEIGHT_M
from ledger.privacy import Sealer, new_key
from simulator.ledger import load_into

from .screens import ensure_logins, post_callback, session_cookie, sign_in
from .test_ledger_stats import VIEWER, _place, plant_stats, remove_stats

pytestmark = pytest.mark.slow
WAIT_MS = 20_000
DEMO_LEADER = "t-ledger-demo-leader"     # a leader of the demo community


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


def _demo_part(city, community: str) -> City:
    """One community of the session city with its buildings, units and organisations."""
    grids = [g for g in city.grids if g.community_code == community]
    codes = {g.code for g in grids}
    return City(city.name, city.seed, grids=grids, buildings=[b for b in city.buildings if b.grid_code in codes],
                units=[u for u in city.units if u.grid_code in codes],
                organizations=[o for o in city.organizations if o.grid_code in codes])


@pytest.fixture(scope="module")
def demo_community(stack, city):
    """The demo ledger of the second-to-last street's last community, committed (the dashboard reads it),
    then removed: the rows it added by id, the ledger fields of the community's buildings, units
    and organisations put back to none."""
    dsn = stack.settings().pg_dsn
    community = [c.code for c in city.communities if c.code.startswith(city.streets[-2].code)][-1]
    assert community not in _place(city)                  # not where plant_stats plants
    part = _demo_part(city, community)
    grids = [g.code for g in part.grids]
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        cur.execute("select coalesce(max(house_id), 0), (select coalesce(max(change_id), 0) from ledger_changes), "
                    "array(select thing_id from things where grid_code = any(%s::bpchar[])) from houses", (grids,))
        last_house, last_change, things = cur.fetchone()
        load_into(cur, part, Sealer(new_key()), date.today())
    yield community, part
    with closing(psycopg2.connect(dsn)) as conn, conn, conn.cursor() as cur:
        houses = "select house_id from houses where house_id > %s and grid_code = any(%s::bpchar[])"
        cur.execute(f"update households set head_id = null where house_id in ({houses})", (last_house, grids))
        cur.execute(f"delete from residents where household_id in (select household_id from households "
                    f"where house_id in ({houses}))", (last_house, grids))
        cur.execute(f"delete from households where house_id in ({houses})", (last_house, grids))
        cur.execute(f"delete from houses where house_id in ({houses})", (last_house, grids))
        cur.execute("delete from things where grid_code = any(%s::bpchar[]) and thing_id <> all(%s)", (grids, things))
        cur.execute("delete from ledger_changes where change_id > %s and record_kind = %s and record_id = any(%s)",
                    (last_change, RecordKind.BUILDING.value, [b.building_id for b in part.buildings]))
        cur.execute("update buildings set footprint = null, entrances = 1 where grid_code = any(%s::bpchar[]) "
                    "and building_id = any(%s)", (grids, [b.building_id for b in part.buildings]))
        cur.execute("update units set building_id = null, licence = null, contact_name = null, contact_phone_sealed "
                    "= null, contact_phone_index = null, contact_phone_masked = null, fire_key_unit = false "
                    "where grid_code = any(%s::bpchar[])", (grids,))
        cur.execute("update organizations set building_id = null, contact_name = null, contact_phone_sealed = null, "
                    "contact_phone_index = null, contact_phone_masked = null where grid_code = any(%s::bpchar[])",
                    (grids,))


def test_a_demo_community_is_drawn_whole_on_the_map_and_in_3d(stack, dashboard, browser, demo_community):
    community, _ = demo_community
    with closing(psycopg2.connect(stack.settings().pg_dsn)) as conn, conn.cursor() as cur:
        cur.execute("select floors from buildings where org_contains(%s, grid_code) and footprint is not null",
                    (community,))
        floors = sorted(f for f, in cur.fetchall())
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    try:
        ensure_logins(stack.settings().pg_dsn, {DEMO_LEADER: ("leader", community)})
        sign_in(page, dashboard.url, DEMO_LEADER)
        page.goto(f"{dashboard.url}/ledger/map?scope={community}")
        assert len(floors) > 20
        expect(page.locator("path.ledger-map-building")).to_have_count(len(floors), timeout=WAIT_MS)
        page.wait_for_function(f"document.querySelector('#ledger-map-3d .js-plotly-plot')?.data?.length === "
                               f"{len(floors) + 1}", timeout=WAIT_MS)
        tops = sorted(m["top"] for m in _meshes(page)[1:])
        assert tops == pytest.approx([f * FLOOR_HEIGHT_M for f in floors])
        page.screenshot(path="/tmp/ledger-3d-demo-1920.png", full_page=True)
        page.locator("#ledger-map-colour input[value=height]").check()
        expect(page.locator("#ledger-map-legend")).to_contain_text("19", timeout=WAIT_MS)
        page.screenshot(path="/tmp/ledger-3d-demo-height-1920.png", full_page=True)
        page.goto(f"{dashboard.url}/ledger/stats?scope={community}")
        page.locator("#ledger-stats-registration .trace.bars").first.wait_for(timeout=WAIT_MS)
        assert int(page.inner_text("#ledger-stats-residents .wall-tile-value").replace(",", "")) > 1000
        page.screenshot(path="/tmp/ledger-stats-demo-1920.png", full_page=True)
        assert page.errors == []
    finally:
        context.close()
