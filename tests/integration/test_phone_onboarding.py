"""Phones join without code (issue 14): the OwnTracks configuration made for a member, used by an MQTT
client with exactly its settings, gets its fixes stored; Traccar Client's OsmAnd requests (Traccar's
own decoder test requests, re-timed) are stored through the ingest's /osmand endpoint."""
from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from registry.broker import BrokerAdmin
from registry.store import Actor, DeviceRegistry

from .ingest_helpers import HttpService, ThreadWorker, owner_rows
from .test_registry import cli, new_id, password_of, wait_for

FIXTURES = Path(__file__).parents[1] / "unit" / "fixtures" / "payloads"
ACTOR = Actor("test:onboarding")


@pytest.fixture(scope="module")
def worker(stack, city):
    with ThreadWorker(stack, index=75, share_group=f"ph{uuid.uuid4().hex[:6]}") as tw:
        yield tw


@pytest.fixture(scope="module")
def service(stack, city, tmp_path_factory):
    """The device-facing HTTP service (`python -m ingest.http`): /osmand."""
    with HttpService(stack, tmp_path_factory.mktemp("onboarding") / "ingest-http.log") as running:
        yield running


@pytest.fixture(scope="module")
def registry(stack):
    settings = stack.settings()
    return DeviceRegistry(settings.pg_dsn, BrokerAdmin.from_settings(settings))


def a_member(registry, city) -> str:
    member = new_id("M")
    registry.add_member(ACTOR, member, "手机 用户", "grid_supervisor", city.grids[7].code, new_id("T"))
    return member


def test_the_owntracks_configuration_made_for_a_member_gets_its_fixes_stored(stack, city, worker, registry,
                                                                               tmp_path):
    member, phone = a_member(registry, city), new_id("ot")
    otrc = tmp_path / "phone.otrc"
    result = cli(stack, "add-device", member, "--kind", "owntracks", "--id", phone, "--otrc", str(otrc),
                 "--qr", str(tmp_path / "phone.png"))
    assert password_of(result, phone)
    config = orjson.loads(otrc.read_bytes())
    assert (config["_type"], config["mode"], config["username"], config["clientId"]) == \
        ("configuration", 0, phone, phone)
    assert (tmp_path / "phone.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # an MQTT client with exactly the configuration's settings, publishing as the app does
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config["clientId"],
                         protocol=MQTTProtocolVersion.MQTTv311, clean_session=config["cleanSession"])
    client.username_pw_set(config["username"], config["password"])
    published = []
    client.on_publish = lambda c, u, mid, rc, p: published.append(mid)
    client.connect(config["host"], config["port"], keepalive=config["keepalive"])
    client.loop_start()
    try:
        location = orjson.loads((FIXTURES / "owntracks" / "location_booklet.json").read_bytes())
        location["tst"] = int(time.time()) - 30
        info = client.publish(f"owntracks/{config['username']}/{config['deviceId']}", orjson.dumps(location), qos=1)
        info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
    rows = wait_for("select member_id, source, lat, lon from positions where terminal_id = %s", phone, stack=stack)
    assert rows == [(member, "owntracks", 48.85833, 2.29513)]


def test_the_http_mode_configuration_points_at_the_owntracks_endpoint(stack, city, registry):
    member, phone = a_member(registry, city), new_id("oth")
    credential = registry.add_device(ACTOR, member, "owntracks", phone)
    from registry import onboarding

    config = onboarding.owntracks_config(credential, stack.settings(), mode="http")
    assert (config["mode"], config["url"].endswith("/owntracks"), config["password"]) == (3, True, credential.password)


def retimed(uri: str, now: datetime) -> str:
    """Traccar's request with its timestamp moved to `now`, in the request's own format."""
    def swap(match: re.Match) -> str:
        old = match.group(1)
        if "T" in old:
            return "timestamp=" + quote(now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        if "+" in old:
            return "timestamp=" + now.strftime("%Y-%m-%d+%H") + quote(now.strftime(":%M:%S"))
        return "timestamp=" + str(int(now.timestamp() * 1000) if len(old) > 10 else int(now.timestamp()))
    return re.sub(r"timestamp=([^&]+)", swap, uri)


def test_traccars_own_osmand_requests_are_stored(stack, city, service, registry):
    queries = (FIXTURES / "osmand" / "traccar_queries.txt").read_text().splitlines()
    bodies = [(FIXTURES / "osmand" / f"traccar_json_{n}.json").read_bytes() for n in range(1, 5)]
    ids = sorted({re.search(r"(?:id|deviceid)=(\d+)", q).group(1) for q in queries if "id=" in q} |
                 {orjson.loads(b)["device_id"] for b in bodies})
    member = a_member(registry, city)
    tokens = {i: registry.add_device(ACTOR, member, "osmand", i).password for i in ids}
    base = f"http://127.0.0.1:{service.port}/osmand"
    now = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=1)
    answers = []
    for n, uri in enumerate(queries):
        device = (re.search(r"(?:id|deviceid)=(\d+)", uri) or re.search("x", "x")).group(0).split("=")[-1]
        token = tokens.get(device, "no-token")
        request = urllib.request.Request(base + "/" + token + retimed(uri, now + timedelta(seconds=n)))
        answers.append(_status(request))
    for n, payload in enumerate(bodies):
        obj = orjson.loads(payload)
        obj["location"]["timestamp"] = (now + timedelta(seconds=20 + n)).isoformat().replace("+00:00", "Z")
        request = urllib.request.Request(f"{base}/{tokens[obj['device_id']]}", data=orjson.dumps(obj),
                                         headers={"Content-Type": "application/json"}, method="POST")
        answers.append(_status(request))
    assert answers == [200, 400] + [200] * 13        # Q2 has no id (Traccar answers it 400 too)
    fixes = owner_rows(stack, "select terminal_id, source, member_id from positions where terminal_id = any(%s)",
                       ids)
    assert len(fixes) == 9 + 4 and {f[1:] for f in fixes} == {("osmand", member)}   # Q1: no position: a status
    assert owner_rows(stack, "select state, sos from terminal_status where terminal_id = '123456'") == \
        [("online", False)]
    speed = owner_rows(stack, "select speed_mps from positions where terminal_id = '123456789012345'")[0][0]
    assert round(speed, 3) == round(40 * 1852 / 3600, 3)      # Q11: 40 knots


def test_traccar_clients_form_post_is_stored_and_a_wrong_token_refused(stack, city, service, registry):
    member, phone = a_member(registry, city), new_id("tc")
    token = registry.add_device(ACTOR, member, "osmand", phone).password
    lon, lat = city.grids[7].boundary.representative_point().coords[0]
    t = int(time.time()) - 10
    form = f"id={phone}&lat={lat}&lon={lon}&timestamp={t}&accuracy=5.0&altitude=12.0&speed=1.94&bearing=90.0" \
           "&batt=77&charge=false"
    base = f"http://127.0.0.1:{service.port}/osmand"
    post = lambda token: urllib.request.Request(f"{base}/{token}", data=form.encode(), method="POST",  # noqa: E731
                                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert _status(post(token + "x")) == 401
    assert _status(post(token)) == 200
    rows = owner_rows(stack, "select grid_code, battery_pct, source from positions where terminal_id = %s", phone)
    assert rows == [(city.grids[7].code, 77, "osmand")]


def _status(request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
