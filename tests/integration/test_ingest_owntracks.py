"""A phone running the OwnTracks app, over MQTT and in HTTP mode, as a registered member."""
from __future__ import annotations

import base64
import time
import urllib.error
import urllib.request
import uuid

import orjson
import pytest

from registry.dynsec import BrokerAccount
from telemetry.topics import AccountKind

from ..support import wait_for
from .ingest_helpers import HttpService, ThreadWorker, count
from .mqtt_helpers import MqttProbe

USER = "ot-alice"


@pytest.fixture(scope="module")
def phone(stack, settings, city, tmp_path_factory):
    import psycopg2

    member = city.members[30]
    with psycopg2.connect(settings.pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("insert into members (member_id, name, role, grid_code, terminal_id) values "
                    "(%s, '林小红', 'grid_coordinator', %s, %s) on conflict do nothing",
                    (f"M-{USER}", member.grid_code, USER))
    account = BrokerAccount.generate(USER, AccountKind.OWNTRACKS)
    stack.add_broker_accounts([account])             # returns once the broker has answered that it has it
    with ThreadWorker(stack, index=95, share_group=f"t{uuid.uuid4().hex[:8]}"), \
            HttpService(stack, tmp_path_factory.mktemp("owntracks") / "ingest-http.log") as service:
        yield account, city.grid_by_code[member.grid_code], service


def _post(port: int, body: bytes, user: str, password: str, headers: dict | None = None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/owntracks", data=body, method="POST", headers={
        "Content-Type": "application/json",
        "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(), **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _location(tst: int, grid) -> bytes:
    p = grid.boundary.representative_point()
    return orjson.dumps({"_type": "location", "tst": tst, "lat": p.y, "lon": p.x, "acc": 12, "batt": 81,
                         "vel": 18, "tid": "al", "conn": "m"})


def test_an_owntracks_http_post_is_stored_before_the_app_gets_its_200(phone, db):
    account, grid, service = phone
    tst = int(time.time()) - 50
    status, body = _post(service.port, _location(tst, grid), account.username, account.password,
                         {"X-Limit-U": account.username, "X-Limit-D": "phone"})
    assert (status, body) == (200, b"[]")
    with db.cursor() as cur:  # no waiting: the answer came after the commit
        cur.execute("select source, grid_code, battery_pct, speed_mps from positions "
                    "where terminal_id = %s and time = to_timestamp(%s)", (USER, tst))
        source, grid_code, battery, speed = cur.fetchone()
    assert (source, grid_code, battery) == ("owntracks-http", grid.code, 81)
    assert speed == pytest.approx(5.0)  # 18 km/h


def test_owntracks_http_refuses_a_wrong_password_and_another_users_identity(phone):
    account, grid, service = phone
    assert _post(service.port, _location(int(time.time()), grid), account.username, "nope")[0] == 401
    assert _post(service.port, _location(int(time.time()), grid), account.username, account.password,
                 {"X-Limit-U": "somebody-else"})[0] == 403


def test_an_invalid_owntracks_http_post_is_dead_lettered_and_answered_400(phone, db):
    account, grid, service = phone
    status, body = _post(service.port, b'{"_type": "location", "lat": 26.1}', account.username,
                         account.password)
    assert status == 400 and b"schema_violation" in body
    assert count(db, "select count(*) from dead_letters where topic like %s and reason = 'schema_violation'",
                 f"owntracks/{USER}/%") >= 1


def test_an_owntracks_location_over_mqtt_lands_in_positions(phone, stack, db):
    account, grid, service = phone
    tst = int(time.time()) - 40
    probe = MqttProbe(stack.mosquitto.port, account.username, account.password)
    try:
        assert probe.publish(f"owntracks/{USER}/phone", _location(tst, grid)) == "Success"
    finally:
        probe.close()
    wait_for(lambda: count(db, "select count(*) from positions where terminal_id = %s and time = to_timestamp(%s) "
                               "and source = 'owntracks'", USER, tst), 10, "the OwnTracks fix")
