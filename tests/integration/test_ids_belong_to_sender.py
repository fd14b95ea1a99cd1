"""An alarm, report or task id is its device's: identity is (device, id) everywhere, so nobody can
hide another device's data by using its id first. The one refusal across devices is the forged
clear of issue 9. Tried against the real broker, database and Redis."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from telemetry import live
from telemetry.topics import gateway_topic, terminal_topic

from ..support import wait_for
from .ingest_helpers import ThreadWorker, count
from .mqtt_helpers import publish_once


@pytest.fixture(scope="module")
def worker(stack, city):
    with ThreadWorker(stack, index=101, share_group=f"t{uuid.uuid4().hex[:8]}") as w:
        yield w


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _dead_letter(db, reason: str, topic_part: str, about: str = ""):
    with db.cursor() as cur:
        cur.execute("select detail from dead_letters where reason = %s and topic like %s and detail like %s "
                    "order by time desc limit 1", (reason, f"%{topic_part}%", f"%{about}%"))
        row = cur.fetchone()
    db.rollback()
    return row[0] if row else None


def _send(stack, device_id: str, topic: str, payload: dict) -> None:
    assert publish_once(stack.mosquitto.port, stack.account(device_id), topic, orjson.dumps(payload)) == "Success"


def _two_detectors(city, first: int = 0):
    """Gas detectors behind two different gateways (two buildings)."""
    detectors = [s for s in city.sensors if s.kind.value == "gas_detector"][first:]
    victim = detectors[0]
    return victim, next(s for s in detectors if s.gateway_id != victim.gateway_id)


def _alarm(sensor, alarm_id: str, state: str, t: datetime) -> dict:
    return {"ts": _iso(t), "alarm_id": alarm_id, "sensor_id": sensor.sensor_id, "alarm_type": "gas_over_threshold",
            "severity": 4, "state": state, "value": 30.0}


def _open(redis_client, sensor, alarm_id: str) -> bool:
    return redis_client.hexists(live.Keys.OPEN_ALARMS, live.Keys.alarm_field(sensor.sensor_id, alarm_id))


def test_a_gateway_cannot_clear_another_buildings_alarm(stack, city, worker, db, redis_client):
    victim, attacker = _two_detectors(city)
    alarm_id, now = f"GAS-{uuid.uuid4().hex[:8]}", _now()
    _send(stack, victim.gateway_id, gateway_topic(victim.gateway_id, "alarm"),
          _alarm(victim, alarm_id, "raised", now - timedelta(seconds=30)))
    wait_for(lambda: _open(redis_client, victim, alarm_id), 10, "the alarm open")
    # the attacker's own sensor (so its gateway may speak for it), the victim's alarm id, a time ahead
    _send(stack, attacker.gateway_id, gateway_topic(attacker.gateway_id, "alarm"),
          _alarm(attacker, alarm_id, "cleared", now + timedelta(minutes=4)))
    detail = wait_for(lambda: _dead_letter(db, "foreign_id", attacker.gateway_id, alarm_id), 10,
                      "the forged clear refused")
    assert victim.sensor_id in detail and attacker.sensor_id in detail and alarm_id in detail
    assert _open(redis_client, victim, alarm_id)                                    # still open on the wall
    assert count(db, "select count(*) from device_alarms where alarm_id = %s", alarm_id) == 1
    # and the victim's own real clear still works (nothing was poisoned)
    _send(stack, victim.gateway_id, gateway_topic(victim.gateway_id, "alarm"), _alarm(victim, alarm_id, "cleared", now))
    wait_for(lambda: not _open(redis_client, victim, alarm_id), 10, "the real clear applied")


def test_a_thiefs_decoy_report_with_the_victims_next_id_does_not_hide_the_victims_report(stack, city, worker, db,
                                                                                          redis_client):
    victim, thief = city.members[220], city.members[221]
    report_id = f"{victim.terminal_id}-{int(_now().timestamp()) + 60}-1"   # ids are predictable
    now = _now()
    p = city.grid_by_code[thief.grid_code].boundary.representative_point()
    q = city.grid_by_code[victim.grid_code].boundary.representative_point()

    def report(member, point, t) -> dict:
        return {"ts": _iso(t), "report_id": report_id, "category": "exposed_garbage", "severity": 2,
                "lat": point.y, "lon": point.x, "description": f"by {member.terminal_id}"}

    _send(stack, thief.terminal_id, terminal_topic(thief.terminal_id, "incident"),
          report(thief, p, now - timedelta(seconds=9)))
    wait_for(lambda: count(db, "select count(*) from incident_reports where report_id = %s", report_id), 10,
             "the decoy stored")
    _send(stack, victim.terminal_id, terminal_topic(victim.terminal_id, "incident"), report(victim, q, now))
    wait_for(lambda: count(db, "select count(*) from incident_reports where report_id = %s and terminal_id = %s",
                           report_id, victim.terminal_id), 10, "the victim's report stored")
    member = live.Keys.report_member(victim.terminal_id, report_id)
    wait_for(lambda: redis_client.zscore(live.Keys.REPORTS, member) is not None, 10, "the victim's report live")
    shown = [r for r in live.read_recent_reports(redis_client) if r.report_id == report_id]
    assert sorted(r.terminal_id for r in shown) == sorted([thief.terminal_id, victim.terminal_id])
    assert _dead_letter(db, "foreign_id", victim.terminal_id) is None


def test_a_thiefs_decoy_alarm_with_the_victims_next_id_does_not_hide_the_victims_alarm(stack, city, worker, db,
                                                                                        redis_client):
    victim, thief = _two_detectors(city, first=5)
    alarm_id, now = f"{victim.sensor_id}-{int(_now().timestamp()) + 60}-1", _now()
    _send(stack, thief.gateway_id, gateway_topic(thief.gateway_id, "alarm"),
          _alarm(thief, alarm_id, "raised", now - timedelta(seconds=20)))
    wait_for(lambda: _open(redis_client, thief, alarm_id), 10, "the decoy open")
    _send(stack, victim.gateway_id, gateway_topic(victim.gateway_id, "alarm"), _alarm(victim, alarm_id, "raised", now))
    wait_for(lambda: _open(redis_client, victim, alarm_id), 10, "the victim's alarm open on the wall")
    assert count(db, "select count(*) from device_alarms where alarm_id = %s and sensor_id = %s", alarm_id,
                 victim.sensor_id) == 1
    assert _dead_letter(db, "foreign_id", victim.gateway_id, alarm_id) is None


def test_two_sensors_may_use_the_same_alarm_id_each_raising_and_clearing_its_own(stack, city, worker, db,
                                                                                  redis_client):
    first, second = _two_detectors(city, first=10)
    alarm_id, now = f"A-{uuid.uuid4().hex[:8]}", _now()
    for sensor in (first, second):
        _send(stack, sensor.gateway_id, gateway_topic(sensor.gateway_id, "alarm"),
              _alarm(sensor, alarm_id, "raised", now - timedelta(seconds=30)))
    wait_for(lambda: _open(redis_client, first, alarm_id) and _open(redis_client, second, alarm_id), 10, "both open")
    _send(stack, first.gateway_id, gateway_topic(first.gateway_id, "alarm"),
          _alarm(first, alarm_id, "cleared", now - timedelta(seconds=10)))
    wait_for(lambda: not _open(redis_client, first, alarm_id), 10, "the first one cleared")
    assert _open(redis_client, second, alarm_id)
    _send(stack, second.gateway_id, gateway_topic(second.gateway_id, "alarm"),
          _alarm(second, alarm_id, "cleared", now - timedelta(seconds=5)))
    wait_for(lambda: not _open(redis_client, second, alarm_id), 10, "the second one cleared")
    assert count(db, "select count(*) from device_alarms where alarm_id = %s", alarm_id) == 4
    assert _dead_letter(db, "foreign_id", first.gateway_id, alarm_id) is None
    assert _dead_letter(db, "foreign_id", second.gateway_id, alarm_id) is None


def test_a_redelivered_report_is_stored_once_and_not_refused(stack, city, worker, db):
    member = city.members[222]
    p = city.grid_by_code[member.grid_code].boundary.representative_point()
    t = _now() - timedelta(seconds=5)
    payload = {"ts": _iso(t), "report_id": f"R-{uuid.uuid4().hex[:8]}", "category": "noise", "severity": 1,
               "lat": p.y, "lon": p.x}
    for _ in range(2):   # the same message twice, as a redelivery after a crash would bring it
        _send(stack, member.terminal_id, terminal_topic(member.terminal_id, "incident"), payload)
    wait_for(lambda: count(db, "select count(*) from incident_reports where terminal_id = %s and time = %s",
                           member.terminal_id, t), 10, "stored")
    assert count(db, "select count(*) from incident_reports where terminal_id = %s and time = %s",
                 member.terminal_id, t) == 1
    assert _dead_letter(db, "foreign_id", member.terminal_id) is None
