"""The dispatcher console in real headless Chromium against the real stack: its own live feed (task
acknowledgements and member status, never the 2 Hz fixes), and the first command through the
command module (acknowledging an alarm: written, audited, shown on the wall)."""
from __future__ import annotations

import uuid
from datetime import timedelta

import orjson
import pytest

from core.orgcodes import Level, ancestor
from telemetry.topics import gateway_topic, terminal_topic

from ..support import wait_for
from .ingest_helpers import count
from .screens import SCREENSHOTS, ensure_signed_in, iso, member_fix, now, publish_as

pytestmark = pytest.mark.slow


def _open(page, dashboard, path: str, feed: str, scope: str = "") -> None:
    ensure_signed_in(page, dashboard.url)
    page.goto(f"{dashboard.url}{path}" + (f"?scope={scope}" if scope else ""))
    page.wait_for_function(f"() => {{ const st = window.gcc && window.gcc.live && window.gcc.live.state('{feed}');"
                           f" return st && st.scope !== null; }}", timeout=20000)


def _raise_gas_alarm(stack, sensor) -> str:
    alarm_id = f"GAS-{uuid.uuid4().hex[:8]}"
    publish_as(stack, sensor.gateway_id, gateway_topic(sensor.gateway_id, "alarm"), orjson.dumps({
        "ts": iso(now()), "alarm_id": alarm_id, "sensor_id": sensor.sensor_id, "alarm_type": "gas_over_threshold",
        "severity": 4, "state": "raised", "value": 31.0}))
    return alarm_id


def test_task_acknowledgements_reach_the_console_and_position_frames_do_not(stack, city, dashboard, page):
    member = city.members[120]
    community = ancestor(member.grid_code, Level.COMMUNITY)
    received: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: received.append(str(payload))))
    _open(page, dashboard, "/dispatch", "dispatch", community)
    point = city.grid_by_code[member.grid_code].boundary.representative_point()
    member_fix(stack, member, point.x, point.y)                     # a fix: the wall's, not the console's
    task_id = f"K-{uuid.uuid4().hex[:8]}"
    publish_as(stack, member.terminal_id, terminal_topic(member.terminal_id, "task/ack"),
               orjson.dumps({"ts": iso(now()), "task_id": task_id, "action": "accepted"}))
    page.wait_for_function(f"() => document.querySelector('#dispatch-acks').innerText.includes('{task_id}')",
                           timeout=10000)
    row = page.inner_text("#dispatch-acks")
    assert member.name in row and "accepted" in row
    frames = [f for f in received if '"frame"' in f]
    assert frames and any(task_id in f for f in frames)
    assert not any('"fix"' in f for f in frames), "the console received position frames"
    assert page.errors == []


def test_a_member_going_offline_and_coming_back_changes_the_consoles_counts(stack, city, dashboard, page):
    member = city.members[130]
    community = ancestor(member.grid_code, Level.COMMUNITY)
    point = city.grid_by_code[member.grid_code].boundary.representative_point()
    member_fix(stack, member, point.x, point.y, now() - timedelta(seconds=20))
    _open(page, dashboard, "/dispatch", "dispatch", community)
    wait_for(lambda: page.evaluate(f"() => (window.gcc.live.state('dispatch').members.get('{member.terminal_id}')"
                                   f" || {{}}).state") == "online", 10, "the member online on the console")

    def offline() -> int:
        return int(page.inner_text("#dispatch-count-offline").split()[0])

    before = offline()
    publish_as(stack, member.terminal_id, terminal_topic(member.terminal_id, "status"),
               orjson.dumps({"ts": iso(now() - timedelta(seconds=10)), "state": "offline", "battery_pct": 50}))
    wait_for(lambda: offline() == before + 1, 10, "the offline count to go up",
             explain=lambda: page.inner_text("#dispatch-members"))
    member_fix(stack, member, point.x, point.y)       # it reports again: online, though the console gets no fixes
    wait_for(lambda: offline() == before, 10, "the member back online on the console",
             explain=lambda: page.inner_text("#dispatch-members"))


def test_acknowledging_an_alarm_is_written_audited_and_shown_on_the_wall(stack, city, dashboard, page, browser, db):
    community = city.communities[4]
    sensor = next(s for s in city.sensors if s.kind.value == "gas_detector" and s.grid_code.startswith(community.code))
    wall = browser.new_page(viewport={"width": 1920, "height": 1080})   # watching while it happens
    _open(wall, dashboard, "/wall", "wall", community.code)
    _open(page, dashboard, "/dispatch", "dispatch", community.code)
    alarm_id = _raise_gas_alarm(stack, sensor)
    button = page.locator(f'[id="dispatch-alarm-{sensor.sensor_id}/{alarm_id}"] .ack-button')
    button.wait_for(timeout=10000)
    button.click()
    page.wait_for_function("() => document.querySelector('#dispatch-result').innerText.includes('acknowledged')",
                           timeout=10000)
    assert "Gas over threshold" in page.inner_text("#dispatch-result")
    page.locator(f'[id="dispatch-alarm-{sensor.sensor_id}/{alarm_id}"] .acked-by').wait_for(timeout=10000)
    assert count(db, "select count(*) from alarm_acknowledgements where alarm_id = %s and actor = 't-admin'",
                 alarm_id) == 1                    # who signed in, not a demo actor
    assert count(db, "select count(*) from audit_log where target = %s and action = 'alarm.acknowledge' "
                     "and outcome = 'done' and scope_code = %s and actor = 't-admin' and roles = '{admin}'",
                 f"alarm:{sensor.sensor_id}/{alarm_id}", sensor.grid_code) == 1
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dispatch.png"))

    try:   # the open wall marks it live, without a reload
        row = wall.locator("#wall-ticker .ticker-row.acked", has_text="Gas over threshold")
        row.wait_for(timeout=10000)
        assert "✓" in row.inner_text()
        assert wall.evaluate("() => window.gcc.live.resyncs('wall')") == 0
    finally:
        wall.close()
    # after a reload (a fresh snapshot) the acknowledged alarm offers no second acknowledgement
    page.reload()
    _open(page, dashboard, "/dispatch", "dispatch", community.code)
    assert page.locator(f'[id="dispatch-alarm-{sensor.sensor_id}/{alarm_id}"] .ack-button').count() == 0


def test_an_org_unit_the_city_does_not_have_gets_a_not_found_page(dashboard, page):
    ensure_signed_in(page, dashboard.url)
    page.goto(f"{dashboard.url}/dispatch?scope=350102099")
    page.locator("#shell-refusal").wait_for(timeout=10000)
    assert "404" in page.inner_text("#shell-refusal") and "350102099" in page.inner_text("#shell-refusal")
    assert page.locator("#dispatch").count() == 0
