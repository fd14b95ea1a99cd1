"""The ingest chain against the real broker, database and Redis: right table, right grid, dead
letters with specific reasons, live state and live events."""
from __future__ import annotations

import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from telemetry import live
from telemetry.topics import gateway_topic, terminal_topic

from ..support import wait_for
from .ingest_helpers import ThreadWorker, count, fix_payload
from .mqtt_helpers import MqttProbe, mosquitto_pub


@pytest.fixture(scope="module")
def worker(stack, settings, city):
    with ThreadWorker(stack, index=91, share_group=f"t{uuid.uuid4().hex[:8]}") as w:
        yield w


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _terminal(stack, city, n: int):
    member = city.members[n]
    grid = city.grid_by_code[member.grid_code]
    inside = grid.boundary.representative_point()
    return member, stack.account(member.terminal_id), inside


def test_a_fix_published_with_paho_lands_in_positions_with_its_grid(stack, city, worker, db):
    member, account, p = _terminal(stack, city, 0)
    t = _now() - timedelta(seconds=30)
    probe = MqttProbe(stack.mosquitto.port, account.username, account.password)
    try:
        assert probe.publish(terminal_topic(member.terminal_id, "fix"),
                             fix_payload(t, p.x, p.y, accuracy_m=5.0)) == "Success"
    finally:
        probe.close()
    wait_for(lambda: count(db, "select count(*) from positions where terminal_id = %s and time = %s",
                           member.terminal_id, t), 10, "the fix in the database")
    with db.cursor() as cur:
        cur.execute("select grid_code, member_id, source, accuracy_m from positions "
                    "where terminal_id = %s and time = %s",
                    (member.terminal_id, t))
        assert cur.fetchone() == (member.grid_code, member.member_id, "gcc", 5.0)


def test_a_senml_pack_published_with_mosquitto_pub_lands_in_sensor_readings(stack, city, worker, db, tmp_path):
    gateway = next(g for g in city.gateways if g.kind.value == "building_gateway")
    sensor = next(s for s in city.sensors if s.gateway_id == gateway.gateway_id and s.kind.value == "gas_detector")
    account = stack.account(gateway.gateway_id)
    t = _now() - timedelta(seconds=20)
    pack = orjson.dumps([{"bn": f"{sensor.sensor_id}/", "bt": t.timestamp(), "n": "gas_lel", "u": "%", "v": 3.5}])
    mosquitto_pub(stack.mosquitto.port, account, gateway_topic(gateway.gateway_id, "senml"), pack.decode(), tmp_path)
    wait_for(lambda: count(db, "select count(*) from sensor_readings where sensor_id = %s and time = %s",
                           sensor.sensor_id, t), 10, "the reading in the database")
    with db.cursor() as cur:
        cur.execute("select quantity, value, unit, gateway_id, building_id, grid_code from sensor_readings "
                    "where sensor_id = %s and time = %s", (sensor.sensor_id, t))
        assert cur.fetchone() == ("gas_lel", 3.5, "%", gateway.gateway_id, sensor.building_id, sensor.grid_code)


def test_an_alarm_an_incident_and_a_status_land_in_their_tables(stack, city, worker, db):
    member, account, p = _terminal(stack, city, 1)
    gateway = next(g for g in city.gateways if g.kind.value == "elevator_controller")
    sensor = next(s for s in city.sensors if s.gateway_id == gateway.gateway_id)
    t = _now() - timedelta(seconds=10)
    ts = t.isoformat().replace("+00:00", "Z")
    term = MqttProbe(stack.mosquitto.port, account.username, account.password)
    gw_account = stack.account(gateway.gateway_id)
    gw = MqttProbe(stack.mosquitto.port, gw_account.username, gw_account.password)
    try:
        report_id = f"R-{uuid.uuid4().hex[:10]}"
        assert term.publish(terminal_topic(member.terminal_id, "incident"), orjson.dumps({
            "ts": ts, "report_id": report_id, "category": "exposed_garbage", "severity": 2,
            "lat": p.y, "lon": p.x, "description": "bags by the gate", "photo_ref": "photos/x.jpg"})) == "Success"
        assert term.publish(terminal_topic(member.terminal_id, "status"),
                            orjson.dumps({"ts": ts, "state": "online", "battery_pct": 77})) == "Success"
        alarm_id = f"A-{uuid.uuid4().hex[:10]}"
        assert gw.publish(gateway_topic(gateway.gateway_id, "alarm"), orjson.dumps({
            "ts": ts, "alarm_id": alarm_id, "sensor_id": sensor.sensor_id, "alarm_type": "elevator_entrapment",
            "severity": 4, "state": "raised", "value": 7.0})) == "Success"
    finally:
        term.close()
        gw.close()
    wait_for(lambda: count(db, "select count(*) from device_alarms where alarm_id = %s", alarm_id), 10, "alarm")
    assert count(db, "select count(*) from incident_reports where report_id = %s and grid_code = %s",
                 report_id, member.grid_code) == 1
    assert count(db, "select count(*) from terminal_status where terminal_id = %s and battery_pct = 77",
                 member.terminal_id) == 1
    assert count(db, "select count(*) from device_alarms where alarm_id = %s and grid_code = %s and building_id = %s",
                 alarm_id, sensor.grid_code, sensor.building_id) == 1


MALFORMED = [
    ("invalid_json", b'{"ts": '),
    ("schema_violation", b'{"ts": "2026-11-21T08:00:00Z", "lat": 26.1}'),
    ("schema_violation", b'{"ts": "2026-11-21T08:00:00Z", "lat": 126.1, "lon": 119.3}'),
    ("schema_violation", b'{"ts": "2026-11-21T08:00:00", "lat": 26.1, "lon": 119.3}'),
    ("schema_violation", b'[26.1, 119.3]'),
    ("payload_too_large", b"{" + b" " * 70_000 + b"}"),
]


def test_malformed_payloads_are_dead_lettered_with_specific_reasons_and_the_worker_goes_on(stack, city, worker, db):
    member, account, p = _terminal(stack, city, 2)
    now = _now()
    probe = MqttProbe(stack.mosquitto.port, account.username, account.password)
    try:
        for _, payload in MALFORMED:
            assert probe.publish(terminal_topic(member.terminal_id, "fix"), payload) == "Success"
        good_t = now - timedelta(seconds=5)
        assert probe.publish(terminal_topic(member.terminal_id, "fix"), fix_payload(good_t, p.x, p.y)) == "Success"
    finally:
        probe.close()
    wait_for(lambda: count(db, "select count(*) from positions where terminal_id = %s and time = %s",
                           member.terminal_id, good_t), 10, "the good fix after the bad ones")
    with db.cursor() as cur:
        cur.execute("select reason, detail, payload from dead_letters where topic like %s and time > %s",
                    (f"%/{member.terminal_id}/%", now - timedelta(seconds=5)))
        rows = cur.fetchall()
    assert sorted(r for r, _, _ in rows) == sorted(r for r, _ in MALFORMED)
    assert {bytes(p) for _, _, p in rows} == {p[:8192] for _, p in MALFORMED}   # a dead letter keeps 8 KB
    details = {r: d for r, d, _ in rows}
    assert "lon" in next(d for r, d, p in rows if bytes(p) == MALFORMED[1][1])
    assert "70" in details["payload_too_large"]
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics").read().decode()
    assert any(line.startswith("gcc_ingest_dead_letters_total") and 'reason="invalid_json"' in line
               for line in metrics.splitlines())


def test_specific_reasons_for_time_place_and_unknown_devices(stack, city, worker, db, redis_client):
    """Well-formed messages that the validation stages refuse, each with its own reason; a fix
    outside every grid is not refused: the member is there, out of area (stored with no grid)."""
    member, account, p = _terminal(stack, city, 3)
    now = _now()
    outside = (121.47, 31.23)
    report = orjson.dumps({"ts": now.isoformat(), "report_id": "R-OUTSIDE-1", "category": "exposed_garbage",
                           "severity": 2, "lon": outside[0], "lat": outside[1]})
    probe = MqttProbe(stack.mosquitto.port, account.username, account.password)
    try:
        for payload in (fix_payload(now + timedelta(hours=2), p.x, p.y),
                        fix_payload(now - timedelta(days=30), p.x, p.y),
                        fix_payload(now, *outside)):
            assert probe.publish(terminal_topic(member.terminal_id, "fix"), payload) == "Success"
        assert probe.publish(terminal_topic(member.terminal_id, "incident"), report) == "Success"
    finally:
        probe.close()
    from registry.dynsec import BrokerAccount
    from telemetry.topics import AccountKind
    ghost = BrokerAccount.generate("T-GHOST-1", AccountKind.TERMINAL)
    stack.add_broker_accounts([ghost])             # returns once the broker has answered that it has it
    probe = MqttProbe(stack.mosquitto.port, ghost.username, ghost.password)
    try:
        assert probe.publish(terminal_topic(ghost.username, "fix"), fix_payload(now, p.x, p.y)) == "Success"
    finally:
        probe.close()
    wait_for(lambda: count(db, "select count(*) from dead_letters where topic like '%%T-GHOST-1%%'"), 10, "ghost")
    with db.cursor() as cur:
        cur.execute("select reason from dead_letters where topic like %s and time > %s",
                    (f"%/{member.terminal_id}/%", now - timedelta(seconds=5)))
        reasons = sorted(r for (r,) in cur.fetchall())
        cur.execute("select reason, detail from dead_letters where topic like '%%T-GHOST-1%%'")
        ghost_reason, ghost_detail = cur.fetchone()
    assert reasons == ["outside_city", "timestamp_future", "timestamp_past"]      # the report outside stays refused
    assert ghost_reason == "unknown_device" and "T-GHOST-1" in ghost_detail
    assert count(db, "select count(*) from positions where terminal_id = %s and time = %s and grid_code is null "
                     "and member_id is not null", member.terminal_id, now) == 1
    key = live.Keys.terminal(member.terminal_id)
    wait_for(lambda: abs(float(redis_client.hget(key, live.TerminalField.LON) or 0) - outside[0]) < 1e-6, 5,
             "the live position follows the member out of area", explain=lambda: redis_client.hgetall(key))
    assert redis_client.hget(key, live.TerminalField.GRID_CODE) in (None, b"")


def test_a_new_fix_updates_redis_live_state_and_reaches_the_bus_as_a_typed_change(stack, settings, city, worker,
                                                                                redis_client):
    member, account, p = _terminal(stack, city, 4)
    bus = live.BusReader(redis_client, block_ms=500)
    bus.start_at_end()
    t = _now() - timedelta(seconds=3)
    probe = MqttProbe(stack.mosquitto.port, account.username, account.password)
    try:
        assert probe.publish(terminal_topic(member.terminal_id, "fix"),
                             fix_payload(t, p.x, p.y, battery_pct=64)) == "Success"
    finally:
        probe.close()
    key = live.Keys.terminal(member.terminal_id)
    state = wait_for(lambda: (s := redis_client.hgetall(key)).get(b"t") == str(t.timestamp()).encode() and s,
                     10, "the new fix in the live state")
    assert state[b"grid_code"].decode() == member.grid_code
    assert state[b"battery_pct"] == b"64" and state[b"state"] == b"online"
    lon, lat = redis_client.geopos(live.Keys.POSITIONS, member.terminal_id)[0]
    assert abs(lon - p.x) < 1e-5 and abs(lat - p.y) < 1e-5
    ours = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not ours:
        for envelope in bus.read():
            assert isinstance(envelope, live.Envelope), envelope
            ours += [(envelope.producer, c) for c in envelope.changes
                     if isinstance(c, live.FixChange) and c.terminal_id == member.terminal_id]
    [(producer, change)] = ours  # once (one envelope per batch: test_worker_live)
    assert producer == worker.worker.name
    assert (change.grid_code, change.home_grid_code, change.member_id) == (member.grid_code, member.grid_code,
                                                                           member.member_id)
    assert (change.t, change.battery_pct) == (t.timestamp(), 64)


def test_an_older_fix_arriving_late_does_not_move_the_live_position_back(stack, city, worker, redis_client, db):
    member, account, p = _terminal(stack, city, 5)
    grid = city.grid_by_code[member.grid_code]
    newer, older = _now() - timedelta(seconds=2), _now() - timedelta(seconds=60)
    c = grid.boundary.centroid
    probe = MqttProbe(stack.mosquitto.port, account.username, account.password)
    try:
        probe.publish(terminal_topic(member.terminal_id, "fix"), fix_payload(newer, p.x, p.y))
        wait_for(lambda: redis_client.hget(f"gcc:term:{member.terminal_id}", "t"), 10, "first fix live")
        probe.publish(terminal_topic(member.terminal_id, "fix"), fix_payload(older, c.x, c.y))
    finally:
        probe.close()
    wait_for(lambda: count(db, "select count(*) from positions where terminal_id = %s", member.terminal_id) == 2,
             10, "both fixes stored")
    assert redis_client.hget(f"gcc:term:{member.terminal_id}", "t") == str(newer.timestamp()).encode()
