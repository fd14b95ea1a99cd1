"""The wall display in real headless Chromium against the real stack: it loads, follows live data
pushed over Socket.IO (no polling), scopes by org, and recovers from a web server restart."""
from __future__ import annotations

import re
import time
import uuid
from datetime import timedelta

import orjson
import pytest

from core.orgcodes import Level, ancestor
from registry.broker import BrokerAdmin
from registry.store import Actor, DeviceRegistry
from telemetry.topics import gateway_topic, terminal_topic

from ..support import wait_for
from .ingest_helpers import fix_payload
from .mqtt_helpers import MqttProbe, device_with_will
from .screens import SCREENSHOTS, ensure_signed_in, member_fix, now, wall_key

pytestmark = pytest.mark.slow


WALL = "(window.gcc && window.gcc.live && window.gcc.live.state('wall'))"


def _state(page, expression: str):
    return page.evaluate(f"() => {{ const st = {WALL}; return st ? ({expression}) : null; }}")


def _member_at(key: str, lon: float) -> str:
    """A page function: true once the wall holds this member at this longitude."""
    return f"() => Math.abs({WALL}.members.get('{key}').lon - {lon}) < 1e-6"


def _open_wall(page, dashboard, scope: str = "", kiosk: bool = False) -> None:
    query = "&".join(p for p in (f"scope={scope}" if scope else "", "kiosk=1" if kiosk else "") if p)
    ensure_signed_in(page, dashboard.url)
    page.goto(f"{dashboard.url}/wall" + (f"?{query}" if query else ""))
    page.wait_for_function(f"() => {{ const st = {WALL}; return st && st.scope !== null; }}", timeout=20000)


def test_the_wall_loads_with_the_grids_and_members_of_its_scope(stack, city, dashboard, page):
    community = city.communities[0]
    member = next(m for m in city.members if m.grid_code.startswith(community.code))
    point = city.grid_by_code[member.grid_code].boundary.representative_point()
    member_fix(stack, member, point.x, point.y)
    _open_wall(page, dashboard, community.code)
    grids = _state(page, "st.grids")
    assert sorted(grids) == sorted(g.code for g in city.grids if g.code.startswith(community.code))
    page.wait_for_function(f"() => {WALL}.members.has('{wall_key(stack, member.terminal_id)}')", timeout=10000)
    assert community.name in page.inner_text("#wall-scope-name")
    assert page.locator(".leaflet-container").count() == 1
    assert page.errors == []


def test_a_fix_published_over_mqtt_moves_the_member_within_seconds(stack, city, dashboard, page):
    member = city.members[40]
    grid = city.grid_by_code[member.grid_code].boundary
    start, end = grid.representative_point(), grid.centroid
    member_fix(stack, member, start.x, start.y, now() - timedelta(seconds=5))
    _open_wall(page, dashboard, ancestor(member.grid_code, Level.COMMUNITY))
    key = wall_key(stack, member.terminal_id)
    page.wait_for_function(f"() => window.gcc.live.state('wall').members.has('{key}')", timeout=10000)
    published = time.monotonic()
    member_fix(stack, member, end.x, end.y)
    page.wait_for_function(_member_at(wall_key(stack, member.terminal_id), end.x), timeout=10000)
    assert time.monotonic() - published < 5
    marker = page.evaluate(f"() => window.gcc.markers.get('{wall_key(stack, member.terminal_id)}').getLatLng()")
    assert abs(marker["lng"] - end.x) < 1e-6 and abs(marker["lat"] - end.y) < 1e-6  # the marker itself moved
    assert _state(page, "st.frames") >= 1


def test_a_members_phone_moves_the_members_own_marker_not_a_second_one(stack, city, dashboard, page):
    member = city.members[44]
    grid = city.grid_by_code[member.grid_code].boundary
    start, end = grid.representative_point(), grid.centroid
    settings = stack.settings()
    phone = f"ot-{uuid.uuid4().hex[:8]}"
    mark = dashboard.log_mark()
    credential = DeviceRegistry(settings.pg_dsn, BrokerAdmin.from_settings(settings)).add_device(
        Actor("test:wall"), member.member_id, "owntracks", phone)
    member_fix(stack, member, start.x, start.y, now() - timedelta(seconds=30))
    # the dashboard's watch takes the phone in (LISTEN/NOTIFY): a fix of the phone is then the member's;
    # the worker's too (or it reads the registry again when the unknown phone's first fix comes)
    dashboard.wait_logged("city read again", mark, "the dashboard to take the phone in")
    wait_for(lambda: phone in dashboard.worker.worker.registry.members, 10, "the worker to take the phone in")
    _open_wall(page, dashboard, ancestor(member.grid_code, Level.COMMUNITY))
    key = wall_key(stack, member.terminal_id)
    page.wait_for_function(f"() => {WALL}.members.has('{key}')", timeout=10000)
    members = _state(page, "st.members.size")
    probe = MqttProbe(stack.mosquitto.port, phone, credential.password)
    try:
        location = {"_type": "location", "lat": end.y, "lon": end.x, "tst": int(time.time()), "tid": "PH"}
        assert probe.publish(f"owntracks/{phone}/phone", orjson.dumps(location)) == "Success"
    finally:
        probe.close()
    page.wait_for_function(_member_at(key, end.x), timeout=10000)
    assert _state(page, "st.members.size") == members
    page.reload()           # the snapshot too: the member once, at the phone's fix
    page.wait_for_function(f"() => {{ const st = {WALL}; return st && st.members.has('{key}'); }}", timeout=20000)
    assert abs(_state(page, f"st.members.get('{key}').lon") - end.x) < 1e-6
    assert _state(page, "st.members.size") == members


def test_a_gas_alarm_appears_in_the_ticker_and_on_the_map(stack, city, dashboard, page):
    community = city.communities[1]
    sensor = next(s for s in city.sensors if s.kind.value == "gas_detector" and s.grid_code.startswith(community.code))
    _open_wall(page, dashboard, city.communities[1].code)
    account = stack.account(sensor.gateway_id)
    probe = MqttProbe(stack.mosquitto.port, account.username, account.password)
    try:
        assert probe.publish(gateway_topic(sensor.gateway_id, "alarm"), orjson.dumps({
            "ts": now().isoformat().replace("+00:00", "Z"), "alarm_id": f"GAS-{uuid.uuid4().hex[:8]}",
            "sensor_id": sensor.sensor_id, "alarm_type": "gas_over_threshold", "severity": 4, "state": "raised",
            "value": 27.5})) == "Success"
    finally:
        probe.close()
    page.wait_for_function("() => document.querySelector('#wall-ticker').innerText.includes('Gas over threshold')",
                           timeout=10000)
    building = city.building_by_id[sensor.building_id]
    named = f"{building.name}, {city.grid_by_code[building.grid_code].name}"  # as people say it
    assert named in page.inner_text("#wall-ticker")
    page.wait_for_function("() => document.querySelectorAll('.alarm-icon').length > 0", timeout=10000)
    # (its case, and the escalation queue, need the cases engine: tests/integration/test_cases_wall.py)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "wall-community.png"))


def test_switching_org_changes_what_is_shown(stack, city, dashboard, page):
    first, second = city.communities[2], city.streets[3]
    for m in city.members:
        if m.grid_code.startswith((first.code, second.code)) and m.role.value == "grid_supervisor":
            p = city.grid_by_code[m.grid_code].boundary.representative_point()
            member_fix(stack, m, p.x, p.y)
    _open_wall(page, dashboard, first.code)
    page.wait_for_function(f"() => window.gcc.live.state('wall').scope === '{first.code}'")
    total_first = _state(page, "st.memberTotal")
    page.click("#shell-org")
    page.locator(".dash-dropdown-search").fill(second.code)  # waits for the search box to be there
    expected = sum(code.startswith(second.code) for code in context_codes(city))
    options = page.locator(".dash-dropdown-options").get_by_role("option")
    try:
        wait_for(lambda: options.count() == expected, 10, "the search to narrow the options")  # filter settled
    except AssertionError:
        page.screenshot(path="/tmp/org-options.png")
        search = page.evaluate("() => (document.querySelector('.dash-dropdown-search') || {}).value")
        raise AssertionError(f"options: {options.all_inner_texts()[:8]} search: {search!r}") from None
    options.filter(has_text=re.compile(rf"· {second.code}$")).click()
    try:
        page.wait_for_function(f"() => window.gcc.live.state('wall').scope === '{second.code}'", timeout=15000)
    except Exception:
        page.screenshot(path="/tmp/org-switch-failure.png")
        raise AssertionError(f"scope is {_state(page, 'st.scope')!r}, url {page.url}, errors {page.errors}, "
                             f"dropdown {page.inner_text('#shell-org')!r}") from None
    assert second.name in page.inner_text("#wall-scope-name")
    assert _state(page, "st.memberTotal") == sum(m.grid_code.startswith(second.code) for m in city.members)
    assert _state(page, "st.memberTotal") != total_first
    page.wait_for_function(f"() => {WALL}.members.size > 0", timeout=10000)     # the supervisors' fixes
    members = _state(page, "[...st.members.values()].map(m => m.home_grid_code)")
    assert members and all(g.startswith(second.code) for g in members)


def context_codes(city) -> list[str]:
    return [o.code for o in (*city.districts, *city.streets, *city.communities)]


def test_live_data_is_pushed_not_polled(stack, city, dashboard, page):
    requests, sockets = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("websocket", lambda ws: sockets.append(ws.url))
    _open_wall(page, dashboard, kiosk=True)
    page.wait_for_load_state("networkidle")             # the page and its first callbacks are in
    loaded = len(requests)
    member = city.members[60]
    key = wall_key(stack, member.terminal_id)
    p = city.grid_by_code[member.grid_code].boundary.representative_point()
    for i in range(5):                                  # each fix a step east, drawn before the next
        lon = p.x + i * 1e-5
        member_fix(stack, member, lon, p.y, now() - timedelta(seconds=5 - i))
        page.wait_for_function(f"() => {WALL}.members.has('{key}') && ({_member_at(key, lon)})()", timeout=10000)
    later = requests[loaded:]
    assert later == [], f"requests after load: {later[:5]}"
    assert not any("transport=polling" in u for u in requests)
    assert any("/socket.io/" in u and "transport=websocket" in u for u in sockets)
    assert _state(page, "st.frames") >= 2
    assert page.locator("#shell-header").count() == 0  # kiosk: no controls
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "wall.png"))


def test_the_page_recovers_by_itself_when_the_web_server_restarts(stack, city, dashboard, page):
    member = city.members[80]
    grid = city.grid_by_code[member.grid_code].boundary
    start = grid.representative_point()
    member_fix(stack, member, start.x, start.y, now() - timedelta(seconds=8))
    _open_wall(page, dashboard, ancestor(member.grid_code, Level.STREET))
    page.evaluate("() => { window.__notReloaded = true; }")
    dashboard.kill()
    page.wait_for_function("() => document.querySelector('#wall-conn').innerText.includes('reconnecting')",
                           timeout=15000)
    member_fix(stack, member, grid.centroid.x, grid.centroid.y)  # while the screen is cut off
    dashboard.start()
    page.wait_for_function(_member_at(wall_key(stack, member.terminal_id), grid.centroid.x), timeout=30000)
    assert page.evaluate("() => window.__notReloaded === true")
    page.wait_for_function("() => document.querySelector('#wall-conn').innerText.includes('live')", timeout=10000)


def test_a_lost_frame_is_noticed_and_the_screen_resyncs_from_a_snapshot(stack, city, dashboard, page):
    member = city.members[100]
    grid = city.grid_by_code[member.grid_code].boundary
    start = grid.representative_point()
    member_fix(stack, member, start.x, start.y, now() - timedelta(seconds=9))
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    _open_wall(page, dashboard, ancestor(member.grid_code, Level.COMMUNITY))
    key = wall_key(stack, member.terminal_id)
    page.wait_for_function(f"() => window.gcc.live.state('wall').members.has('{key}')", timeout=10000)
    page.evaluate("() => { window.gcc.live.state('wall').seq -= 3; }")  # as if three frames had been lost
    member_fix(stack, member, grid.centroid.x, grid.centroid.y)
    page.wait_for_function("() => window.gcc.live.resyncs('wall') >= 1", timeout=10000)
    page.wait_for_function(_member_at(wall_key(stack, member.terminal_id), grid.centroid.x), timeout=10000)
    assert len(sockets) == 2  # it reconnected once, for the snapshot
    frames = page.evaluate("() => window.gcc.live.state('wall').frames")
    for i in range(3):        # and then follows the frames again, each drawn before the next: no second resync
        lon = start.x + (i + 1) * 1e-5
        member_fix(stack, member, lon, start.y, now() + timedelta(seconds=i + 1))
        page.wait_for_function(_member_at(key, lon), timeout=10000)
    assert page.evaluate("() => window.gcc.live.state('wall').frames") >= frames + 3
    assert page.evaluate("() => window.gcc.live.resyncs('wall')") == 1
    assert not page.evaluate("() => window.gcc.live.waiting('wall')")


def test_a_terminal_whose_connection_dies_goes_offline_on_the_wall_by_its_last_will(stack, city, dashboard, page):
    """The broker publishes the will when the connection dies; its payload was written at connect,
    so the ingest times it at receipt: the wall shows the member offline within a frame or two."""
    from simulator import payloads

    member = city.members[140]
    grid = city.grid_by_code[member.grid_code].boundary
    account = stack.account(member.terminal_id)
    connected_at = now() - timedelta(days=8)   # a will written long ago: older than any time check allows
    topic, will = payloads.status(member.terminal_id, connected_at, "offline", will=True)
    client = device_with_will(stack.mosquitto.port, account, topic, will, retain=True)
    try:
        p = grid.representative_point()
        sent = client.publish(terminal_topic(member.terminal_id, "fix"), fix_payload(now(), p.x, p.y), qos=1)
        sent.wait_for_publish(5)
        _open_wall(page, dashboard, ancestor(member.grid_code, Level.COMMUNITY))
        key = wall_key(stack, member.terminal_id)
        page.wait_for_function(f"() => ({WALL}.members.get('{key}') || {{}}).state === 'online'",
                               timeout=10000)
        client.socket().close()            # the connection dies: no DISCONNECT, the broker sends the will
        page.wait_for_function(f"() => {WALL}.members.get('{wall_key(stack, member.terminal_id)}').state === 'offline'",
                               timeout=10000)
        assert _state(page, f"st.members.get('{wall_key(stack, member.terminal_id)}').state") == "offline"
    finally:
        client.loop_stop()
