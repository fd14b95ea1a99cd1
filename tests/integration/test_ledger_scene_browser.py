"""Who needs help first at the scene, in Chromium (the planting: test_ledger_scene.plant_scene):

- the case page (1920×1080 and 1366×768) for a dispatcher of community A: a case near building A
  lists who needs help first there (floor, house, name, age, tag, masked phone), elderly first;
- the same dispatcher on a case of their grid whose position is at building B, across the border in
  community B: the count only — no name of B's in any answer the browser receives;
- the dispatcher console: the case chosen shows the same list, compact, and the count only for the
  case at B;
- the wall (a wall viewer, a kiosk nobody signs in to by name): a gas alarm at a building where two
  people need help first shows "2 位需关注人员" in its ticker row, and no frame, page or answer
  carries a planted name;
- no answer anywhere carries an ID number (even masked) or a phone in full.

Screenshots: /tmp/scene-*.png."""
from __future__ import annotations

import secrets
import uuid
from contextlib import closing
from datetime import date
from pathlib import Path

import orjson
import psycopg2
import pytest

from core.ledger import Relation, Tag
from telemetry.topics import gateway_topic

from .screens import ensure_logins, iso, now, publish_as, sign_in
from .test_ledger_reads import ledger_sealer
from .test_ledger_scene import _house, _household, _person, plant_case, plant_scene, remove_scene

pytestmark = pytest.mark.slow
DISPATCHER_A = "t-scene-dispatcher-a"
WAIT_MS = 20_000
SHOTS = Path("/tmp")
WALL = "(window.gcc && window.gcc.live && window.gcc.live.state('wall'))"


@pytest.fixture(scope="module")
def planted(stack, city):
    dsn = stack.settings().pg_dsn
    plot = plant_scene(dsn, city, ledger_sealer(stack), secrets.token_hex(3))
    plant_case(stack, plot, plot.point_a[0], plot.point_a[1], "场景测试：3号楼 楼道堆物")
    plant_case(stack, plot, plot.point_b[0], plot.point_b[1], "场景测试：边界处 电动车充电")
    ensure_logins(dsn, {DISPATCHER_A: ("dispatcher", plot.community_a)})
    yield plot
    remove_scene(stack, plot)


class Answers:
    """Every answer of the page's origin and every socket frame the browser receives, kept to read
    after the step (reading a body inside Playwright's handler would block its dispatcher)."""

    def __init__(self, page) -> None:
        self.responses, self.frames = [], []
        page.on("response", lambda r: self.responses.append(r) if "/assets/" not in r.url
                and "_dash-component-suites" not in r.url else None)
        page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: self.frames.append(str(payload))))

    def texts(self) -> str:
        found = []
        for response in self.responses:
            try:
                found.append(response.text())
            except Exception:  # noqa: BLE001 (a redirect or an aborted request has no body)
                continue
        self.responses = []
        return "\n".join(found + self.frames)


def _no_id_number_or_full_phone(text: str, plot) -> None:
    from ledger import privacy

    for person in plot.people.values():
        assert person.id_number not in text and person.phone not in text
        assert privacy.mask_id_number(person.id_number) not in text


def _shoot(page, name: str) -> None:
    for width, height in ((1920, 1080), (1366, 768)):
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(SHOTS / f"scene-{name}-{width}.png"))
    page.set_viewport_size({"width": 1920, "height": 1080})


def test_the_case_page_lists_names_for_its_dispatcher_and_the_count_across_the_border(dashboard, page, planted):
    answers = Answers(page)
    sign_in(page, dashboard.url, DISPATCHER_A)
    at_a, at_b = planted.cases
    page.goto(f"{dashboard.url}/case/{at_a}")
    page.wait_for_selector("#case-scene-table", timeout=WAIT_MS)
    rows = [page.inner_text(f"#case-scene-row-{n}") for n in range(3)]
    people = planted.people
    for row, key, tag in zip(rows, ("alone", "disabled", "child"), ("独居老人", "残疾人", "留守儿童"), strict=True):
        assert people[key].name in row and tag in row
    assert "5F" in rows[0] and "501" in rows[0] and people["alone"].phone[-4:] in rows[0]
    assert "3 位需关注人员" in page.inner_text("#case-scene-count")
    panel = page.inner_text("#case-scene")
    for key in ("spouse", "grandma", "watched", "gone", "other"):
        assert people[key].name not in panel
    assert "社区矫正" not in panel and "信访" not in panel
    _shoot(page, "case")
    page.goto(f"{dashboard.url}/case/{at_b}")
    page.wait_for_selector("#case-scene-names-hidden", timeout=WAIT_MS)
    assert "1 位需关注人员" in page.inner_text("#case-scene-count")
    assert page.locator("#case-scene-table").count() == 0
    shown = answers.texts()
    assert people["other"].name not in shown
    _no_id_number_or_full_phone(shown, planted)
    _shoot(page, "case-count-only")
    assert page.errors == []


def test_the_console_shows_the_chosen_case_s_list_compact(dashboard, page, planted):
    answers = Answers(page)
    sign_in(page, dashboard.url, DISPATCHER_A)
    at_a, at_b = planted.cases
    page.goto(f"{dashboard.url}/dispatch")
    page.locator(f".dispatch-case[id*='{at_a}']").click(timeout=WAIT_MS)
    page.wait_for_selector("#dispatch-scene-table", timeout=WAIT_MS)
    table = page.inner_text("#dispatch-scene-table")
    assert all(planted.people[k].name in table for k in ("alone", "disabled", "child"))
    _shoot(page, "dispatch")
    page.set_viewport_size({"width": 1366, "height": 768})      # the panel does not push the action out of reach
    register = page.locator(".dispatch-register")
    register.scroll_into_view_if_needed()
    box = register.bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 768
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.locator(f".dispatch-case[id*='{at_b}']").click(timeout=WAIT_MS)
    page.wait_for_selector("#dispatch-scene-names-hidden", timeout=WAIT_MS)
    assert page.locator("#dispatch-scene-table").count() == 0
    assert "1 位需关注人员" in page.inner_text("#dispatch-scene-count")
    shown = answers.texts()
    assert planted.people["other"].name not in shown
    _no_id_number_or_full_phone(shown, planted)
    assert page.errors == []


def test_the_wall_shows_an_alarm_s_count_and_carries_no_name(stack, city, dashboard, page, planted):
    sensor = next(s for s in city.sensors if s.kind.value == "gas_detector" and s.grid_code == planted.grid_a) \
        if any(s.kind.value == "gas_detector" and s.grid_code == planted.grid_a for s in city.sensors) \
        else next(s for s in city.sensors if s.kind.value == "gas_detector" and s.grid_code.startswith(planted.street))
    there = [_person("阿婆", date(1936, 6, 6), Relation.HEAD, 20, Tag.ELDERLY_ALONE),
             _person("阿公", date(1934, 3, 3), Relation.SPOUSE, 21, Tag.DISABLED, gender="male")]
    with closing(psycopg2.connect(stack.settings().pg_dsn)) as conn, conn, conn.cursor() as cur:
        house = _house(cur, planted, sensor.building_id, sensor.grid_code, 9, 3, f"t{uuid.uuid4().hex[:6]}")
        _household(cur, ledger_sealer(stack), house, sensor.grid_code, there)
    names = [p.name for p in (*planted.people.values(), *there)]
    answers = Answers(page)
    sign_in(page, dashboard.url, "t-viewer")
    scope = sensor.grid_code[:12]
    page.goto(f"{dashboard.url}/wall?scope={scope}&kiosk=1")
    page.wait_for_function(f"() => {{ const st = {WALL}; return st && st.scope !== null; }}", timeout=WAIT_MS)
    alarm_id = f"GAS-{uuid.uuid4().hex[:8]}"
    publish_as(stack, sensor.gateway_id, gateway_topic(sensor.gateway_id, "alarm"), orjson.dumps({
        "ts": iso(now()), "alarm_id": alarm_id, "sensor_id": sensor.sensor_id, "alarm_type": "gas_over_threshold",
        "severity": 4, "state": "raised", "value": 31.0}))
    page.wait_for_function("() => document.querySelector('#wall-ticker').innerText.includes('2 位需关注人员')",
                           timeout=WAIT_MS)
    page.screenshot(path=str(SHOTS / "scene-wall-1920.png"))
    page.set_viewport_size({"width": 1366, "height": 768})
    page.screenshot(path=str(SHOTS / "scene-wall-1366.png"))
    carried = answers.texts() + page.content()
    assert alarm_id in carried and '"needs_help":2' in carried.replace(" ", "")
    assert not [n for n in names if n in carried]
    _no_id_number_or_full_phone(carried, planted)
    assert page.errors == []
