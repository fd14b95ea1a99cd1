"""The admin page's devices (issue 14), in Chromium: an admin adds a member's phone, scans nothing but
reads the configuration the page offers, and the phone's fixes are stored; a revoked phone is
refused by the broker; a street's admin reaches only the street's members' devices."""
from __future__ import annotations

import base64
import json
import time

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from core.http import Refused
from handheld.sessions import Sessions
from registry import onboarding
from registry.dynsec import BrokerAccount
from stack.mosquitto import mqtt_connect_reason
from telemetry.topics import AccountKind

from .ingest_helpers import owner_rows
from .screens import post_callback, session_cookie, sign_in
from .test_registry import wait_for
from .test_roles_browser import _choose, _confirm, logins  # noqa: F401 - logins: a fixture


def _add_phone(page, base_url: str, member, app: str) -> None:
    page.goto(f"{base_url}/devices")
    page.click("#devices-member")
    page.keyboard.type(member.member_id)
    page.locator("[role=option]", has_text=member.member_id).first.click()
    _choose(page, "#devices-app", app)
    page.click("#devices-add")


def test_an_admin_adds_an_owntracks_phone_whose_configuration_reports_and_can_revoke_it(stack, dashboard, city,
                                                                                          page):
    member = city.members[11]
    sign_in(page, dashboard.url, "t-admin")
    _add_phone(page, dashboard.url, member, "OwnTracks (MQTT)")
    page.locator("#devices-qr").wait_for()
    secret = page.locator("#devices-secret").inner_text().strip()
    href = page.locator("#devices-otrc").get_attribute("href")
    config = json.loads(base64.b64decode(href.split(",", 1)[1]))
    assert (config["password"], config["mode"], config["clientId"]) == (secret, 0, config["username"])
    page.locator(f"#devices-row-{config['username']}").wait_for()
    page.set_viewport_size({"width": 1366, "height": 768})
    page.screenshot(path=str(dashboard.log_path.parent / "devices-laptop.png"))

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config["clientId"],
                         protocol=MQTTProtocolVersion.MQTTv311, clean_session=config["cleanSession"])
    client.username_pw_set(config["username"], config["password"])
    client.connect(config["host"], config["port"], keepalive=config["keepalive"])
    client.loop_start()
    lon, lat = city.grid_by_code[member.grid_code].boundary.representative_point().coords[0]
    location = {"_type": "location", "lat": lat, "lon": lon, "tst": int(time.time()) - 5, "tid": config["tid"]}
    client.publish(f"owntracks/{config['username']}/{config['deviceId']}", orjson.dumps(location), qos=1) \
        .wait_for_publish(10)
    client.disconnect()
    client.loop_stop()
    assert wait_for("select member_id, grid_code from positions where terminal_id = %s", config["username"],
                    stack=stack) == [(member.member_id, member.grid_code)]

    _confirm(page, page.locator(f"#devices-row-{config['username']} button", has_text="Revoke"))
    page.locator("#devices-result .admin-done", has_text="revoked").wait_for()
    account = BrokerAccount(config["username"], config["password"], AccountKind.OWNTRACKS)
    assert mqtt_connect_reason("127.0.0.1", stack.mosquitto.port, account) == "Not authorized"
    assert owner_rows(stack, "select action, actor, outcome from audit_log where target = %s order by id",
                      f"device:{config['username']}") == [("registry.device.add", "t-admin", "done"),
                                                          ("registry.credential.revoke", "t-admin", "done")]


def test_a_traccar_client_phone_is_told_its_server_url(stack, dashboard, city, page):
    member = city.members[12]
    sign_in(page, dashboard.url, "t-admin")
    _add_phone(page, dashboard.url, member, "Traccar Client")
    url = page.locator("#devices-url").inner_text()
    assert "/osmand/" in url and url.endswith(page.locator("#devices-secret").inner_text().strip())


def test_a_street_admin_reaches_only_the_streets_devices(stack, dashboard, city, logins, page):  # noqa: F811
    street = logins
    sign_in(page, dashboard.url, "t-street-admin")
    page.goto(f"{dashboard.url}/devices")
    page.locator("#devices-list").wait_for()
    grids = owner_rows(stack, "select m.grid_code from member_devices d join members m using (member_id) "
                              "where d.device_id = any(%s)",
                       [r.split("\n")[0] for r in page.locator("#devices-list tbody tr").all_inner_texts()])
    assert grids and all(g.startswith(street.code) for (g,) in grids)
    outsider = next(m for m in city.members if not m.grid_code.startswith(street.code))
    result = _forged_rotate(dashboard.url, session_cookie(dashboard.url, "t-street-admin"), outsider.terminal_id)
    assert "outside" in result, result
    assert owner_rows(stack, "select outcome from audit_log where action = 'registry.credential.rotate' and "
                             "actor = 't-street-admin' and target = %s", f"device:{outsider.terminal_id}") == \
        [("refused",)]


def _forged_rotate(base_url: str, cookie: str, device_id: str) -> str:
    """The devices page's callback as a browser would send it, for a device the page never offered."""
    trigger = {"type": "devices-do", "device": device_id, "do": "rotate"}
    body = {"output": "..devices-result.children...devices-table.children..",
            "outputs": [{"id": "devices-result", "property": "children"},
                        {"id": "devices-table", "property": "children"}],
            "inputs": [{"id": "devices-add", "property": "n_clicks", "value": None},
                       [{"id": trigger, "property": "submit_n_clicks", "value": 1}]],
            "changedPropIds": [json.dumps(trigger, separators=(",", ":"), sort_keys=True) + ".submit_n_clicks"],
            "state": [{"id": "devices-member", "property": "value", "value": None},
                      {"id": "devices-app", "property": "value", "value": "owntracks-mqtt"},
                      {"id": "devices-label", "property": "value", "value": None}]}
    return post_callback(base_url, cookie, body)



# --- the handheld (网格通, issue 25): enrolled with a one-time link, no password -----------------------

def test_an_admin_enrols_a_handheld_whose_link_enrols_it_once_and_can_revoke_it(stack, dashboard, city, page):
    member = city.members[340]
    sign_in(page, dashboard.url, "t-admin")
    _add_phone(page, dashboard.url, member, "网格通 handheld")
    link = page.locator("#devices-enrol-link").inner_text().strip()
    assert link.startswith(f"{onboarding.ingest_url(stack.settings())}/handheld/#enrol="), link
    assert page.locator("#devices-enrol-qr").get_attribute("src").startswith("data:image/png;base64,")
    assert page.locator("#devices-enrol-expires").inner_text()
    page.set_viewport_size({"width": 1366, "height": 768})
    page.screenshot(path=str(dashboard.log_path.parent / "devices-handheld-laptop.png"))

    sessions = Sessions(stack.app_settings("ingest").pg_dsn)
    try:
        device_id, secret, caller = sessions.enrol(link.split("#enrol=", 1)[1], "246810", "", "198.51.100.40")
        assert caller.member_id == member.member_id
        token, _ = sessions.sign_in(device_id, secret, "246810", "198.51.100.40")
        page.goto(f"{dashboard.url}/devices")
        row = page.locator(f"#devices-row-{device_id}")
        row.wait_for()
        assert "网格通 handheld" in row.inner_text()
        assert row.locator("button", has_text="New password").count() == 0     # it has no password
        _confirm(page, row.locator("button", has_text="Revoke"))
        page.locator("#devices-result .admin-done", has_text="revoked").wait_for()
        with pytest.raises(Refused) as refused:
            sessions.authenticate(_Bearer(token))
        assert refused.value.reply.refused == "revoked_device"
    finally:
        sessions.pool.closeall()
    assert owner_rows(stack, "select action, actor, outcome from audit_log where target = %s order by id",
                      f"device:{device_id}") == [("registry.device.add", "t-admin", "done"),
                                                 ("registry.device.add", "handheld-enrolment", "done"),
                                                 ("registry.credential.revoke", "t-admin", "done")]


def test_a_street_admin_cannot_enrol_another_streets_member(stack, dashboard, city, logins, page):  # noqa: F811
    street = logins
    outsider = next(m for m in city.members if not m.grid_code.startswith(street.code))
    result = _forged_add(dashboard.url, session_cookie(dashboard.url, "t-street-admin"), outsider.member_id,
                         "handheld")
    assert "outside" in result and "#enrol=" not in result, result
    assert owner_rows(stack, "select count(*) from handheld_enrolments where member_id = %s", outsider.member_id) == \
        [(0,)]
    assert owner_rows(stack, "select outcome from audit_log where action = 'registry.device.add' and "
                             "actor = 't-street-admin' and target = %s", f"member:{outsider.member_id}") == \
        [("refused",)]


class _Headers(dict):
    def get_all(self, name, default=None):
        return [self[name]] if name in self else default


class _Bearer:
    """A phone's next request (core.http.Request), with its session's token."""

    def __init__(self, token: str) -> None:
        self.method, self.path, self.source = "GET", "/handheld/api/v1/me", "198.51.100.40"
        self.headers = _Headers({"Authorization": f"Bearer {token}"})


def _forged_add(base_url: str, cookie: str, member_id: str, app: str) -> str:
    """The devices page's add callback as a browser would send it, for a member the page never offered."""
    body = {"output": "..devices-result.children...devices-table.children..",
            "outputs": [{"id": "devices-result", "property": "children"},
                        {"id": "devices-table", "property": "children"}],
            "inputs": [{"id": "devices-add", "property": "n_clicks", "value": 1}, []],
            "changedPropIds": ["devices-add.n_clicks"],
            "state": [{"id": "devices-member", "property": "value", "value": member_id},
                      {"id": "devices-app", "property": "value", "value": app},
                      {"id": "devices-label", "property": "value", "value": None}]}
    return post_callback(base_url, cookie, body)
